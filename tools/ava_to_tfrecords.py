r"""Converts official AVA / AVA-Kinetics CSVs + videos to key-frame TFRecords.

Usage (AVA v2.2 validation, movies trimmed to the 15-minute segment):
  python tools/ava_to_tfrecords.py \
    --annotations ava_val_v2.2.csv \
    --labelmap ava_action_list_v2.2_for_activitynet_2019.pbtxt \
    --exclusions ava_val_excluded_timestamps_v2.2.csv \
    --detections ava_val_predicted_boxes.csv \
    --video_dir /data/ava/videos_15min --timestamp_offset 900 \
    --output_dir /data/ava/tfrecords/val --prefix ava_val \
    --num_frames 32 --stride 2 --fps 30 --short_side 256 --num_workers 2

AVA-Kinetics: pass the Kinetics CSV and `--timestamp_offset_from_filename`
when the clips are stored as `<youtube_id>_<start:06d>_<end:06d>.mp4`.

Rerunning the same command resumes: shards with a matching `.done` marker are
skipped. A shard with missing or unreadable videos gets no marker: put the
videos in place and rerun to convert them. The closing summary
(missing/unreadable videos, shards not marked done, skipped key frames, bad
rows by reason) is printed and written to `<prefix>-summary.json`.

With --detections, key frames that have detections but no annotation are
written too (no ground-truth box): mAP(Det) counts them as false positives,
as the official evaluator does. Pass --nodetection_only_key_frames for
training data.

Exit status: 0 when key frames were written; 1 when every key frame was
skipped (nothing written, no marker: a rerun redoes the work); 2 when the
inputs are unusable (no such --video_dir, no usable annotated key frame,
unreadable file), before anything is written.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from dataloaders.converters import ava  # pylint: disable=g-import-not-at-top

_ANNOTATIONS = flags.DEFINE_string('annotations', None, 'Annotation CSV.')
_LABELMAP = flags.DEFINE_string('labelmap', None, 'Label map .pbtxt.')
_VIDEO_DIR = flags.DEFINE_string('video_dir', None,
                                 'Folder of <video_id>.<mp4|mkv|webm|avi>.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Output folder.')
_DETECTIONS = flags.DEFINE_string('detections', None,
                                  'Optional person-detection CSV (score last).')
_EXCLUSIONS = flags.DEFINE_string('exclusions', None,
                                  'Optional excluded-timestamps CSV.')
_PREFIX = flags.DEFINE_string('prefix', 'ava', 'Shard file name prefix.')
_NUM_FRAMES = flags.DEFINE_integer('num_frames', 32, 'Frames per clip.')
_STRIDE = flags.DEFINE_integer('stride', 2,
                               'Temporal stride in frames at --fps.')
_FPS = flags.DEFINE_float('fps', 30.0, 'Target sampling frame rate.')
_SHORT_SIDE = flags.DEFINE_integer('short_side', 256,
                                   'Resize short side to this (0: keep).')
_NUM_SHARDS = flags.DEFINE_integer(
    'num_shards', None, 'Shards (default: ~500 key frames per shard).')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1, 'Worker processes.')
_JPEG_QUALITY = flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality.')
_TIMESTAMP_OFFSET = flags.DEFINE_float(
    'timestamp_offset', 0.0,
    'Seconds subtracted from CSV timestamps to get the time in the video '
    '(900 for AVA movies trimmed to the annotated 15 minutes).')
_OFFSET_FROM_FILENAME = flags.DEFINE_bool(
    'timestamp_offset_from_filename', False,
    'Also find <id>_<start>_<end>.<ext> clips (Kinetics) and take the '
    'timestamp relative to <start>.')
_DETECTION_ONLY = flags.DEFINE_bool(
    'detection_only_key_frames', True,
    'With --detections, also write key frames that have detections but no '
    'annotation (no ground-truth box): mAP(Det) counts them as false '
    'positives like the official evaluator. Use --nodetection_only_key_frames '
    'for training data.')


def main(argv):
  del argv
  opts = ava.ClipOptions(
      num_frames=_NUM_FRAMES.value, stride=_STRIDE.value, fps=_FPS.value,
      short_side=_SHORT_SIDE.value, jpeg_quality=_JPEG_QUALITY.value,
      timestamp_offset=_TIMESTAMP_OFFSET.value,
      timestamp_offset_from_filename=_OFFSET_FROM_FILENAME.value)
  try:
    summary = ava.convert(
        _ANNOTATIONS.value, _LABELMAP.value, _VIDEO_DIR.value,
        _OUTPUT_DIR.value, detections_csv=_DETECTIONS.value,
        exclusions_csv=_EXCLUSIONS.value, opts=opts,
        num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value,
        prefix=_PREFIX.value,
        detection_only_key_frames=_DETECTION_ONLY.value)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(ava.format_summary(summary))
  if not summary['key_frames_written']:
    print(f'error: nothing was written to {_OUTPUT_DIR.value}: all '
          f'{summary["key_frames_in_csv"]} key frames were skipped (reasons '
          'above)', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  flags.mark_flags_as_required(
      ['annotations', 'labelmap', 'video_dir', 'output_dir'])
  app.run(main)
