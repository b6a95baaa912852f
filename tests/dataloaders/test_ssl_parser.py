"""Tests of dataloaders/ssl_parser.py (two-view SSL pipeline)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from dataloaders import ssl_parser
from dataloaders import video_records

H, W = 32, 40


def _frames(n, seed=0):
  rng = np.random.default_rng(seed)
  small = rng.uniform(0, 255, (n, 3, 4, 3)).astype(np.float32)
  return np.clip(tf.image.resize(small, [H, W]).numpy(), 0, 255).astype(
      np.uint8)


def _write(path, examples):
  video_records.write_records(str(path), examples)
  return str(path)


def _parse(parser, example, seed):
  decoded = ssl_parser.Decoder().decode(
      tf.constant(example.SerializeToString()))
  return {k: v.numpy() for k, v in parser.parse(decoded,
                                                tf.constant(seed)).items()}


def test_batched_shapes_dtypes_and_labels(tmp_path):
  path = _write(tmp_path / 'a.tfrecord', [
      video_records.make_sequence_example(_frames(6), label=[3, 5]),
      video_records.make_sequence_example(_frames(6, 1))])
  parser = ssl_parser.Parser(num_frames=4, stride=1, crop_size=16,
                             num_boxes=5)
  ds = ssl_parser.build_ssl_dataset(path, parser, global_batch_size=2,
                                    is_training=False)
  batch = next(iter(ds))
  assert batch['image'].shape == (2, 2, 4, 16, 16, 3)
  assert batch['image'].dtype == tf.float32
  assert batch['boxes'].shape == (2, 2, 4, 5, 4)
  assert batch['box_mask'].shape == (2, 2, 4, 5)
  assert batch['frame_index'].shape == (2, 2, 4)
  assert batch['frame_index'].dtype == tf.int32
  assert batch['label'].dtype == tf.int32
  assert sorted(batch['label'].numpy().tolist()) == [-1, 3]
  assert set(batch.keys()) == {'image', 'boxes', 'box_mask', 'frame_index',
                               'label'}
  img = batch['image'].numpy()
  assert img.min() >= 0.0 and img.max() <= 1.0
  np.testing.assert_array_equal(batch['box_mask'].numpy(), 1.0)


def test_frame_index_short_video_loops():
  # 5 frames, T=4, s=2: (T-1) s = 6 >= 5, so each start is uniform in [0, 5)
  # and frame i is (start + 2 i) mod 5.
  parser = ssl_parser.Parser(num_frames=4, stride=2, crop_size=8,
                             num_boxes=2)
  ex = video_records.make_sequence_example(_frames(5))
  starts = set()
  for i in range(12):
    idx = _parse(parser, ex, [i, 1])['frame_index']
    for v in range(2):
      s = idx[v, 0]
      np.testing.assert_array_equal(idx[v], (s + 2 * np.arange(4)) % 5)
      starts.add(int(s))
  assert starts <= {0, 1, 2, 3, 4} and len(starts) >= 3
  # Start 3 by hand: 3, 5->0, 7->2, 9->4.
  assert ((3 + 2 * np.arange(4)) % 5).tolist() == [3, 0, 2, 4]


def test_frame_index_long_video_and_cvrl_gap_distribution():
  parser = ssl_parser.Parser(num_frames=3, stride=2, crop_size=8,
                             num_boxes=2)
  ex = video_records.make_sequence_example(_frames(12))
  for i in range(5):
    idx = _parse(parser, ex, [i, 2])['frame_index']
    for v in range(2):
      np.testing.assert_array_equal(idx[v], idx[v, 0] + 2 * np.arange(3))
      assert 0 <= idx[v, 0] <= 12 - 1 - 4
  # Gap density p(d) ~ 1 - d/M on [0, M) (video_ssl): mean about M/3.
  m = 60 - 4 * 2
  sample = tf.function(lambda s: ssl_parser.sample_two_clip_starts(
      s, 60, 5, 2))
  seeds = tf.stack([tf.range(2000), tf.fill([2000], 7)], -1)
  starts = tf.map_fn(sample, seeds, fn_output_signature=tf.int32).numpy()
  gap = np.abs(starts[:, 0] - starts[:, 1])
  assert starts.min() >= 0 and starts.max() <= m - 1
  assert abs(gap.mean() - (m - 1) / 3) < 1.5, gap.mean()
  assert (gap < m / 2).mean() > 0.7  # P(d < M/2) = 0.75
  assert abs((starts[:, 0] < starts[:, 1]).mean() - 0.5) < 0.05


def test_identical_frames_identical_outputs_per_view():
  frame = _frames(1)[0]
  ex = video_records.make_sequence_example(np.stack([frame] * 6))
  parser = ssl_parser.Parser(num_frames=4, stride=1, crop_size=16,
                             num_boxes=2)
  for i in range(3):
    img = _parse(parser, ex, [i, 3])['image']
    for v in range(2):
      for t in range(1, 4):
        np.testing.assert_array_equal(img[v, t], img[v, 0])


def test_detector_boxes_follow_the_view():
  # The parser's boxes equal a numpy transform of the stored box through the
  # crop window and flip that the parser drew for the pixels.
  from dataloaders import augment  # pylint: disable=g-import-not-at-top
  box = np.array([0.3, 0.2, 0.6, 0.7])
  boxes = [np.array([box, [0.0, 0.0, 0.02, 0.02]])] * 6
  ex = video_records.make_sequence_example(_frames(6), boxes=boxes,
                                           video_id='det')
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=16,
                             num_boxes=3, region_source='detector',
                             min_visible_fraction=0.0)
  for i in range(3):
    seed = tf.constant([i, 4], tf.int64)
    out = _parse(parser, ex, seed)
    for v in range(2):
      p = augment.draw_view_params(
          tf.random.experimental.stateless_fold_in(seed, 1 + v), H, W,
          blur_prob=(1.0, 0.1)[v], solarize_prob=(0.0, 0.2)[v])
      y0, x0 = p['crop_y'].numpy() / H, p['crop_x'].numpy() / W
      y1 = y0 + p['crop_h'].numpy() / H
      x1 = x0 + p['crop_w'].numpy() / W
      ref = np.clip([(box[0] - y0) / (y1 - y0), (box[1] - x0) / (x1 - x0),
                     (box[2] - y0) / (y1 - y0), (box[3] - x0) / (x1 - x0)],
                    0, 1)
      if p['flip'].numpy():
        ref = [ref[0], 1 - ref[3], ref[2], 1 - ref[1]]
      np.testing.assert_allclose(out['boxes'][v, :, 0], [ref] * 2, atol=1e-5)
      assert out['box_mask'][v, :, 0].min() == 1.0
      assert out['box_mask'][v, :, 2].max() == 0.0  # padding slot
  # Missing box lists with a stored-box source: error naming the record.
  parser_no = ssl_parser.Parser(num_frames=2, stride=1, crop_size=16,
                                region_source='slic')
  ex_none = video_records.make_sequence_example(_frames(3), video_id='nobox')
  with pytest.raises(tf.errors.InvalidArgumentError, match='nobox'):
    _parse(parser_no, ex_none, [0, 0])


def test_epochs_differ_and_seed_reproduces(tmp_path):
  path = _write(tmp_path / 'one.tfrecord', [
      video_records.make_sequence_example(_frames(6), label=[1])])
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8,
                             num_boxes=4)

  def two_epochs(seed):
    ds = ssl_parser.build_ssl_dataset(path, parser, 1, True, seed=seed)
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(2)]

  a = two_epochs(5)
  # One video per epoch: element 1 is the second epoch of the same video.
  assert np.abs(a[0]['boxes'] - a[1]['boxes']).max() > 0.01
  assert np.abs(a[0]['image'] - a[1]['image']).max() > 0.01
  b = two_epochs(5)
  for k in a[0]:
    np.testing.assert_array_equal(a[0][k], b[0][k])
    np.testing.assert_array_equal(a[1][k], b[1][k])
  c = two_epochs(6)
  assert np.abs(a[0]['boxes'] - c[0]['boxes']).max() > 0.01


def test_eval_is_the_same_every_evaluation(tmp_path):
  path = _write(tmp_path / 'e.tfrecord', [
      video_records.make_sequence_example(_frames(6, i)) for i in range(3)])
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8,
                             num_boxes=2)
  ds = ssl_parser.build_ssl_dataset(path, parser, 2, False)
  first = [b['boxes'].numpy() for b in ds]
  second = [b['boxes'].numpy() for b in ds]
  assert [x.shape[0] for x in first] == [2, 1]  # no repeat, keeps remainder
  for x, y in zip(first, second):
    np.testing.assert_array_equal(x, y)


def test_missing_or_empty_pattern_names_it(tmp_path):
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8)
  pattern = str(tmp_path / 'nothing-*.tfrecord')
  with pytest.raises(ValueError, match='nothing-'):
    ssl_parser.build_ssl_dataset(pattern, parser, 2, True)
  with pytest.raises(ValueError, match="''"):
    ssl_parser.build_ssl_dataset('', parser, 2, True)


def test_corrupt_jpeg_error_or_counted_skip(tmp_path):
  good = [video_records.make_sequence_example(_frames(4, i),
                                              video_id=f'good{i}', label=[i])
          for i in range(2)]
  enc = [video_records.encode_jpeg(f) for f in _frames(4, 9)]
  enc[2] = enc[2][:len(enc[2]) // 2]  # truncated frame
  bad = video_records.make_sequence_example(encoded_frames=enc,
                                            video_id='broken_clip')
  path = _write(tmp_path / 'c.tfrecord', [good[0], bad, good[1]])
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8,
                             num_boxes=2)
  ds = ssl_parser.build_ssl_dataset(path, parser, 1, False)
  with pytest.raises(tf.errors.InvalidArgumentError, match='broken_clip'):
    for _ in ds:
      pass
  ds = ssl_parser.build_ssl_dataset(path, parser, 1, False,
                                    skip_bad_records=True)
  labels = [int(b['label'].numpy()[0]) for b in ds]
  assert labels == [0, 1]


def test_file_that_is_not_a_tfrecord_error_or_logged_skip(tmp_path):
  good = [video_records.make_sequence_example(_frames(4, i),
                                              video_id=f'good{i}', label=[i])
          for i in range(2)]
  _write(tmp_path / 'v-0.tfrecord', good)
  with open(tmp_path / 'v-1.tfrecord', 'wb') as f:
    f.write(np.random.default_rng(0).bytes(500))
  pattern = str(tmp_path / 'v-*.tfrecord')
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8)
  with pytest.raises(ValueError, match=(
      r"task.train_data.input_path='.*': 1 of 2 files are not TFRecord "
      r'files .*v-1.tfrecord.*; task.train_data.skip_bad_records=true '
      'skips them')):
    ssl_parser.build_ssl_dataset(pattern, parser, 1, False,
                                 field='task.train_data.input_path')
  ds = ssl_parser.build_ssl_dataset(pattern, parser, 1, False,
                                    skip_bad_records=True)
  assert [int(b['label'].numpy()[0]) for b in ds] == [0, 1]
  # Every file bad: nothing to skip to.
  with pytest.raises(ValueError, match='1 of 1 files'):
    ssl_parser.build_ssl_dataset(str(tmp_path / 'v-1.tfrecord'), parser, 1,
                                 False, skip_bad_records=True)


def test_only_empty_files_is_an_error_naming_the_field(tmp_path):
  # A converter that wrote no example leaves an empty shard; reading it
  # used to end in an OutOfRangeError at the first training step.
  _write(tmp_path / 'e-0.tfrecord', [])
  assert os.path.getsize(tmp_path / 'e-0.tfrecord') == 0
  parser = ssl_parser.Parser(num_frames=2, stride=1, crop_size=8)
  message = r"task.train_data.input_path='.*e-\*.tfrecord': no records in "
  with pytest.raises(ValueError, match=message + (
      'the 1 matched files: the 1 TFRecord files are empty')):
    ssl_parser.build_ssl_dataset(str(tmp_path / 'e-*.tfrecord'), parser, 1,
                                 True, field='task.train_data.input_path')
  # Empty beside a skipped bad file: still nothing to read.
  with open(tmp_path / 'e-1.tfrecord', 'wb') as f:
    f.write(b'not a record file at all')
  with pytest.raises(ValueError, match=message + (
      r'the 2 matched files, 1 of them skipped as not TFRecord files: the 1 '
      'TFRecord files are empty')):
    ssl_parser.build_ssl_dataset(str(tmp_path / 'e-*.tfrecord'), parser, 1,
                                 True, skip_bad_records=True,
                                 field='task.train_data.input_path')
  # One empty shard beside a real one is fine (the converters' last shard).
  _write(tmp_path / 'f-0.tfrecord', [
      video_records.make_sequence_example(_frames(4, 0), label=[3])])
  _write(tmp_path / 'f-1.tfrecord', [])
  ds = ssl_parser.build_ssl_dataset(str(tmp_path / 'f-*.tfrecord'), parser,
                                    1, False)
  assert [int(b['label'].numpy()[0]) for b in ds] == [3]
