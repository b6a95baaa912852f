r"""Writes a pretraining checkpoint with chosen backbone stages re-initialized.

Which pretrained stages does a downstream task use, and which get in its
way? This tool restores a pretraining checkpoint's backbone, resets the
chosen stages (stem, res2, res3, res4, res5g, res5r) to a fresh random
initialization (seeded), and writes the backbone as a checkpoint that every
downstream experiment loads with `task.init_checkpoint=<output_dir>`.

Usage (from the repo root):
  # ConST-CL toy checkpoint with its stem and res2 reset:
  python tools/reset_backbone_stages.py --experiment=const_cl_pretrain_toy \
      --checkpoint=/tmp/const_cl_toy --reset=stem,res2 --seed=0 \
      --output_dir=/tmp/const_cl_toy_fresh_stem_res2
  python train.py --experiment=const_cl_ava_toy --mode=train_and_eval \
      --model_dir=/tmp/ava_fresh_stem_res2 \
      --params_override=task.init_checkpoint=/tmp/const_cl_toy_fresh_stem_res2

Writes <output_dir>/ckpt-0 (a `tf.train.Checkpoint(backbone=...)`, with the
`checkpoint` index file) and <output_dir>/reset.json (source, stages, seed,
variables reset per stage).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras

from modeling.backbones import branch_loading
from tasks import features as features_lib

_EXPERIMENT = flags.DEFINE_string(
    'experiment', None, 'Registered pretraining experiment of the checkpoint.',
    required=True)
_CONFIG_FILE = flags.DEFINE_multi_string('config_file', None,
                                         'YAML overrides (strict).')
_PARAMS_OVERRIDE = flags.DEFINE_string('params_override', '',
                                       'a.b=1,c=2 overrides (strict).')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Pretraining model dir (-> latest) or prefix.',
    required=True)
_RESET = flags.DEFINE_list(
    'reset', None, f'Stages to re-initialize, from {branch_loading.STAGES}.',
    required=True)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the fresh initialization '
                             '(tf_keras.utils.set_random_seed).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where to write.',
                                  required=True)


def main(argv):
  del argv
  if not _RESET.value:
    # `--reset=` passes absl's required check as []; it would write a copy
    # of the checkpoint after the model build or fail in reset_stages.
    raise app.UsageError(f'--reset is empty; name at least one stage of '
                         f'{branch_loading.STAGES}')
  unknown = [s for s in _RESET.value if s not in branch_loading.STAGES]
  if unknown:
    raise app.UsageError(f'--reset: unknown stages {unknown}; choose from '
                         f'{branch_loading.STAGES}')
  # Resolved once, before the (slow) model build, and reported as read.
  source = branch_loading.resolve_checkpoint_path(_CHECKPOINT.value,
                                                  '--checkpoint')
  params = features_lib.load_experiment_config(
      _EXPERIMENT.value, _CONFIG_FILE.value or (), _PARAMS_OVERRIDE.value)
  model = features_lib.load_pretrained_model(params, source,
                                             _EXPERIMENT.value)
  tf_keras.utils.set_random_seed(_SEED.value)
  fresh = features_lib.build_pretrain_model(params)
  counts = branch_loading.reset_stages(model.backbone, fresh.backbone,
                                       _RESET.value)
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(backbone=model.backbone), _OUTPUT_DIR.value,
      max_to_keep=1)
  path = manager.save(checkpoint_number=0)
  report = {'source': source, 'experiment': _EXPERIMENT.value,
            'stages': list(_RESET.value), 'seed': _SEED.value,
            'variables_reset': counts, 'checkpoint': path}
  with open(os.path.join(_OUTPUT_DIR.value, 'reset.json'), 'w') as f:
    json.dump(report, f, indent=2)
  logging.info('reset %s (%s variables) of %s; wrote %s', _RESET.value,
               counts, source, path)
  print(json.dumps(report, indent=2))


if __name__ == '__main__':
  app.run(main)
