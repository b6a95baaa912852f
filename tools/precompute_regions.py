"""Adds segment boxes (`region/bbox/*`) to video TFRecords.

SLIC and Felzenszwalb segmentation are too slow for the input pipeline, so
they are computed once here; the SSL parser then reads them exactly like
detector boxes (`region_source: slic | felzenszwalb`).

Usage:
  python tools/precompute_regions.py \
    --input_pattern='/data/k400/train-*.tfrecord' \
    --output_dir=/data/k400_slic --method=slic --num_boxes=8
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from dataloaders import region_sources

_INPUT = flags.DEFINE_string('input_pattern', None, 'Input TFRecord glob.')
_OUTPUT = flags.DEFINE_string('output_dir', None,
                              'Output directory (same file names).')
_METHOD = flags.DEFINE_enum('method', 'slic', list(
    region_sources.SEGMENT_METHODS), 'Segmentation method.')
_NUM_BOXES = flags.DEFINE_integer('num_boxes', 8, 'Boxes kept per frame.')
_MIN_SIZE = flags.DEFINE_float('min_size', 0.1,
                               'Smallest box width/height (fraction).')
_MAX_SIZE = flags.DEFINE_float('max_size', 0.9,
                               'Largest box width/height (fraction).')
_LOG_EVERY = flags.DEFINE_integer('log_every', 10,
                                  'Log progress every N records.')


def main(argv):
  del argv
  kwargs = dict(num_boxes=_NUM_BOXES.value, log_every=_LOG_EVERY.value,
                min_size=_MIN_SIZE.value, max_size=_MAX_SIZE.value)
  try:
    region_sources.check_precompute_args(_METHOD.value, **kwargs)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  summary = region_sources.precompute_regions(
      _INPUT.value, _OUTPUT.value, _METHOD.value, **kwargs)
  logging.info('summary: %s', summary)
  print(f'precompute_regions: {summary["files"]} files, '
        f'{summary["records"]} records, {summary["frames"]} frames, '
        f'{summary["boxes"]} boxes ({summary["frames_without_boxes"]} '
        f'frames without any) -> {_OUTPUT.value}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['input_pattern', 'output_dir'])
  app.run(main)
