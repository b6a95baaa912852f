"""AVA (v2.1 / v2.2 / AVA-Kinetics) file readers and frame-level mAP.

The metric is the one of the official AVA evaluator: frame-level average
precision at IoU 0.5 per class, PASCAL VOC (2010+) style, averaged over the
classes of the label map that have ground truth. Written from the protocol
description, in numpy only:

* frames are keyed by (video_id, timestamp); timestamps are compared as numbers
  so '0902', '902' and '902.0' are the same key frame;
* per frame, only the 50 highest-scoring detection rows (all classes together)
  are kept;
* per class and frame, detections are visited in descending score order; each
  goes to the same-class ground-truth box of highest IoU: a true positive if
  that IoU >= 0.5 and that box is not yet taken, else a false positive;
* a box with several labels is one CSV row per label, so it counts once per
  label;
* AP is the area under the non-increasing precision envelope over all recall
  points (`compute_average_precision`); classes without ground truth are left
  out of the mean and reported.

File formats (no header; a header line starting with `video_id` is tolerated):
  ground truth  `video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`
  detections    `video_id,timestamp,x1,y1,x2,y2,action_id[,person_id],score`
  exclusions    `video_id,timestamp`
  label map     `.pbtxt`, v2.2 `label { name: "..." label_id: 1 label_type: X }`
                or v2.1 `item { name: "..." id: 1 }`.
Coordinates are normalized to [0, 1]; action ids are 1-based. Bad rows are
counted by reason (`BAD_ROW_REASONS`) and skipped, never fatal.
"""
import collections
import csv
import dataclasses
import math
import re
from typing import (Counter, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Set, Tuple, Union)

from absl import logging
import numpy as np

IOU_THRESHOLD = 0.5
MAX_DETECTIONS_PER_FRAME = 50

# Reasons under which a CSV row is skipped (keys of the bad-row counters).
MALFORMED = 'malformed'
OUT_OF_RANGE = 'coordinates_out_of_range'
INVERTED_BOX = 'inverted_box'
# Ground truth only: a box with xmax == xmin or ymax == ymin has no area, no
# detection can reach IoU 0.5 with it, and training would see no box.
# Zero-area detections stay (false positives, as in the official evaluator).
ZERO_AREA_BOX = 'zero_area_box'
UNKNOWN_ACTION = 'action_id_not_in_labelmap'
BAD_ROW_REASONS = (MALFORMED, OUT_OF_RANGE, INVERTED_BOX, ZERO_AREA_BOX,
                   UNKNOWN_ACTION)

# Coordinates within this distance outside [0, 1] are float noise: clipped.
_COORD_TOLERANCE = 1e-6

FrameKey = Tuple[str, float]


def normalize_timestamp(value: Union[str, float, int]) -> float:
  """Returns the timestamp as a number so '0902' == '902' == 902.0.

  Rounded to the millisecond so that float formatting differences ('12.1' vs
  12.100000001) do not split one key frame into two.
  """
  ts = float(value)
  if not math.isfinite(ts):
    raise ValueError(f'timestamp {value!r} is not finite')
  return round(ts, 3)


def frame_key(video_id: str, timestamp: Union[str, float, int]) -> FrameKey:
  return (str(video_id), normalize_timestamp(timestamp))


def format_timestamp(timestamp: Union[str, float, int]) -> str:
  """Formats a timestamp like the official CSVs ('0902'); keeps fractions."""
  if isinstance(timestamp, str):
    return timestamp
  ts = float(timestamp)
  if ts.is_integer():
    return f'{int(ts):04d}'
  return f'{ts:g}'


@dataclasses.dataclass(frozen=True)
class AvaRow:
  """One CSV row: a box with one action label (and a score for detections).

  Attributes:
    video_id: the video (AVA movie id or Kinetics YouTube id).
    timestamp: key-frame time in seconds, normalized (`normalize_timestamp`).
    box: (x1, y1, x2, y2) normalized coordinates, as in the CSV.
    action_id: 1-based action id; -1 for a detection row without one (a
      person-detector box).
    person_id: person id, -1 when the file has none.
    score: detection score, None for ground truth.
  """
  video_id: str
  timestamp: float
  box: Tuple[float, float, float, float]
  action_id: int
  person_id: int = -1
  score: Optional[float] = None

  @property
  def key(self) -> FrameKey:
    return (self.video_id, self.timestamp)


# ---------------------------------------------------------------------------
# Label map.

_TOKEN_RE = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')'
                       r'|([{}:])|([^\s{}:"\'#]+))')


def _tokenize_pbtxt(text: str, path: str) -> List[Tuple[str, int]]:
  """Splits a pbtxt into (token, line) pairs, dropping comments."""
  tokens = []
  pos = 0
  line = 1
  while pos < len(text):
    m = _TOKEN_RE.match(text, pos)
    if m is None or m.end() == pos:
      rest = text[pos:]
      if not rest.strip():
        break
      bad_line = line + rest[:len(rest) - len(rest.lstrip())].count('\n')
      raise ValueError(f'{path}:{bad_line}: cannot parse label map near '
                       f'{rest.lstrip()[:30]!r} (unterminated string?)')
    start_line = line + text.count('\n', pos, m.start(m.lastindex))
    line += text.count('\n', pos, m.end())
    pos = m.end()
    if m.group(1) is not None:
      continue
    tokens.append((m.group(m.lastindex), start_line))
  return tokens


def parse_labelmap(text: str, path: str = '<string>') -> Dict[int, str]:
  """Parses a label map in either official format.

  Args:
    text: the file contents; blocks `label { name: ".." label_id: N ... }`
      (v2.2) or `item { name: ".." id: N }` (v2.1), in any layout.
    path: file name used in error messages.

  Returns:
    {action_id: name}, in file order.

  Raises:
    ValueError naming the file and line for anything that is not a label map.
  """
  tokens = _tokenize_pbtxt(text, path)
  labelmap: Dict[int, str] = {}
  i = 0

  def _expect(tok, what):
    nonlocal i
    if i >= len(tokens):
      raise ValueError(f'{path}:{tokens[-1][1] if tokens else 1}: unexpected '
                       f'end of file, expected {what}')
    value, line = tokens[i]
    if tok is not None and value != tok:
      raise ValueError(f'{path}:{line}: expected {what}, got {value!r}')
    i += 1
    return value, line

  while i < len(tokens):
    block, block_line = _expect(None, '`label` or `item`')
    if block not in ('label', 'item'):
      raise ValueError(f'{path}:{block_line}: expected `label {{` or `item {{`'
                       f', got {block!r}')
    if i < len(tokens) and tokens[i][0] == ':':  # `item: {` is also valid.
      i += 1
    _expect('{', '`{`')
    fields = {}
    while True:
      name, line = _expect(None, 'a field or `}`')
      if name == '}':
        break
      _expect(':', f'`:` after {name!r}')
      value, vline = _expect(None, f'a value for {name!r}')
      if value in ('{', '}', ':'):
        raise ValueError(f'{path}:{vline}: missing value for {name!r}')
      if value[:1] in ('"', "'"):
        value = re.sub(r'\\(.)', r'\1', value[1:-1])
      fields[name] = (value, vline)
    id_field = 'label_id' if 'label_id' in fields else 'id'
    if id_field not in fields:
      raise ValueError(f'{path}:{block_line}: {block} block has no '
                       f'`label_id`/`id` field')
    raw_id, id_line = fields[id_field]
    try:
      action_id = int(raw_id)
    except ValueError:
      raise ValueError(f'{path}:{id_line}: {id_field} {raw_id!r} is not an '
                       f'integer') from None
    if action_id < 1:
      raise ValueError(f'{path}:{id_line}: action ids are 1-based, got '
                       f'{action_id}')
    if action_id in labelmap:
      raise ValueError(f'{path}:{id_line}: duplicate action id {action_id}')
    name = fields.get('name', fields.get('display_name', (None, 0)))[0]
    if name is None:
      raise ValueError(f'{path}:{block_line}: {block} block has no `name`')
    labelmap[action_id] = name
  if not labelmap:
    raise ValueError(f'{path}:1: label map has no `label`/`item` blocks')
  return labelmap


def read_labelmap(path: str) -> Dict[int, str]:
  """Reads a `.pbtxt` label map; returns {action_id: name}."""
  with open(path, 'r', encoding='utf-8') as f:
    return parse_labelmap(f.read(), path)


# ---------------------------------------------------------------------------
# CSV readers.


def _is_header(fields: Sequence[str]) -> bool:
  return bool(fields) and fields[0].strip().lower() in ('video_id', 'video')


def parse_row(fields: Sequence[str], kind: str,
              class_ids: Optional[Iterable[int]] = None
              ) -> Tuple[Optional[AvaRow], Optional[str]]:
  """Parses one CSV row; returns (row, None) or (None, bad-row reason).

  Args:
    fields: the CSV fields.
    kind: 'groundtruth' (7 or 8 columns, person_id last) or 'detections'
      (8 columns with score last, or 9 with person_id before the score).
    class_ids: the label map's action ids; rows with other ids are bad.
  """
  fields = [f.strip() for f in fields]
  n = len(fields)
  if kind == 'groundtruth':
    if n not in (7, 8):
      return None, MALFORMED
  elif kind == 'detections':
    if n not in (8, 9):
      return None, MALFORMED
  else:
    raise ValueError(f'kind must be groundtruth or detections, got {kind!r}')
  try:
    video_id = fields[0]
    if not video_id:
      return None, MALFORMED
    timestamp = normalize_timestamp(fields[1])
    coords = [float(v) for v in fields[2:6]]
    # Person-detector CSVs (e.g. ava_val_predicted_boxes.csv) leave the
    # action id empty: such a row is a box only (action_id -1).
    action_id = (-1 if kind == 'detections' and fields[6] == ''
                 else int(fields[6]))
    person_id = -1
    score = None
    if kind == 'groundtruth':
      if n == 8 and fields[7] != '':
        person_id = int(float(fields[7]))
    else:
      score = float(fields[-1])
      if n == 9 and fields[7] != '':
        person_id = int(float(fields[7]))
      if not math.isfinite(score):
        return None, MALFORMED
  except ValueError:
    return None, MALFORMED
  if not all(math.isfinite(c) for c in coords):
    return None, MALFORMED
  if any(c < -_COORD_TOLERANCE or c > 1 + _COORD_TOLERANCE for c in coords):
    return None, OUT_OF_RANGE
  x1, y1, x2, y2 = [min(max(c, 0.0), 1.0) for c in coords]
  if x2 < x1 or y2 < y1:
    return None, INVERTED_BOX
  if kind == 'groundtruth' and (x2 == x1 or y2 == y1):
    return None, ZERO_AREA_BOX
  if class_ids is not None and action_id not in class_ids:
    return None, UNKNOWN_ACTION
  return AvaRow(video_id, timestamp, (x1, y1, x2, y2), action_id, person_id,
                score), None


def read_csv(path: str, kind: str,
             class_ids: Optional[Iterable[int]] = None,
             bad_rows: Optional[Counter[str]] = None) -> List[AvaRow]:
  """Reads a ground-truth or detection CSV, skipping and counting bad rows.

  Args:
    path: the CSV file.
    kind: 'groundtruth' or 'detections' (see `parse_row`).
    class_ids: if given, rows whose action id is not among them are bad.
    bad_rows: optional counter updated with {reason: count}.

  Returns:
    The good rows, in file order.
  """
  class_ids = set(class_ids) if class_ids is not None else None
  counts: Counter[str] = collections.Counter()
  rows = []
  first_bad = {}
  with open(path, 'r', newline='', encoding='utf-8') as f:
    for line_no, fields in enumerate(csv.reader(f), start=1):
      if not fields or (len(fields) == 1 and not fields[0].strip()):
        continue
      if line_no == 1 and _is_header(fields):
        continue
      row, reason = parse_row(fields, kind, class_ids)
      if row is None:
        counts[reason] += 1
        first_bad.setdefault(reason, line_no)
        continue
      rows.append(row)
  for reason, count in sorted(counts.items()):
    logging.warning('%s: skipped %d %s row(s) as %s (first at line %d)',
                    path, count, kind, reason, first_bad[reason])
  if bad_rows is not None:
    bad_rows.update(counts)
  return rows


def read_groundtruth_csv(path, class_ids=None, bad_rows=None) -> List[AvaRow]:
  """Reads `video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]` rows."""
  return read_csv(path, 'groundtruth', class_ids, bad_rows)


def read_detections_csv(path, class_ids=None, bad_rows=None) -> List[AvaRow]:
  """Reads `video_id,timestamp,x1,y1,x2,y2,action_id[,person_id],score`."""
  return read_csv(path, 'detections', class_ids, bad_rows)


def read_exclusions_csv(path: str,
                        bad_rows: Optional[Counter[str]] = None
                        ) -> Set[FrameKey]:
  """Reads `video_id,timestamp` rows into a set of frame keys."""
  keys = set()
  counts: Counter[str] = collections.Counter()
  with open(path, 'r', newline='', encoding='utf-8') as f:
    for line_no, fields in enumerate(csv.reader(f), start=1):
      if not fields or (len(fields) == 1 and not fields[0].strip()):
        continue
      if line_no == 1 and _is_header(fields):
        continue
      if len(fields) < 2 or not fields[0].strip():
        counts[MALFORMED] += 1
        continue
      try:
        keys.add(frame_key(fields[0].strip(), fields[1].strip()))
      except ValueError:
        counts[MALFORMED] += 1
  if counts:
    logging.warning('%s: skipped %d malformed exclusion row(s)', path,
                    counts[MALFORMED])
  if bad_rows is not None:
    bad_rows.update(counts)
  return keys


def write_detections_csv(path: str, rows: Iterable[object]) -> int:
  """Writes detections in the official CSV format; returns the row count.

  Args:
    path: output file.
    rows: `AvaRow`s with a score, or tuples
      (video_id, timestamp, x1, y1, x2, y2, action_id, score).
      Timestamps given as strings are written verbatim, numbers as '0902'.
  """
  n = 0
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f, lineterminator='\n')
    for row in rows:
      if isinstance(row, AvaRow):
        if row.score is None:
          raise ValueError(f'{path}: detection row without a score: {row}')
        vid, ts, box, action, score = (row.video_id, row.timestamp, row.box,
                                       row.action_id, row.score)
      else:
        if len(row) != 8:
          raise ValueError(f'{path}: expected (video_id, timestamp, x1, y1, '
                           f'x2, y2, action_id, score), got {row!r}')
        vid, ts, action, score = row[0], row[1], row[6], row[7]
        box = row[2:6]
      writer.writerow([vid, format_timestamp(ts)] +
                      [f'{float(c):.3f}' for c in box] +
                      [int(action), f'{float(score):.6f}'])
      n += 1
  return n


# ---------------------------------------------------------------------------
# Metric.


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
  """IoU between [N, 4] and [M, 4] boxes (any corner order x1,y1,x2,y2).

  Normalized coordinates: no +1 on widths. Zero-area unions give IoU 0.
  """
  a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
  b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
  ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
  iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
  ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
  iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
  inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  union = area_a[:, None] + area_b[None, :] - inter
  with np.errstate(divide='ignore', invalid='ignore'):
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
  return iou


def match_detections(det_boxes: np.ndarray, det_scores: np.ndarray,
                     gt_boxes: np.ndarray,
                     iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
  """Marks one frame's detections of one class as true/false positives.

  Args:
    det_boxes: [N, 4] detections.
    det_scores: [N] scores.
    gt_boxes: [M, 4] same-class ground-truth boxes of the frame.
    iou_threshold: minimum IoU of a true positive.

  Returns:
    bool [N], aligned with the inputs: True for true positives.
  """
  n = len(det_scores)
  is_tp = np.zeros(n, bool)
  if n == 0 or len(gt_boxes) == 0:
    return is_tp
  iou = iou_matrix(det_boxes, gt_boxes)
  taken = np.zeros(len(gt_boxes), bool)
  for d in np.argsort(-np.asarray(det_scores), kind='stable'):
    best = int(np.argmax(iou[d]))
    # The detection is tied to its best box even if that box is taken: a
    # duplicate is a false positive, it does not fall back to another box.
    if iou[d, best] >= iou_threshold and not taken[best]:
      taken[best] = True
      is_tp[d] = True
  return is_tp


def compute_precision_recall(scores: np.ndarray, is_tp: np.ndarray,
                             num_groundtruth: int
                             ) -> Tuple[np.ndarray, np.ndarray]:
  """Precision and recall after each detection, in descending score order."""
  order = np.argsort(-np.asarray(scores, np.float64), kind='stable')
  tp = np.asarray(is_tp, np.float64)[order]
  cum_tp = np.cumsum(tp)
  cum_fp = np.cumsum(1.0 - tp)
  precision = cum_tp / np.maximum(cum_tp + cum_fp, 1e-12)
  recall = cum_tp / max(num_groundtruth, 1)
  return precision, recall


def compute_average_precision(precision: np.ndarray,
                              recall: np.ndarray) -> float:
  """Area under the non-increasing precision envelope (VOC 2010+).

  Args:
    precision: precision after each ranked detection.
    recall: recall after each ranked detection (non-decreasing).

  Returns:
    AP in [0, 1]; 0 for an empty ranking.
  """
  precision = np.asarray(precision, np.float64)
  recall = np.asarray(recall, np.float64)
  if precision.shape != recall.shape or precision.ndim != 1:
    raise ValueError(f'precision {precision.shape} and recall {recall.shape} '
                     'must be 1-D of the same length')
  if precision.size == 0:
    return 0.0
  if np.any(np.diff(recall) < 0):
    raise ValueError('recall must be non-decreasing')
  p = np.concatenate([[0.0], precision, [0.0]])
  r = np.concatenate([[0.0], recall, [1.0]])
  # Envelope: best precision achievable at this recall or any higher one.
  p = np.maximum.accumulate(p[::-1])[::-1]
  steps = np.nonzero(r[1:] != r[:-1])[0] + 1
  return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def _as_rows(rows: Iterable[object], kind: str) -> List[AvaRow]:
  out = []
  for row in rows:
    if isinstance(row, AvaRow):
      out.append(row)
      continue
    parsed, reason = parse_row([str(v) for v in row], kind)
    if parsed is None:
      raise ValueError(f'bad {kind} row ({reason}): {row!r}')
    out.append(parsed)
  return out


def evaluate(groundtruth_rows: Iterable[object],
             detection_rows: Iterable[object],
             labelmap: Mapping[int, str],
             excluded: Optional[Iterable[Tuple[str, object]]] = None,
             iou_threshold: float = IOU_THRESHOLD,
             max_detections_per_frame: int = MAX_DETECTIONS_PER_FRAME
             ) -> Dict[str, object]:
  """Frame-level AVA mAP.

  Args:
    groundtruth_rows: `AvaRow`s (e.g. from `read_groundtruth_csv`) or tuples
      (video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]).
    detection_rows: `AvaRow`s with scores or tuples
      (video_id, timestamp, x1, y1, x2, y2, action_id, score).
    labelmap: {action_id: name}; only these classes are evaluated.
    excluded: (video_id, timestamp) pairs dropped from both sides.
    iou_threshold: IoU of a true positive.
    max_detections_per_frame: detections kept per frame (all label-map
      classes together; rows of other classes are dropped first).

  Returns:
    dict with
      `mAP`: mean AP over the classes with ground truth (NaN if none),
      `per_class`: {name: AP} for those classes,
      `per_class_id`: {action_id: AP} for those classes,
      `num_classes_evaluated`: how many classes enter the mean,
      `classes_without_groundtruth`: names left out of the mean,
      `num_groundtruth`: {name: number of ground-truth boxes},
      `num_frames`: ground-truth frames evaluated,
      `num_detections`: detections kept after exclusions and the cap,
      `dropped`: counts of rows dropped (excluded frames, classes not in
        the label map, then detections over the per-frame cap of the
        remaining ones; detections on frames without any ground truth are
        kept as false positives and counted under
        `detections_on_frames_without_groundtruth`).
  """
  labelmap = dict(labelmap)
  excluded_keys = {frame_key(v, t) for v, t in (excluded or ())}
  dropped: Counter[str] = collections.Counter()

  gt_by_class: Dict[int, Dict[FrameKey, List]] = collections.defaultdict(
      lambda: collections.defaultdict(list))
  gt_frames = set()
  for row in _as_rows(groundtruth_rows, 'groundtruth'):
    if row.key in excluded_keys:
      dropped['groundtruth_excluded'] += 1
      continue
    gt_frames.add(row.key)
    if row.action_id not in labelmap:
      dropped['groundtruth_class_not_in_labelmap'] += 1
      continue
    gt_by_class[row.action_id][row.key].append(row.box)

  # Classes outside the label map go before the per-frame cap, as the
  # official read_csv filters by its class whitelist while reading and caps
  # afterwards: otherwise rows of unevaluated classes could push evaluated
  # ones out of a frame's top max_detections_per_frame.
  dets_by_frame: Dict[FrameKey, List[AvaRow]] = collections.defaultdict(list)
  for row in _as_rows(detection_rows, 'detections'):
    if row.key in excluded_keys:
      dropped['detections_excluded'] += 1
      continue
    if row.action_id not in labelmap:
      dropped['detections_class_not_in_labelmap'] += 1
      continue
    dets_by_frame[row.key].append(row)

  # Per class: every kept detection's score and TP flag.
  dets_by_class: Dict[int, Dict[FrameKey, List[AvaRow]]] = (
      collections.defaultdict(lambda: collections.defaultdict(list)))
  num_detections = 0
  for key, rows in dets_by_frame.items():
    scores = np.array([r.score for r in rows])
    keep = np.argsort(-scores, kind='stable')[:max_detections_per_frame]
    dropped['detections_over_frame_cap'] += len(rows) - len(keep)
    if key not in gt_frames:
      dropped['detections_on_frames_without_groundtruth'] += len(keep)
    for i in keep:
      row = rows[i]
      dets_by_class[row.action_id][key].append(row)
      num_detections += 1

  per_class, per_class_id, num_gt, without_gt = {}, {}, {}, []
  for action_id, name in labelmap.items():
    frames_gt = gt_by_class.get(action_id, {})
    n_gt = sum(len(b) for b in frames_gt.values())
    num_gt[name] = n_gt
    if n_gt == 0:
      without_gt.append(name)
      continue
    all_scores, all_tp = [], []
    for key, rows in dets_by_class.get(action_id, {}).items():
      scores = np.array([r.score for r in rows])
      boxes = np.array([r.box for r in rows])
      gt = np.array(frames_gt.get(key, np.zeros((0, 4))))
      all_scores.append(scores)
      all_tp.append(match_detections(boxes, scores, gt, iou_threshold))
    if all_scores:
      precision, recall = compute_precision_recall(
          np.concatenate(all_scores), np.concatenate(all_tp), n_gt)
      ap = compute_average_precision(precision, recall)
    else:
      ap = 0.0
    per_class[name] = ap
    per_class_id[action_id] = ap
  mean_ap = (float(np.mean(list(per_class.values()))) if per_class
             else float('nan'))
  if without_gt:
    logging.info('%d class(es) without ground truth left out of the mean: %s',
                 len(without_gt), ', '.join(without_gt))
  return {
      'mAP': mean_ap,
      'per_class': per_class,
      'per_class_id': per_class_id,
      'num_classes_evaluated': len(per_class),
      'classes_without_groundtruth': without_gt,
      'num_groundtruth': num_gt,
      'num_frames': len(gt_frames),
      'num_detections': num_detections,
      'dropped': dict(dropped),
  }


def evaluate_files(labelmap_path: str, groundtruth_path: str,
                   detections_path: str,
                   exclusions_path: Optional[str] = None
                   ) -> Dict[str, object]:
  """Reads the official files and runs `evaluate`; adds `bad_rows`.

  `bad_rows` maps 'groundtruth' / 'detections' / 'exclusions' to
  {reason: count} of the rows skipped while reading.

  Raises:
    ValueError naming the ground-truth file when none of its rows is usable
      (the mAP would be NaN over 0 classes), with the skip reasons.
  """
  labelmap = read_labelmap(labelmap_path)
  bad = {k: collections.Counter()
         for k in ('groundtruth', 'detections', 'exclusions')}
  class_ids = set(labelmap)
  gt = read_groundtruth_csv(groundtruth_path, class_ids, bad['groundtruth'])
  if not gt:
    reasons = ', '.join(f'{n} {why}' for why, n in
                        sorted(bad['groundtruth'].items())) or 'empty file'
    raise ValueError(f'{groundtruth_path}: no usable ground-truth row '
                     f'(skipped: {reasons}); nothing to evaluate')
  dets = read_detections_csv(detections_path, class_ids, bad['detections'])
  excluded = (read_exclusions_csv(exclusions_path, bad['exclusions'])
              if exclusions_path else set())
  result = evaluate(gt, dets, labelmap, excluded)
  result['bad_rows'] = {k: dict(v) for k, v in bad.items()}
  return result
