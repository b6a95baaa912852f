"""SiamFC crops and the GOT-10k training-pair input pipeline.

Crop geometry (SiamFC, Bertinetto et al. 2016), for a target box `w x h`:
  context p   = context_amount * (w + h)          (context_amount = 0.5)
  exemplar    s_z = sqrt((w + p) * (h + p)), resized to exemplar_size (127)
  search      s_x = s_z * search_size / exemplar_size, resized to
              search_size (255)
Both windows are square and centred on the target; the part outside the
image is filled with the mean colour of the frame.

Coordinates are continuous pixels: pixel column i spans [i, i + 1), so the
centre of box `x, y, w, h` is `(y + h / 2, x + w / 2)`. Output pixel j of a
window of side `size` centred on c samples the image at c - size / 2 +
(j + 0.5) * size / out_size, bilinearly.

The ConST-CL backbone is a video model, so every crop is a clip: the frame
and `context_frames` neighbours on each side (edge frames repeat), all cut
with the SAME window and padded with the centre frame's mean colour (a
padding colour that changed along the clip would look like motion).

`crop_and_resize_patch` uses tf.image.crop_and_resize: it belongs to the
input pipeline only (it has no XLA kernel); `crop_and_resize_patch_np` is the
cv2 equivalent used by the tracker at inference.
"""
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

from dataloaders import tracking_readers


def crop_sizes(box_wh: Tuple[float, float],
               context_amount: float = 0.5,
               exemplar_size: int = 127,
               search_size: int = 255) -> Tuple[float, float]:
  """Returns (s_z, s_x): exemplar and search window sides in image pixels."""
  w, h = float(box_wh[0]), float(box_wh[1])
  p = context_amount * (w + h)
  s_z = math.sqrt((w + p) * (h + p))
  return s_z, s_z * search_size / exemplar_size


def _crop_boxes(center_yx, size, image_hw, out_size):
  """Normalized crop_and_resize box [4] for a window; see module docstring."""
  cy, cx = center_yx[0], center_yx[1]
  step = size / out_size
  # Pixel-index coordinates (pixel centres at integers) of the first and last
  # output samples.
  y0 = cy - size / 2 + 0.5 * step - 0.5
  x0 = cx - size / 2 + 0.5 * step - 0.5
  y1 = y0 + (out_size - 1) * step
  x1 = x0 + (out_size - 1) * step
  h = tf.maximum(image_hw[0] - 1.0, 1.0)
  w = tf.maximum(image_hw[1] - 1.0, 1.0)
  return tf.stack([y0 / h, x0 / w, y1 / h, x1 / w])


def crop_and_resize_patch(image: tf.Tensor,
                          center_yx,
                          size,
                          out_size: int,
                          pad_color: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Crops a square window and resizes it; the outside is the mean colour.

  Args:
    image: `[H, W, 3]` or a clip `[T, H, W, 3]`, any real dtype. A clip is
      cut with one window for all frames.
    center_yx: Window centre `(y, x)` in continuous pixel coordinates.
    size: Window side in image pixels.
    out_size: Output side in pixels.
    pad_color: `[3]` colour for the area outside the image; defaults to the
      mean colour of the image (of the middle frame for a clip).

  Returns:
    float32 `[out_size, out_size, 3]` (or `[T, out_size, out_size, 3]`).
  """
  image = tf.cast(tf.convert_to_tensor(image), tf.float32)
  is_clip = image.shape.rank == 4
  clip = image if is_clip else image[None]
  if pad_color is None:
    middle = clip[tf.shape(clip)[0] // 2]
    pad_color = tf.reduce_mean(middle, axis=[0, 1])
  pad_color = tf.cast(pad_color, tf.float32)
  center_yx = tf.cast(tf.convert_to_tensor(center_yx), tf.float32)
  size = tf.cast(size, tf.float32)
  # crop_and_resize extrapolates with a constant: shift the image so that the
  # constant 0 becomes the padding colour. One ring of padding makes samples
  # just outside the border blend with the padding colour, exactly as the
  # cv2 version (BORDER_CONSTANT) does.
  shifted = tf.pad(clip - pad_color, [[0, 0], [1, 1], [1, 1], [0, 0]])
  hw = tf.cast(tf.shape(shifted)[1:3], tf.float32)
  box = _crop_boxes(center_yx + 1.0, size, hw, out_size)
  num = tf.shape(clip)[0]
  crops = tf.image.crop_and_resize(
      shifted, tf.tile(box[None], [num, 1]), tf.range(num),
      [out_size, out_size], method='bilinear', extrapolation_value=0.0)
  crops = crops + pad_color
  return crops if is_clip else crops[0]


def crop_and_resize_patch_np(image: np.ndarray,
                             center_yx: Tuple[float, float],
                             size: float,
                             out_size: int,
                             pad_color: Optional[np.ndarray] = None
                             ) -> np.ndarray:
  """numpy/cv2 version of `crop_and_resize_patch` for one `[H, W, 3]` frame.

  Same sampling positions (affine warp, bilinear); outside the image the
  border colour is `pad_color` (default: the frame's mean colour).
  """
  image = np.asarray(image, dtype=np.float32)
  if image.ndim != 3:
    raise ValueError(f'expected an [H, W, C] frame, got {image.shape}')
  if pad_color is None:
    pad_color = image.reshape(-1, image.shape[-1]).mean(axis=0)
  step = float(size) / out_size
  y0 = center_yx[0] - size / 2 + 0.5 * step - 0.5
  x0 = center_yx[1] - size / 2 + 0.5 * step - 0.5
  # Maps output pixel (u, v) to source (x0 + step * u, y0 + step * v).
  matrix = np.array([[step, 0.0, x0], [0.0, step, y0]], dtype=np.float64)
  return cv2.warpAffine(
      image, matrix, (out_size, out_size),
      flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
      borderMode=cv2.BORDER_CONSTANT,
      borderValue=tuple(float(c) for c in pad_color))


def crop_clip_np(frames: Sequence[np.ndarray], center_yx, size: float,
                 out_size: int) -> np.ndarray:
  """Crops every frame of a clip with one window (numpy/cv2).

  Args:
    frames: `T` frames `[H, W, 3]`.
    center_yx: Window centre `(y, x)` in continuous pixel coordinates.
    size: Window side in image pixels.
    out_size: Output side in pixels.

  Returns:
    float32 `[T, out_size, out_size, 3]`, padded with the middle frame's mean
    colour (as `crop_and_resize_patch` does for a clip).
  """
  middle = np.asarray(frames[len(frames) // 2], dtype=np.float32)
  pad = middle.reshape(-1, middle.shape[-1]).mean(axis=0)
  return np.stack([crop_and_resize_patch_np(f, center_yx, size, out_size, pad)
                   for f in frames])


class _PairTables:
  """Flat numpy tables of every frame of the training sequences."""

  def __init__(self, sequences):
    paths, boxes, seq_start, seq_len = [], [], [], []
    valid, valid_start, valid_count = [], [], []
    skipped = 0
    self.hidden = 0  # frames with a box that the labels mark as hidden
    for seq in sequences:
      if len(seq.boxes) != len(seq.frame_paths):
        raise ValueError(f'sequence {seq.name}: {len(seq.boxes)} boxes for '
                         f'{len(seq.frame_paths)} frames; training needs '
                         'every frame annotated')
      ok = (np.all(np.isfinite(seq.boxes), axis=1) & (seq.boxes[:, 2] > 0) &
            (seq.boxes[:, 3] > 0))
      # GOT-10k keeps a box for frames whose target is absent or fully
      # occluded; as an exemplar or a search target such a frame shows
      # something else, so it is not sampled.
      shown = seq.visible()
      self.hidden += int(np.sum(ok & ~shown))
      ok &= shown
      if not ok.any():
        skipped += 1
        continue
      start = len(paths)
      seq_start.append(start)
      seq_len.append(len(seq.frame_paths))
      valid_start.append(len(valid))
      valid_count.append(int(ok.sum()))
      valid.extend((start + np.flatnonzero(ok)).tolist())
      paths.extend(seq.frame_paths)
      boxes.append(seq.boxes)
    if not seq_start:
      raise ValueError('no training sequence with a valid box')
    self.skipped = skipped
    self.paths = np.asarray(paths)
    self.boxes = np.concatenate(boxes).astype(np.float32)
    self.seq_start = np.asarray(seq_start, np.int64)
    self.seq_len = np.asarray(seq_len, np.int64)
    self.valid = np.asarray(valid, np.int64)
    self.valid_start = np.asarray(valid_start, np.int64)
    self.valid_count = np.asarray(valid_count, np.int64)


def _decode(path: tf.Tensor) -> tf.Tensor:
  data = tf.io.read_file(path)
  # decode_image's own error does not name the file: check the signature
  # (JPEG, PNG, BMP, GIF) first so a bad frame fails naming its path.
  head = tf.strings.substr(data, 0, 3)
  known = tf.reduce_any(tf.stack([
      tf.equal(head, b'\xff\xd8\xff'), tf.equal(head, b'\x89PN'),
      tf.equal(tf.strings.substr(head, 0, 2), b'BM'),
      tf.equal(head, b'GIF')]))
  with tf.control_dependencies([tf.debugging.Assert(
      known, ['cannot read frame (not a JPEG/PNG/BMP/GIF image):', path])]):
    data = tf.identity(data)
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  return tf.image.convert_image_dtype(image, tf.float32)


def build_pair_dataset(sequence_dirs: Sequence[str],
                       batch_size: int,
                       exemplar_size: int = 127,
                       search_size: int = 255,
                       context_frames: int = 2,
                       max_frame_gap: int = 100,
                       seed: int = 0,
                       pairs_per_epoch: Optional[int] = None,
                       context_amount: float = 0.5,
                       scale_jitter: float = 0.05,
                       shift_jitter: float = 4.0,
                       drop_remainder: bool = True) -> tf.data.Dataset:
  """SiamFC training pairs from GOT-10k-layout sequences.

  Element k is drawn with stateless random ops seeded by (seed, k), so the
  stream is reproducible and independent of parallelism: a sequence is
  chosen uniformly, then an annotated frame i, then an annotated frame j of
  the same sequence with |i - j| <= max_frame_gap. The exemplar clip is cut
  around the target of frame i (window s_z, scaled by 1 + U(-scale_jitter,
  scale_jitter)), the search clip around the target of frame j (window s_x,
  scaled likewise and shifted by up to `shift_jitter` search-crop pixels, kept
  small next to SiamFC's 16 px positive radius so the centred labels hold).

  Args:
    sequence_dirs: GOT-10k sequence folders (every frame annotated). Frames
      whose box is invalid (w or h <= 0, NaN) are never sampled as targets.
    batch_size: Pairs per batch.
    exemplar_size: Exemplar crop side.
    search_size: Search crop side.
    context_frames: Neighbours on each side of each crop's frame.
    max_frame_gap: Largest frame distance between exemplar and search.
    seed: Sampling seed.
    pairs_per_epoch: Pairs per pass; None repeats forever.
    context_amount: SiamFC context amount.
    scale_jitter: Relative window-size jitter of both crops.
    shift_jitter: Largest search-window shift, in search-crop pixels.
    drop_remainder: Whether to drop the last partial batch.

  Returns:
    Dataset of dicts: `exemplar` float32 `[B, T, z, z, 3]` and `search`
    `[B, T, x, x, 3]` in [0, 1] (T = 2 * context_frames + 1), and
    `search_target_yx` `[B, 2]`, the target centre in search-crop pixels.
  """
  if not sequence_dirs:
    raise ValueError('build_pair_dataset: empty sequence_dirs')
  if max_frame_gap < 0:
    raise ValueError(f'max_frame_gap must be >= 0, got {max_frame_gap}')
  sequences = [tracking_readers.read_got10k_sequence(d) for d in sequence_dirs]
  tables = _PairTables(sequences)
  if tables.skipped:
    tf.get_logger().warning('build_pair_dataset: skipped %d sequence(s) with '
                            'no valid box', tables.skipped)
  if tables.hidden:
    tf.get_logger().info(
        'build_pair_dataset: %d frame(s) with a box are not sampled: '
        'absence.label marks the target absent or cover.label fully '
        'occluded', tables.hidden)

  paths = tf.constant(tables.paths)
  boxes = tf.constant(tables.boxes)
  seq_start = tf.constant(tables.seq_start)
  seq_len = tf.constant(tables.seq_len)
  valid = tf.constant(tables.valid)
  valid_start = tf.constant(tables.valid_start)
  valid_count = tf.constant(tables.valid_count)
  num_seqs = len(tables.seq_start)
  offsets = tf.range(-context_frames, context_frames + 1, dtype=tf.int64)
  frames_per_clip = 2 * context_frames + 1

  def uniform_int(seed_pair, low, high):
    """Integer in [low, high) (high > low)."""
    u = tf.random.stateless_uniform([], seed=seed_pair, dtype=tf.float32)
    value = low + tf.cast(tf.floor(u * tf.cast(high - low, tf.float32)),
                          tf.int64)
    return tf.minimum(value, high - 1)

  def sample(index):
    base = tf.stack([tf.cast(seed, tf.int64), index])
    seeds = tf.unstack(tf.random.experimental.stateless_split(base, 6))
    s = uniform_int(seeds[0], tf.constant(0, tf.int64),
                    tf.constant(num_seqs, tf.int64))
    v_lo = valid_start[s]
    v_hi = v_lo + valid_count[s]
    a = uniform_int(seeds[1], v_lo, v_hi)
    frame_a = valid[a]
    seq_valid = valid[v_lo:v_hi]
    lo = v_lo + tf.searchsorted(seq_valid, [frame_a - max_frame_gap],
                                side='left', out_type=tf.int64)[0]
    hi = v_lo + tf.searchsorted(seq_valid, [frame_a + max_frame_gap],
                                side='right', out_type=tf.int64)[0]
    frame_b = valid[uniform_int(seeds[2], lo, hi)]

    def clip_indices(frame):
      local = frame - seq_start[s] + offsets
      local = tf.clip_by_value(local, 0, seq_len[s] - 1)
      return seq_start[s] + local

    def load_clip(frame):
      clip_paths = tf.gather(paths, clip_indices(frame))
      return tf.map_fn(_decode, clip_paths,
                       fn_output_signature=tf.TensorSpec([None, None, 3],
                                                         tf.float32))

    def window(frame, jitter_seed):
      box = boxes[frame]
      w, h = box[2], box[3]
      p = context_amount * (w + h)
      s_z = tf.sqrt((w + p) * (h + p))
      scale = 1.0 + tf.random.stateless_uniform(
          [], seed=jitter_seed, minval=-scale_jitter, maxval=scale_jitter)
      center = tf.stack([box[1] + h / 2, box[0] + w / 2])
      return center, s_z * scale

    center_z, s_z = window(frame_a, seeds[3])
    exemplar = crop_and_resize_patch(load_clip(frame_a), center_z, s_z,
                                     exemplar_size)

    center_x, s_zx = window(frame_b, seeds[4])
    s_x = s_zx * search_size / exemplar_size
    shift = tf.random.stateless_uniform([2], seed=seeds[5],
                                        minval=-shift_jitter,
                                        maxval=shift_jitter)
    # Shifting the window by +d crop pixels moves the target by -d in it.
    window_center = center_x + shift * s_x / search_size
    search = crop_and_resize_patch(load_clip(frame_b), window_center, s_x,
                                   search_size)
    target_yx = (search_size / 2.0) - shift
    exemplar = tf.ensure_shape(
        tf.clip_by_value(exemplar, 0.0, 1.0),
        [frames_per_clip, exemplar_size, exemplar_size, 3])
    search = tf.ensure_shape(
        tf.clip_by_value(search, 0.0, 1.0),
        [frames_per_clip, search_size, search_size, 3])
    return dict(exemplar=exemplar, search=search, search_target_yx=target_yx)

  if pairs_per_epoch is None:
    dataset = tf.data.Dataset.range(np.iinfo(np.int64).max)
  else:
    dataset = tf.data.Dataset.range(int(pairs_per_epoch))
  dataset = dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
