r"""Offline linear probe: top-1 of a softmax classifier on extracted features.

Fits a multinomial logistic regression (standardized features, l2 on the
weights, L-BFGS; `tasks/feature_probe.py`) on the training features and
reports top-1 on both splits, once per l2 strength. The inputs are labelled
pooled features as written by `tools/extract_features.py --format=tfrecord`
(endpoint `res5g_pooled` or `global_embedding`; several clips are averaged).

Example (toy world, pooled res5g of 2 clips per video):

  for split in train validation; do
    python tools/extract_features.py --experiment=const_cl_pretrain_toy \
        --checkpoint=/tmp/const_cl_toy --format=tfrecord --num_clips=2 \
        --input_pattern="$HOME/.cache/const_cl/toy_world/*/$split-*" \
        --output_dir=/tmp/probe/$split
  done
  python tools/probe_features.py \
      --train=/tmp/probe/train/res5g_pooled.tfrecord \
      --validation=/tmp/probe/validation/res5g_pooled.tfrecord \
      --l2=0.1 --l2=0.01 --l2=0.001 --output_json=/tmp/probe/probe.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from tasks import feature_probe

FLAGS = flags.FLAGS
flags.DEFINE_string('train', None, 'Training feature TFRecord.',
                    required=True)
flags.DEFINE_string('validation', None, 'Validation feature TFRecord.',
                    required=True)
flags.DEFINE_multi_float('l2', [0.1, 0.01, 0.001], 'l2 strengths to try.')
flags.DEFINE_integer('max_iterations', 1000, 'L-BFGS iteration cap per fit.')
flags.DEFINE_string('output_json', None, 'Also write the result here.')


def main(argv):
  del argv
  try:
    result = feature_probe.probe(FLAGS.train, FLAGS.validation, FLAGS.l2,
                                 FLAGS.max_iterations)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{result["num_train"]} train / {result["num_validation"]} '
        f'validation videos, {result["num_classes"]} classes, chance '
        f'(largest validation class) {100 * result["chance"]:.1f}%')
  print('| l2 | train top-1 (%) | validation top-1 (%) | final gradient '
        'norm |')
  print('|---|---|---|---|')
  for row in result['rows']:
    print(f'| {row["l2"]:g} | {100 * row["train_top1"]:.1f} | '
          f'{100 * row["validation_top1"]:.1f} | {row["grad_norm"]:.1e} |')
  if FLAGS.output_json:
    with open(FLAGS.output_json, 'w') as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == '__main__':
  app.run(main)
