r"""Effective rank and temporal share of a backbone's features, per stage.

Does a pretrained backbone squeeze its features into a few directions
(dimensional collapse), and do they still change over time? For each
checkpoint, builds a downstream experiment's model with the checkpoint as
`task.init_checkpoint` (empty: random initialization drawn with --seed),
runs its backbone on the experiment's first --num_batches input batches
(the same clips for every checkpoint) and prints, for the stem's output and
every endpoint, the effective rank of the channels over all positions and
the share of the variance between frames (`modeling.feature_stats`).

Usage (from the repo root):
  python tools/feature_rank.py --experiment=const_cl_ava_toy \
      --checkpoint= --checkpoint=/tmp/const_cl_toy
  python tools/feature_rank.py --experiment=const_cl_ava_toy \
      --params_override=task.model.backbone.resnet_3d_y.dilate_res4_res5=true \
      --checkpoint=/tmp/const_cl_toy --output_json=/tmp/rank.json

The experiment's inputs must carry an `image` clip: AVA and classification
experiments do, and pretraining ones (both views of each video); tracking
feeds exemplar and search crops. --bn=batch (the
default) normalizes with the batch's statistics, as a fine-tuning step
does; --bn=moving uses the checkpoint's moving averages, as evaluation
does.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from modeling import feature_stats
from modeling.backbones import branch_loading
from modeling.layers import blocks_3d
from tasks import features as features_lib
from tasks import registry_imports

_EXPERIMENT = flags.DEFINE_string(
    'experiment', 'const_cl_ava_toy',
    'Registered downstream experiment whose inputs and model are used.')
_CONFIG_FILE = flags.DEFINE_multi_string('config_file', None,
                                         'YAML overrides (strict).')
_PARAMS_OVERRIDE = flags.DEFINE_string('params_override', '',
                                       'a.b=1,c=2 overrides (strict).')
_CHECKPOINT = flags.DEFINE_multi_string(
    'checkpoint', None, 'Model dir (-> latest checkpoint) or prefix, or '
    'empty for random initialization; repeatable.', required=True)
_SEED = flags.DEFINE_integer(
    'seed', 0, 'Seed of the random initialization and of the input order.')
_SPLIT = flags.DEFINE_enum('split', 'train', ['train', 'validation'],
                           'Which of the experiment\'s inputs to read.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 1,
                                    'Input batches to read (>= 1).')
_BN = flags.DEFINE_enum('bn', 'batch', ['batch', 'moving'],
                        'Batch-norm statistics: the batch\'s or the moving '
                        'averages.')
_MAX_ROWS = flags.DEFINE_integer(
    'max_rows', 20000, 'Positions per stage the effective rank reads.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Also write the numbers here.')


def load_config(experiment, config_files, params_override, init_checkpoint):
  """The experiment's config with `task.init_checkpoint`, validated."""
  registry_imports.check_experiment(experiment)
  task = {'init_checkpoint': init_checkpoint}
  if not init_checkpoint and hasattr(
      exp_factory.get_exp_config(experiment).task, 'allow_random_init'):
    task['allow_random_init'] = True  # Classification refuses it otherwise.
  try:
    return features_lib.assemble_experiment_config(
        experiment, config_files, params_override, {'task': task})
  except KeyError as e:  # A key --params_override or a YAML does not have.
    raise app.UsageError(f'--params_override / --config_file: {e}') from e


def input_clips(task, params, experiment: str, split: str,
                num_batches: int):
  """The first `num_batches` `image` clips of the experiment's inputs."""
  data = (params.task.train_data if split == 'train'
          else params.task.validation_data)
  clips = []
  for element in task.build_inputs(data).take(num_batches):
    features = element[0] if isinstance(element, (tuple, list)) else element
    if not isinstance(features, dict) or 'image' not in features:
      keys = sorted(features) if isinstance(features, dict) else features
      raise ValueError(
          f'--experiment={experiment}: its inputs carry no `image` clip (got '
          f'{keys}); use an AVA, classification or pretraining experiment')
    clips.append(features['image'])
  if not clips:
    raise ValueError(f'the {split} inputs of the experiment gave no batch')
  return clips


def backbone_feature_maps(backbone: tf_keras.Model, clips,
                          training: bool):
  """'stem' (after its pool) and every endpoint, batches concatenated."""
  pools = [layer for layer in backbone.layers
           if isinstance(layer, blocks_3d.FramewiseMaxPool3D)]
  if len(pools) != 1:
    raise ValueError(f'expected one stem pool in the backbone, found '
                     f'{len(pools)}')
  stem = tf_keras.Model(backbone.inputs, pools[0].output)
  maps = {}
  for clip in clips:
    outputs = {'stem': stem(clip, training=training),
               **backbone(clip, training=training)}
    for name, value in outputs.items():
      maps.setdefault(name, []).append(value.numpy())
  return {name: np.concatenate(values) for name, values in maps.items()}


def main(argv):
  del argv
  if _NUM_BATCHES.value < 1:
    raise app.UsageError(f'--num_batches must be >= 1, got '
                         f'{_NUM_BATCHES.value}')
  if _MAX_ROWS.value < 2:
    raise app.UsageError(f'--max_rows must be >= 2, got {_MAX_ROWS.value}')
  try:
    report = feature_report()
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if _OUTPUT_JSON.value:
    with open(_OUTPUT_JSON.value, 'w') as f:
      json.dump({'experiment': _EXPERIMENT.value, 'bn': _BN.value,
                 'split': _SPLIT.value, 'num_batches': _NUM_BATCHES.value,
                 'seed': _SEED.value, 'stats': report}, f, indent=2)
    print(f'wrote {_OUTPUT_JSON.value}')
  return 0


def feature_report():
  """Checkpoint (or random initialization) -> stage -> stats; prints them."""
  checkpoints = []
  for path in _CHECKPOINT.value:
    # Resolved before any model is built, and reported as read.
    checkpoints.append(branch_loading.resolve_checkpoint_path(
        path, '--checkpoint') if path else '')
  report = {}
  clips = None
  for checkpoint in checkpoints:
    params = load_config(_EXPERIMENT.value, _CONFIG_FILE.value,
                         _PARAMS_OVERRIDE.value, checkpoint)
    tf_keras.utils.set_random_seed(_SEED.value)
    task = task_factory.get_task(params.task)
    model = task.build_model()
    task.initialize(model)
    if clips is None:
      clips = input_clips(task, params, _EXPERIMENT.value, _SPLIT.value,
                          _NUM_BATCHES.value)
    maps = backbone_feature_maps(model.backbone, clips,
                                 training=_BN.value == 'batch')
    stats = feature_stats.feature_map_stats(maps, _MAX_ROWS.value,
                                            _SEED.value)
    name = checkpoint or f'random initialization (seed {_SEED.value})'
    report[name] = stats
    print(name)
    for stage, row in stats.items():
      print(f"  {stage:5s} effective rank {row['effective_rank']:7.2f} of "
            f"{row['channels']:4d} channels, temporal variance share "
            f"{row['temporal_variance_share']:.2f}")
  return report


if __name__ == '__main__':
  app.run(main)
