r"""How much of each temporal conv kernel of a backbone varies over time.

For every Conv3D kernel with more than one temporal tap in a checkpoint's
backbone, prints the share of its energy that differs between frames
(`modeling.kernel_stats.temporal_variation`: 0 = the same 2D filter on
every frame, blind to motion; ~0.8 for a fresh 5-tap initialization) for
the whole kernel and per output channel. Reads the checkpoint file only (no
model is built), so it takes a second.

Usage (from the repo root):
  python tools/temporal_kernels.py --checkpoint=/tmp/const_cl_toy
  python tools/temporal_kernels.py --checkpoint=/tmp/const_cl_toy \
      --checkpoint=/tmp/cvrl_toy --output_json=/tmp/temporal.json

--checkpoint is a model dir (its latest checkpoint) or a checkpoint prefix;
repeat it to compare checkpoints.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from modeling import kernel_stats
from modeling.backbones import branch_loading

_CHECKPOINT = flags.DEFINE_multi_string(
    'checkpoint', None, 'Model dir (-> latest checkpoint) or prefix; '
    'repeatable.', required=True)
_SCOPE = flags.DEFINE_string('scope', 'backbone/',
                             'Only checkpoint keys starting with this.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Also write the numbers here.')


def main(argv):
  del argv
  report = {}
  for path in _CHECKPOINT.value:
    prefix = branch_loading.resolve_checkpoint_path(path, '--checkpoint')
    rows = kernel_stats.checkpoint_temporal_variation(prefix, _SCOPE.value)
    report[prefix] = rows
    print(f'{prefix}')
    for row in rows:
      channels = ' '.join(f'{v:.2f}' for v in row['per_channel'])
      print(f"  {row['name']} {row['shape']}: {row['variation']:.3f} "
            f'(per output channel: {channels})')
  if _OUTPUT_JSON.value:
    with open(_OUTPUT_JSON.value, 'w') as f:
      json.dump(report, f, indent=2)
    print(f'wrote {_OUTPUT_JSON.value}')


if __name__ == '__main__':
  app.run(main)
