"""One-pass (OPE) evaluation of tracking results on an OTB-layout dataset.

Usage:
  python tools/otb_eval.py --dataset_dir=/data/OTB100 \
      --results_dir=/tmp/siamfc_otb --output_json=/tmp/otb.json \
      --plot=/tmp/otb.png

`results_dir` holds `<Seq>.txt` with one `x,y,w,h` line per annotated frame.
Prints precision at 20 px and success AUC (fractions in [0, 1]).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tasks.evaluation import otb

_DATASET_DIR = flags.DEFINE_string('dataset_dir', None,
                                   'OTB dataset folder (one folder per '
                                   'sequence).', required=True)
_RESULTS_DIR = flags.DEFINE_string('results_dir', None,
                                   'Folder of <Seq>.txt results.',
                                   required=True)
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Where to write the metrics as JSON.')
_PLOT = flags.DEFINE_string('plot', None,
                            'Where to write the precision/success plot PNG.')
_LABEL = flags.DEFINE_string('label', 'tracker', 'Legend label of the plot.')


def main(argv):
  del argv
  result = otb.evaluate_otb(_DATASET_DIR.value, _RESULTS_DIR.value)
  print(f'sequences: {len(result["per_sequence"])}  '
        f'precision@20px: {result["precision"]:.4f}  '
        f'success AUC: {result["success"]:.4f}')
  if _OUTPUT_JSON.value:
    directory = os.path.dirname(os.path.abspath(_OUTPUT_JSON.value))
    os.makedirs(directory, exist_ok=True)
    with open(_OUTPUT_JSON.value, 'w') as f:
      json.dump(result, f, indent=2)
  if _PLOT.value:
    otb.plot_curves(result, _PLOT.value, label=_LABEL.value)


if __name__ == '__main__':
  app.run(main)
