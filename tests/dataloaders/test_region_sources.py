"""Tests of dataloaders/region_sources.py."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dataloaders import region_sources
from dataloaders import video_records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_random_boxes_ranges_and_independence():
  boxes = region_sources.random_boxes(tf.constant([7, 11]), num_frames=4,
                                      num_boxes=500).numpy().reshape(-1, 4)
  assert boxes.shape == (2000, 4)
  ymin, xmin, ymax, xmax = boxes.T
  w, h = xmax - xmin, ymax - ymin
  assert w.min() >= 0.1 - 1e-6 and w.max() <= 0.5 + 1e-6
  aspect = w / h
  assert aspect.min() >= 0.5 - 1e-4 and aspect.max() <= 2.0 + 1e-4
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0 + 1e-6
  # Released code: xmin == ymin (r = 1). Ours: independent draws. xmin and
  # ymin still share a small positive correlation through the box size
  # (bigger boxes leave less room on both axes; E[r] ~ 0.09 for these
  # ranges, see the numpy reference), so the independence test is on the
  # box centres, whose conditional means do not depend on the size.
  rng = np.random.default_rng(0)
  w_ref = rng.uniform(0.1, 0.5, 200000)
  h_ref = w_ref / np.exp(rng.uniform(np.log(0.5), np.log(2.0), 200000))
  r_ref = np.corrcoef((1 - w_ref) * rng.uniform(size=200000),
                      (1 - h_ref) * rng.uniform(size=200000))[0, 1]
  r = np.corrcoef(xmin, ymin)[0, 1]
  assert abs(r - r_ref) < 0.07, (r, r_ref)
  assert abs(np.corrcoef(xmin + w / 2, ymin + h / 2)[0, 1]) < 0.1
  assert abs(np.corrcoef(w, xmin / (1 - w))[0, 1]) < 0.1
  # Log-uniform aspect: median of log(aspect) near 0, both sides used.
  assert abs(np.median(np.log(aspect))) < 0.1
  assert (aspect < 0.7).mean() > 0.15 and (aspect > 1.4).mean() > 0.15
  # Width roughly uniform on [0.1, 0.5]: mean 0.3.
  assert abs(w.mean() - 0.3) < 0.01


def test_random_boxes_seeded():
  a = region_sources.random_boxes(tf.constant([1, 2]), 2, 3).numpy()
  b = region_sources.random_boxes(tf.constant([1, 2]), 2, 3).numpy()
  c = region_sources.random_boxes(tf.constant([1, 3]), 2, 3).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 0.01


def test_transform_boxes_crop_flip_and_masking():
  crop = tf.constant([0.2, 0.1, 0.8, 0.6])  # h 0.6, w 0.5
  boxes = tf.constant([[[0.3, 0.2, 0.5, 0.4],     # inside
                        [0.0, 0.7, 0.1, 0.9],     # outside the crop
                        [0.05, 0.2, 0.3, 0.4],    # 40% visible: dropped
                        [0.1, 0.2, 0.35, 0.4],    # 60% visible: clipped
                        [0.3, 0.2, 0.5, 0.4]]])   # padded slot (mask 0)
  mask = tf.constant([[1.0, 1.0, 1.0, 1.0, 0.0]])
  out, m = region_sources.transform_boxes(boxes, mask, crop, tf.constant(False))
  np.testing.assert_array_equal(m.numpy(), [[1, 0, 0, 1, 0]])
  np.testing.assert_allclose(out.numpy()[0, 0], [0.1 / 0.6, 0.2, 0.5, 0.6],
                             atol=1e-6)
  np.testing.assert_allclose(out.numpy()[0, 3], [0.0, 0.2, 0.15 / 0.6, 0.6],
                             atol=1e-6)
  np.testing.assert_array_equal(out.numpy()[0, 1], [0, 0, 0, 0])
  out_f, m_f = region_sources.transform_boxes(boxes, mask, crop,
                                              tf.constant(True))
  np.testing.assert_array_equal(m_f.numpy(), m.numpy())
  # Flip: x -> 1 - x, xmin/xmax swapped.
  np.testing.assert_allclose(out_f.numpy()[0, 0], [0.1 / 0.6, 0.4, 0.5, 0.8],
                             atol=1e-6)


def test_transform_boxes_pad_and_truncate():
  crop = tf.constant([0.0, 0.0, 1.0, 1.0])
  boxes = tf.constant([[[0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0],
                        [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6]]])
  mask = tf.constant([[1.0, 0.0, 1.0, 1.0]])
  out, m = region_sources.transform_boxes(boxes, mask, crop,
                                          tf.constant(False), num_boxes=2)
  np.testing.assert_array_equal(m.numpy(), [[1, 1]])
  np.testing.assert_allclose(out.numpy()[0], [[0.1, 0.1, 0.2, 0.2],
                                              [0.3, 0.3, 0.4, 0.4]])
  out, m = region_sources.transform_boxes(boxes, mask, crop,
                                          tf.constant(False), num_boxes=6)
  np.testing.assert_array_equal(m.numpy(), [[1, 1, 1, 0, 0, 0]])
  assert out.shape == (1, 6, 4)
  np.testing.assert_allclose(out.numpy()[0, 2], [0.5, 0.5, 0.6, 0.6])


def _square_frame():
  frame = np.full((64, 64, 3), 20, np.uint8)
  frame[16:40, 20:44] = 230
  return frame


def _closest(boxes, target):
  return np.abs(boxes * 64 - np.asarray(target)).max(axis=1).min()


def test_segment_boxes_find_the_square():
  for method in ('slic', 'felzenszwalb'):
    boxes = region_sources.segment_boxes(_square_frame(), method, num_boxes=8)
    assert boxes.dtype == np.float32 and 1 <= len(boxes) <= 8, method
    assert _closest(boxes, [16, 20, 40, 44]) <= 2.0, (method, boxes * 64)
    hw = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    assert hw.min() >= 0.1 and hw.max() <= 0.9, method
    areas = hw[0] * hw[1]
    assert np.all(np.diff(areas) <= 1e-7), method  # largest first


def test_segment_boxes_size_filter_and_bad_method():
  boxes = region_sources.segment_boxes(_square_frame(), 'felzenszwalb',
                                       min_size=0.5)
  assert len(boxes) == 0  # the square is 0.375 of the frame
  try:
    region_sources.segment_boxes(_square_frame(), 'watershed')
  except ValueError as e:
    assert 'watershed' in str(e)
  else:
    raise AssertionError('no error for an unknown method')


def test_precompute_regions_adds_boxes(tmp_path):
  frames = np.stack([_square_frame()] * 3)
  src = str(tmp_path / 'in.tfrecord')
  video_records.write_records(
      src, [video_records.make_sequence_example(frames, label=[1],
                                                video_id='sq')])
  out_dir = str(tmp_path / 'out')
  summary = region_sources.precompute_regions(src, out_dir, 'slic')
  assert summary['files'] == 1 and summary['records'] == 1
  assert summary['frames'] == 3
  rec = video_records.read_records(os.path.join(out_dir, 'in.tfrecord'))[0]
  assert rec['video_id'] == 'sq' and rec['label'] == [1]
  assert len(rec['boxes']) == 3
  for b in rec['boxes']:
    assert _closest(b, [16, 20, 40, 44]) <= 2.0
  assert summary['boxes'] == sum(len(b) for b in rec['boxes'])
  try:
    region_sources.precompute_regions(str(tmp_path / 'nope*'), out_dir, 'slic')
  except ValueError as e:
    assert 'nope*' in str(e)
  else:
    raise AssertionError('no error for a missing pattern')
  (tmp_path / 'notrec.tfrecord').write_bytes(b'not a record' * 3)
  try:
    region_sources.precompute_regions(str(tmp_path / 'notrec.tfrecord'),
                                      out_dir, 'slic')
  except ValueError as e:
    assert str(e).startswith(
        f"--input_pattern='{tmp_path}/notrec.tfrecord': 1 of 1 files are "
        'not TFRecord files')
  else:
    raise AssertionError('no error for a file that is not a TFRecord')


def test_precompute_regions_bad_args_fail_before_any_file(tmp_path):
  """--log_every=0 crashed after the first record (integer modulo by
  zero); --num_boxes=0 or --min_size > --max_size wrote records without a
  single box and reported success."""
  missing = str(tmp_path / 'never_read*')
  out_dir = str(tmp_path / 'out')
  for kwargs, message in (
      ({'log_every': 0}, r'^--log_every must be >= 1, got 0$'),
      ({'num_boxes': 0}, r'^--num_boxes must be >= 1, got 0$'),
      ({'min_size': 0.9, 'max_size': 0.1},
       r'^--min_size=0.9 and --max_size=0.1 must satisfy 0 <= min_size')):
    with pytest.raises(ValueError, match=message):
      region_sources.precompute_regions(missing, out_dir, 'slic', **kwargs)
  assert not os.path.exists(out_dir)
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'precompute_regions.py'),
       f'--input_pattern={missing}', f'--output_dir={out_dir}',
       '--log_every=0'], capture_output=True, text=True, check=False)
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.rstrip().endswith('--log_every must be >= 1, got 0')


def test_precompute_regions_counts_frames_without_boxes(tmp_path):
  """No segment within the size bounds: every frame is counted."""
  src = str(tmp_path / 'in.tfrecord')
  video_records.write_records(
      src, [video_records.make_sequence_example(
          np.stack([_square_frame()] * 3), label=[1], video_id='sq')])
  summary = region_sources.precompute_regions(
      src, str(tmp_path / 'out'), 'felzenszwalb', min_size=0.5)
  assert summary['frames'] == 3 and summary['boxes'] == 0
  assert summary['frames_without_boxes'] == 3
