r"""Frame-level AVA mAP (IoU 0.5, PASCAL VOC style) from the official CSVs.

Usage:
  python tools/ava_eval.py \
    --labelmap ava_action_list_v2.2_for_activitynet_2019.pbtxt \
    --groundtruth ava_val_v2.2.csv \
    --detections /tmp/ava_detections.csv \
    --exclusions ava_val_excluded_timestamps_v2.2.csv \
    --output_json /tmp/ava_metrics.json

Prints AP per class, the mean over the classes with ground truth, and the rows
skipped by reason. The JSON holds `mAP`, `per_class`, `num_classes_evaluated`,
`bad_rows` and the other fields of `tasks.evaluation.ava.evaluate`.

Exit status: 0 with a mAP; 1 when no class has ground truth left after the
exclusions (mAP undefined); 2 when the inputs are unusable (unreadable file,
label map that does not parse, no usable ground-truth row).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tasks.evaluation import ava  # pylint: disable=g-import-not-at-top

_LABELMAP = flags.DEFINE_string('labelmap', None, 'Label map .pbtxt.')
_GROUNDTRUTH = flags.DEFINE_string('groundtruth', None, 'Ground-truth CSV.')
_DETECTIONS = flags.DEFINE_string('detections', None, 'Detections CSV.')
_EXCLUSIONS = flags.DEFINE_string('exclusions', None,
                                  'Optional excluded-timestamps CSV.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Optional path of the metrics JSON.')


def _jsonable(value):
  """NaN is not valid JSON: written as null."""
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value


def main(argv):
  del argv
  try:
    result = ava.evaluate_files(_LABELMAP.value, _GROUNDTRUTH.value,
                                _DETECTIONS.value, _EXCLUSIONS.value)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  width = max([len(n) for n in result['per_class']] + [10])
  for name, ap in result['per_class'].items():
    print(f'{name:<{width}}  AP@0.5IoU = {ap:.4f}')
  for name in result['classes_without_groundtruth']:
    print(f'{name:<{width}}  (no ground truth: not in the mean)')
  print(f'mAP@0.5IoU = {result["mAP"]:.4f} over '
        f'{result["num_classes_evaluated"]} classes')
  for source, counts in result['bad_rows'].items():
    for reason, count in sorted(counts.items()):
      print(f'skipped {count} {source} row(s): {reason}')
  for reason, count in sorted(result['dropped'].items()):
    print(f'dropped {count}: {reason}')
  if _OUTPUT_JSON.value:
    out_dir = os.path.dirname(os.path.abspath(_OUTPUT_JSON.value))
    os.makedirs(out_dir, exist_ok=True)
    with open(_OUTPUT_JSON.value, 'w', encoding='utf-8') as f:
      json.dump(_jsonable(result), f, indent=2)
  if not result['num_classes_evaluated']:
    # E.g. every ground-truth frame excluded: the mAP above is NaN.
    print(f'error: no class of {_LABELMAP.value} has ground truth left in '
          f'{_GROUNDTRUTH.value} (see the counts above); the mAP is '
          'undefined', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['labelmap', 'groundtruth', 'detections'])
  app.run(main)
