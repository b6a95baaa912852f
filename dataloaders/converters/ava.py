"""Converts the official AVA / AVA-Kinetics files to key-frame TFRecords.

One `tf.train.SequenceExample` per annotated key frame (video_id, timestamp):
`num_frames` frames at temporal stride `stride` (in frames of the target
`fps`) centred on the key frame, decoded with OpenCV and resized to
`short_side`, in the shared record format of `dataloaders.video_records`
(`image/encoded`, `clip/id`) plus these context fields:

  clip/key_frame/timestamp                 float  key-frame time (seconds)
  clip/key_frame/index                     int64  key frame's position in clip
  clip/key_frame/bbox/{ymin,xmin,ymax,xmax} float one per person box
  clip/key_frame/bbox/label/index          int64  flat 1-based action ids
  clip/key_frame/bbox/label/count          int64  labels per box
  clip/key_frame/bbox/person_id            int64  (-1 when the CSV has none)
  clip/key_frame/detection/bbox/{...}      float  detector boxes (optional)
  clip/key_frame/detection/score           float

Videos are `<video_dir>/<video_id>.<ext>` (mp4, mkv, webm, avi).
Timestamps are seconds in the video's own time line, minus `timestamp_offset`
(use 900 for AVA movies trimmed to the 15-minute annotated segment, which
start at second 900 of the movie).

AVA-Kinetics: the Kinetics rows use the YouTube id as video id and the time
in the full YouTube video as timestamp, while Kinetics clips are usually
stored as 10 s cuts named `<youtube_id>_<start:06d>_<end:06d>.<ext>`. With
`timestamp_offset_from_filename=True` such files are found too and the
timestamp is taken relative to the clip start (the clip whose [start, end]
holds the key frame is used). A plain `<youtube_id>.<ext>` file is read with
the timestamp as is.

Output: `<prefix>-00000-of-000NN.tfrecord` shards, each with a
`<shard>.done` JSON marker written after the shard is complete; a rerun skips
shards whose marker matches the current inputs and options (resume). A shard
whose key frames were all skipped is not written and gets no marker; a shard
with missing or unreadable videos is written but gets no marker either, so
that a rerun with the videos in place converts them (the marker does not
hash the video files). The summary (`<prefix>-summary.json`) lists missing
and unreadable videos, shards not marked done, key frames skipped and bad
CSV rows by reason.

With a detections CSV, key frames that only have detections (no annotation,
not excluded) are written too, with no ground-truth box: mAP(Det) counts
their detections as false positives, as the official evaluator does
(`detection_only_key_frames=False` drops them, e.g. for training data).
"""
import collections
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from tasks.evaluation import ava as ava_io

VIDEO_EXTENSIONS = ('mp4', 'mkv', 'webm', 'avi')

KEY_FRAME_TIMESTAMP_KEY = 'clip/key_frame/timestamp'
KEY_FRAME_INDEX_KEY = 'clip/key_frame/index'
BOX_KEYS = tuple(f'clip/key_frame/bbox/{c}'
                 for c in ('ymin', 'xmin', 'ymax', 'xmax'))
LABEL_INDEX_KEY = 'clip/key_frame/bbox/label/index'
LABEL_COUNT_KEY = 'clip/key_frame/bbox/label/count'
PERSON_ID_KEY = 'clip/key_frame/bbox/person_id'
DETECTION_BOX_KEYS = tuple(f'clip/key_frame/detection/bbox/{c}'
                           for c in ('ymin', 'xmin', 'ymax', 'xmax'))
DETECTION_SCORE_KEY = 'clip/key_frame/detection/score'

_KINETICS_NAME_RE = re.compile(r'^(?P<id>.+)_(?P<start>\d+)_(?P<end>\d+)$')


@dataclasses.dataclass
class KeyFrame:
  """Everything written for one key frame."""
  video_id: str
  timestamp: float
  # [N, 4] ymin, xmin, ymax, xmax; labels per box; person ids.
  boxes: np.ndarray
  labels: List[List[int]]
  person_ids: List[int]
  detection_boxes: Optional[np.ndarray] = None
  detection_scores: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class ClipOptions:
  num_frames: int = 32
  stride: int = 2
  fps: float = 30.0
  short_side: int = 256
  jpeg_quality: int = 90
  timestamp_offset: float = 0.0
  timestamp_offset_from_filename: bool = False

  def validate(self):
    if self.num_frames < 1 or self.stride < 1:
      raise ValueError(f'num_frames ({self.num_frames}) and stride '
                       f'({self.stride}) must be >= 1')
    if self.fps <= 0:
      raise ValueError(f'fps must be > 0, got {self.fps}')
    if self.short_side < 0:
      raise ValueError(f'short_side must be >= 0, got {self.short_side}')
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f'jpeg_quality must be in [1, 100], got '
                       f'{self.jpeg_quality}')


def group_key_frames(rows: Sequence[ava_io.AvaRow],
                     detections: Optional[Sequence[ava_io.AvaRow]] = None,
                     excluded=frozenset(),
                     detection_only_key_frames: bool = True
                     ) -> Tuple[Dict[str, List[KeyFrame]], Dict[str, int]]:
  """Groups CSV rows into key frames with one box per person.

  Rows of one (video, timestamp, person_id) are one box with several labels;
  when the CSV has no person id, rows with the same coordinates are merged.

  Detections on a non-excluded key frame that has no annotation, of a video
  that has annotations, are, with `detection_only_key_frames`, a key frame
  of their own with no ground-truth box (empty boxes and labels): the
  official AVA evaluator keeps every non-excluded detection frame, so its
  detections are false positives of mAP(Det), and leaving the frame out
  would inflate it. Without the option (training data, where they carry
  nothing to learn) their rows are dropped and counted as
  `detection_rows_without_annotated_key_frame`. Rows of videos without any
  annotation (a detections CSV covering more videos than the annotations)
  are dropped and counted as `detection_rows_of_unannotated_videos`.

  Returns:
    ({video_id: [KeyFrame sorted by time]}, counts of what was dropped).
  """
  dropped = collections.Counter()
  frames = collections.defaultdict(dict)
  for row in rows:
    if row.key in excluded:
      dropped['annotation_rows_in_excluded_frames'] += 1
      continue
    # One person is one box. Keying on the coordinates too keeps rows that
    # disagree on a person's box apart instead of silently merging them, and
    # merges rows by box when the CSV has no person ids (-1).
    box_key = (row.person_id, tuple(round(c, 4) for c in row.box))
    persons = frames[row.key]
    if box_key not in persons:
      persons[box_key] = (row.box, [])
    if row.action_id not in persons[box_key][1]:
      persons[box_key][1].append(row.action_id)
    else:
      dropped['duplicate_annotation_rows'] += 1
  dets = collections.defaultdict(list)
  annotated_videos = {row.video_id for row in rows}
  for row in detections or ():
    if row.key in excluded:
      dropped['detection_rows_in_excluded_frames'] += 1
    elif row.key in frames:
      dets[row.key].append(row)
    elif row.video_id not in annotated_videos:
      # A detections CSV may cover more videos than the annotations (a
      # mini-val subset): those videos are not part of the evaluation.
      dropped['detection_rows_of_unannotated_videos'] += 1
    elif not detection_only_key_frames:
      dropped['detection_rows_without_annotated_key_frame'] += 1
    else:
      dets[row.key].append(row)
  by_video = collections.defaultdict(list)
  for key in sorted(set(frames) | set(dets)):
    persons = frames.get(key, {})
    box_list = [v[0] for v in persons.values()]
    kf = KeyFrame(
        video_id=key[0], timestamp=key[1],
        boxes=_xyxy_to_yxyx(box_list),
        labels=[sorted(v[1]) for v in persons.values()],
        person_ids=[k[0] for k in persons])
    if detections is not None:
      # Detection CSVs repeat a box once per class: one box, max score.
      merged = {}
      for row in dets.get(key, ()):
        b = tuple(round(c, 4) for c in row.box)
        if b not in merged or row.score > merged[b][1]:
          merged[b] = (row.box, row.score)
      ordered = sorted(merged.values(), key=lambda v: -v[1])
      kf.detection_boxes = _xyxy_to_yxyx([v[0] for v in ordered])
      kf.detection_scores = np.array([v[1] for v in ordered], np.float32)
    by_video[key[0]].append(kf)
  return dict(by_video), dict(dropped)


def _xyxy_to_yxyx(boxes) -> np.ndarray:
  b = np.asarray(boxes, np.float32).reshape(-1, 4)
  return b[:, [1, 0, 3, 2]]


def find_video_files(video_dir: str, video_id: str,
                     from_filename: bool) -> List[Tuple[str, float, float]]:
  """Returns [(path, start_offset, end)] candidates for a video id.

  `<video_id>.<ext>` has offset 0 and no end (inf); with `from_filename`,
  `<video_id>_<start>_<end>.<ext>` files (Kinetics cuts) are added.
  """
  out = []
  for ext in VIDEO_EXTENSIONS:
    path = os.path.join(video_dir, f'{video_id}.{ext}')
    if os.path.isfile(path):
      out.append((path, 0.0, float('inf')))
  if from_filename:
    for ext in VIDEO_EXTENSIONS:
      pattern = os.path.join(glob.escape(video_dir),
                             f'{glob.escape(video_id)}_*_*.{ext}')
      for path in sorted(glob.glob(pattern)):
        stem = os.path.splitext(os.path.basename(path))[0]
        m = _KINETICS_NAME_RE.match(stem)
        if m and m.group('id') == video_id:
          out.append((path, float(m.group('start')), float(m.group('end'))))
  return out


def _pick_file(candidates, timestamp, plain_offset):
  """(path, offset): the Kinetics cut whose [start, end] holds the timestamp
  (offset = start), else the plain `<video_id>.<ext>` file (offset =
  `plain_offset`); (None, None) when neither fits."""
  for path, start, end in candidates:
    if end != float('inf') and start <= timestamp <= end:
      return path, start
  for path, _, end in candidates:
    if end == float('inf'):
      return path, plain_offset
  return None, None


def _resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
  import cv2  # pylint: disable=g-import-not-at-top
  if short_side <= 0:
    return frame
  h, w = frame.shape[:2]
  scale = short_side / min(h, w)
  if scale == 1:
    return frame
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
  return cv2.resize(frame, size, interpolation=interp)


def clip_frame_indices(key_time: float, source_fps: float,
                       opts: ClipOptions) -> Tuple[np.ndarray, int]:
  """Source-frame indices of a key-frame-centred clip, before edge clamping.

  Clip frame i is at time key_time + (i - key_index) * stride / fps with
  key_index = num_frames // 2.
  """
  key_index = opts.num_frames // 2
  times = key_time + (np.arange(opts.num_frames) - key_index) * (
      opts.stride / opts.fps)
  return np.round(times * source_fps + 1e-6).astype(np.int64), key_index


def _decode_clips(path: str, key_times: Sequence[float], opts: ClipOptions):
  """Yields (i, frames [T, H, W, 3] RGB uint8, key_index) or (i, None, why).

  Decodes the video once, sequentially, keeping only the frames that some
  clip needs; clip frames before 0 or past the end repeat the edge frame,
  but a key frame more than one frame past the last frame (by the
  container's frame count, else by what decodes) is not a valid example:
  (i, None, 'key_frame_past_end_of_video').
  """
  import cv2  # pylint: disable=g-import-not-at-top
  cap = cv2.VideoCapture(path)
  if not cap.isOpened():
    raise IOError(f'OpenCV cannot open {path}')
  try:
    src_fps = cap.get(cv2.CAP_PROP_FPS)
    if not src_fps or not np.isfinite(src_fps) or src_fps <= 0:
      raise IOError(f'{path}: unknown frame rate ({src_fps})')
    n_reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    # plans[j] = (position in key_times, frame indices, key index, key frame
    # index in the source).
    plans = []
    for i, t in enumerate(key_times):
      idx, key_index = clip_frame_indices(t, src_fps, opts)
      key_src = int(round(t * src_fps + 1e-6))
      # Same one-frame tolerance as the check on decoded frames below. The
      # key frame is checked before clamping: clamped, it would be the
      # frozen last frame.
      if n_reported > 0 and key_src > n_reported:
        yield i, None, 'key_frame_past_end_of_video'
        continue
      idx = np.maximum(idx, 0)
      if n_reported > 0:
        idx = np.minimum(idx, n_reported - 1)
      plans.append((i, idx, key_index, key_src))
    needed = sorted({int(i) for p in plans for i in p[1]})
    stored = {}
    pos = 0
    last = None
    last_index = -1
    pending = 0
    if needed and needed[0] > 300:
      # Long movies: seek near the first needed frame instead of grabbing
      # every frame from the start; the reported position is trusted.
      cap.set(cv2.CAP_PROP_POS_FRAMES, needed[0])
      pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
      if pos > needed[0]:
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        pos = 0
    needed_set = set(needed)
    end = needed[-1] if needed else -1
    while pos <= end:
      if not cap.grab():
        break
      if pos in needed_set:
        ok, frame = cap.retrieve()
        if not ok or frame is None:
          break
        frame = _resize_short_side(frame[..., ::-1], opts.short_side)
        stored[pos] = np.ascontiguousarray(frame)
        last, last_index = stored[pos], pos
      pos += 1
      # Emit every clip whose frames are all read, then free unused frames.
      while pending < len(plans) and plans[pending][1].max() < pos:
        i, idx, key_index, _ = plans[pending]
        yield i, np.stack([stored[int(k)] for k in idx]), key_index
        pending += 1
        if pending < len(plans):
          lo = int(plans[pending][1].min())
          for k in [k for k in stored if k < lo]:
            del stored[k]
    # The stream ended early (frame count over-reported): clamp to the last
    # decoded frame, but a key frame beyond the end is not a valid example.
    while pending < len(plans):
      i, idx, key_index, key_src = plans[pending]
      if last is None:
        yield i, None, 'no_frame_decoded'
      elif key_src > last_index + 1:
        yield i, None, 'key_frame_past_end_of_video'
      else:
        frames = [stored.get(int(k), None) for k in idx]
        avail = sorted(k for k in stored)
        clip = []
        for k, f in zip(idx, frames):
          if f is None:
            before = [a for a in avail if a <= k]
            f = stored[before[-1]] if before else stored[avail[0]]
          clip.append(f)
        yield i, np.stack(clip), key_index
      pending += 1
  finally:
    cap.release()


def make_key_frame_example(kf: KeyFrame, frames: np.ndarray, key_index: int,
                           jpeg_quality: int = 90):
  """Builds the SequenceExample of one key frame (see module docstring)."""
  import cv2  # pylint: disable=g-import-not-at-top
  from dataloaders import video_records  # pylint: disable=g-import-not-at-top
  encoded = []
  for f in frames:
    ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(f[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
      raise IOError(f'{kf.video_id}@{kf.timestamp}: JPEG encoding failed')
    encoded.append(buf.tobytes())
  seq = video_records.make_sequence_example(encoded_frames=encoded,
                                            video_id=kf.video_id)
  ctx = seq.context.feature
  ctx[KEY_FRAME_TIMESTAMP_KEY].float_list.value[:] = [kf.timestamp]
  ctx[KEY_FRAME_INDEX_KEY].int64_list.value[:] = [key_index]
  for k, key in enumerate(BOX_KEYS):
    ctx[key].float_list.value[:] = kf.boxes[:, k].tolist()
  ctx[LABEL_INDEX_KEY].int64_list.value[:] = [l for ls in kf.labels
                                               for l in ls]
  ctx[LABEL_COUNT_KEY].int64_list.value[:] = [len(ls) for ls in kf.labels]
  ctx[PERSON_ID_KEY].int64_list.value[:] = kf.person_ids
  if kf.detection_boxes is not None:
    for k, key in enumerate(DETECTION_BOX_KEYS):
      ctx[key].float_list.value[:] = kf.detection_boxes[:, k].tolist()
    ctx[DETECTION_SCORE_KEY].float_list.value[:] = (
        kf.detection_scores.tolist())
  return seq


def shard_path(output_dir: str, prefix: str, shard: int,
               num_shards: int) -> str:
  return os.path.join(output_dir,
                      f'{prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord')


def assign_shards(by_video: Dict[str, List[KeyFrame]],
                  num_shards: int) -> List[List[str]]:
  """Videos to shards, balancing key frames (largest first, deterministic)."""
  shards = [[] for _ in range(num_shards)]
  load = [0] * num_shards
  for vid in sorted(by_video, key=lambda v: (-len(by_video[v]), v)):
    s = int(np.argmin(load))
    shards[s].append(vid)
    load[s] += len(by_video[vid])
  return [sorted(s) for s in shards]


def _fingerprint(videos, by_video, opts: ClipOptions, video_dir: str) -> str:
  """Hash of everything a shard's records are made of except the videos.

  The video files are not hashed (too slow for AVA movies); a shard with a
  missing or unreadable video gets no marker instead (`_incomplete_reason`).
  Detector scores are part of the records, so a re-scored detections CSV
  (same boxes) redoes the shards.
  """
  h = hashlib.sha256()
  h.update(json.dumps([dataclasses.asdict(opts), os.path.abspath(video_dir)],
                      sort_keys=True).encode())
  for vid in videos:
    for kf in by_video[vid]:
      no_dets = kf.detection_boxes is None
      h.update(repr((vid, kf.timestamp, kf.boxes.round(4).tolist(),
                     kf.labels, kf.person_ids,
                     None if no_dets else kf.detection_boxes.round(4).tolist(),
                     None if no_dets else
                     np.round(kf.detection_scores.astype(np.float64),
                              6).tolist())).encode())
  return h.hexdigest()


def _incomplete_reason(stats) -> str:
  """Why a shard must be redone by a rerun ('' when it is complete).

  Missing or unreadable videos (and key frames outside every Kinetics cut
  of their video, i.e. a missing cut) are things the user can fix by putting
  the files in place; the shard gets no `.done` marker so that a rerun
  converts them. Other skips (e.g. a key frame past the end of its video)
  would be skipped again and do not block the marker.
  """
  parts = []
  for key, what in (('missing_videos', 'missing'),
                    ('unreadable_videos', 'unreadable')):
    if stats.get(key):
      parts.append(f'{len(stats[key])} video(s) {what}')
  n_out = stats.get('skipped_key_frames', {}).get(
      'timestamp_outside_video_clips', 0)
  if n_out:
    parts.append(f'{n_out} key frame(s) outside every clip of their video')
  return ', '.join(parts)


def convert_shard(task) -> Dict[str, object]:
  """Writes one shard; returns its stats. Runs in a worker process."""
  (path, videos, by_video, video_dir, opts) = task
  stats = {'key_frames_written': 0, 'boxes_written': 0,
           'missing_videos': {}, 'unreadable_videos': {},
           'skipped_key_frames': collections.Counter()}
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tmp = path + '.tmp'
  has_work = any(by_video[v] for v in videos)
  with tf.io.TFRecordWriter(tmp) as writer:
    for vid in videos:
      kfs = by_video[vid]
      candidates = find_video_files(video_dir, vid,
                                    opts.timestamp_offset_from_filename)
      if not candidates:
        stats['missing_videos'][vid] = len(kfs)
        continue
      # Group the key frames by the file (and offset) that holds them.
      per_file = collections.defaultdict(list)
      for kf in kfs:
        file, offset = _pick_file(candidates, kf.timestamp,
                                  opts.timestamp_offset)
        if file is None:
          stats['skipped_key_frames']['timestamp_outside_video_clips'] += 1
          continue
        per_file[file].append((kf.timestamp - offset, kf))
      for file, items in per_file.items():
        if any(t < 0 for t, _ in items):
          n_neg = sum(t < 0 for t, _ in items)
          stats['skipped_key_frames']['negative_time_in_video'] += n_neg
          items = [it for it in items if it[0] >= 0]
        try:
          for i, frames, key_index_or_reason in _decode_clips(
              file, [t for t, _ in items], opts):
            if frames is None:
              stats['skipped_key_frames'][key_index_or_reason] += 1
              continue
            key_index = key_index_or_reason
            kf = items[i][1]
            writer.write(make_key_frame_example(
                kf, frames, key_index, opts.jpeg_quality).SerializeToString())
            stats['key_frames_written'] += 1
            stats['boxes_written'] += len(kf.boxes)
        except (IOError, OSError) as e:
          stats['unreadable_videos'][vid] = f'{file}: {e}'
          logging.warning('unreadable video %s: %s', file, e)
  stats['skipped_key_frames'] = dict(stats['skipped_key_frames'])
  if has_work and not stats['key_frames_written']:
    # Every key frame of the shard was skipped: no (empty) shard and no
    # marker, so a rerun (e.g. with the videos in place) does the work; an
    # older shard at this path is not from these inputs either.
    for p in (tmp, path, path + '.done'):
      if os.path.exists(p):
        os.remove(p)
    stats['shard_written'] = False
    return stats
  os.replace(tmp, path)
  stats['shard_written'] = True
  return stats


def convert(annotations_csv: str, labelmap_path: str, video_dir: str,
            output_dir: str, detections_csv: Optional[str] = None,
            exclusions_csv: Optional[str] = None,
            opts: ClipOptions = ClipOptions(),
            num_shards: Optional[int] = None, num_workers: int = 1,
            prefix: str = 'ava',
            detection_only_key_frames: bool = True) -> Dict[str, object]:
  """Converts AVA CSVs + videos to sharded key-frame TFRecords.

  Args:
    annotations_csv: `video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`.
    labelmap_path: label map `.pbtxt`; rows of other actions are bad rows.
    video_dir: folder with `<video_id>.<ext>` videos.
    output_dir: where shards, markers and the summary go.
    detections_csv: optional detector boxes (person detections with score).
    exclusions_csv: optional `video_id,timestamp` key frames to leave out.
    opts: clip sampling and encoding options.
    num_shards: number of shards; default about 500 key frames per shard,
      at most one per video.
    num_workers: processes converting shards in parallel.
    prefix: shard file prefix.
    detection_only_key_frames: with `detections_csv`, also write a record
      (no ground-truth box, no label) for every non-excluded key frame that
      has detections but no annotation, so that mAP(Det) counts them as
      false positives like the official evaluator. Keep it for validation
      data; turn it off for training data, where such frames teach nothing.

  Returns:
    The summary dict, also written to `<output_dir>/<prefix>-summary.json`.
    A shard whose key frames were all skipped is not written (no file, no
    marker): `key_frames_written` 0 means nothing was written. A shard
    with missing or unreadable videos is written but not marked done
    (`shards_not_marked_done`), so a rerun converts it once they are there.

  Raises:
    ValueError: `video_dir` is not a folder, or the annotations hold no
      usable key frame; both before anything is written.
  """
  opts.validate()
  if not os.path.isdir(video_dir):
    raise ValueError(f'video_dir {video_dir} is not a folder')
  labelmap = ava_io.read_labelmap(labelmap_path)
  bad = {'annotations': collections.Counter(),
         'detections': collections.Counter(),
         'exclusions': collections.Counter()}
  rows = ava_io.read_groundtruth_csv(annotations_csv, set(labelmap),
                                     bad['annotations'])
  # Detector boxes are person boxes: their action id is not checked.
  dets = (ava_io.read_detections_csv(detections_csv, None, bad['detections'])
          if detections_csv else None)
  excluded = (ava_io.read_exclusions_csv(exclusions_csv, bad['exclusions'])
              if exclusions_csv else set())
  by_video, dropped = group_key_frames(rows, dets, excluded,
                                      detection_only_key_frames)
  total = sum(len(v) for v in by_video.values())
  detection_only = sum(not kf.labels for v in by_video.values() for kf in v)
  if total == detection_only:
    why = ', '.join(f'{n} {r}' for r, n in sorted(
        list(bad['annotations'].items()) + list(dropped.items())))
    raise ValueError(f'{annotations_csv}: no usable annotated key frame '
                     f'({why or "no rows"}); nothing to convert')
  if num_shards is None:
    num_shards = max(1, min(len(by_video), -(-total // 500)))
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  os.makedirs(output_dir, exist_ok=True)
  shards = assign_shards(by_video, num_shards)

  results = [None] * num_shards
  todo = []
  resumed = 0
  for s, videos in enumerate(shards):
    path = shard_path(output_dir, prefix, s, num_shards)
    fp = _fingerprint(videos, by_video, opts, video_dir)
    marker = path + '.done'
    if os.path.exists(marker) and os.path.exists(path):
      with open(marker, 'r', encoding='utf-8') as f:
        done = json.load(f)
      # Markers of older versions were written for incomplete shards too.
      if (done.get('fingerprint') == fp and
          not _incomplete_reason(done['stats'])):
        results[s] = done['stats']
        resumed += 1
        continue
      logging.info('%s was made from other inputs/options or is incomplete: '
                   'redoing it', path)
    todo.append((s, fp, (path, videos, {v: by_video[v] for v in videos},
                         video_dir, opts)))
  logging.info('%d key frames of %d videos -> %d shards (%d already done)',
               total, len(by_video), num_shards, resumed)

  not_done = {}

  def _finish(s, fp, stats, n_done):
    path = shard_path(output_dir, prefix, s, num_shards)
    incomplete = _incomplete_reason(stats)
    if stats.pop('shard_written', True) and not incomplete:
      with open(path + '.done', 'w', encoding='utf-8') as f:
        json.dump({'fingerprint': fp, 'stats': stats}, f)
    elif incomplete:
      # The shard (if written) is usable now, but without a marker a rerun
      # redoes it: the missing videos may be in place by then. A marker of
      # an older run would not match these inputs anyway.
      if os.path.exists(path + '.done'):
        os.remove(path + '.done')
      not_done[os.path.basename(path)] = incomplete
      logging.warning('shard %d (%s): %s; not marked done, a rerun with '
                      'them in place converts it', s,
                      os.path.basename(path), incomplete)
    results[s] = stats
    logging.info('[%d/%d shards] %s: %d key frames (%.0f s)', n_done,
                 len(todo), os.path.basename(path),
                 stats['key_frames_written'], time.time() - start_time)

  start_time = time.time()
  if num_workers > 1 and len(todo) > 1:
    # Spawn, not fork: TensorFlow's thread pools do not survive a fork.
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(min(num_workers, len(todo))) as pool:
      it = pool.imap_unordered(_convert_indexed, [(s, t) for s, _, t in todo])
      fps = {s: fp for s, fp, _ in todo}
      for n, (s, stats) in enumerate(it, start=1):
        _finish(s, fps[s], stats, n)
  else:
    for n, (s, fp, task) in enumerate(todo, start=1):
      _finish(s, fp, convert_shard(task), n)

  summary = {
      'num_shards': num_shards,
      'shards_resumed': resumed,
      'key_frames_in_csv': total,
      'detection_only_key_frames': detection_only,
      'shards_not_marked_done': not_done,
      'key_frames_written': sum(r['key_frames_written'] for r in results),
      'boxes_written': sum(r['boxes_written'] for r in results),
      'missing_videos': {}, 'unreadable_videos': {},
      'skipped_key_frames': collections.Counter(),
      'bad_rows': {k: dict(v) for k, v in bad.items()},
      'dropped_rows': dropped,
      'excluded_key_frames': len(excluded),
      'options': dataclasses.asdict(opts),
  }
  for r in results:
    summary['missing_videos'].update(r['missing_videos'])
    summary['unreadable_videos'].update(r['unreadable_videos'])
    summary['skipped_key_frames'].update(r['skipped_key_frames'])
  summary['skipped_key_frames'] = dict(summary['skipped_key_frames'])
  with open(os.path.join(output_dir, f'{prefix}-summary.json'), 'w',
            encoding='utf-8') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def _convert_indexed(item):
  s, task = item
  return s, convert_shard(task)


def format_summary(summary: Dict[str, object]) -> str:
  """Human-readable closing summary."""
  lines = [f'wrote {summary["key_frames_written"]} of '
           f'{summary["key_frames_in_csv"]} key frames '
           f'({summary["boxes_written"]} boxes) in {summary["num_shards"]} '
           f'shards ({summary["shards_resumed"]} resumed)']
  if summary.get('detection_only_key_frames'):
    lines.append(f'{summary["detection_only_key_frames"]} of them have '
                 'detections but no annotation (written without ground '
                 'truth: their detections are false positives of mAP(Det))')
  missing = summary['missing_videos']
  if missing:
    lines.append(f'missing videos ({len(missing)}, '
                 f'{sum(missing.values())} key frames): '
                 + ', '.join(sorted(missing)))
  for vid, why in sorted(summary['unreadable_videos'].items()):
    lines.append(f'unreadable video {vid}: {why}')
  for why, n in sorted(summary['skipped_key_frames'].items()):
    lines.append(f'skipped {n} key frame(s): {why}')
  for name, why in sorted(summary.get('shards_not_marked_done', {}).items()):
    lines.append(f'{name}: {why}; not marked done, a rerun with them in '
                 'place converts it')
  for src, counts in summary['bad_rows'].items():
    for why, n in sorted(counts.items()):
      lines.append(f'skipped {n} {src} row(s): {why}')
  for why, n in sorted(summary['dropped_rows'].items()):
    lines.append(f'dropped {n} row(s): {why}')
  return '\n'.join(lines)
