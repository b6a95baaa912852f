"""Tests for the SiamFC tracker on synthetic sequences."""
import os

import cv2
import numpy as np
import pytest

from dataloaders import tracking_readers
from tasks import tracking_inference
from tasks.evaluation import otb

_STRIDE = 8


def _pooled_pixels(clips):
  """Identity-like embedding: the middle frame, grey, average-pooled by 8."""
  clips = np.asarray(clips)
  frame = clips[:, clips.shape[1] // 2].mean(axis=-1) - 0.5
  b, s, _ = frame.shape
  n = s // _STRIDE
  frame = frame[:, :n * _STRIDE, :n * _STRIDE]
  return frame.reshape(b, n, _STRIDE, n, _STRIDE).mean(axis=(2, 4))[..., None]


def _square_track(num_frames=20):
  t = np.arange(num_frames)
  x = 8 + 1.6 * t
  y = 20 + 10 * np.sin(t / 3.0)
  return np.stack([x, y, np.full_like(x, 16), np.full_like(x, 16)], axis=1)


def _write_sequence(root, boxes, green_per_frame=0.0):
  seq_dir = os.path.join(root, 'square')
  os.makedirs(seq_dir)
  for t, (x, y, w, h) in enumerate(boxes):
    frame = np.full((64, 64, 3), 0.1, np.float32)
    frame[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w)),
          0] = 1.0
    frame[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w)),
          2] = 1.0
    frame[..., 1] = green_per_frame * t
    bgr = (frame[..., ::-1] * 255).round().astype(np.uint8)
    cv2.imwrite(os.path.join(seq_dir, f'{t + 1:08d}.png'), bgr)
  with open(os.path.join(seq_dir, 'groundtruth.txt'), 'w') as f:
    for box in np.round(boxes):
      f.write(','.join(str(v) for v in box) + '\n')
  return tracking_readers.read_got10k_sequence(seq_dir)


def test_tracker_follows_square(tmp_path):
  sequence = _write_sequence(str(tmp_path), _square_track())
  boxes = tracking_inference.track_sequence(
      sequence, _pooled_pixels, exemplar_size=63, search_size=127,
      total_stride=_STRIDE)
  assert boxes.shape == (20, 4)
  np.testing.assert_array_equal(boxes[0], sequence.boxes[0])
  overlaps = otb.iou(boxes, sequence.boxes)
  assert np.all(overlaps > 0.5), overlaps
  # The size is constant, so the scale search should keep it close.
  np.testing.assert_allclose(boxes[:, 2:], 16.0, rtol=0.1)
  path = os.path.join(str(tmp_path), 'results', 'square.txt')
  tracking_inference.write_results(path, boxes)
  np.testing.assert_allclose(tracking_readers.read_box_file(path), boxes,
                             atol=1e-4)


def test_update_displacement_hand_case():
  """Square moved by +6 px in x: the tracker moves by about 6 px."""
  frame0 = np.full((64, 64, 3), 0.1, np.float32)
  frame0[24:40, 20:36] = 1.0
  frame1 = np.full((64, 64, 3), 0.1, np.float32)
  frame1[24:40, 26:42] = 1.0
  tracker = tracking_inference.SiamFCTracker(
      _pooled_pixels, exemplar_size=63, search_size=127, total_stride=_STRIDE,
      num_scales=1, window_influence=0.0)
  tracker.init([frame0] * 5, [20, 24, 16, 16])
  # s_z = sqrt(32 * 32) = 32 px, s_x = 32 * 127 / 63.
  assert tracker.z_sz == pytest.approx(32.0)
  assert tracker.x_sz == pytest.approx(32.0 * 127 / 63)
  box = tracker.update([frame1] * 5)
  # One response cell is 8 crop px = 8 * s_x / 127 = 4.06 image px, refined
  # by the 16x bicubic upsampling: within 1 px of the true shift.
  assert box[0] == pytest.approx(26.0, abs=1.0)
  assert box[1] == pytest.approx(24.0, abs=1.0)
  np.testing.assert_allclose(box[2:], [16, 16])


def test_response_fn_with_siamfc_head():
  """A SiamFCHead as response_fn gives the same track as the default."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from modeling.heads import siamfc  # pylint: disable=g-import-not-at-top
  head = siamfc.SiamFCHead()

  def response_fn(kernel, feats):
    kernel = tf.repeat(tf.constant(kernel), len(feats), axis=0)
    return head((kernel, tf.constant(feats))).numpy()

  frame0 = np.full((64, 64, 3), 0.1, np.float32)
  frame0[24:40, 20:36] = 1.0
  frame1 = np.roll(frame0, (3, -4), axis=(0, 1))
  boxes = []
  for fn in (None, response_fn):
    tracker = tracking_inference.SiamFCTracker(
        _pooled_pixels, exemplar_size=63, search_size=127,
        total_stride=_STRIDE, response_fn=fn)
    tracker.init([frame0] * 5, [20, 24, 16, 16])
    boxes.append(tracker.update([frame1] * 5))
  np.testing.assert_allclose(boxes[1], boxes[0], atol=1e-3)
  assert boxes[0][0] == pytest.approx(16.0, abs=1.0)
  assert boxes[0][1] == pytest.approx(27.0, abs=1.0)


def test_clips_hold_neighbours_with_repeated_edges(tmp_path):
  seen = []

  def recording_embed(clips):
    # Green encodes the frame index (0.1 per frame) at every pixel; read it
    # at the crop centre, which is always inside the frame.
    c = clips.shape[2] // 2
    seen.append(np.round(clips[0, :, c, c, 1] / 0.1).astype(int))
    return _pooled_pixels(clips)

  boxes = np.array([[24, 24, 16, 16]] * 5, np.float64)
  sequence = _write_sequence(str(tmp_path), boxes, green_per_frame=0.1)
  tracking_inference.track_sequence(
      sequence, recording_embed, exemplar_size=63, search_size=127,
      total_stride=_STRIDE, num_scales=1)
  expected = [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4],
              [1, 2, 3, 4, 4], [2, 3, 4, 4, 4]]
  np.testing.assert_array_equal(np.stack(seen), expected)


@pytest.mark.parametrize('box, shown', [
    ([10.0, 10.0, 0.0, 0.0], r'\[10.0, 10.0, 0.0, 0.0\]'),
    # OTB files may hold NaN; a NaN or infinite first box gave NaN boxes.
    ([np.nan, 5.0, 10.0, 10.0], r'\[nan, 5.0, 10.0, 10.0\]'),
    ([5.0, 5.0, np.inf, 10.0], r'\[5.0, 5.0, inf, 10.0\]'),
])
def test_first_box_without_area_names_the_sequence(tmp_path, box, shown):
  sequence = tracking_readers.Sequence(
      name='B', frame_paths=[str(tmp_path / 'B' / 'img' / '0001.jpg')],
      boxes=np.array([box]))
  with pytest.raises(ValueError, match=(
      r'^sequence B \(frames in .*B/img\): its first ground-truth box '
      + shown + r' is not finite or has no area')):
    tracking_inference.track_sequence(sequence, _pooled_pixels)


def test_tracker_errors():
  tracker = tracking_inference.SiamFCTracker(_pooled_pixels)
  frame = np.zeros((64, 64, 3), np.float32)
  with pytest.raises(RuntimeError, match='before init'):
    tracker.update([frame] * 5)
  with pytest.raises(ValueError, match='expected 5 frames'):
    tracker.init([frame] * 3, [1, 1, 10, 10])
  for box in ([1, 1, 0, 10], [np.nan, 1, 10, 10], [1, 1, 10, np.inf]):
    with pytest.raises(ValueError, match='finite with w, h > 0'):
      tracker.init([frame] * 5, box)
  with pytest.raises(ValueError, match='odd'):
    tracking_inference.SiamFCTracker(_pooled_pixels, num_scales=2)
  for penalty in (0.0, 1.5):
    with pytest.raises(ValueError, match=r'scale_penalty must be in \(0, 1\]'):
      tracking_inference.SiamFCTracker(_pooled_pixels, scale_penalty=penalty)


def _update_with_responses(maps_fn, **tracker_kwargs):
  """One update of a tracker whose response is `maps_fn(yy, xx)` ([S, r, r]
  from the offsets of the response cells to the centre); (tracker, box)."""
  frame = np.full((64, 64, 3), 0.1, np.float32)
  frame[24:40, 20:36] = 1.0

  def response_fn(kernel, feats):
    r = feats.shape[1] - kernel.shape[1] + 1
    yy, xx = np.mgrid[:r, :r] - (r - 1) / 2
    return np.asarray(maps_fn(yy, xx), np.float32)

  tracker = tracking_inference.SiamFCTracker(
      _pooled_pixels, exemplar_size=63, search_size=127,
      total_stride=_STRIDE, response_fn=response_fn, **tracker_kwargs)
  tracker.init([frame] * 5, [20, 24, 16, 16])
  return tracker, tracker.update([frame] * 5)


@pytest.mark.parametrize('offsets, want_scale_id', [
    # Positive responses: SiamFC's product. 1.01 * 0.9745 = 0.984 < 1.
    ((1.01, 1.0, 1.01), 1),
    # 1.03 * 0.9745 = 1.0037 > 1: the larger side response still wins.
    ((1.0, 1.0, 1.03), 2),
    # Negative responses: a product would give -1.01 * 0.9745 = -0.984 >
    # -1.0 and pick a side scale; the division gives -1.036.
    ((-1.01, -1.0, -1.01), 1),
    ((-1.0, -1.0, -0.97), 2),  # -0.97 / 0.9745 = -0.9954 > -1.0
])
def test_scale_penalty_lowers_side_scales_of_either_sign(offsets,
                                                         want_scale_id):
  # One peak at the centre per scale, its height the scale's offset.
  tracker, box = _update_with_responses(
      lambda yy, xx: [-0.05 * (yy ** 2 + xx ** 2) + o for o in offsets])
  # The chosen scale sets the new size: (1 - lr) + lr * factor.
  factor = tracker.scale_factors[want_scale_id]
  size = 16 * ((1 - tracker.scale_lr) + tracker.scale_lr * factor)
  np.testing.assert_allclose(box[2:], [size, size], rtol=1e-6)
  # Centre unmoved, up to the half cell of the even upsampled grid.
  np.testing.assert_allclose(box[:2] + box[2:] / 2, [28, 32], atol=0.2)


def test_scale_penalty_picks_the_scale_not_the_peak():
  """A side scale that wins for any penalty: the box centre does not depend
  on the penalty, even where the response crosses 0."""
  def maps(yy, xx):
    # Peak 2 cells right, 1 down of the centre; the map crosses 0 there.
    bump = 1.0 - 0.3 * ((yy - 1) ** 2 + (xx - 2) ** 2)
    return [bump, bump - 1.5, bump - 1.5]

  boxes = [_update_with_responses(maps, scale_penalty=penalty)[1]
           for penalty in (0.9745, 0.5, 1.0)]
  np.testing.assert_array_equal(boxes[1], boxes[0])
  np.testing.assert_array_equal(boxes[2], boxes[0])
  # Scale 0 (smaller) was chosen, and the centre moved right and down.
  assert boxes[0][2] < 16
  centre = boxes[0][:2] + boxes[0][2:] / 2
  assert centre[0] > 28.5 and centre[1] > 32.2
