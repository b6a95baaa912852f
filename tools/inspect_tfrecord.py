r"""Prints statistics of video TFRecords and draws a contact sheet.

Example:

  python tools/inspect_tfrecord.py \
      --input_pattern '/data/k400/tfrecords/train-*.tfrecord' \
      --label_map /data/k400/tfrecords/label_map.txt \
      --contact_sheet /tmp/sheet.png --num_videos 4 --frames_per_video 8

Reports the number of shards and records, frames per video (min/mean/max),
frame sizes, the label histogram (with class names when a label map is given)
and box statistics when the records have `region/bbox/*`. The contact sheet
has one row per video and evenly spaced frames as columns, with the region
boxes drawn in green. `--stats_json` also writes the statistics as JSON.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf

from dataloaders import inspect as inspect_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('input_pattern', None, 'Glob of TFRecord files.',
                    required=True)
flags.DEFINE_string('contact_sheet', None, 'Write a contact-sheet PNG here.')
flags.DEFINE_integer('num_videos', 4, 'Contact sheet rows.')
flags.DEFINE_integer('frames_per_video', 8, 'Contact sheet columns.')
flags.DEFINE_string('label_map', None, 'label_map.txt (one class per line).')
flags.DEFINE_string('stats_json', None, 'Also write the statistics as JSON.')


def main(argv):
  del argv
  try:
    names = (inspect_lib.read_label_names(FLAGS.label_map)
             if FLAGS.label_map else None)
    stats = inspect_lib.compute_stats(FLAGS.input_pattern, names)
    print(inspect_lib.format_stats(stats))
    if FLAGS.stats_json:
      with open(FLAGS.stats_json, 'w', encoding='utf-8') as f:
        json.dump(stats, f, indent=1)
    if FLAGS.contact_sheet:
      sheet = inspect_lib.write_contact_sheet(
          FLAGS.input_pattern, FLAGS.contact_sheet,
          num_videos=FLAGS.num_videos,
          frames_per_video=FLAGS.frames_per_video, label_names=names)
      print(f'contact sheet {sheet.shape[1]}x{sheet.shape[0]} -> '
            f'{FLAGS.contact_sheet}')
  except (ValueError, OSError, tf.errors.OpError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  app.run(main)
