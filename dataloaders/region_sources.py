"""Region boxes for the ConST-CL local loss (SPEC section 1, "Regions").

Sources (`region_source`):
  random        boxes drawn in each view's augmented coordinates
                (`random_boxes`), all valid;
  slic          superpixel boxes precomputed into the record
                (`segment_boxes`, `tools/precompute_regions.py`);
  felzenszwalb  graph-based segment boxes, two scales pooled, precomputed;
  detector      boxes stored with the video.
Every source but `random` reads the record's `region/bbox/*` lists and carries
them through the view's crop and flip with `transform_boxes`.

Boxes are normalized [ymin, xmin, ymax, xmax].
"""
import os
import time
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from dataloaders import video_records

REGION_SOURCES = ('random', 'slic', 'felzenszwalb', 'detector')
SEGMENT_METHODS = ('slic', 'felzenszwalb')


def random_boxes(seed: tf.Tensor,
                 num_frames: int,
                 num_boxes: int,
                 min_size: float = 0.1,
                 max_size: float = 0.5,
                 min_aspect: float = 0.5,
                 max_aspect: float = 2.0) -> tf.Tensor:
  """Random boxes, every number drawn independently from a stateless seed.

  Width is uniform in [min_size, max_size] of the frame, the aspect ratio
  w/h log-uniform in [min_aspect, max_aspect] (height capped at the frame),
  and the position uniform so that the box lies inside the frame. The four
  numbers of each box come from one stateless draw of shape [4, T, N], so no
  two of them share a seed (the released code used one op seed, giving
  xmin == ymin).

  Args:
    seed: int [2] stateless seed (new per example and per epoch).
    num_frames: T.
    num_boxes: N.
    min_size: smallest width, fraction of the frame.
    max_size: largest width.
    min_aspect: smallest w/h.
    max_aspect: largest w/h.

  Returns:
    float32 [T, N, 4] boxes (all valid).
  """
  if not 0.0 < min_size <= max_size <= 1.0:
    raise ValueError(f'need 0 < min_size ({min_size}) <= max_size '
                     f'({max_size}) <= 1')
  if not 0.0 < min_aspect <= max_aspect:
    raise ValueError(f'need 0 < min_aspect ({min_aspect}) <= max_aspect '
                     f'({max_aspect})')
  u = tf.random.stateless_uniform([4, num_frames, num_boxes],
                                  seed=tf.cast(seed, tf.int64))
  width = min_size + (max_size - min_size) * u[0]
  lo, hi = float(np.log(min_aspect)), float(np.log(max_aspect))
  log_aspect = lo + (hi - lo) * u[1]
  height = tf.minimum(width / tf.exp(log_aspect), 1.0)
  xmin = (1.0 - width) * u[2]
  ymin = (1.0 - height) * u[3]
  return tf.stack([ymin, xmin, ymin + height, xmin + width], axis=-1)


def transform_boxes(boxes: tf.Tensor,
                    mask: tf.Tensor,
                    crop_window: tf.Tensor,
                    flip: tf.Tensor,
                    num_boxes: Optional[int] = None,
                    min_visible_fraction: float = 0.5
                    ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Carries source-frame boxes through a crop and a horizontal flip.

  Args:
    boxes: float [T, M, 4] normalized source-frame boxes.
    mask: [T, M] validity (nonzero = valid).
    crop_window: float [4] normalized [y0, x0, y1, x1] crop in the source.
    flip: bool scalar, the view is flipped left-right after the crop.
    num_boxes: N boxes per frame in the output (pads with invalid boxes or
      keeps the first N valid ones); M when None.
    min_visible_fraction: a box is dropped when the part inside the crop is
      below this fraction of its area (or zero, or the box is degenerate).

  Returns:
    (boxes float32 [T, N, 4] in the view's coordinates, clipped to [0, 1];
     mask float32 [T, N]). Invalid boxes are all zeros.
  """
  boxes = tf.cast(boxes, tf.float32)
  valid = tf.cast(mask, tf.float32) > 0
  crop_window = tf.cast(crop_window, tf.float32)
  y0, x0, y1, x1 = tf.unstack(crop_window)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  area = tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)
  cy0, cx0 = tf.maximum(ymin, y0), tf.maximum(xmin, x0)
  cy1, cx1 = tf.minimum(ymax, y1), tf.minimum(xmax, x1)
  visible = tf.maximum(cy1 - cy0, 0.0) * tf.maximum(cx1 - cx0, 0.0)
  valid &= (area > 0) & (visible > 0)
  valid &= visible >= min_visible_fraction * area
  ch, cw = y1 - y0, x1 - x0
  ny0, ny1 = (cy0 - y0) / ch, (cy1 - y0) / ch
  nx0, nx1 = (cx0 - x0) / cw, (cx1 - x0) / cw
  nx0, nx1 = (tf.where(flip, 1.0 - nx1, nx0), tf.where(flip, 1.0 - nx0, nx1))
  out = tf.clip_by_value(tf.stack([ny0, nx0, ny1, nx1], axis=-1), 0.0, 1.0)
  out = tf.where(valid[..., None], out, 0.0)
  valid_f = tf.cast(valid, tf.float32)
  if num_boxes is None:
    return out, valid_f
  # Valid boxes first (stable), so truncation keeps valid ones in order.
  order = tf.argsort(1.0 - valid_f, axis=-1, stable=True)
  out = tf.gather(out, order, batch_dims=1)
  valid_f = tf.gather(valid_f, order, batch_dims=1)
  m = tf.shape(out)[1]
  pad = tf.maximum(num_boxes - m, 0)
  out = tf.pad(out, [[0, 0], [0, pad], [0, 0]])[:, :num_boxes]
  valid_f = tf.pad(valid_f, [[0, 0], [0, pad]])[:, :num_boxes]
  return out, valid_f


def _label_boxes(labels: np.ndarray) -> np.ndarray:
  """Tight [ymin, xmin, ymax, xmax] pixel boxes (exclusive max) per label."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  boxes = [[sl[0].start, sl[1].start, sl[0].stop, sl[1].stop]
           for sl in ndimage.find_objects(labels + 1) if sl is not None]
  return np.asarray(boxes, np.float64).reshape(-1, 4)


def segment_boxes(frame: np.ndarray,
                  method: str,
                  num_boxes: int = 8,
                  min_size: float = 0.1,
                  max_size: float = 0.9,
                  slic_segments: int = 16,
                  slic_compactness: float = 10.0,
                  fh_scales: Sequence[float] = (100.0, 1000.0),
                  fh_sigma: float = 0.8,
                  fh_min_segment: int = 50) -> np.ndarray:
  """Boxes of the segments of one frame (numpy, scikit-image).

  Args:
    frame: [H, W, 3] uint8 frame.
    method: 'slic' (`skimage.segmentation.slic`) or 'felzenszwalb'
      (`skimage.segmentation.felzenszwalb` at every scale of `fh_scales`,
      segments of all scales pooled).
    num_boxes: keep at most this many boxes (largest box area first).
    min_size: a box is kept when its width and height (fractions of the
      frame) are both in [min_size, max_size].
    max_size: see min_size; below 1 so the background segment is dropped.
    slic_segments: approximate number of SLIC superpixels.
    slic_compactness: SLIC compactness.
    fh_scales: Felzenszwalb scales.
    fh_sigma: Felzenszwalb pre-smoothing.
    fh_min_segment: Felzenszwalb minimum segment size (pixels).

  Returns:
    float32 [n, 4] normalized boxes, n <= num_boxes, duplicates removed.
  """
  from skimage import segmentation  # pylint: disable=g-import-not-at-top
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] != 3:
    raise ValueError(f'segment_boxes expects an HxWx3 frame, got '
                     f'{frame.shape}')
  if method == 'slic':
    label_maps = [segmentation.slic(frame, n_segments=slic_segments,
                                    compactness=slic_compactness,
                                    start_label=0)]
  elif method == 'felzenszwalb':
    label_maps = [segmentation.felzenszwalb(frame, scale=s, sigma=fh_sigma,
                                            min_size=fh_min_segment)
                  for s in fh_scales]
  else:
    raise ValueError(f'unknown segmentation method {method!r}; expected one '
                     f'of {SEGMENT_METHODS}')
  h, w = frame.shape[:2]
  all_boxes = np.concatenate([_label_boxes(l) for l in label_maps])
  norm = all_boxes / np.array([h, w, h, w], np.float64)
  bh, bw = norm[:, 2] - norm[:, 0], norm[:, 3] - norm[:, 1]
  keep = ((bh >= min_size) & (bh <= max_size) & (bw >= min_size) &
          (bw <= max_size))
  norm = np.unique(norm[keep], axis=0)
  order = np.argsort(-(norm[:, 2] - norm[:, 0]) * (norm[:, 3] - norm[:, 1]),
                     kind='stable')
  return norm[order][:num_boxes].astype(np.float32)


def add_segment_boxes(serialized: bytes, method: str, num_boxes: int = 8,
                      **segment_kwargs) -> bytes:
  """Rewrites one record with `region/bbox/*` from `segment_boxes`."""
  seq = tf.train.SequenceExample.FromString(serialized)
  fls = seq.feature_lists.feature_list
  frames = [f.bytes_list.value[0] for f in
            fls[video_records.IMAGE_KEY].feature]
  per_frame = []
  for data in frames:
    image = tf.io.decode_jpeg(data, channels=3).numpy()
    per_frame.append(segment_boxes(image, method, num_boxes,
                                   **segment_kwargs))
  for k, key in enumerate(video_records.BOX_KEYS):
    if key in fls:
      del fls[key]
    fl = fls[key]
    for b in per_frame:
      fl.feature.add().float_list.value[:] = b[:, k].tolist()
  return seq.SerializeToString()


def check_precompute_args(method: str, num_boxes: int, log_every: int,
                          min_size: float, max_size: float) -> None:
  """Raises ValueError naming the flag of a bad `precompute_regions` arg."""
  if method not in SEGMENT_METHODS:
    raise ValueError(f'unknown method {method!r}; expected one of '
                     f'{SEGMENT_METHODS}')
  for name, value in (('num_boxes', num_boxes), ('log_every', log_every)):
    if value < 1:
      raise ValueError(f'--{name} must be >= 1, got {value}')
  if not 0 <= min_size <= max_size <= 1:
    raise ValueError(f'--min_size={min_size} and --max_size={max_size} '
                     'must satisfy 0 <= min_size <= max_size <= 1 (box '
                     'width and height as fractions of the frame)')


def precompute_regions(input_pattern: str, output_dir: str, method: str,
                       num_boxes: int = 8, log_every: int = 10,
                       **segment_kwargs) -> Dict[str, int]:
  """Rewrites every record of `input_pattern` into `output_dir` with boxes.

  Output files keep their base names. A record that cannot be read or
  decoded is an error naming the file and the record number. Frames left
  without any box (no segment within the size bounds) are counted and
  logged.

  Returns:
    summary dict: files, records, frames, boxes, frames_without_boxes.

  Raises:
    ValueError: an unknown method, `num_boxes` or `log_every` below 1, or
      size bounds outside 0 <= min_size <= max_size <= 1 (each naming its
      flag), before any file is read.
  """
  min_size = segment_kwargs.get('min_size', 0.1)
  max_size = segment_kwargs.get('max_size', 0.9)
  check_precompute_args(method, num_boxes, log_every, min_size, max_size)
  files = video_records.match_tfrecord_files(input_pattern or '',
                                             '--input_pattern')
  tf.io.gfile.makedirs(output_dir)
  summary = {'files': 0, 'records': 0, 'frames': 0, 'boxes': 0,
             'frames_without_boxes': 0}
  start = time.time()
  for path in files:
    out_path = os.path.join(output_dir, os.path.basename(path))
    if os.path.abspath(out_path) == os.path.abspath(path):
      raise ValueError(f'output {out_path} would overwrite the input')
    with tf.io.TFRecordWriter(out_path) as writer:
      for i, serialized in enumerate(
          tf.data.TFRecordDataset(path).as_numpy_iterator()):
        try:
          new = add_segment_boxes(serialized, method, num_boxes,
                                  **segment_kwargs)
        except (tf.errors.InvalidArgumentError, ValueError) as e:
          raise ValueError(f'{path}: record {i}: {e}') from e
        writer.write(new)
        rec = video_records.read_sequence_example(new)
        summary['records'] += 1
        summary['frames'] += len(rec['frames'])
        summary['boxes'] += sum(len(b) for b in rec['boxes'])
        summary['frames_without_boxes'] += sum(
            len(b) == 0 for b in rec['boxes'])
        if summary['records'] % log_every == 0:
          logging.info('precompute_regions: %d records (%.1f s)',
                       summary['records'], time.time() - start)
    summary['files'] += 1
  if summary['frames_without_boxes']:
    logging.warning('precompute_regions: %d of %d frames have no box '
                    '(no segment with width and height in [%g, %g])',
                    summary['frames_without_boxes'], summary['frames'],
                    min_size, max_size)
  logging.info('precompute_regions: done, %s in %.1f s', summary,
               time.time() - start)
  return summary
