"""Tests of the AVA record decoder / parser: shapes, labels, box geometry."""
import numpy as np
import pytest
import tensorflow as tf

from dataloaders import ava_parser
from dataloaders import example_seeds
from dataloaders.converters import ava as ava_converter


def _record(height=8, width=16, num_frames=4, with_dets=True,
            mutate=None):
  """Frames: left half dark (40), right half bright (200), plus frame id.

  `with_dets`: True (three detections), False (converted without
  --detections) or 'empty' (converted with detections, none on this frame).
  `mutate`: optional function editing the SequenceExample before it is
  serialized (to make bad records).
  """
  frames = np.zeros((num_frames, height, width, 3), np.uint8)
  frames[:, :, :width // 2] = 40
  frames[:, :, width // 2:] = 200
  kf = ava_converter.KeyFrame(
      video_id='vidA', timestamp=902.0,
      boxes=np.array([[0.1, 0.0, 0.5, 0.5], [0.2, 0.5, 0.9, 1.0]],
                     np.float32),
      labels=[[1, 12], [80]], person_ids=[0, 1])
  if with_dets == 'empty':
    kf.detection_boxes = np.zeros((0, 4), np.float32)
    kf.detection_scores = np.zeros((0,), np.float32)
  elif with_dets:
    kf.detection_boxes = np.array([[0., 0., .5, .5], [0., .5, 1., 1.],
                                   [.2, .2, .3, .3]], np.float32)
    kf.detection_scores = np.array([0.3, 0.9, 0.05], np.float32)
  seq = ava_converter.make_key_frame_example(kf, frames, num_frames // 2)
  if mutate is not None:
    mutate(seq)
  return seq.SerializeToString()


def _parse(record, **kwargs):
  decoded = ava_parser.Decoder().decode(tf.constant(record))
  return {k: v.numpy() for k, v in ava_parser.Parser(**kwargs)(decoded).items()}


def test_eval_shapes_and_multi_hot_labels():
  out = _parse(_record(), num_frames=2, crop_size=(8, 16), max_boxes=3,
               num_classes=80, is_training=False)
  assert out['image'].shape == (2, 8, 16, 3)
  assert out['image'].dtype == np.float32
  assert 0.0 <= out['image'].min() and out['image'].max() <= 1.0
  assert out['boxes'].shape == (3, 4) and out['labels'].shape == (3, 80)
  np.testing.assert_array_equal(out['box_mask'], [1, 1, 0])
  expected = np.zeros((3, 80), np.float32)
  expected[0, [0, 11]] = 1  # action ids 1 and 12
  expected[1, 79] = 1       # action id 80
  np.testing.assert_array_equal(out['labels'], expected)
  # Same aspect as the frame: the centred window is the whole frame.
  np.testing.assert_allclose(out['boxes'][:2], [[.1, 0., .5, .5],
                                                [.2, .5, .9, 1.]], atol=1e-6)
  np.testing.assert_allclose(out['original_boxes'], out['boxes'], atol=1e-6)
  assert out['video_id'] == b'vidA'
  assert out['timestamp'] == pytest.approx(902.0)
  np.testing.assert_allclose(out['image'][0, :, :8], 40 / 255, atol=0.02)


def test_eval_center_crop_transforms_boxes():
  # 8x16 frame, square output: the window is columns 4..12 (x 0.25..0.75).
  out = _parse(_record(), num_frames=4, crop_size=4, max_boxes=2,
               num_classes=80, is_training=False)
  assert out['image'].shape == (4, 4, 4, 3)
  np.testing.assert_allclose(out['boxes'], [[.1, 0., .5, .5],
                                            [.2, .5, .9, 1.]], atol=1e-6)
  out = _parse(_record(), num_frames=4, crop_size=4, max_boxes=2,
               num_classes=80, is_training=False)
  # Second box x 0.5..1.0 -> (0.5-0.25)/0.5 .. clipped 1.0.
  kf = ava_converter.KeyFrame('v', 1.0, np.array([[0., .3, 1., .6]],
                                                 np.float32), [[2]], [0])
  rec = ava_converter.make_key_frame_example(
      kf, np.zeros((2, 8, 16, 3), np.uint8), 1).SerializeToString()
  out = _parse(rec, num_frames=2, crop_size=4, max_boxes=1, num_classes=3,
               is_training=False)
  np.testing.assert_allclose(out['boxes'], [[0., .1, 1., .7]], atol=1e-6)
  np.testing.assert_allclose(out['original_boxes'], [[0., .3, 1., .6]],
                             atol=1e-6)
  np.testing.assert_array_equal(out['labels'], [[0., 1., 0.]])


def test_truncation_to_max_boxes():
  out = _parse(_record(), num_frames=1, crop_size=(8, 16), max_boxes=1,
               num_classes=80, is_training=False)
  np.testing.assert_array_equal(out['box_mask'], [1])
  np.testing.assert_allclose(out['boxes'], [[.1, 0., .5, .5]], atol=1e-6)
  # The truncated box is counted, not silently lost.
  assert out['num_boxes_dropped'] == 1
  assert out['num_boxes_cropped_out'] == 0
  out = _parse(_record(), num_frames=1, crop_size=(8, 16), max_boxes=3,
               num_classes=80, is_training=False)
  assert out['num_boxes_dropped'] == 0
  # Detections: sorted by score first, so the lowest-scored are dropped.
  out = _parse(_record(16, 16), num_frames=1, crop_size=16, max_boxes=1,
               num_classes=80, is_training=False, use_detections=True)
  np.testing.assert_allclose(out['box_scores'], [.9], atol=1e-6)
  assert out['num_boxes_dropped'] == 2


def test_eval_center_crop_masks_boxes_outside_the_window():
  # 8x16 frame, square output: the window is x 0.25..0.75. A box at
  # x 0..0.2 has no pixel left in it; scoring its degenerate ROI would
  # put a detection row on a person the model never saw.
  def edge_boxes(seq):
    ctx = seq.context.feature
    for key, values in zip(ava_converter.BOX_KEYS,
                           ([.1, .1], [0., .3], [.5, .9], [.2, .6])):
      ctx[key].float_list.value[:] = values

  record = _record(mutate=edge_boxes)
  out = _parse(record, num_frames=1, crop_size=4, max_boxes=3,
               num_classes=80, is_training=False)
  np.testing.assert_array_equal(out['box_mask'], [0, 1, 0])
  assert out['num_boxes_cropped_out'] == 1
  assert out['num_boxes_dropped'] == 0
  # The box is still output in original coordinates; only the mask says
  # it is not scored.
  np.testing.assert_allclose(out['original_boxes'][0], [.1, 0., .5, .2],
                             atol=1e-6)
  # Without the centre crop the whole frame is kept: every box is valid.
  out = _parse(record, num_frames=1, crop_size=4, max_boxes=3,
               num_classes=80, is_training=False, center_crop=False)
  np.testing.assert_array_equal(out['box_mask'], [1, 1, 0])
  assert out['num_boxes_cropped_out'] == 0


def test_use_detections_without_detection_fields_names_the_record():
  # Converted without --detections: no detection field at all. Before, it
  # decoded as zero detections and every key frame scored nothing (mAP 0).
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'(?s)no detection fields.*vidA.*902.*'
                           r'--detections'):
    _parse(_record(with_dets=False), num_frames=1, crop_size=8,
           max_boxes=2, num_classes=80, is_training=False,
           use_detections=True)
  # Converted with detections but none on this key frame: no error, no box.
  out = _parse(_record(with_dets='empty'), num_frames=1, crop_size=8,
               max_boxes=2, num_classes=80, is_training=False,
               use_detections=True)
  np.testing.assert_array_equal(out['box_mask'], [0, 0])
  # Ground-truth evaluation does not need the detection fields.
  out = _parse(_record(with_dets=False), num_frames=1, crop_size=8,
               max_boxes=2, num_classes=80, is_training=False)
  np.testing.assert_array_equal(out['box_mask'], [1, 1])


def test_use_detections_check_runs_in_tf_data():
  parser = ava_parser.Parser(num_frames=1, crop_size=8, max_boxes=2,
                             num_classes=80, is_training=False,
                             use_detections=True)
  ds = tf.data.Dataset.from_tensor_slices(
      [_record(), _record(with_dets=False)])
  ds = ds.map(ava_parser.Decoder().decode).map(parser.parse_fn(False))
  it = iter(ds)
  assert next(it)['box_mask'].numpy().sum() == 2
  with pytest.raises(tf.errors.InvalidArgumentError, match='vidA'):
    next(it)


def _corrupt_frame(seq):
  frames = seq.feature_lists.feature_list['image/encoded'].feature
  frames[1].bytes_list.value[0] = b'notajpeg'


def _truncate_frame(seq):
  frames = seq.feature_lists.feature_list['image/encoded'].feature
  frames[2].bytes_list.value[0] = frames[2].bytes_list.value[0][:40]


def _empty_frame(seq):
  # Shorter than the 2-byte end marker the check reads.
  frames = seq.feature_lists.feature_list['image/encoded'].feature
  frames[0].bytes_list.value[0] = b'x'


def _no_frames(seq):
  del seq.feature_lists.feature_list['image/encoded'].feature[:]


def _one_label_count(seq):
  count = seq.context.feature[ava_converter.LABEL_COUNT_KEY]
  count.int64_list.value[:] = [3]


@pytest.mark.parametrize('mutate, message', [
    (_corrupt_frame, 'not a complete JPEG'),
    (_truncate_frame, 'not a complete JPEG'),
    (_empty_frame, 'not a complete JPEG'),
    (_no_frames, 'no frames'),
    (_one_label_count, 'one entry per box'),
])
def test_bad_records_fail_naming_the_record(mutate, message):
  parser = ava_parser.Parser(num_frames=4, crop_size=8, max_boxes=2,
                             num_classes=80, is_training=False)
  ds = tf.data.Dataset.from_tensors(_record(mutate=mutate))
  ds = ds.map(ava_parser.Decoder().decode).map(parser.parse_fn(False))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf'(?s){message}.*vidA.*902'):
    next(iter(ds))


def test_training_flip_moves_pixels_and_boxes_together():
  record = _record(height=16, width=16)
  decoded = ava_parser.Decoder().decode(tf.constant(record))
  parser = ava_parser.Parser(num_frames=2, crop_size=16, max_boxes=2,
                             num_classes=80, is_training=True,
                             train_crop_scale=(1.0, 1.0), seed=3)
  seen = set()
  for _ in range(12):
    out = parser(decoded)
    image, boxes = out['image'].numpy(), out['boxes'].numpy()
    flipped = image[0, :, :8].mean() > image[0, :, 8:].mean()
    seen.add(bool(flipped))
    if flipped:
      want = [[.1, .5, .5, 1.], [.2, 0., .9, .5]]
    else:
      want = [[.1, 0., .5, .5], [.2, .5, .9, 1.]]
    np.testing.assert_allclose(boxes, want, atol=1e-6)
    np.testing.assert_array_equal(out['box_mask'].numpy(), [1, 1])
  assert seen == {True, False}
  np.testing.assert_allclose(
      ava_parser.flip_boxes_left_right(tf.constant([[.1, .2, .3, .7]])),
      [[.1, .3, .3, .8]], atol=1e-6)


def test_training_crop_keeps_boxes_on_pixels():
  # Random crops of a frame whose bright region is the 2nd box exactly.
  frames = np.full((1, 16, 16, 3), 10, np.uint8)
  frames[:, 4:12, 8:16] = 250
  kf = ava_converter.KeyFrame('v', 1.0, np.array([[.25, .5, .75, 1.]],
                                                 np.float32), [[1]], [0])
  rec = ava_converter.make_key_frame_example(kf, frames, 0).SerializeToString()
  decoded = ava_parser.Decoder().decode(tf.constant(rec))
  parser = ava_parser.Parser(num_frames=1, crop_size=32, max_boxes=1,
                             num_classes=1, is_training=True,
                             train_crop_scale=(0.6, 0.9), seed=1)
  for _ in range(5):
    out = parser(decoded)
    image = out['image'].numpy()[0, ..., 0]
    ymin, xmin, ymax, xmax = (out['boxes'].numpy()[0] * 32).round().astype(
        int)
    # 2-3x upsampling blurs the edge over ~3 output pixels.
    inside = image[ymin + 3:ymax - 3, xmin + 3:xmax - 3]
    assert inside.size > 0 and inside.min() > 0.85
    outside = image.copy()
    outside[max(ymin - 3, 0):ymax + 3, max(xmin - 3, 0):xmax + 3] = 0
    assert outside.max() < 0.15


@pytest.mark.parametrize('center_crop', [False, True])
def test_training_crops_take_the_aspect_evaluation_shows(center_crop):
  # A 16:9 frame (18 x 32) and a square output. Without the centre crop
  # evaluation squeezes the whole frame into the square, so training crops
  # have the frame's aspect (at scale 1: the whole frame, boxes unchanged);
  # with it evaluation takes a centred 18 x 18 square, and training crops
  # are squares too.
  parser = ava_parser.Parser(num_frames=2, crop_size=8, max_boxes=2,
                             num_classes=80, is_training=True,
                             train_crop_scale=(1, 1), random_flip=False,
                             center_crop=center_crop)
  for seed in range(3):
    window = parser._crop_window(18, 32, True, tf.constant([seed, 7]))
    _, _, win_h, win_w = window.numpy()
    assert (win_h, win_w) == ((18, 18) if center_crop else (18, 32))
  if not center_crop:
    out = _parse(_record(height=18, width=32), num_frames=2, crop_size=8,
                 max_boxes=2, num_classes=80, is_training=True,
                 train_crop_scale=(1, 1), random_flip=False,
                 center_crop=False, seed=0)
    np.testing.assert_allclose(out['boxes'], out['original_boxes'],
                               atol=1e-6)


def test_box_jitter_is_bounded():
  decoded = ava_parser.Decoder().decode(tf.constant(_record(16, 16)))
  parser = ava_parser.Parser(num_frames=1, crop_size=16, max_boxes=2,
                             num_classes=80, is_training=True, box_jitter=0.1,
                             train_crop_scale=(1.0, 1.0), random_flip=False)
  base = np.array([[.1, 0., .5, .5], [.2, .5, .9, 1.]])
  hw = np.concatenate([base[:, 2:] - base[:, :2]] * 2, axis=-1)
  moved = False
  for _ in range(5):
    boxes = parser(decoded)['boxes'].numpy()
    assert np.all(np.abs(boxes - base) <= 0.1 * hw + 1e-6)
    moved |= bool(np.any(np.abs(boxes - base) > 1e-4))
  assert moved


def test_detection_boxes_for_evaluation():
  out = _parse(_record(16, 16), num_frames=1, crop_size=16, max_boxes=3,
               num_classes=80, is_training=False, use_detections=True,
               detection_score_threshold=0.1)
  # Score 0.05 dropped; sorted by score.
  np.testing.assert_allclose(out['original_boxes'],
                             [[0., .5, 1., 1.], [0., 0., .5, .5], [0] * 4],
                             atol=1e-6)
  np.testing.assert_allclose(out['box_scores'], [.9, .3, 0.], atol=1e-6)
  np.testing.assert_array_equal(out['box_mask'], [1, 1, 0])
  assert out['labels'].sum() == 0
  with pytest.raises(ValueError, match='use_detections'):
    ava_parser.Parser(1, 16, 3, 80, use_detections=True, is_training=True)


def test_action_id_above_num_classes_is_a_clear_error():
  decoded = ava_parser.Decoder().decode(tf.constant(_record()))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'(?s)above num_classes.*vidA.*902'):
    ava_parser.Parser(1, 8, 2, 60, is_training=False)(decoded)


def test_in_tf_data_pipeline():
  ds = tf.data.Dataset.from_tensor_slices([_record(), _record()])
  parser = ava_parser.Parser(num_frames=2, crop_size=8, max_boxes=4,
                             num_classes=80, is_training=True)
  ds = ds.map(ava_parser.Decoder().decode).map(parser.parse_fn(True))
  batch = next(iter(ds.batch(2)))
  assert batch['image'].shape == (2, 2, 8, 8, 3)
  assert batch['labels'].shape == (2, 4, 80)
  assert batch['box_mask'].shape == (2, 4)


def test_training_draws_come_from_the_example_seed():
  decoded = ava_parser.Decoder().decode(tf.constant(_record(16, 16)))
  parser = ava_parser.Parser(num_frames=1, crop_size=8, max_boxes=2,
                             num_classes=80, is_training=True, box_jitter=0.1,
                             train_crop_scale=(0.5, 1.0))

  def parse(seed):
    seeded = dict(decoded, **{example_seeds.SEED_KEY: tf.constant(
        seed, tf.int64)})
    out = parser(seeded)
    return np.concatenate([out['image'].numpy().ravel(),
                           out['boxes'].numpy().ravel()])

  first = parse([5, 9])
  np.testing.assert_array_equal(parse([5, 9]), first)
  others = [parse([5, k]) for k in range(10, 14)]
  assert all(np.abs(o - first).max() > 1e-3 for o in others)


def test_decoder_skips_the_detection_field_walk_when_not_asked():
  """Training decoders leave out `has_detections` (one proto walk less)."""
  record = tf.constant(_record(with_dets=False))
  assert 'has_detections' not in ava_parser.Decoder(
      check_detection_fields=False).decode(record)
  assert not bool(ava_parser.Decoder().decode(record)['has_detections'])
  assert bool(ava_parser.Decoder().decode(
      tf.constant(_record(with_dets='empty')))['has_detections'])
