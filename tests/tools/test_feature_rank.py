"""tools/feature_rank.py: a stem whose filters are all one filter has
effective rank 1; a random one more; every stage is reported."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from dataloaders import toy_world
from modeling.backbones import branch_loading
from tasks import registry_imports  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
OVERRIDES = ('task.toy_world.num_train_videos=2,'
             'task.toy_world.num_validation_videos=1,'
             'task.train_data.global_batch_size=2,'
             'task.train_data.shuffle_buffer_size=4')


def _run(args, tmp_path):
  return subprocess.run(
      [sys.executable, 'tools/feature_rank.py'] + args,
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, CONST_CL_CACHE=str(tmp_path / 'cache'),
               CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2'))


def test_one_filter_stem_has_rank_one(tmp_path):
  params = exp_factory.get_exp_config('const_cl_ava_toy')
  tf_keras.utils.set_random_seed(5)
  model = task_factory.get_task(params.task).build_model()
  stem = [v for layer in branch_loading.stage_layers(model.backbone)['stem']
          for v in branch_loading.layer_variables(layer)
          if 'kernel' in v.name]
  assert len(stem) == 1 and stem[0].shape[-1] == 8
  kernel = stem[0].numpy()
  stem[0].assign(np.repeat(kernel[..., :1], 8, axis=-1))
  tf.train.CheckpointManager(
      tf.train.Checkpoint(backbone=model.backbone), str(tmp_path / 'one'),
      max_to_keep=1).save(checkpoint_number=1)
  out = tmp_path / 'rank.json'
  proc = _run([f'--params_override={OVERRIDES}', '--checkpoint=',
               f'--checkpoint={tmp_path / "one"}', f'--output_json={out}'],
              tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['bn'] == 'batch' and report['num_batches'] == 1
  stats = report['stats']
  random_init = stats['random initialization (seed 0)']
  one = stats[str(tmp_path / 'one' / 'ckpt-1')]
  assert set(one) == set(random_init) == {'stem', '2', '3', '4', '5g', '5r'}
  assert [one[s]['channels'] for s in ('stem', '2', '3', '4', '5g', '5r')
          ] == [8, 32, 64, 128, 256, 256]
  # Eight copies of one filter: after batch norm and ReLU, eight equal
  # channels, one direction.
  assert abs(one['stem']['effective_rank'] - 1.0) < 1e-3
  assert random_init['stem']['effective_rank'] > 3.0
  for row in list(one.values()) + list(random_init.values()):
    assert 0.0 <= row['temporal_variance_share'] <= 1.0
    assert row['effective_rank'] <= row['channels']
  assert 'effective rank    1.00 of    8 channels' in proc.stdout


def test_bad_flags_are_usage_errors(tmp_path):
  proc = _run(['--checkpoint=', '--num_batches=0'], tmp_path)
  assert proc.returncode == 1
  assert '--num_batches must be >= 1, got 0' in proc.stderr
  proc = _run([f'--checkpoint={tmp_path / "missing"}'], tmp_path)
  assert proc.returncode == 2
  assert 'missing' in proc.stderr and 'Traceback' not in proc.stderr
  proc = _run(['--checkpoint=', '--experiment=const_cl_tracking_toy',
               '--params_override=task.toy_world.num_train_sequences=2,'
               'task.toy_world.num_eval_sequences=1,'
               'task.train_data.global_batch_size=2'], tmp_path)
  assert proc.returncode == 2
  assert ('error: --experiment=const_cl_tracking_toy: its inputs carry no '
          '`image` clip' in proc.stderr)
  assert 'Traceback' not in proc.stderr


def test_random_initialization_of_a_classification_experiment(tmp_path):
  # The classification task refuses an empty init_checkpoint unless
  # allow_random_init; `--checkpoint=` means random initialization there
  # too. The shapes world is shared with the other tests' cache.
  toy_world.ensure_named_dataset('shapes')
  proc = subprocess.run(
      [sys.executable, 'tools/feature_rank.py',
       '--experiment=const_cl_linear_eval_ucf101_toy', '--checkpoint=',
       '--params_override=task.train_data.global_batch_size=2',
       f'--output_json={tmp_path / "rank.json"}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  stats = json.loads((tmp_path / 'rank.json').read_text())['stats']
  rows = stats['random initialization (seed 0)']
  # One res5 in the classification backbone: 5r is 5g.
  assert rows['5r'] == rows['5g']
  assert [rows[s]['channels'] for s in ('stem', '2', '3', '4', '5g')] == [
      8, 32, 64, 128, 256]
