"""Inspection of video TFRecords: statistics and a contact sheet.

Reads the records of `dataloaders/video_records.py` one at a time (frames stay
encoded), so it works on shards of any size. Used by
`tools/inspect_tfrecord.py`; the functions return plain dicts/arrays that
tests can check.
"""
import collections
from typing import Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from dataloaders import video_records

# Thumbnail cell of the contact sheet (height, width); frames are fitted
# inside keeping their aspect ratio.
CELL_HEIGHT = 96
CELL_WIDTH = 128
_BOX_COLOR_BGR = (0, 255, 0)


def list_files(pattern: str) -> List[str]:
  """The files matching `pattern`, sorted; errors name what is wrong.

  A file too short to hold one record reads as zero records through
  tf.data, so the header check runs first: a file that is not a TFRecord
  file is an error naming it, not "0 records".
  """
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f'no files match {pattern!r}')
  bad = video_records.non_tfrecord_files(files)
  if bad:
    raise ValueError(video_records.non_tfrecord_message(
        '--input_pattern', pattern, bad, len(files), inspect_hint=False))
  return files


def _iter_serialized(path: str) -> Iterator[bytes]:
  try:
    yield from tf.data.TFRecordDataset(path).as_numpy_iterator()
  except tf.errors.DataLossError as e:
    raise ValueError(f'{path} is not a (complete) TFRecord file; does the '
                     'pattern match other files?') from e


def _parse(path: str, serialized: bytes) -> Dict[str, object]:
  try:
    return video_records.read_sequence_example(serialized)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{path}: record is not a video SequenceExample: '
                     f'{e}') from e


def iter_records(pattern: str) -> Iterator[Dict[str, object]]:
  """Yields the records of the files matching `pattern` as numpy dicts."""
  for path in list_files(pattern):
    for serialized in _iter_serialized(path):
      yield _parse(path, serialized)


def _min_mean_max(values: Sequence[float]) -> Dict[str, float]:
  if not len(values):  # pylint: disable=g-explicit-length-test
    return {'min': 0, 'mean': 0.0, 'max': 0}
  return {'min': min(values), 'mean': float(np.mean(values)),
          'max': max(values)}


def read_label_names(path: str) -> List[str]:
  """Reads `label_map.txt` (one class name per line, index = line number)."""
  with tf.io.gfile.GFile(path, 'r') as f:
    names = [line.rstrip('\n') for line in f]
  while names and not names[-1]:
    names.pop()
  return names


def compute_stats(pattern: str,
                  label_names: Optional[Sequence[str]] = None
                  ) -> Dict[str, object]:
  """Counts records, frames, labels and boxes.

  Args:
    pattern: glob of TFRecord files.
    label_names: optional class names (index = label) for the histogram.

  Returns:
    dict with
      `num_shards`, `num_records`, `records_per_shard` ({file: count}),
      `frames_per_video` ({min, mean, max}), `num_frames`,
      `frame_sizes` ({"HxW": number of videos}, from each first frame),
      `label_histogram` ({label index: videos}), `label_names` ({index: name}
        of the labels seen, when `label_names` is given), `num_unlabelled`,
      `unknown_labels` (indices outside `label_names`),
      `boxes` (None without `region/bbox/*`; else `num_boxes`,
        `frames_with_boxes`, `boxes_per_frame` {min, mean, max} over all
        frames of videos with boxes, `area` {min, mean, max} of normalized
        box areas, `num_invalid` boxes outside [0, 1] or with min > max).
  """
  files = list_files(pattern)
  per_shard = collections.OrderedDict()
  frames, sizes = [], collections.Counter()
  labels = collections.Counter()
  num_unlabelled = 0
  box_counts, areas = [], []
  num_invalid = 0
  videos_with_boxes = 0
  for path in files:
    n = 0
    for serialized in _iter_serialized(path):
      rec = _parse(path, serialized)
      n += 1
      frames.append(len(rec['frames']))
      if rec['frames']:
        h, w = tf.image.extract_jpeg_shape(rec['frames'][0]).numpy()[:2]
        sizes[f'{h}x{w}'] += 1
      if rec['label']:
        labels.update(int(l) for l in rec['label'])
      else:
        num_unlabelled += 1
      if rec['boxes'] is not None:
        videos_with_boxes += 1
        for b in rec['boxes']:
          box_counts.append(len(b))
          if len(b):
            areas.extend(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).tolist())
            bad = ((b < 0) | (b > 1)).any(axis=1) | (b[:, 0] > b[:, 2]) | (
                b[:, 1] > b[:, 3])
            num_invalid += int(bad.sum())
    per_shard[path] = n
  stats = {
      'num_shards': len(files),
      'num_records': sum(per_shard.values()),
      'records_per_shard': dict(per_shard),
      'num_frames': int(sum(frames)),
      'frames_per_video': _min_mean_max(frames),
      'frame_sizes': dict(sizes),
      'label_histogram': dict(sorted(labels.items())),
      'num_unlabelled': num_unlabelled,
      'label_names': None,
      'unknown_labels': [],
      'boxes': None,
  }
  if label_names is not None:
    stats['label_names'] = {i: label_names[i] for i in sorted(labels)
                            if 0 <= i < len(label_names)}
    stats['unknown_labels'] = [i for i in sorted(labels)
                               if not 0 <= i < len(label_names)]
  if videos_with_boxes:
    stats['boxes'] = {
        'videos_with_boxes': videos_with_boxes,
        'num_boxes': int(sum(box_counts)),
        'frames_with_boxes': int(sum(c > 0 for c in box_counts)),
        'boxes_per_frame': _min_mean_max(box_counts),
        'area': _min_mean_max(areas),
        'num_invalid': num_invalid,
    }
  return stats


def format_stats(stats: Dict[str, object]) -> str:
  """A human-readable report of `compute_stats`."""
  fpv = stats['frames_per_video']
  lines = [
      f'{stats["num_records"]} records in {stats["num_shards"]} shards, '
      f'{stats["num_frames"]} frames',
      f'frames per video: min {fpv["min"]} mean {fpv["mean"]:.1f} '
      f'max {fpv["max"]}',
      'frame sizes (first frame): ' + ', '.join(
          f'{k}: {v}' for k, v in sorted(stats['frame_sizes'].items())),
      'labels:',
  ]
  names = stats['label_names'] or {}
  for label, count in stats['label_histogram'].items():
    name = names.get(label, '')
    lines.append(f'  {label:5d} {name:30s} {count}')
  if stats['num_unlabelled']:
    lines.append(f'  unlabelled: {stats["num_unlabelled"]}')
  if stats['unknown_labels']:
    lines.append(f'  labels outside the label map: {stats["unknown_labels"]}')
  boxes = stats['boxes']
  if boxes:
    bpf, area = boxes['boxes_per_frame'], boxes['area']
    lines.append(
        f'boxes: {boxes["num_boxes"]} in {boxes["frames_with_boxes"]} frames '
        f'of {boxes["videos_with_boxes"]} videos; per frame min {bpf["min"]} '
        f'mean {bpf["mean"]:.2f} max {bpf["max"]}; area min '
        f'{area["min"]:.4f} mean {area["mean"]:.4f} max {area["max"]:.4f}; '
        f'invalid {boxes["num_invalid"]}')
  else:
    lines.append('boxes: none')
  return '\n'.join(lines)


def _thumbnail(jpeg: bytes, boxes: Optional[np.ndarray]) -> np.ndarray:
  """Decodes a frame, draws its boxes and fits it into a cell (BGR)."""
  image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
  cell = np.zeros((CELL_HEIGHT, CELL_WIDTH, 3), np.uint8)
  if image is None:
    cv2.putText(cell, 'bad jpeg', (4, CELL_HEIGHT // 2),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
    return cell
  h, w = image.shape[:2]
  scale = min(CELL_HEIGHT / h, CELL_WIDTH / w)
  nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
  image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA
                     if scale < 1 else cv2.INTER_LINEAR)
  # Boxes are drawn after resizing so the lines stay one pixel wide.
  if boxes is not None:
    for ymin, xmin, ymax, xmax in np.asarray(boxes).reshape(-1, 4):
      p1 = (int(round(xmin * (nw - 1))), int(round(ymin * (nh - 1))))
      p2 = (int(round(xmax * (nw - 1))), int(round(ymax * (nh - 1))))
      cv2.rectangle(image, p1, p2, _BOX_COLOR_BGR, 1)
  y0, x0 = (CELL_HEIGHT - nh) // 2, (CELL_WIDTH - nw) // 2
  cell[y0:y0 + nh, x0:x0 + nw] = image
  return cell


def evenly_spaced(num_frames: int, count: int) -> List[int]:
  """`count` frame indices spread from the first to the last frame."""
  if num_frames <= 0:
    return []
  if count == 1:
    return [0]
  return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, count)})


def contact_sheet(pattern: str, num_videos: int = 4,
                  frames_per_video: int = 8,
                  label_names: Optional[Sequence[str]] = None) -> np.ndarray:
  """Builds a contact sheet: rows = videos, columns = evenly spaced frames.

  Args:
    pattern: glob of TFRecord files; the first `num_videos` records are used.
    num_videos: rows.
    frames_per_video: columns.
    label_names: optional class names for the row captions.

  Returns:
    [rows * CELL_HEIGHT, frames_per_video * CELL_WIDTH, 3] uint8 BGR image,
    rows = min(num_videos, number of records). Region boxes are drawn in
    green; each row's first cell is captioned with the video id and label.
  """
  if num_videos < 1 or frames_per_video < 1:
    raise ValueError(f'num_videos ({num_videos}) and frames_per_video '
                     f'({frames_per_video}) must be >= 1')
  rows = []
  for rec in iter_records(pattern):
    if len(rows) == num_videos:
      break
    row = np.zeros((CELL_HEIGHT, frames_per_video * CELL_WIDTH, 3), np.uint8)
    indices = evenly_spaced(len(rec['frames']), frames_per_video)
    for col, t in enumerate(indices):
      boxes = rec['boxes'][t] if rec['boxes'] is not None else None
      row[:, col * CELL_WIDTH:(col + 1) * CELL_WIDTH] = _thumbnail(
          rec['frames'][t], boxes)
    label = ','.join(
        (label_names[l] if label_names is not None and
         0 <= l < len(label_names) else str(l)) for l in rec['label'])
    caption = f'{rec["video_id"] or len(rows)} [{label}] T={len(rec["frames"])}'
    cv2.putText(row, caption, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                (0, 0, 0), 2)
    cv2.putText(row, caption, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                (255, 255, 255), 1)
    rows.append(row)
  if not rows:
    raise ValueError(f'no records in the files matching {pattern!r}')
  return np.concatenate(rows, axis=0)


def write_contact_sheet(pattern: str, out_path: str, **kwargs) -> np.ndarray:
  """Builds the contact sheet and writes it as PNG; returns the image."""
  sheet = contact_sheet(pattern, **kwargs)
  ok, buf = cv2.imencode('.png', sheet)
  if not ok:
    raise ValueError(f'PNG encoding failed for {out_path}')
  with tf.io.gfile.GFile(out_path, 'wb') as f:
    f.write(buf.tobytes())
  return sheet
