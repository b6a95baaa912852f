r"""Converts a folder of videos or a Kinetics CSV to video TFRecords.

Folder mode (label = sub-folder name, sorted names -> indices):

  python tools/videos_to_tfrecords.py --input_dir ~/ucf101/videos \
      --output_dir ~/ucf101/tfrecords --fps 10 --short_side 256 \
      --num_shards 64 --num_workers 8 --output_prefix train

Kinetics mode (files `<youtube_id>_<start:06d>_<end:06d>.mp4` or
`<youtube_id>.mp4`, the latter trimmed to time_start..time_end):

  python tools/videos_to_tfrecords.py --input_dir ~/k400/train \
      --csv ~/k400/annotations/train.csv --split train \
      --output_dir ~/k400/tfrecords --num_shards 1024 --num_workers 16

The output folder gets `<prefix>-00000-of-00064.tfrecord` shards,
`label_map.txt` / `label_map.json` and `summary.json` (failed, partially
decoded and skipped videos with reasons). A re-run skips the finished shards.
Formats (including `--detections_csv`) are described in
`dataloaders/converters/videos.py`.

Exit status: 0 when every video converted, 1 when any video failed (a shard
whose videos all failed is not written and gets no resume marker, so a re-run
retries it; when all failed, nothing is written, not even an empty shard or a
resume marker), 2 when the arguments or inputs are wrong (nothing was
converted then).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from dataloaders.converters import videos

FLAGS = flags.FLAGS
flags.DEFINE_string('input_dir', None, 'Folder of videos.', required=True)
flags.DEFINE_string('output_dir', None, 'Output folder.', required=True)
flags.DEFINE_string('csv', None, 'Kinetics-style CSV '
                    '(label,youtube_id,time_start,time_end,split).')
flags.DEFINE_string('split', None, 'CSV mode: convert only this split.')
flags.DEFINE_float('fps', 10.0, 'Output frame rate.')
flags.DEFINE_integer('short_side', 256, 'Resize the short side to this '
                     '(0 keeps the size).')
flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality 1..100.')
flags.DEFINE_integer('num_shards', 8, 'Number of output shards.')
flags.DEFINE_integer('num_workers', 2, 'Decoding processes.')
flags.DEFINE_bool('allow_partial', False, 'Keep the decoded frames of videos '
                  'whose decoding stops early (else they fail).')
flags.DEFINE_string('detections_csv', None, 'Per-frame boxes '
                    '(video_id,frame_or_time,ymin,xmin,ymax,xmax[,score]).')
flags.DEFINE_float('min_score', 0.0, 'Drop detections scoring below this.')
flags.DEFINE_string('label_map', None, 'Existing label_map.txt fixing the '
                    'class indices (e.g. convert val with the train map).')
flags.DEFINE_string('output_prefix', None, 'Shard prefix (default: --split, '
                    'else "train").')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')


def main(argv):
  del argv
  options = videos.ConvertOptions(
      fps=FLAGS.fps, short_side=FLAGS.short_side,
      jpeg_quality=FLAGS.jpeg_quality, allow_partial=FLAGS.allow_partial,
      min_score=FLAGS.min_score)
  try:
    summary = videos.convert_videos(
        FLAGS.input_dir, FLAGS.output_dir, csv_path=FLAGS.csv,
        split=FLAGS.split, options=options, num_shards=FLAGS.num_shards,
        num_workers=FLAGS.num_workers, output_prefix=FLAGS.output_prefix,
        detections_csv=FLAGS.detections_csv, label_map=FLAGS.label_map,
        progress=FLAGS.progress)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(videos.format_summary(summary))
  if not summary['num_converted']:
    print(f'error: nothing was written to {FLAGS.output_dir}: 0 of '
          f'{summary["num_videos"]} videos converted ({summary["num_failed"]}'
          f' failed, {len(summary["skipped"])} CSV rows without a file; '
          'reasons above)', file=sys.stderr)
    return 1
  if summary['num_failed']:
    logging.error('%d of %d videos failed; see %s', summary['num_failed'],
                  summary['num_videos'],
                  os.path.join(FLAGS.output_dir, videos.SUMMARY_JSON))
    if summary['shards_empty']:
      logging.error('%d of %d shards not written (all their videos failed); '
                    'a rerun retries them', len(summary['shards_empty']),
                    FLAGS.num_shards)
    return 1
  return 0


if __name__ == '__main__':
  app.run(main)
