"""Tests for tasks/feature_probe.py and tools/probe_features.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tasks import feature_probe
from tasks import features as features_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _write(path, feats, labels, endpoint='res5g_pooled'):
  with tf.io.TFRecordWriter(str(path)) as w:
    for i, (x, y) in enumerate(zip(feats, labels)):
      label = [] if y is None else [int(y)]
      w.write(features_lib._feature_example(  # pylint: disable=protected-access
          f'v{i}', np.asarray(x, np.float32), endpoint, label)
              .SerializeToString())
  return str(path)


def test_read_averages_clips_and_keeps_labels(tmp_path):
  path = _write(tmp_path / 'f.tfrecord',
                [[[1.0, 2.0], [3.0, 6.0]], [[0.0, 1.0], [0.0, 3.0]]], [4, 1])
  names, x, y = feature_probe.read_labelled_features(path)
  assert names == ['v0', 'v1']
  np.testing.assert_array_equal(x, [[2.0, 4.0], [0.0, 2.0]])
  np.testing.assert_array_equal(y, [4, 1])


def test_read_errors_name_the_file_and_record(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.tfrecord'):
    feature_probe.read_labelled_features(str(tmp_path / 'missing.tfrecord'))
  path = _write(tmp_path / 'nolabel.tfrecord', [[1.0], [2.0]], [0, None])
  with pytest.raises(ValueError, match=r"nolabel.tfrecord: record 'v1' has 0"):
    feature_probe.read_labelled_features(path)
  dense = _write(tmp_path / 'dense.tfrecord', [np.zeros([1, 2, 2, 3])], [0],
                 endpoint='res5r')
  with pytest.raises(ValueError, match='pooled features'):
    feature_probe.read_labelled_features(dense)
  junk = tmp_path / 'junk.tfrecord'
  junk.write_bytes(b'not a tfrecord at all')
  with pytest.raises(ValueError, match='junk.tfrecord: not a readable'):
    feature_probe.read_labelled_features(str(junk))


def test_non_finite_features_and_negative_labels_are_refused(tmp_path):
  """A NaN feature gave a NaN loss and a chance-level top-1 in a normal
  table; a label -1 failed in np.bincount without naming the file."""
  x = np.arange(8.0).reshape(4, 2)
  good = _write(tmp_path / 'good.tfrecord', x, [0, 1, 0, 1])
  x[2, 1] = np.nan
  nan = _write(tmp_path / 'nan.tfrecord', x, [0, 1, 0, 1])
  neg = _write(tmp_path / 'neg.tfrecord', np.ones([2, 2]), [0, -1])
  for train, val in ((good, nan), (nan, good)):
    with pytest.raises(ValueError,
                       match=r"nan.tfrecord: record 'v2' has non-finite"):
      feature_probe.probe(train, val, [0.1])
  with pytest.raises(ValueError,
                     match=r"neg.tfrecord: record 'v1' has label -1; "):
    feature_probe.probe(good, neg, [0.1])


def test_splits_of_different_endpoints_are_refused(tmp_path):
  """Train and validation features of two endpoints of the same size gave
  a table of numbers that mean nothing."""
  x, y = np.eye(4), [0, 1, 0, 1]
  train = _write(tmp_path / 'train.tfrecord', x, y)
  val = _write(tmp_path / 'val.tfrecord', x, y, endpoint='global_embedding')
  with pytest.raises(ValueError, match=(
      r'train.tfrecord holds res5g_pooled features, \S*val.tfrecord '
      r'global_embedding; extract both splits with the same --endpoint')):
    feature_probe.probe(train, val, [0.1])
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'probe_features.py'),
       f'--train={train}', f'--validation={val}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert proc.returncode == 2 and 'same --endpoint' in proc.stderr, (
      proc.stderr)


def test_fit_reaches_the_regularized_optimum():
  """At the optimum the gradient of the convex objective is zero:
  z^T (softmax(zW + b) - onehot) / n + l2 W = 0 and sum of residuals = 0."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 4)) * [1.0, 10.0, 0.1, 3.0] + 5.0
  y = (x[:, 0] + 0.1 * x[:, 1] > 5.0).astype(np.int64) + (
      x[:, 3] > 8.0).astype(np.int64)
  model = feature_probe.fit_softmax(x, y, 3, l2=0.05)
  assert model['grad_norm'] < 1e-6
  z = (x - model['mean']) / model['std']
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
  logits = z @ model['w'] + model['b']
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  r = (p - np.eye(3)[y]) / len(y)
  np.testing.assert_allclose(z.T @ r + 0.05 * model['w'], 0, atol=1e-6)
  np.testing.assert_allclose(r.sum(0), 0, atol=1e-6)


def test_probe_separable_vs_random_labels(tmp_path):
  rng = np.random.default_rng(1)
  centers = rng.normal(size=(3, 8)) * 4.0

  def split(n, seed):
    r = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return centers[y] + r.normal(size=(n, 8)), y

  x_tr, y_tr = split(90, 2)
  x_va, y_va = split(30, 3)
  train = _write(tmp_path / 'train.tfrecord', x_tr, y_tr)
  val = _write(tmp_path / 'val.tfrecord', x_va, y_va)
  out = feature_probe.probe(train, val, l2s=(1e-3,), max_iterations=500)
  assert (out['num_train'], out['num_validation'], out['num_classes']) == (
      90, 30, 3)
  assert out['chance'] == pytest.approx(1 / 3)
  assert out['rows'][0]['validation_top1'] == 1.0
  # Labels unrelated to the features: validation is near chance.
  shuffled = _write(tmp_path / 'shuf.tfrecord', x_tr,
                    np.random.default_rng(4).permutation(y_tr))
  out = feature_probe.probe(shuffled, val, l2s=(1e-3,), max_iterations=500)
  assert out['rows'][0]['validation_top1'] < 0.6


def test_tool_prints_table_and_writes_json(tmp_path):
  x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]])
  y = np.array([0, 1, 0, 1])
  train = _write(tmp_path / 't.tfrecord', x, y)
  out_json = tmp_path / 'p.json'
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'probe_features.py'),
       f'--train={train}', f'--validation={train}', '--l2=0.01',
       '--max_iterations=200', f'--output_json={out_json}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert proc.returncode == 0, proc.stderr
  assert '| 0.01 | 100.0 | 100.0 | ' in proc.stdout
  result = json.loads(out_json.read_text())
  assert result['rows'][0]['train_top1'] == 1.0
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'probe_features.py'),
       f'--train={tmp_path}/none.tfrecord', f'--validation={train}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert bad.returncode == 2 and 'none.tfrecord' in bad.stderr


def test_extract_features_random_init(tmp_path):
  """--random_init extracts labelled features from the seeded untrained
  model; --checkpoint and --random_init exclude each other."""
  from dataloaders import toy_world  # pylint: disable=g-import-not-at-top
  toy_world.write_video_split(str(tmp_path / 'v'), 'val', 2, seed=1,
                              spec=toy_world.ToyWorldSpec(num_frames=12),
                              num_shards=1)
  tool = os.path.join(REPO, 'tools', 'extract_features.py')
  common = [sys.executable, tool, '--experiment=const_cl_pretrain_toy',
            f'--input_pattern={tmp_path}/v/val-*', '--format=tfrecord']
  both = subprocess.run(common + ['--random_init', '--checkpoint=/x',
                                  f'--output_dir={tmp_path}/o'],
                        capture_output=True, text=True, cwd=REPO,
                        check=False)
  assert both.returncode == 2
  assert 'exactly one of --checkpoint and --random_init' in both.stderr
  feats = []
  for run, seed in enumerate((0, 0, 1)):
    proc = subprocess.run(
        common + ['--random_init', f'--seed={seed}',
                  f'--output_dir={tmp_path}/r{run}'],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names, x, y = feature_probe.read_labelled_features(
        f'{tmp_path}/r{run}/res5g_pooled.tfrecord')
    assert names == ['toy_val_000000', 'toy_val_000001']
    assert x.shape == (2, 256)
    np.testing.assert_array_equal(y, [0, 1])  # video i has class i % 10
    feats.append(x)
  # The seed decides the weights: same seed, same features; another seed,
  # other features.
  np.testing.assert_array_equal(feats[0], feats[1])
  assert not np.allclose(feats[0], feats[2])
