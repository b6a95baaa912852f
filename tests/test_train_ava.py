"""2-step train + eval of `const_cl_ava_toy` through train.py (subprocess).

The toy world's AVA files are written and converted into a temporary cache,
the model trains 2 steps on ground-truth boxes, evaluates on the whole toy
validation split, writes the detections CSV into the model dir and reports
an mAP in [0, 1].
"""
import csv
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_const_cl_ava_toy_train_and_eval_smoke(tmp_path):
  model_dir = tmp_path / 'model'
  overrides = ','.join([
      'task.toy_world.num_train_videos=2',
      'task.toy_world.num_validation_videos=1',
      'task.train_data.global_batch_size=2',
      'task.train_data.shuffle_buffer_size=4',
      'task.validation_data.global_batch_size=4',
      'trainer.train_steps=2',
      'trainer.steps_per_loop=2',
      'trainer.validation_interval=2',
      'trainer.checkpoint_interval=2',
      'trainer.summary_interval=2',
  ])
  env = dict(os.environ, CONST_CL_CACHE=str(tmp_path / 'cache'),
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, 'train.py', '--experiment=const_cl_ava_toy',
       '--mode=train_and_eval', f'--model_dir={model_dir}',
       f'--params_override={overrides}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert (model_dir / 'params.yaml').exists()
  with open(model_dir / 'ava_detections.csv') as f:
    rows = list(csv.reader(f))
  with open(model_dir / 'ava_eval_results.json') as f:
    results = json.load(f)
  assert results['global_step'] == 2
  assert 0.0 <= results['mAP'] <= 1.0
  # One row per box per class of the 8-action label map, ids 1..8.
  assert rows and len(rows) % 8 == 0
  assert {int(r[6]) for r in rows} == set(range(1, 9))
  for r in rows:
    assert r[0].startswith('toy_validation_')
    x1, y1, x2, y2, score = map(float, r[2:6] + [r[7]])
    assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1 and 0 <= score <= 1
  assert 'mAP' in proc.stdout + proc.stderr
