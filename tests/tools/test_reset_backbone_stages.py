"""tools/reset_backbone_stages.py: a pretraining checkpoint in, the chosen
stages re-initialized, the rest kept, a loadable backbone checkpoint out."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from modeling.backbones import branch_loading
from tasks import features as features_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _stage_values(backbone):
  return {s: [w.numpy() for l in ls for w in branch_loading.layer_variables(l)]
          for s, ls in branch_loading.stage_layers(backbone).items()}


def test_resets_the_chosen_stages_and_keeps_the_rest(tmp_path):
  params = features_lib.load_experiment_config('const_cl_pretrain_toy')
  source = features_lib.build_pretrain_model(params)
  rng = np.random.default_rng(0)
  for v in source.backbone.weights:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
  # Saved as the pretraining trainer does: the model plus a top-level
  # backbone.
  tf.train.Checkpoint(model=source, backbone=source.backbone).save(
      str(tmp_path / 'pretrain' / 'ckpt'))
  want = _stage_values(source.backbone)
  out = tmp_path / 'reset'
  proc = subprocess.run(
      [sys.executable, 'tools/reset_backbone_stages.py',
       '--experiment=const_cl_pretrain_toy',
       f'--checkpoint={tmp_path / "pretrain"}', '--reset=stem,res5r',
       '--seed=3', f'--output_dir={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((out / 'reset.json').read_text())
  assert report['variables_reset'] == {'stem': 5, 'res5r': 20}
  assert report['seed'] == 3
  # A downstream task reads it as it reads a pretraining checkpoint.
  target = features_lib.build_pretrain_model(params)
  tf.train.Checkpoint(backbone=target.backbone).read(
      tf.train.latest_checkpoint(str(out))
  ).expect_partial().assert_existing_objects_matched()
  got = _stage_values(target.backbone)
  for stage in ('res2', 'res3', 'res4', 'res5g'):
    for a, b in zip(want[stage], got[stage]):
      np.testing.assert_array_equal(a, b)
  for stage in ('stem', 'res5r'):
    # Fresh values: none equals the source's uniform(0.5, 1.5) draws; the
    # BN moving means start at 0 and the kernels have both signs.
    for a, b in zip(want[stage], got[stage]):
      assert not np.array_equal(a, b)
    assert (got[stage][0] < 0).any()  # a fresh kernel, not a copy


def test_unknown_stage_is_a_usage_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, 'tools/reset_backbone_stages.py',
       '--experiment=const_cl_pretrain_toy', f'--checkpoint={tmp_path}',
       '--reset=res6', f'--output_dir={tmp_path / "o"}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode != 0
  assert "unknown stages ['res6']" in proc.stderr


def test_empty_reset_is_a_usage_error_before_the_checkpoint(tmp_path):
  """`--reset=` passed the required-flag check as [] and went on to the
  checkpoint and the model build."""
  proc = subprocess.run(
      [sys.executable, 'tools/reset_backbone_stages.py',
       '--experiment=const_cl_pretrain_toy', f'--checkpoint={tmp_path}',
       '--reset=', f'--output_dir={tmp_path / "o"}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 1
  assert proc.stderr.rstrip().endswith(
      "--reset is empty; name at least one stage of ('stem', 'res2', "
      "'res3', 'res4', 'res5g', 'res5r')")
  assert not (tmp_path / 'o').exists()
