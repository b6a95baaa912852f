"""Converts folders of video files (or Kinetics-style CSV lists) to TFRecords.

Users arrive with video files, not TFRecords. This module turns them into the
Model Garden video TFRecords of `dataloaders/video_records.py` (one
`tf.train.SequenceExample` per video, one JPEG per frame).

Inputs
  * Folder mode: `input_dir/<class name>/<video>.<ext>`; the sorted class
    names give the label indices. The video id (`clip/id`) is
    `<class name>/<file stem>`.
  * CSV mode (Kinetics): a CSV with the header
    `label,youtube_id,time_start,time_end,split` (`label` and `split` may be
    missing: unlabelled videos / no split filtering; extra columns such as
    `is_cc` are ignored). The file of a row is looked up in `input_dir` as
    `<youtube_id>_<start:06d>_<end:06d>.<ext>` (the Kinetics download naming,
    already trimmed, used whole) or `<youtube_id>.<ext>` (the full video,
    trimmed here to `time_start..time_end`). The video id is
    `<youtube_id>_<start:06d>_<end:06d>`. The label indices come from the
    sorted labels of every row of the CSV (all splits, so train and val
    conversions agree), or from `label_map` when given.
  Extensions: mp4, mkv, webm, avi, mov.

Frame sampling
  Output frame k is taken at time t_k = t_start + k / fps (seconds in the
  video file) for every k with t_k < t_end and whose nearest source frame
  n_k = floor(t_k * source_fps + 0.5) exists (n_k < number of source frames).
  The frame shown is the last decoded frame whose own source index is <= n_k,
  so drop-frame AVI files (empty chunks meaning "repeat the previous
  picture", e.g. OpenCV's `tree.avi`) keep their real timing. The short side
  is resized to `short_side` (aspect kept, INTER_AREA when shrinking).

Detections CSV (optional, `detections_csv`)
  One box per line: `video_id,frame_or_time,ymin,xmin,ymax,xmax[,score]`,
  coordinates normalized to [0, 1] of the frame. `video_id` is the `clip/id`
  of the video or its short id (folder mode: the file stem; CSV mode: the
  `youtube_id`). An optional header line names the second column: `frame`
  (default; a 0-based source frame index, i.e. round(time * source fps)) or
  `timestamp` (seconds). Both refer to the time axis of the video file as
  stored. Each output frame gets the boxes of the detection time nearest to
  it when that time is within half an output frame period (1 / (2 * fps));
  other frames get an empty box list. Scores below `min_score` are dropped;
  the score itself is not stored (the record format has no field for it).

Robustness
  A video that cannot be opened or decoded is reported in the summary with
  its reason and the others are still converted. A video whose decoding stops
  early is a failure ("partial decode: N of M frames") unless
  `allow_partial`, which keeps the decoded frames. Videos are assigned to
  shards deterministically (sorted by id, round-robin); a finished shard
  leaves a marker `.progress/<shard>.done` holding a fingerprint of its videos
  and options, and a re-run skips the shards whose marker matches. A shard
  whose videos all fail is not written and gets no marker (an older file at
  its path is removed), so training never reads an empty shard made of
  failures and a re-run tries those videos again. When no video converts at
  all, no shard and no marker is left (a re-run tries them all again).

Outputs in `output_dir`: `<prefix>-SSSSS-of-NNNNN.tfrecord` shards,
`label_map.txt` (one class name per line, index = line number, 0-based),
`label_map.json` ({name: index}) and `summary.json`.

TensorFlow is imported lazily so that the worker processes (which only decode
and JPEG-encode with OpenCV) start fast.
"""
import csv
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov')
LABEL_MAP_TXT = 'label_map.txt'
LABEL_MAP_JSON = 'label_map.json'
SUMMARY_JSON = 'summary.json'
DONE_SUFFIX = '.done'
# Markers and partly written shards live in this sub-folder so that globs
# like `train*` (what training configs use) never match them.
PROGRESS_DIR = '.progress'
# Containers estimate their frame count (mp4/mkv from the duration), so a
# decode that ends this many frames short still counts as complete.
_FRAME_COUNT_SLACK = 2


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  """Options of one conversion (also part of each shard's fingerprint)."""
  fps: float = 10.0
  short_side: int = 256  # 0 keeps the original size.
  jpeg_quality: int = 90
  allow_partial: bool = False
  min_score: float = 0.0


@dataclasses.dataclass(frozen=True)
class VideoJob:
  """One video to convert.

  Attributes:
    video_id: the `clip/id` written to the record (unique).
    path: video file.
    label: class indices ([] for unlabelled videos).
    label_text: class name or None.
    time_start: start of the clip in the file, seconds.
    time_end: end of the clip in the file, seconds (inf = to the end).
    aliases: other ids the detections CSV may use for this video.
  """
  video_id: str
  path: str
  label: Tuple[int, ...] = ()
  label_text: Optional[str] = None
  time_start: float = 0.0
  time_end: float = math.inf
  aliases: Tuple[str, ...] = ()


class VideoDecodeError(Exception):
  """A video could not be (fully) decoded; the message is the reason."""


# ---------------------------------------------------------------------------
# Building the job list.


def _is_video(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def scan_folder(input_dir: str) -> Tuple[List[VideoJob], List[str], List[str]]:
  """Lists the videos of `input_dir/<class>/<video>`.

  Args:
    input_dir: folder with one sub-folder per class.

  Returns:
    (jobs, class_names, ignored): the jobs sorted by id, the sorted class
    names (index = label), and the files ignored for not having a video
    extension.

  Raises:
    ValueError: when `input_dir` has no class sub-folders or no videos.
  """
  if not os.path.isdir(input_dir):
    raise ValueError(f'input_dir {input_dir} is not a folder')
  class_names = sorted(
      d for d in os.listdir(input_dir)
      if os.path.isdir(os.path.join(input_dir, d)) and not d.startswith('.'))
  if not class_names:
    raise ValueError(
        f'input_dir {input_dir} has no sub-folders; folder mode expects '
        f'{input_dir}/<class name>/<video file> (or give --csv)')
  jobs, ignored = [], []
  for index, name in enumerate(class_names):
    class_dir = os.path.join(input_dir, name)
    for fname in sorted(os.listdir(class_dir)):
      path = os.path.join(class_dir, fname)
      if not os.path.isfile(path) or fname.startswith('.'):
        continue
      if not _is_video(fname):
        ignored.append(path)
        continue
      stem = os.path.splitext(fname)[0]
      jobs.append(VideoJob(video_id=f'{name}/{stem}', path=path,
                           label=(index,), label_text=name, aliases=(stem,)))
  if not jobs:
    raise ValueError(f'no video files ({", ".join(VIDEO_EXTENSIONS)}) in the '
                     f'class sub-folders of {input_dir}')
  ids = [j.video_id for j in jobs]
  if len(set(ids)) != len(ids):
    dup = sorted({i for i in ids if ids.count(i) > 1})
    raise ValueError(f'{input_dir}: several files share the video ids {dup} '
                     '(same name with different extensions)')
  return jobs, class_names, ignored


@dataclasses.dataclass(frozen=True)
class CsvRow:
  line: int
  label: Optional[str]
  youtube_id: str
  time_start: float
  time_end: float
  split: Optional[str]


def read_kinetics_csv(csv_path: str) -> List[CsvRow]:
  """Parses a Kinetics-style CSV, naming the line of any malformed row.

  Args:
    csv_path: CSV with a header containing `youtube_id`, `time_start`,
      `time_end` and optionally `label` and `split`.

  Returns:
    The rows in file order.

  Raises:
    ValueError: on a missing column or a malformed row (message names
      `csv_path:line`).
  """
  with open(csv_path, newline='', encoding='utf-8') as f:
    reader = csv.reader(f)
    try:
      header = [h.strip() for h in next(reader)]
    except StopIteration:
      raise ValueError(f'{csv_path}: empty CSV file') from None
    missing = [c for c in ('youtube_id', 'time_start', 'time_end')
               if c not in header]
    if missing:
      raise ValueError(
          f'{csv_path}:1: header {header} lacks the columns {missing} '
          '(expected label,youtube_id,time_start,time_end,split)')
    col = {name: i for i, name in enumerate(header)}
    rows = []
    for values in reader:
      line = reader.line_num
      if not values or all(not v.strip() for v in values):
        continue
      if len(values) != len(header):
        raise ValueError(
            f'{csv_path}:{line}: expected {len(header)} fields '
            f'({",".join(header)}), got {len(values)}: {values}')
      fields = {name: values[i].strip() for name, i in col.items()}
      get = fields.get
      youtube_id = get('youtube_id')
      if not youtube_id:
        raise ValueError(f'{csv_path}:{line}: empty youtube_id')
      try:
        start, end = float(get('time_start')), float(get('time_end'))
      except ValueError:
        raise ValueError(
            f'{csv_path}:{line}: time_start/time_end must be numbers, got '
            f'{get("time_start")!r}, {get("time_end")!r}') from None
      if not (0 <= start < end) or not math.isfinite(end):
        raise ValueError(f'{csv_path}:{line}: need 0 <= time_start < '
                         f'time_end, got {start}, {end}')
      label = get('label')
      if label is not None and not label:
        raise ValueError(f'{csv_path}:{line}: empty label')
      rows.append(CsvRow(line, label, youtube_id, start, end, get('split')))
  return rows


def kinetics_clip_id(youtube_id: str, time_start: float,
                     time_end: float) -> str:
  """`<youtube_id>_<start:06d>_<end:06d>`, the Kinetics download naming."""
  return f'{youtube_id}_{int(time_start):06d}_{int(time_end):06d}'


def _find_video(row: CsvRow, index: Dict[str, str]
                ) -> Tuple[Optional[str], bool]:
  """Finds the file of a CSV row; returns (path or None, is_pretrimmed)."""
  trimmed = kinetics_clip_id(row.youtube_id, row.time_start, row.time_end)
  if trimmed in index:
    return index[trimmed], True
  if row.youtube_id in index:
    return index[row.youtube_id], False
  return None, False


def csv_jobs(csv_path: str, input_dir: str, split: Optional[str] = None,
             label_names: Optional[Sequence[str]] = None
             ) -> Tuple[List[VideoJob], List[str], List[Dict[str, str]]]:
  """Builds the jobs of a Kinetics-style CSV.

  Args:
    csv_path: the CSV (see `read_kinetics_csv`).
    input_dir: folder holding the video files (searched recursively).
    split: keep only the rows of this split (None keeps all rows).
    label_names: class names (index = label); None derives them from the
      sorted labels of all rows of the CSV.

  Returns:
    (jobs sorted by id, class names, skipped rows [{video_id, reason}] whose
    video file is missing).

  Raises:
    ValueError: malformed CSV, unknown label, or no selected row has a file.
  """
  rows = read_kinetics_csv(csv_path)
  if label_names is None:
    label_names = sorted({r.label for r in rows if r.label is not None})
  label_index = {name: i for i, name in enumerate(label_names)}
  if split is not None:
    if any(r.split is None for r in rows):
      raise ValueError(f'{csv_path}: --split {split!r} given but the CSV has '
                       'no split column')
    rows = [r for r in rows if r.split == split]
    if not rows:
      raise ValueError(f'{csv_path}: no rows with split {split!r}')
  index = {}
  for root, _, files in os.walk(input_dir):
    for fname in sorted(files):
      if _is_video(fname):
        index.setdefault(os.path.splitext(fname)[0], os.path.join(root, fname))
  jobs, skipped, seen = [], [], {}
  for r in rows:
    video_id = kinetics_clip_id(r.youtube_id, r.time_start, r.time_end)
    if video_id in seen:
      raise ValueError(f'{csv_path}:{r.line}: clip {video_id} repeats line '
                       f'{seen[video_id]}')
    seen[video_id] = r.line
    label = ()
    if r.label is not None:
      if r.label not in label_index:
        raise ValueError(f'{csv_path}:{r.line}: label {r.label!r} is not in '
                         f'the label map ({len(label_names)} classes)')
      label = (label_index[r.label],)
    path, pretrimmed = _find_video(r, index)
    if path is None:
      skipped.append({'video_id': video_id, 'reason': (
          f'no video file {video_id}.<ext> or {r.youtube_id}.<ext> in '
          f'{input_dir} (csv line {r.line})')})
      continue
    start, end = (0.0, math.inf) if pretrimmed else (r.time_start, r.time_end)
    jobs.append(VideoJob(video_id=video_id, path=path, label=label,
                         label_text=r.label, time_start=start, time_end=end,
                         aliases=(r.youtube_id,)))
  if not jobs:
    raise ValueError(f'none of the {len(rows)} selected rows of {csv_path} '
                     f'has a video file in {input_dir}')
  jobs.sort(key=lambda j: j.video_id)
  return jobs, list(label_names), skipped


def read_label_map(path: str) -> List[str]:
  """Reads `label_map.txt` (one class name per line, index = line number)."""
  with open(path, encoding='utf-8') as f:
    names = [line.rstrip('\n') for line in f]
  while names and not names[-1]:
    names.pop()
  if any(not n for n in names):
    raise ValueError(f'{path}: empty class name on line '
                     f'{names.index("") + 1}')
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: repeated class names')
  return names


# ---------------------------------------------------------------------------
# Detections.


def read_detections(path: str, min_score: float = 0.0
                    ) -> Dict[str, Dict[Tuple[str, float], List[List[float]]]]:
  """Reads a detections CSV (format in the module docstring).

  Args:
    path: the CSV.
    min_score: boxes with a score below this are dropped.

  Returns:
    {video_id: {(unit, value): [[ymin, xmin, ymax, xmax], ...]}} where unit is
    'frame' or 'timestamp'.

  Raises:
    ValueError: on a malformed line (message names `path:line`).
  """
  out = {}
  unit = 'frame'
  with open(path, newline='', encoding='utf-8') as f:
    for line_no, values in enumerate(csv.reader(f), start=1):
      values = [v.strip() for v in values]
      if not values or not any(values):
        continue
      if line_no == 1 and values[1:2] and not _is_number(values[1]):
        unit = values[1].lower()
        if unit in ('frame', 'frame_index'):
          unit = 'frame'
        elif unit in ('timestamp', 'time', 'seconds'):
          unit = 'timestamp'
        else:
          raise ValueError(
              f'{path}:1: second header column must be `frame` or '
              f'`timestamp`, got {values[1]!r}')
        continue
      if len(values) not in (6, 7):
        raise ValueError(f'{path}:{line_no}: expected 6 or 7 fields '
                         '(video_id,frame_or_time,ymin,xmin,ymax,xmax'
                         f'[,score]), got {len(values)}: {values}')
      try:
        nums = [float(v) for v in values[1:]]
      except ValueError:
        raise ValueError(f'{path}:{line_no}: non-numeric field in '
                         f'{values}') from None
      t, box = nums[0], nums[1:5]
      score = nums[5] if len(nums) == 6 else 1.0
      ymin, xmin, ymax, xmax = box
      if not (0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1):
        raise ValueError(f'{path}:{line_no}: box {box} is not normalized '
                         '[ymin, xmin, ymax, xmax] with min <= max in [0, 1]')
      if unit == 'frame' and t != int(t):
        raise ValueError(f'{path}:{line_no}: frame index {values[1]} is not '
                         'an integer (use a `timestamp` header for seconds)')
      if score < min_score:
        continue
      out.setdefault(values[0], {}).setdefault((unit, t), []).append(box)
  return out


def _is_number(s: str) -> bool:
  try:
    float(s)
    return True
  except ValueError:
    return False


def _boxes_for_frames(dets: Dict[Tuple[str, float], List[List[float]]],
                      times: Sequence[float], source_fps: float,
                      fps: float) -> List[np.ndarray]:
  """Assigns each output frame the boxes of the nearest detection time."""
  det_times = sorted(
      ((v / source_fps if unit == 'frame' else v), key)
      for key in dets for unit, v in [key])
  out = []
  keys_t = np.array([t for t, _ in det_times])
  for t in times:
    boxes = np.zeros((0, 4), np.float32)
    if len(keys_t):
      i = int(np.argmin(np.abs(keys_t - t)))  # First of ties: the earlier.
      if abs(keys_t[i] - t) <= 0.5 / fps + 1e-9:
        boxes = np.asarray(dets[det_times[i][1]], np.float32).reshape(-1, 4)
    out.append(boxes)
  return out


# ---------------------------------------------------------------------------
# Decoding one video (runs in the worker processes).


def _resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
  h, w = frame.shape[:2]
  if short_side <= 0 or min(h, w) == short_side:
    return frame
  scale = short_side / min(h, w)
  new_w = max(1, int(round(w * scale)))
  new_h = max(1, int(round(h * scale)))
  if h <= w:
    new_h = short_side
  else:
    new_w = short_side
  interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
  return cv2.resize(frame, (new_w, new_h), interpolation=interp)


def iter_output_times(time_start: float, time_end: float, source_fps: float,
                      fps: float, num_source_frames: Optional[int] = None
                      ) -> Iterable[Tuple[float, int]]:
  """Yields (time, nearest source frame index) of each output frame.

  Args:
    time_start, time_end: clip window in the file, seconds (time_end may be
      inf).
    source_fps: frame rate of the file.
    fps: output frame rate.
    num_source_frames: source indices must be below this (None: no bound).

  Yields:
    (t_k, n_k) as in "Frame sampling" of the module docstring.
  """
  k = 0
  while True:
    t = time_start + k / fps
    if t >= time_end - 1e-9:
      return
    n = int(math.floor(t * source_fps + 0.5))
    if num_source_frames is not None and n >= num_source_frames:
      return
    yield t, n
    k += 1


class _Frame:
  """A decoded source frame, resized and JPEG-encoded only when used."""

  def __init__(self, index, frame):
    self.index = index
    self.frame = frame
    self.encoded = None

  def encode(self, options: ConvertOptions) -> bytes:
    if self.encoded is None:
      image = _resize_short_side(self.frame, options.short_side)
      # OpenCV frames are BGR and cv2.imencode expects BGR: the JPEG is RGB.
      ok, buf = cv2.imencode(
          '.jpg', image,
          [int(cv2.IMWRITE_JPEG_QUALITY), int(options.jpeg_quality)])
      if not ok:
        raise VideoDecodeError(f'JPEG encoding failed for frame {self.index}')
      self.encoded = buf.tobytes()
      self.frame = None
    return self.encoded


def decode_video(job: VideoJob, options: ConvertOptions,
                 detections=None) -> Dict[str, object]:
  """Decodes, trims, resamples, resizes and JPEG-encodes one video.

  Frames are handled as they are decoded, so memory holds the output JPEGs
  and one or two source frames, whatever the length of the video.

  Args:
    job: the video.
    options: conversion options.
    detections: this video's entry of `read_detections`, or None.

  Returns:
    dict with `encoded_frames` (list of JPEG bytes), `boxes` (list of [n, 4]
    arrays or None), `num_frames`, `source_fps`, `source_frames` (frame count
    in the header, or None) and `partial` (None, or the "partial decode: N of
    M frames" text when `allow_partial` kept a truncated video).

  Raises:
    VideoDecodeError: with the reason when the video cannot be converted.
  """
  if not os.path.isfile(job.path):
    raise VideoDecodeError(f'file not found: {job.path}')
  if os.path.getsize(job.path) == 0:
    raise VideoDecodeError('empty file (0 bytes)')
  cap = cv2.VideoCapture(job.path, cv2.CAP_FFMPEG)
  try:
    if not cap.isOpened():
      raise VideoDecodeError(
          'cannot open as a video (not a video file, or unsupported '
          'container/codec)')
    source_fps = cap.get(cv2.CAP_PROP_FPS)
    if not source_fps or not math.isfinite(source_fps) or source_fps <= 0:
      raise VideoDecodeError(f'unknown frame rate ({source_fps})')
    header_frames = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    header_frames = header_frames if header_frames > 0 else None
    targets = iter_output_times(job.time_start, job.time_end, source_fps,
                                options.fps, header_frames)
    pending = next(targets, None)
    if pending is None:
      raise VideoDecodeError(
          f'no frame in the window {job.time_start:g}..{job.time_end:g} s; '
          f'the video has {header_frames} frames at {source_fps:g} fps')
    times, frames = [], []  # Output times and their JPEG bytes.
    prev = None
    last_index = -1
    num_decoded = 0
    while pending is not None:
      ok, image = cap.read()
      if not ok or image is None:
        break
      num_decoded += 1
      pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
      index = (int(math.floor(pos_ms / 1000.0 * source_fps + 0.5))
               if math.isfinite(pos_ms) else -1)
      # Timestamps can be missing or go backwards in broken files; fall back
      # to the decode order then.
      if index <= last_index:
        index = last_index + 1
      last_index = index
      current = _Frame(index, image)
      # Every output frame whose source index precedes this frame shows the
      # previous frame (or this one, when nothing was decoded before).
      while pending is not None and pending[1] < index:
        times.append(pending[0])
        frames.append((current if prev is None else prev).encode(options))
        pending = next(targets, None)
      prev = current
  finally:
    cap.release()
  if num_decoded == 0:
    raise VideoDecodeError('no frame could be decoded (damaged file or '
                           'unsupported codec)')
  partial = None
  if pending is not None:
    # The stream ended before the window did.
    covered = last_index + 1
    expected = header_frames
    if expected is not None and math.isfinite(job.time_end):
      expected = min(expected,
                     int(math.ceil(job.time_end * source_fps - 1e-9)))
    limit = covered if expected is None else max(covered, expected)
    if expected is not None and covered + _FRAME_COUNT_SLACK < expected:
      first = int(math.floor(job.time_start * source_fps + 0.5))
      partial = (f'partial decode: {max(0, covered - first)} of '
                 f'{expected - first} frames')
      if not options.allow_partial:
        raise VideoDecodeError(partial)
      limit = covered
    while pending is not None and pending[1] < limit:
      times.append(pending[0])
      frames.append(prev.encode(options))
      pending = next(targets, None)
  if not frames:
    raise VideoDecodeError(
        f'no frame decoded in the window {job.time_start:g}..'
        f'{job.time_end:g} s ({last_index + 1} source frames reached)'
        + (f'; {partial}' if partial else ''))
  encoded_frames = frames
  boxes = None
  if detections is not None:
    boxes = _boxes_for_frames(detections, times, source_fps, options.fps)
  return {'encoded_frames': encoded_frames, 'boxes': boxes,
          'num_frames': len(encoded_frames), 'source_fps': source_fps,
          'source_frames': header_frames, 'partial': partial}


def _worker_init():
  # Two cores are shared by the pool; OpenCV's own threads would oversubscribe.
  cv2.setNumThreads(1)


def _convert_task(args) -> Tuple[str, Optional[Dict[str, object]], str]:
  """Pool task: returns (video_id, result or None, failure reason)."""
  job, options, detections = args
  try:
    return job.video_id, decode_video(job, options, detections), ''
  except VideoDecodeError as e:
    return job.video_id, None, str(e)
  except Exception as e:  # pylint: disable=broad-except
    # One bad file must not stop the conversion of the others.
    return job.video_id, None, f'{type(e).__name__}: {e}'


# ---------------------------------------------------------------------------
# Sharding and the whole conversion.


def shard_name(prefix: str, shard: int, num_shards: int) -> str:
  return f'{prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord'


def assign_shards(jobs: Sequence[VideoJob], num_shards: int
                  ) -> List[List[VideoJob]]:
  """Round-robin over the jobs sorted by id: deterministic and class-mixed."""
  ordered = sorted(jobs, key=lambda j: j.video_id)
  return [ordered[s::num_shards] for s in range(num_shards)]


def _fingerprint(jobs: Sequence[VideoJob], options: ConvertOptions,
                 detections) -> str:
  blob = json.dumps({
      'jobs': [dataclasses.astuple(j) for j in jobs],
      'options': dataclasses.asdict(options),
      'detections': [repr(sorted((_detections_for(j, detections) or {})
                                 .items())) for j in jobs],
  }, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode('utf-8')).hexdigest()


def check_output_dir(output_dir: str) -> None:
  """Creates `output_dir` and checks it is writable, before any work."""
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix='.write_test'):
      pass
  except OSError as e:
    raise ValueError(f'output_dir {output_dir} is not a writable folder: '
                     f'{e}') from e


def _marker_path(shard_path: str) -> str:
  return os.path.join(os.path.dirname(shard_path), PROGRESS_DIR,
                      os.path.basename(shard_path) + DONE_SUFFIX)


def write_label_map(output_dir: str, class_names: Sequence[str]) -> None:
  with open(os.path.join(output_dir, LABEL_MAP_TXT), 'w',
            encoding='utf-8') as f:
    f.writelines(f'{n}\n' for n in class_names)
  with open(os.path.join(output_dir, LABEL_MAP_JSON), 'w',
            encoding='utf-8') as f:
    json.dump({n: i for i, n in enumerate(class_names)}, f, indent=1)


def _detections_for(job: VideoJob, detections):
  if detections is None:
    return None
  for key in (job.video_id,) + job.aliases:
    if key in detections:
      return detections[key]
  return {}


def convert_videos(input_dir: str,
                   output_dir: str,
                   csv_path: Optional[str] = None,
                   split: Optional[str] = None,
                   options: ConvertOptions = ConvertOptions(),
                   num_shards: int = 8,
                   num_workers: int = 2,
                   output_prefix: Optional[str] = None,
                   detections_csv: Optional[str] = None,
                   label_map: Optional[str] = None,
                   progress: bool = True) -> Dict[str, object]:
  """Converts a folder of videos or a Kinetics CSV to sharded TFRecords.

  Args:
    input_dir: folder of videos (see the module docstring).
    output_dir: where shards, label map and summary go (created).
    csv_path: Kinetics-style CSV; None for folder mode.
    split: CSV mode: keep only this split.
    options: frame rate, size, JPEG quality, partial decode policy.
    num_shards: number of output shards.
    num_workers: decoding processes (<= 1 decodes in this process).
    output_prefix: shard file prefix (default: `split`, else 'train').
    detections_csv: optional per-frame boxes (format in module docstring).
    label_map: optional `label_map.txt` fixing the class indices.
    progress: show a tqdm progress bar.

  Returns:
    The summary dict (also written to `summary.json`): counts, `failed`
    [{video_id, path, reason}], `partial`, `skipped` (CSV rows without a
    file), `ignored_files`, `shards_written`, `shards_skipped`,
    `shards_empty` (shards not written because all their videos failed).

  Raises:
    ValueError: bad arguments, an unwritable `output_dir`, a malformed CSV;
      all raised before any video is decoded.
  """
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  if options.fps <= 0:
    raise ValueError(f'fps must be > 0, got {options.fps}')
  if not 1 <= options.jpeg_quality <= 100:
    raise ValueError(f'jpeg_quality must be in 1..100, got '
                     f'{options.jpeg_quality}')
  if options.short_side < 0:
    raise ValueError(f'short_side must be >= 0, got {options.short_side}')
  check_output_dir(output_dir)
  names = read_label_map(label_map) if label_map else None
  skipped, ignored = [], []
  if csv_path:
    jobs, class_names, skipped = csv_jobs(csv_path, input_dir, split, names)
  else:
    jobs, class_names, ignored = scan_folder(input_dir)
    if names is not None:
      unknown = sorted(set(class_names) - set(names))
      if unknown:
        raise ValueError(f'class folders {unknown} of {input_dir} are not '
                         f'in the label map {label_map}')
      jobs = [dataclasses.replace(j, label=(names.index(j.label_text),))
              for j in jobs]
      class_names = names
  detections = (read_detections(detections_csv, options.min_score)
                if detections_csv else None)
  prefix = output_prefix or split or 'train'
  write_label_map(output_dir, class_names)
  os.makedirs(os.path.join(output_dir, PROGRESS_DIR), exist_ok=True)

  shards = assign_shards(jobs, num_shards)
  todo, done_results, shards_skipped = [], {}, []
  for s, shard_jobs in enumerate(shards):
    path = os.path.join(output_dir, shard_name(prefix, s, num_shards))
    fp = _fingerprint(shard_jobs, options, detections)
    marker = _marker_path(path)
    if os.path.exists(marker) and os.path.exists(path):
      try:
        with open(marker, encoding='utf-8') as f:
          info = json.load(f)
      except (OSError, ValueError):
        info = {}
      if info.get('fingerprint') == fp:
        shards_skipped.append(os.path.basename(path))
        done_results.update(info.get('results', {}))
        continue
    todo.append((s, path, fp, shard_jobs))
  logging.info('%d videos in %d shards; %d shards already done', len(jobs),
               num_shards, len(shards_skipped))

  results = dict(done_results)
  shards_empty = []  # Shards not written because all their videos failed.
  tasks = [(j, options, _detections_for(j, detections))
           for _, _, _, shard_jobs in todo for j in shard_jobs]
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=len(tasks), unit='video', desc='videos')
  pool = None
  if num_workers > 1 and len(tasks) > 1:
    # spawn: the parent has TensorFlow's threads running, and fork would
    # copy their locks.
    ctx = multiprocessing.get_context('spawn')
    pool = ctx.Pool(min(num_workers, len(tasks)), initializer=_worker_init)
    outputs = pool.imap(_convert_task, tasks)
  else:
    outputs = map(_convert_task, tasks)
  try:
    # Imported after the workers started: the import takes seconds and they
    # decode meanwhile.
    from dataloaders import video_records  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for s, path, fp, shard_jobs in todo:
      shard_results = {}
      tmp_path = os.path.join(os.path.dirname(path), PROGRESS_DIR,
                              os.path.basename(path) + '.tmp')
      with tf.io.TFRecordWriter(tmp_path) as writer:
        for job in shard_jobs:
          video_id, res, reason = next(outputs)
          assert video_id == job.video_id, (video_id, job.video_id)
          if res is None:
            entry = {'status': 'failed', 'path': job.path, 'reason': reason}
            logging.warning('failed %s (%s): %s', video_id, job.path, reason)
          else:
            seq = video_records.make_sequence_example(
                encoded_frames=res['encoded_frames'],
                label=list(job.label) if job.label else None,
                label_text=job.label_text, video_id=job.video_id,
                boxes=res['boxes'])
            writer.write(seq.SerializeToString())
            entry = {'status': 'partial' if res['partial'] else 'ok',
                     'path': job.path, 'num_frames': res['num_frames'],
                     'shard': os.path.basename(path)}
            if res['partial']:
              entry['reason'] = res['partial']
          shard_results[video_id] = entry
          if bar is not None:
            bar.update(1)
      results.update(shard_results)
      if shard_jobs and all(v['status'] == 'failed'
                            for v in shard_results.values()):
        # Every video of the shard failed: no empty shard that training
        # would read and no marker, so that a rerun (e.g. with fixed files)
        # redoes it; an older shard at this path is not from these inputs.
        for p in (tmp_path, path, _marker_path(path)):
          if os.path.exists(p):
            os.remove(p)
        shards_empty.append(os.path.basename(path))
        logging.warning('%s not written: all %d of its videos failed',
                        path, len(shard_jobs))
        continue
      os.replace(tmp_path, path)
      # The marker comes last: a crash before it leaves the shard to redo.
      with open(_marker_path(path), 'w', encoding='utf-8') as f:
        json.dump({'fingerprint': fp, 'results': shard_results}, f)
    written = [os.path.basename(p) for _, p, _, _ in todo
               if os.path.basename(p) not in shards_empty]
    if not any(v['status'] != 'failed' for v in results.values()):
      # Nothing converted at all: no empty shards that look like output and
      # no markers, so that a rerun (e.g. with fixed files) does the work.
      for _, path, _, _ in todo:
        for p in (path, _marker_path(path)):
          if os.path.exists(p):
            os.remove(p)
      written = []
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
    if bar is not None:
      bar.close()

  failed = [{'video_id': k, 'path': v['path'], 'reason': v['reason']}
            for k, v in sorted(results.items()) if v['status'] == 'failed']
  partial = [{'video_id': k, 'path': v['path'], 'reason': v['reason']}
             for k, v in sorted(results.items()) if v['status'] == 'partial']
  summary = {
      'num_videos': len(jobs),
      'num_converted': sum(v['status'] != 'failed' for v in results.values()),
      'num_failed': len(failed),
      'num_frames': sum(v.get('num_frames', 0) for v in results.values()),
      'num_classes': len(class_names),
      'failed': failed,
      'partial': partial,
      'skipped': skipped,
      'ignored_files': ignored,
      'shards_written': written,
      'shards_skipped': shards_skipped,
      'shards_empty': shards_empty,
      'output_pattern': os.path.join(
          output_dir, f'{prefix}-*-of-{num_shards:05d}.tfrecord'),
  }
  with open(os.path.join(output_dir, SUMMARY_JSON), 'w',
            encoding='utf-8') as f:
    json.dump(summary, f, indent=1)
  return summary


def format_summary(summary: Dict[str, object]) -> str:
  """A human-readable closing summary."""
  lines = [
      f'converted {summary["num_converted"]} of {summary["num_videos"]} '
      f'videos ({summary["num_frames"]} frames, {summary["num_classes"]} '
      f'classes) -> {summary["output_pattern"]}',
      f'shards written: {len(summary["shards_written"])}, skipped (already '
      f'done): {len(summary["shards_skipped"])}',
  ]
  empty = summary['shards_empty']
  if empty:
    lines.append(f'shards not written (all their videos failed; no marker, '
                 f'a rerun retries them): {len(empty)}')
    lines.extend(f'  {name}' for name in empty)
  for key, title in (('failed', 'FAILED'), ('partial', 'partial (kept)'),
                     ('skipped', 'skipped (no file)')):
    items = summary[key]
    if items:
      lines.append(f'{title}: {len(items)}')
      lines.extend(f'  {d["video_id"]}: {d["reason"]}' for d in items)
  if summary['ignored_files']:
    lines.append(f'ignored {len(summary["ignored_files"])} non-video files')
  return '\n'.join(lines)
