"""Tests for modeling/export.py and tools/export_saved_model.py (toy model)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from modeling import export as export_lib
from tasks import features as features_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  params = features_lib.load_experiment_config('const_cl_pretrain_toy')
  model = features_lib.build_pretrain_model(params)
  ckpt_dir = str(tmp_path_factory.mktemp('ckpt'))
  tf.train.Checkpoint(model=model).save(os.path.join(ckpt_dir, 'ckpt'))
  return params, model, ckpt_dir


def test_exported_model_matches_keras_model(toy, tmp_path):
  params, trained, ckpt_dir = toy
  # A fresh model restored from the directory (-> latest checkpoint).
  model = features_lib.load_pretrained_model(params, ckpt_dir, 'toy')
  module = export_lib.ConstCLExportModule(params, model, num_frames=8,
                                          crop_size=64, batch_size=None)
  path = export_lib.export_saved_model(module, str(tmp_path / 'export'))
  serving = tf.saved_model.load(path).signatures['serving_default']
  clips = tf.constant(
      np.random.RandomState(0).rand(2, 8, 64, 64, 3).astype(np.float32))
  got = serving(clips=clips)
  want = export_lib.backbone_features(clips, trained)
  assert set(got) == set(export_lib.SERVING_OUTPUTS)
  assert got['global_embedding'].shape == (2, 64)
  assert got['res5g_pooled'].shape == (2, 256)
  assert got['res5r'].shape == (2, 4, 2, 2, 256)
  for key in export_lib.SERVING_OUTPUTS:
    np.testing.assert_allclose(got[key].numpy(), want[key].numpy(),
                               atol=1e-5, rtol=0)
  np.testing.assert_allclose(
      np.linalg.norm(got['global_embedding'].numpy(), axis=-1), 1.0,
      atol=1e-5)
  # res5g_pooled is the mean of the 5g map; the Y branches differ.
  endpoints = trained.backbone(clips, training=False)
  np.testing.assert_allclose(
      got['res5g_pooled'].numpy(),
      endpoints['5g'].numpy().mean(axis=(1, 2, 3)), atol=1e-5)
  np.testing.assert_allclose(got['res5r'].numpy(), endpoints['5r'].numpy(),
                             atol=1e-5)


def test_rebuild_for_other_clip_size_keeps_weights(toy):
  params, model, _ = toy
  big = features_lib.rebuild_for_clip_size(params, model, 16, 96)
  assert features_lib.rebuild_for_clip_size(params, model, 8, 64) is model
  out = export_lib.backbone_features(tf.zeros([1, 16, 96, 96, 3]), big)
  assert out['res5r'].shape == (1, 8, 3, 3, 256)
  for a, b in zip(big.backbone.get_weights(), model.backbone.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_missing_checkpoint_names_the_path(toy, tmp_path):
  _, model, _ = toy
  missing = str(tmp_path / 'no_such_ckpt-7')
  with pytest.raises(FileNotFoundError, match='no_such_ckpt-7'):
    export_lib.restore_pretrain_checkpoint(model, missing)
  empty = tmp_path / 'empty_dir'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match='empty_dir.*no checkpoint'):
    export_lib.restore_pretrain_checkpoint(model, str(empty))


def test_wrong_checkpoints_say_what_was_expected(toy, tmp_path):
  _, model, _ = toy
  # Backbone saved alone (not under "model").
  path = tf.train.Checkpoint(backbone=model.backbone).save(
      str(tmp_path / 'bb' / 'ckpt'))
  with pytest.raises(ValueError, match='key "model".*backbone'):
    export_lib.restore_pretrain_checkpoint(model, path)
  # Under "model", but another model.
  other = tf.Module()
  other.w = tf.Variable(tf.zeros([3]))
  path = tf.train.Checkpoint(model=other).save(str(tmp_path / 'o' / 'ckpt'))
  with pytest.raises(ValueError, match=(
      r'does not fit.*same experiment.*Restoring said: \d+ variables '
      r'unrestored, e\.g\. ')) as raised:
    export_lib.restore_pretrain_checkpoint(model, path)
  # Names, not TF's reprs with values, and no chained TF error.
  assert 'numpy=' not in str(raised.value)
  assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_const_cl_checkpoint_into_the_cvrl_model_is_refused(toy):
  # The CVRL model is the ConST-CL one without res5r and the local head:
  # every one of its variables is in the checkpoint, so only the extra
  # objects tell the checkpoint is another variant's.
  _, _, ckpt_dir = toy
  cvrl = features_lib.build_pretrain_model(
      features_lib.load_experiment_config(
          'const_cl_ablation_baseline_cvrl_toy'))
  with pytest.raises(ValueError, match=(
      r'does not fit CVRL: the checkpoint holds \d+ model objects that CVRL '
      r'does not have \(e.g. model/_local_head.*\), so they would be '
      r'dropped; is it a checkpoint of another experiment variant')):
    export_lib.restore_pretrain_checkpoint(cvrl, ckpt_dir, 'CVRL')
  # Its own variant's checkpoint has nothing extra.
  path = tf.train.Checkpoint(model=cvrl).save(
      os.path.join(ckpt_dir + '_cvrl', 'ckpt'))
  assert export_lib.restore_pretrain_checkpoint(cvrl, path, 'CVRL') == path


def test_tool_reports_missing_checkpoint(tmp_path):
  missing = str(tmp_path / 'nothing_here')
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'export_saved_model.py'),
       '--experiment=const_cl_pretrain_toy', f'--checkpoint={missing}',
       f'--export_dir={tmp_path / "out"}'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3'))
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f"checkpoint '{missing}' does not exist" in proc.stderr
  assert not os.path.exists(tmp_path / 'out')
