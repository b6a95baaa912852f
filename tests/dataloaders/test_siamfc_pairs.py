"""Tests for SiamFC crops and the training-pair pipeline."""
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from dataloaders import siamfc_pairs
from dataloaders import tracking_readers


def test_crop_sizes_hand_computed():
  # w=20, h=40: p = 0.5 * 60 = 30, s_z = sqrt(50 * 70), s_x = s_z * 255 / 127.
  s_z, s_x = siamfc_pairs.crop_sizes((20, 40))
  assert s_z == pytest.approx(math.sqrt(3500.0))
  assert s_z == pytest.approx(59.16079783)
  assert s_x == pytest.approx(59.16079783 * 255 / 127)


def _ramp(h=30, w=40):
  yy, xx = np.meshgrid(np.arange(h, dtype=np.float32),
                       np.arange(w, dtype=np.float32), indexing='ij')
  return np.stack([xx, yy, np.zeros_like(xx)], axis=-1)


@pytest.mark.parametrize('impl', ['tf', 'np'])
def test_crop_sampling_positions(impl):
  image = _ramp()

  def crop(center, size, out):
    if impl == 'tf':
      return siamfc_pairs.crop_and_resize_patch(image, center, size,
                                                out).numpy()
    return siamfc_pairs.crop_and_resize_patch_np(image, center, size, out)

  # Window of 8 px centred on (y, x) = (10, 12) at scale 1: output pixel j
  # is pixel index c - 4 + j, i.e. x = 8..15 and y = 6..13.
  out = crop((10.0, 12.0), 8.0, 8)
  np.testing.assert_allclose(out[0, :, 0], np.arange(8, 16), atol=1e-4)
  np.testing.assert_allclose(out[:, 0, 1], np.arange(6, 14), atol=1e-4)
  # Window of 16 px into 8: samples at c - 8 + 2 j + 0.5.
  out = crop((10.0, 12.0), 16.0, 8)
  np.testing.assert_allclose(out[0, :, 0], 4.5 + 2 * np.arange(8), atol=1e-4)
  np.testing.assert_allclose(out[:, 0, 1], 2.5 + 2 * np.arange(8), atol=1e-4)


@pytest.mark.parametrize('impl', ['tf', 'np'])
def test_crop_pads_with_mean_colour(impl):
  image = np.zeros((10, 10, 3), np.float32)
  image[:5] = [1.0, 0.5, 0.25]  # Mean colour (0.5, 0.25, 0.125).
  if impl == 'tf':
    out = siamfc_pairs.crop_and_resize_patch(image, (100.0, 100.0), 10.0,
                                             4).numpy()
  else:
    out = siamfc_pairs.crop_and_resize_patch_np(image, (100.0, 100.0), 10.0,
                                                4)
  np.testing.assert_allclose(out, np.broadcast_to([0.5, 0.25, 0.125],
                                                  (4, 4, 3)), atol=1e-6)


def test_crop_clip_uses_one_window():
  clip = np.stack([_ramp() + t for t in range(3)])
  out = siamfc_pairs.crop_and_resize_patch(clip, (10.0, 12.0), 8.0, 8).numpy()
  assert out.shape == (3, 8, 8, 3)
  for t in range(3):
    np.testing.assert_allclose(out[t, 0, :, 0], np.arange(8, 16) + t,
                               atol=1e-4)
  # The numpy clip crop agrees, padding included (window half outside).
  np.testing.assert_allclose(
      siamfc_pairs.crop_clip_np(list(clip), (2.0, 3.0), 12.0, 6),
      siamfc_pairs.crop_and_resize_patch(clip, (2.0, 3.0), 12.0, 6).numpy(),
      atol=1e-3)


_NUM_FRAMES = 10


def _background(t):
  return 20 + 10 * t


def _make_sequences(root, num_sequences=2):
  dirs = []
  for s in range(num_sequences):
    seq_dir = os.path.join(root, f'GOT-10k_Train_{s + 1:06d}')
    os.makedirs(seq_dir)
    lines = []
    for t in range(_NUM_FRAMES):
      frame = np.full((64, 64, 3), _background(t), np.uint8)
      x, y = 24 + t, 26 + s  # 8 px red square moving 1 px per frame.
      frame[y:y + 8, x:x + 8] = [0, 0, 255]  # BGR red.
      cv2.imwrite(os.path.join(seq_dir, f'{t + 1:08d}.png'), frame)
      lines.append(f'{x},{y},8,8')
    with open(os.path.join(seq_dir, 'groundtruth.txt'), 'w') as f:
      f.write('\n'.join(lines) + '\n')
    dirs.append(seq_dir)
  return dirs


def _frame_indices(clip):
  """Frame index of each crop of a clip, from its top-left (background)."""
  values = clip[:, 0, 0, 1] * 255.0
  return np.round((values - 20) / 10).astype(int)


def test_pair_dataset_clips(tmp_path):
  dirs = _make_sequences(str(tmp_path))
  ds = siamfc_pairs.build_pair_dataset(
      dirs, batch_size=4, exemplar_size=31, search_size=63, max_frame_gap=3,
      seed=3, pairs_per_epoch=8, scale_jitter=0.0, shift_jitter=0.0)
  batches = list(ds)
  assert len(batches) == 2
  batch = batches[0]
  assert batch['exemplar'].shape == (4, 5, 31, 31, 3)
  assert batch['search'].shape == (4, 5, 63, 63, 3)
  assert batch['exemplar'].dtype == tf.float32
  for key in ('exemplar', 'search'):
    for b in batches:
      assert float(tf.reduce_min(b[key])) >= 0.0
      assert float(tf.reduce_max(b[key])) <= 1.0
  np.testing.assert_allclose(batch['search_target_yx'], 31.5)
  for b in batches:
    for exemplar, search in zip(b['exemplar'].numpy(), b['search'].numpy()):
      z_idx, x_idx = _frame_indices(exemplar), _frame_indices(search)
      for idx in (z_idx, x_idx):
        # The frame and 2 neighbours on each side; edge frames repeat.
        np.testing.assert_array_equal(
            idx, np.clip(idx[2] + np.arange(-2, 3), 0, _NUM_FRAMES - 1))
      assert abs(z_idx[2] - x_idx[2]) <= 3
      # Both crops are centred on the red target of their middle frame.
      np.testing.assert_allclose(exemplar[2, 15, 15], [1, 0, 0], atol=1e-3)
      np.testing.assert_allclose(search[2, 31, 31], [1, 0, 0], atol=1e-3)


def test_pair_dataset_matches_numpy_crop(tmp_path):
  dirs = _make_sequences(str(tmp_path), num_sequences=1)
  ds = siamfc_pairs.build_pair_dataset(
      dirs, batch_size=1, exemplar_size=31, search_size=63, seed=0,
      pairs_per_epoch=1, scale_jitter=0.0, shift_jitter=0.0)
  exemplar = next(iter(ds))['exemplar'].numpy()[0]
  t = _frame_indices(exemplar)[2]
  frame = cv2.imread(os.path.join(dirs[0], f'{t + 1:08d}.png'))
  frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
  # 8x8 box at (24 + t, 26): centre (30, 28 + t), s_z = sqrt(16 * 16) = 16.
  expected = siamfc_pairs.crop_and_resize_patch_np(frame, (30.0, 28.0 + t),
                                                   16.0, 31)
  np.testing.assert_allclose(exemplar[2], expected, atol=1e-4)


def test_pair_dataset_is_deterministic_and_jittered(tmp_path):
  dirs = _make_sequences(str(tmp_path))

  def first(seed):
    ds = siamfc_pairs.build_pair_dataset(
        dirs, batch_size=4, exemplar_size=31, search_size=63, seed=seed,
        pairs_per_epoch=4)
    return next(iter(ds))

  a, b, c = first(1), first(1), first(2)
  np.testing.assert_array_equal(a['search'], b['search'])
  assert not np.array_equal(a['search'], c['search'])
  target_yx = a['search_target_yx'].numpy()
  offset = np.abs(target_yx - 31.5)
  assert np.all(offset <= 4.0) and np.any(offset > 0.5)
  # The shifted target really is at `search_target_yx`: the centroid of the
  # red square (search-crop pixel centres are at index + 0.5).
  for search, yx in zip(a['search'].numpy(), target_yx):
    red = (search[2, ..., 0] > 0.5) & (search[2, ..., 1] < 0.5)
    ys, xs = np.nonzero(red)
    np.testing.assert_allclose([ys.mean() + 0.5, xs.mean() + 0.5], yx,
                               atol=1.0)


def test_pair_dataset_rejects_partial_annotation(tmp_path):
  dirs = _make_sequences(str(tmp_path), num_sequences=1)
  with open(os.path.join(dirs[0], 'groundtruth.txt'), 'w') as f:
    f.write('1,2,3,4\n')
  with pytest.raises(ValueError, match='GOT-10k_Train_000001.*1 boxes'):
    siamfc_pairs.build_pair_dataset(dirs, batch_size=1)


def test_pair_dataset_skips_frames_labelled_hidden(tmp_path):
  """Frames GOT-10k marks absent or fully covered are never sampled."""
  dirs = _make_sequences(str(tmp_path), num_sequences=1)
  hidden = {1, 4, 6}  # 0-based frames: 1 absent, 4 and 6 fully covered.
  with open(os.path.join(dirs[0], 'absence.label'), 'w') as f:
    f.write('\n'.join('1' if t == 1 else '0' for t in range(_NUM_FRAMES)))
  with open(os.path.join(dirs[0], 'cover.label'), 'w') as f:
    f.write('\n'.join('0' if t in (4, 6) else '8'
                      for t in range(_NUM_FRAMES)))
  sequence = tracking_readers.read_got10k_sequence(dirs[0])
  np.testing.assert_array_equal(
      np.flatnonzero(~sequence.visible()), sorted(hidden))
  ds = siamfc_pairs.build_pair_dataset(
      dirs, batch_size=8, exemplar_size=31, search_size=63, max_frame_gap=3,
      seed=3, pairs_per_epoch=64, scale_jitter=0.0, shift_jitter=0.0)
  middles = set()
  for b in ds:
    for exemplar, search in zip(b['exemplar'].numpy(), b['search'].numpy()):
      middles |= {int(_frame_indices(exemplar)[2]),
                  int(_frame_indices(search)[2])}
  assert not middles & hidden, middles
  assert middles == set(range(_NUM_FRAMES)) - hidden  # 64 pairs see them all


def test_frame_label_file_of_wrong_length_is_named(tmp_path):
  dirs = _make_sequences(str(tmp_path), num_sequences=1)
  with open(os.path.join(dirs[0], 'cover.label'), 'w') as f:
    f.write('8\n8\n')
  with pytest.raises(ValueError, match=r'cover\.label has 2 lines for'):
    tracking_readers.read_got10k_sequence(dirs[0])
