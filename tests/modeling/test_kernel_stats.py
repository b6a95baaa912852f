"""Temporal variation of conv kernels: hand-computed values."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from modeling import kernel_stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _kernel(channel_taps):
  """[T, 1, 1, 1, C] kernel from per-output-channel lists of taps."""
  return np.asarray(channel_taps, np.float32).T.reshape(
      len(channel_taps[0]), 1, 1, 1, len(channel_taps))


def test_temporal_variation_by_hand():
  # Taps (1, 3): mean 2, deviations -1, +1 -> 2 / (1 + 9).
  assert kernel_stats.temporal_variation(_kernel([[1, 3]])) == (
      pytest.approx(0.2))
  # The same on every frame: 0. A pure temporal difference: 1.
  assert kernel_stats.temporal_variation(_kernel([[2, 2, 2]])) == 0.0
  assert kernel_stats.temporal_variation(_kernel([[1, -1]])) == 1.0
  # Two channels, (2, 2) and (1, 3): per channel 0 and 0.2; whole kernel
  # 2 / (8 + 10).
  k = _kernel([[2, 2], [1, 3]])
  np.testing.assert_allclose(
      kernel_stats.temporal_variation(k, per_output_channel=True), [0, 0.2])
  assert kernel_stats.temporal_variation(k) == pytest.approx(2 / 18)


def test_fresh_iid_kernel_is_near_one_minus_one_over_taps():
  rng = np.random.default_rng(0)
  k = rng.normal(size=(5, 7, 7, 3, 64))
  assert kernel_stats.temporal_variation(k) == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize('kernel,message', [
    (np.ones((2, 3, 3, 4)), 'Conv3D kernel'),
    (np.ones((1, 3, 3, 4, 2)), 'single temporal tap'),
    (np.zeros((3, 1, 1, 2, 2)), 'all zeros'),
])
def test_bad_kernels_are_clear_errors(kernel, message):
  with pytest.raises(ValueError, match=message):
    kernel_stats.temporal_variation(kernel)


def _write_checkpoint(path):
  backbone = tf.Module()
  backbone.stem = tf.Variable(_kernel([[1, 3], [2, 2]]))
  backbone.pointwise = tf.Variable(np.ones((1, 1, 1, 2, 2), np.float32))
  backbone.dense = tf.Variable(np.ones((4, 2), np.float32))
  head = tf.Module()
  head.kernel = tf.Variable(_kernel([[1, -1]]))
  return tf.train.Checkpoint(backbone=backbone, head=head).save(path)


def test_checkpoint_reads_only_temporal_backbone_kernels(tmp_path):
  prefix = _write_checkpoint(str(tmp_path / 'ckpt'))
  rows = kernel_stats.checkpoint_temporal_variation(prefix)
  assert [r['name'] for r in rows] == ['backbone/stem']
  assert rows[0]['shape'] == [2, 1, 1, 1, 2]
  assert rows[0]['variation'] == pytest.approx(2 / 18)
  assert rows[0]['per_channel'] == pytest.approx([0.2, 0.0])
  head = kernel_stats.checkpoint_temporal_variation(prefix, scope='head/')
  assert [(r['name'], r['variation']) for r in head] == [('head/kernel', 1.0)]
  with pytest.raises(ValueError, match="no Conv3D kernel .* under 'model/'"):
    kernel_stats.checkpoint_temporal_variation(prefix, scope='model/')


def test_tool_writes_the_numbers(tmp_path):
  prefix = _write_checkpoint(str(tmp_path / 'ckpt'))
  out = tmp_path / 'temporal.json'
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'temporal_kernels.py'),
       f'--checkpoint={tmp_path}', f'--output_json={out}'],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  assert list(report) == [prefix]
  assert report[prefix][0]['variation'] == pytest.approx(2 / 18)
  assert 'backbone/stem [2, 1, 1, 1, 2]: 0.111' in proc.stdout
  missing = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'temporal_kernels.py'),
       f'--checkpoint={tmp_path / "nothing"}'],
      capture_output=True, text=True, check=False)
  assert missing.returncode != 0
  assert '--checkpoint' in missing.stderr and 'nothing' in missing.stderr
