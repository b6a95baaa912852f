"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 == one process.

Each worker (tests/multiworker_worker.py, its own process, TF_CONFIG naming
both) runs `ConstCLPretrainTask.train_step` of the toy config on its half of
fixed synthetic global batches; this process runs the same steps on the
whole batches with the default strategy. All start from the same weights
(written here, loaded by the workers).

  * 3 steps with inference-mode BN (see `InferenceModeBN` in the helper for
    why): losses equal to 1e-5, both workers end with bitwise identical
    weights, equal to the one-process run to 1e-5.
  * then 1 step with training-mode sync BN (the moments all-reduced over
    the two processes): loss equal to 5e-4 relative (training-mode BN on
    these noise inputs divides by tiny batch deviations; 1.4e-4 was measured
    across two processes with the toy backbone, see also
    tests/test_distributed.py) and BN moving statistics to 1e-3 of each
    tensor's largest value;
    the workers stay bitwise identical.

A worker that hangs (e.g. waiting for a peer that died) cannot hang CI:
every worker runs in its own session with a deadline and is killed, with
its whole process group, when the deadline passes.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras

_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'multiworker_worker.py')
_spec = importlib.util.spec_from_file_location('multiworker_worker', _HELPER)
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)

NUM_WORKERS = 2
TIMEOUT = 900  # seconds for the workers; ~1 min on a quiet machine


def _free_ports(n):
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(('127.0.0.1', 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _start_workers(tmp_path, init_path):
  ports = _free_ports(NUM_WORKERS)
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  procs = []
  for i in range(NUM_WORKERS):
    env = dict(os.environ)
    env['TF_CONFIG'] = json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': i}})
    env['CUDA_VISIBLE_DEVICES'] = ''
    env['TF_CPP_MIN_LOG_LEVEL'] = '2'
    log = open(tmp_path / f'worker{i}.log', 'w')
    procs.append(subprocess.Popen(
        [sys.executable, _HELPER, '--strategy=multi_worker_mirrored',
         f'--init_weights={init_path}',
         f'--output={tmp_path / f"worker{i}.npz"}'],
        stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True))
  return procs


def _kill(proc):
  if proc.poll() is None:
    try:
      os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its group
    except ProcessLookupError:
      pass
    proc.wait()


def _wait_all(procs, tmp_path, deadline):
  try:
    for proc in procs:
      proc.wait(timeout=max(1.0, deadline - time.time()))
  finally:
    for proc in procs:
      _kill(proc)
  outputs = []
  for i, proc in enumerate(procs):
    log = (tmp_path / f'worker{i}.log').read_text()
    assert proc.returncode == 0, f'worker {i}:\n{log[-3000:]}'
    outputs.append(json.loads(log.strip().splitlines()[-1]))
  return outputs


def test_two_workers_end_with_the_one_process_weights(tmp_path):
  config = mw.tiny_config()
  # Seeded start weights (the workers load them from init.npz), so every
  # run checks the same draw.
  tf_keras.utils.set_random_seed(0)
  _, model, _ = mw.build(config)
  init = mw.variables_by_name(model)
  init_path = str(tmp_path / 'init.npz')
  np.savez(init_path, **init)
  deadline = time.time() + TIMEOUT
  procs = _start_workers(tmp_path, init_path)
  try:
    # The reference trains here while the workers start up.
    ref = mw.run(tf.distribute.get_strategy(), config, init)
    outputs = _wait_all(procs, tmp_path, deadline)
  finally:
    for proc in procs:
      _kill(proc)

  assert len(ref['losses']) == mw.NUM_STEPS
  assert all(np.isfinite(ref['losses']))
  for i, out in enumerate(outputs):
    assert out['worker'] == i
    assert out['num_replicas'] == NUM_WORKERS
    # Reported per step: the mean of the two replicas' losses.
    np.testing.assert_allclose(out['losses'], ref['losses'], rtol=1e-5)
    np.testing.assert_allclose(out['train_mode_loss'],
                               ref['train_mode_loss'], rtol=5e-4)
  finals = []
  for i in range(NUM_WORKERS):
    with np.load(tmp_path / f'worker{i}.npz') as f:
      finals.append({k: f[k] for k in f.files})
  assert sorted(finals[0]) == sorted(finals[1])
  # Keys are '<position>_<name>'; names get per-process suffixes (conv3d_3),
  # so variables are matched by position.
  trainable = mw.trainable_keys(model)
  is_trainable = [k in trainable for k in sorted(init)]
  start = [init[k] for k in sorted(init)]
  for part in ('final', 'after_train_mode'):
    names = sorted(k for k in finals[0] if k.startswith(part + '/'))
    ref_values = [ref[part][k] for k in sorted(ref[part])]
    assert len(names) == len(ref_values) == len(start)
    moved = 0
    for name, value, before, train in zip(names, ref_values, start,
                                          is_trainable):
      # Mirrored variables: the workers apply the same all-reduced update.
      np.testing.assert_array_equal(finals[0][name], finals[1][name],
                                    err_msg=name)
      if part == 'final':
        np.testing.assert_allclose(finals[0][name], value, rtol=0, atol=1e-5,
                                   err_msg=name)
      elif not train:
        # Moving statistics after the training-mode step: rounding of the
        # order of that step's loss (5e-4 relative), measured against the
        # tensor's scale, not per element: near-zero channel means carry
        # the same absolute rounding (CI saw 3.3e-5 on a 0.062 mean, and
        # 2.4e-5 on a 0.0105 mean whose largest channel was 0.080). Per-
        # worker instead of all-reduced BN moments differ by sampling noise,
        # of the order of the values themselves on these noise inputs.
        scale = float(np.abs(value).max())
        np.testing.assert_allclose(finals[0][name], value, rtol=0,
                                   atol=1e-3 * scale + 1e-6, err_msg=name)
      moved += int(not np.array_equal(value, before))
    assert moved > 50, part
