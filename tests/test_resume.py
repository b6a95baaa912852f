"""A run killed with SIGKILL and restarted ends with the uninterrupted weights.

Run A trains the toy config for 6 steps (a checkpoint every 2: Orbit saves
after steps 1, 3, 5 and 6). Run B is the same command, killed with SIGKILL
as soon as its step-3 checkpoint exists,
then started again with the same command: Orbit restores model, optimizer
and step, and `ConstCLPretrainTask.build_inputs` skips the records consumed
before that checkpoint, so B sees the same data at every step as A. With
`--seed=1 --deterministic` and a fixed `task.train_data.seed`, every
variable of the two final checkpoints is bitwise equal.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
OVERRIDES = (f'trainer.train_steps={STEPS},trainer.steps_per_loop=1,'
             'trainer.summary_interval=2,trainer.checkpoint_interval=2,'
             'trainer.max_to_keep=5,'
             'task.train_data.global_batch_size=2,'
             'task.train_data.seed=1,task.train_data.deterministic=true')
TIMEOUT = 900  # seconds per run; the whole run is ~1 min on a quiet machine


def _command(model_dir):
  return [sys.executable, os.path.join(REPO, 'train.py'),
          '--experiment=const_cl_pretrain_toy', '--mode=train',
          f'--model_dir={model_dir}', f'--params_override={OVERRIDES}',
          '--seed=1', '--deterministic']


def _start(model_dir, log_path):
  log = open(log_path, 'w')
  # A new session so a kill on timeout takes no one else down.
  return subprocess.Popen(_command(model_dir), cwd=REPO, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)


def _wait(proc, log_path, timeout=TIMEOUT):
  try:
    proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise
  with open(log_path) as f:
    log = f.read()
  assert proc.returncode == 0, log[-3000:]
  return log


def _checkpoint_values(path):
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k != '_CHECKPOINTABLE_OBJECT_GRAPH'}


def _latest_step(model_dir):
  """Step of the checkpoint the `checkpoint` state file names, else -1."""
  latest = tf.train.latest_checkpoint(model_dir)
  return -1 if latest is None else int(latest.rsplit('-', 1)[1])


def test_sigkill_and_restart_gives_the_uninterrupted_weights(tmp_path):
  dir_a, dir_b = str(tmp_path / 'a'), str(tmp_path / 'b')
  # A and the first part of B run side by side to save wall time.
  proc_a = _start(dir_a, str(tmp_path / 'a.log'))
  proc_b = _start(dir_b, str(tmp_path / 'b1.log'))
  try:
    deadline = time.time() + TIMEOUT
    # Wait for the checkpoint *state* file to name step 3 (or later), not
    # for ckpt-3.index: CheckpointManager writes the index first and the
    # `checkpoint` file a few ms later (median 4.6 ms, max 38 ms measured on
    # a loaded 2-core machine), so a kill right after the index appeared
    # left latest_checkpoint at ckpt-1 about 1 run in 20.
    while _latest_step(dir_b) < 3:
      assert proc_b.poll() is None, open(tmp_path / 'b1.log').read()[-3000:]
      assert time.time() < deadline, 'run B wrote no step-3 checkpoint'
      time.sleep(0.1)
    os.kill(proc_b.pid, signal.SIGKILL)
    proc_b.wait()
  finally:
    if proc_b.poll() is None:
      proc_b.kill()
      proc_b.wait()
  assert proc_b.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(dir_b, f'ckpt-{STEPS}.index'))
  resumed_from = tf.train.latest_checkpoint(dir_b)
  assert resumed_from is not None
  step_b = int(resumed_from.rsplit('-', 1)[1])
  assert step_b in (3, 5)

  proc_b2 = _start(dir_b, str(tmp_path / 'b2.log'))
  try:
    log_a = _wait(proc_a, str(tmp_path / 'a.log'))
    log_b2 = _wait(proc_b2, str(tmp_path / 'b2.log'))
  finally:
    for p in (proc_a, proc_b2):
      if p.poll() is None:
        p.kill()
        p.wait()
  assert 'Resuming the input' not in log_a
  # The restart read past exactly the records of the steps done before.
  assert (f'Resuming the input at step {step_b}: skipping {step_b} x 2 '
          'records') in log_b2

  final_a = _checkpoint_values(os.path.join(dir_a, f'ckpt-{STEPS}'))
  final_b = _checkpoint_values(os.path.join(dir_b, f'ckpt-{STEPS}'))
  assert sorted(final_a) == sorted(final_b)
  assert int(final_a['global_step/.ATTRIBUTES/VARIABLE_VALUE']) == STEPS
  model_keys = [k for k in final_a if k.startswith('model/')]
  optimizer_keys = [k for k in final_a if k.startswith('optimizer/')]
  assert len(model_keys) > 50 and optimizer_keys
  for key in final_a:
    np.testing.assert_array_equal(final_a[key], final_b[key], err_msg=key)
  # Training moved the weights between the restart point and the end.
  start = _checkpoint_values(os.path.join(dir_a, f'ckpt-{step_b}'))
  assert any(not np.array_equal(start[k], final_a[k]) for k in model_keys)
