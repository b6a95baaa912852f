"""Every ablation of the paper (Tables 3-7) as a registered experiment.

Each experiment derives from `const_cl_pretrain_kinetics400` at the ablation
schedule (100k steps, cosine decay over 100k) and changes one switch:

  Table 3 (baselines)   const_cl_ablation_baseline_cvrl     global loss only,
                                                            plain R3D-50
                        const_cl_ablation_baseline_dense    dense loss (Eq. 1-2)
  Table 4 (region frame) const_cl_ablation_region_frame_{center,random,nearest}
  Table 5 (loss endpoints) const_cl_ablation_loss_endpoints_{c5,c4p,y}
  Table 6 (context length) const_cl_ablation_context_length_{0,1,3,5}
  Table 7 (boxes)       const_cl_ablation_boxes_{random,slic,felzenszwalb,
                                                person_detector,object_detector}

Rows that equal the main model (center, y, context 5, random boxes) are
registered too, so every table is run from the same list of names.

Box rows. `slic` and `felzenszwalb` read segment boxes precomputed into the
records (`tools/precompute_regions.py`); the two detector rows both use
`region_source=detector` and differ only in the boxes the records hold: point
`task.train_data.input_path` at records carrying person-detector boxes for
`boxes_person_detector` and at records carrying generic object-detector boxes
for `boxes_object_detector` (`region/bbox/*` feature lists, SPEC section 3).

Every experiment has a toy variant `<name>_toy` (`configs.const_cl.toy_task`
+ `toy_trainer`: tiny backbone, 8 frames of 64 px from the toy world). The
context-length toy variants read 16 frames (8 feature frames) so that every
context length of Table 6, 5 included, fits; the toy world's object boxes
stand in for both detectors, and its segment boxes are derived from its
frames on first use.
"""
import collections
from typing import Callable, Dict, List

from official.core import config_definitions as cfg
from official.core import exp_factory

from configs import const_cl

ABLATION_TRAIN_STEPS = 100000
# Input frames of the context-length toy variants: 16 frames / temporal
# stride 2 = 8 feature frames, room for a context of 5.
TOY_CONTEXT_NUM_FRAMES = 16

# Table -> experiment names, in the order of the paper's rows.
ABLATION_TABLES: Dict[str, List[str]] = collections.OrderedDict()


def ablation_base() -> cfg.ExperimentConfig:
  """`const_cl_pretrain_kinetics400` at the 100k-step ablation schedule."""
  config = const_cl.const_cl_pretrain_kinetics400()
  config.trainer.train_steps = ABLATION_TRAIN_STEPS
  config.trainer.optimizer_config.learning_rate.cosine.decay_steps = (
      ABLATION_TRAIN_STEPS)
  return config


def _set_region_frame(strategy: str):
  def apply(task: const_cl.ConstCLPretrainTask):
    task.model.region_frame = strategy
  return apply


def _set_loss_endpoints(endpoints: str):
  def apply(task: const_cl.ConstCLPretrainTask):
    task.model.loss_endpoints = endpoints
    # Only the Y has a second res5 (res5r); c5 and c4p are plain R3D-50s.
    task.model.backbone.resnet_3d_y.duplicate_res5 = endpoints == 'y'
  return apply


def _set_context_length(length: int):
  def apply(task: const_cl.ConstCLPretrainTask):
    task.model.local_head.context_length = length
    # Context 0 is the vanilla region loss of Eq. 3 (MLP, no context).
    task.model.local_loss = 'const_cl' if length else 'region'
  return apply


def _set_region_source(source: str):
  def apply(task: const_cl.ConstCLPretrainTask):
    for data in (task.train_data, task.validation_data):
      data.region_source = source
  return apply


def _cvrl(task: const_cl.ConstCLPretrainTask):
  task.model.local_loss = 'none'
  task.model.backbone.resnet_3d_y.duplicate_res5 = False


def _dense(task: const_cl.ConstCLPretrainTask):
  # Same Y backbone as ConST-CL: the loss on res5r is the only difference.
  task.model.local_loss = 'dense'


def _register(table: str, name: str, doc: str,
              apply: Callable[[const_cl.ConstCLPretrainTask], None],
              toy_num_frames: int = 0) -> None:
  """Registers `name` (100k schedule) and `name + '_toy'`.

  Args:
    table: the paper table the row belongs to (key of `ABLATION_TABLES`).
    name: experiment name.
    doc: one line saying what the row is; becomes the factories' docstring.
    apply: sets the row's switches on a pretraining task config.
    toy_num_frames: if > 0, the toy variant reads this many frames per view
      (train and validation) and keeps the row's context length.
  """

  def full() -> cfg.ExperimentConfig:
    config = ablation_base()
    apply(config.task)
    return config

  def toy() -> cfg.ExperimentConfig:
    config = full()
    context_length = config.task.model.local_head.context_length
    const_cl.toy_task(config.task)
    if toy_num_frames:
      for data in (config.task.train_data, config.task.validation_data):
        data.feature_shape = (toy_num_frames,) + tuple(data.feature_shape[1:])
      # toy_task caps the context at the 4 feature frames of 8 input frames.
      config.task.model.local_head.context_length = context_length
    config.runtime.mixed_precision_dtype = 'float32'
    config.trainer = const_cl.toy_trainer()
    return config

  full.__name__, toy.__name__ = name, f'{name}_toy'
  full.__doc__ = f'{doc} ({table}, 100k steps).'
  toy.__doc__ = f'`{name}` shrunk to the toy world.'
  exp_factory.register_config_factory(name)(full)
  exp_factory.register_config_factory(f'{name}_toy')(toy)
  ABLATION_TABLES.setdefault(table, []).append(name)


_register('Table 3', 'const_cl_ablation_baseline_cvrl',
          'CVRL: global loss only on a plain R3D-50', _cvrl)
_register('Table 3', 'const_cl_ablation_baseline_dense',
          'Dense contrastive baseline (Eq. 1-2) on res5r', _dense)

for _strategy in const_cl.REGION_FRAMES:
  _register('Table 4', f'const_cl_ablation_region_frame_{_strategy}',
            f'Region frames chosen by the {_strategy!r} strategy',
            _set_region_frame(_strategy))

for _endpoints in ('c5', 'c4p', 'y'):
  _register('Table 5', f'const_cl_ablation_loss_endpoints_{_endpoints}',
            f'Both losses on the {_endpoints!r} endpoints',
            _set_loss_endpoints(_endpoints))

for _length in (0, 1, 3, 5):
  _register('Table 6', f'const_cl_ablation_context_length_{_length}',
            f'ConST-CL head with context length {_length}'
            + (' (vanilla region loss, Eq. 3)' if _length == 0 else ''),
            _set_context_length(_length),
            toy_num_frames=TOY_CONTEXT_NUM_FRAMES)

for _row, _source in (('random', 'random'), ('slic', 'slic'),
                      ('felzenszwalb', 'felzenszwalb'),
                      ('person_detector', 'detector'),
                      ('object_detector', 'detector')):
  _register('Table 7', f'const_cl_ablation_boxes_{_row}',
            f'Region boxes from {_row.replace("_", " ")}'
            + (' boxes stored in the records of task.train_data.input_path'
               if _source == 'detector' else ''),
            _set_region_source(_source))


def ablation_experiments() -> List[str]:
  """Every ablation experiment name (without the `_toy` variants)."""
  return [name for names in ABLATION_TABLES.values() for name in names]
