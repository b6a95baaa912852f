"""ConST-CL pretraining configs and registered experiments.

`const_cl_pretrain_kinetics400` holds the released settings (SPEC section 1);
`const_cl_pretrain_toy` derives from it and changes only what a 2-core machine
needs (tiny backbone, 8 frames of 64 px, the toy world as data).
"""
import dataclasses
from typing import List, Optional, Tuple, Union

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import common

from configs import backbones
from configs import config_types

REGION_SOURCES = ('random', 'slic', 'felzenszwalb', 'detector')
REGION_FRAMES = ('center', 'random', 'nearest')
LOSS_ENDPOINTS = ('y', 'c5', 'c4p')
LOCAL_LOSSES = ('const_cl', 'region', 'dense', 'none')
# DataConfig.dtype: the dtype of the input clips ('image').
DATA_DTYPES = ('float32', 'bfloat16', 'float16')

# The labelled toy worlds (`dataloaders.toy_world.named_world`): their number
# of clip classes and cached train / validation videos. Configs import no data
# code, so they are restated here; tests/tasks/test_video_classification.py
# checks them against the toy world, and the task checks the class count
# again at run time. 'pairs' is the pretraining world (the Kinetics stand-in),
# 'shapes' the transfer world (the UCF101 / HMDB51 stand-in), 'plain' the
# pairs world without colour. `DataConfig.toy_world` names one of them, and
# so does the classification data config (configs/video_classification.py).
TOY_WORLDS = {
    'pairs': {'num_classes': 10, 'train': 500, 'validation': 100},
    'shapes': {'num_classes': 5, 'train': 500, 'validation': 300},
    'plain': {'num_classes': 10, 'train': 500, 'validation': 100},
}

KINETICS400_TRAIN_EXAMPLES = 235693
KINETICS400_VAL_EXAMPLES = 19877


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """Two-view self-supervised video input.

  `input_path` is a file pattern of Model Garden video TFRecords (SPEC s.3).
  When it is empty and `toy_world_split` is set, the toy world is generated on
  first use in a cache folder and read from there.
  """
  # A pattern, comma-separated patterns, or a list of them.
  input_path: Union[str, List[str]] = ''
  # '' | train | validation; an empty override (`x=`, None) is stored as ''
  # (configs/config_types.py).
  toy_world_split: str = ''
  # Which toy world (TOY_WORLDS) `toy_world_split` reads: 'pairs' (the
  # Kinetics stand-in), 'plain' (the same scenes without colour: flat grey
  # background, white objects) or 'shapes' (the transfer world).
  toy_world: str = 'pairs'
  global_batch_size: int = 1024
  is_training: bool = True
  drop_remainder: bool = True
  # [num_frames, height, width, channels] of one view.
  feature_shape: Tuple[int, int, int, int] = (16, 224, 224, 3)
  temporal_stride: int = 2
  num_boxes: int = 8
  region_source: str = 'random'  # random | slic | felzenszwalb | detector
  min_box_size: float = 0.1  # box width, fraction of the frame
  max_box_size: float = 0.5
  min_box_aspect: float = 0.5  # width / height
  max_box_aspect: float = 2.0
  min_crop_area: float = 0.3
  color_jitter_strength: float = 1.0
  shuffle_buffer_size: int = 1024
  cycle_length: Optional[int] = 8
  # False: an undecodable frame stops the job with the record's name.
  # True: the record is skipped, counted and logged.
  skip_bad_records: bool = False
  # dtype of 'image' (DATA_DTYPES): bfloat16 halves the input pipeline's
  # memory and host-to-device traffic under bfloat16 mixed precision.
  dtype: str = 'float32'


@dataclasses.dataclass
class GlobalHead(hyperparams.Config):
  """CVRL MLP: `num_hidden_layers` x (dense, BN, ReLU), then a projection."""
  hidden_dim: int = 2048
  num_hidden_layers: int = 3
  projection_dim: int = 128


@dataclasses.dataclass
class LocalHead(hyperparams.Config):
  """ConST-CL head: transformer decoder, regions query the other view."""
  context_length: int = 5  # 0 (vanilla region loss, Eq. 3) | odd, <= frames
  num_layers: int = 3
  num_heads: int = 3
  hidden_dim: int = 128
  mlp_dim: int = 512
  roi_crop_size: int = 4
  dropout_rate: float = 0.0
  # Width of the MLP used when context_length == 0 and by the dense baseline.
  region_mlp_dim: int = 2048
  dense_projection_dim: int = 128


@dataclasses.dataclass
class ConstCLModel(hyperparams.Config):
  """The pretraining model: Y backbone, global MLP head, local head."""
  model_type: str = 'const_cl'
  backbone: backbones.Backbone3D = dataclasses.field(
      default_factory=backbones.Backbone3D)
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(  # pylint: disable=g-long-lambda
          use_sync_bn=False, norm_momentum=0.9, norm_epsilon=1e-5))
  global_head: GlobalHead = dataclasses.field(default_factory=GlobalHead)
  local_head: LocalHead = dataclasses.field(default_factory=LocalHead)
  loss_endpoints: str = 'y'  # y | c5 | c4p
  region_frame: str = 'center'  # center | random | nearest
  local_loss: str = 'const_cl'  # const_cl | region | dense | none (CVRL)
  # Backbone stages the train step keeps at their initial values: ''
  # (none, the paper) | 'stem' | '2' (stem + res2) | '3' (stem + res2 +
  # res3). The toy benchmark pretrains with 'stem' (README, "Toy-world
  # benchmark").
  freeze_until: str = ''


@dataclasses.dataclass
class Losses(hyperparams.Config):
  global_temperature: float = 0.1
  local_temperature: float = 0.2
  # lambda of `L_global + lambda * L_local`; calibrated on the released
  # convention (global loss = SUM of both directions, local = MEAN).
  local_weight: float = 0.001
  l2_weight_decay: float = 1e-6


@dataclasses.dataclass
class ConstCLPretrainTask(cfg.TaskConfig):
  model: ConstCLModel = dataclasses.field(default_factory=ConstCLModel)
  losses: Losses = dataclasses.field(default_factory=Losses)
  train_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(  # pylint: disable=g-long-lambda
          is_training=False, drop_remainder=False, global_batch_size=256))


def backbone_frame_stride(model: ConstCLModel) -> int:
  """Input frames per backbone feature frame (stem and pool temporal strides)."""
  b = model.backbone.resnet_3d_y
  return b.stem_conv_temporal_stride * b.stem_pool_temporal_stride


def validate_pretrain_task(task: ConstCLPretrainTask) -> None:
  """Cross-field checks, raised with the offending values."""
  model = task.model
  if model.backbone.type != 'resnet_3d_y':
    raise ValueError(f'task.model.backbone.type must be resnet_3d_y, got '
                     f'{model.backbone.type!r}')
  backbones.check_resnet_3d_y(model.backbone.resnet_3d_y)
  for name, value, allowed in (
      ('task.model.loss_endpoints', model.loss_endpoints, LOSS_ENDPOINTS),
      ('task.model.region_frame', model.region_frame, REGION_FRAMES),
      ('task.model.local_loss', model.local_loss, LOCAL_LOSSES)):
    if value not in allowed:
      raise ValueError(f'{name} must be one of {allowed}, got {value!r}')
  backbones.check_freeze_until(model.freeze_until)
  duplicate = model.backbone.resnet_3d_y.duplicate_res5
  if model.loss_endpoints == 'y' and not duplicate and (
      model.local_loss != 'none'):
    raise ValueError('task.model.loss_endpoints=y needs '
                     'task.model.backbone.resnet_3d_y.duplicate_res5=True')
  if model.loss_endpoints in ('c5', 'c4p') and duplicate:
    raise ValueError(f'task.model.loss_endpoints={model.loss_endpoints} uses '
                     'a single res5: set '
                     'task.model.backbone.resnet_3d_y.duplicate_res5=False')
  stride = backbone_frame_stride(model)
  for data_name in ('train_data', 'validation_data'):
    data = getattr(task, data_name)
    if data.region_source not in REGION_SOURCES:
      raise ValueError(f'task.{data_name}.region_source must be one of '
                       f'{REGION_SOURCES}, got {data.region_source!r}')
    if data.toy_world_split not in ('', 'train', 'validation'):
      raise ValueError(f'task.{data_name}.toy_world_split must be "", train '
                       f'or validation, got {data.toy_world_split!r}')
    if data.dtype not in DATA_DTYPES:
      raise ValueError(f'task.{data_name}.dtype must be one of '
                       f'{DATA_DTYPES}, got {data.dtype!r}')
    if data.toy_world not in TOY_WORLDS:
      raise ValueError(f'task.{data_name}.toy_world must be one of '
                       f'{sorted(TOY_WORLDS)}, got {data.toy_world!r}')
    if not 0 < data.min_box_size <= data.max_box_size <= 1:
      raise ValueError(f'task.{data_name}: need 0 < min_box_size '
                       f'({data.min_box_size}) <= max_box_size '
                       f'({data.max_box_size}) <= 1')
    if not 0 < data.min_box_aspect <= data.max_box_aspect:
      raise ValueError(f'task.{data_name}: need 0 < min_box_aspect '
                       f'({data.min_box_aspect}) <= max_box_aspect '
                       f'({data.max_box_aspect})')
    num_frames = data.feature_shape[0]
    if num_frames % stride:
      raise ValueError(f'task.{data_name}.feature_shape[0] ({num_frames}) '
                       f'must be a multiple of the backbone temporal stride '
                       f'({stride})')
    feature_frames = num_frames // stride
    length = model.local_head.context_length
    if model.local_loss == 'const_cl':
      if length < 1 or length % 2 == 0:
        raise ValueError(
            'task.model.local_head.context_length must be odd and >= 1 for '
            f'local_loss=const_cl (0 means local_loss=region), got {length}')
      if length > feature_frames:
        raise ValueError(
            f'task.model.local_head.context_length ({length}) is larger than '
            f'the {feature_frames} feature frames of task.{data_name} '
            f'({num_frames} frames / temporal stride {stride}); the released '
            'head silently repeats the key frame in that case')
  if task.train_data.global_batch_size < 2:
    raise ValueError('task.train_data.global_batch_size must be >= 2 for '
                     'contrastive learning, got '
                     f'{task.train_data.global_batch_size}')


@dataclasses.dataclass
class ConstCLExperimentConfig(cfg.ExperimentConfig):
  """Experiment config whose `validate()` also checks the task fields."""

  def validate(self):
    # Types first: the checks below assume them (configs/config_types.py).
    config_types.check_config_types(self)
    super().validate()
    if isinstance(self.task, ConstCLPretrainTask):
      validate_pretrain_task(self.task)


def _optimization(train_steps: int, warmup_steps: int,
                  learning_rate: float) -> optimization.OptimizationConfig:
  return optimization.OptimizationConfig({
      'optimizer': {
          'type': 'sgd',
          'sgd': {'momentum': 0.9, 'nesterov': False},
      },
      'learning_rate': {
          'type': 'cosine',
          'cosine': {
              'initial_learning_rate': learning_rate,
              'decay_steps': train_steps,
          },
      },
      'warmup': {
          'type': 'linear',
          'linear': {'warmup_steps': warmup_steps},
      },
  })


@exp_factory.register_config_factory('const_cl_pretrain_kinetics400')
def const_cl_pretrain_kinetics400() -> cfg.ExperimentConfig:
  """ConST-CL on Kinetics-400: released settings, 200k steps (SPEC s.1)."""
  train_steps = 200000
  global_batch_size = 1024
  task = ConstCLPretrainTask(
      train_data=DataConfig(
          input_path='', is_training=True,
          global_batch_size=global_batch_size,
          feature_shape=(16, 224, 224, 3), temporal_stride=2,
          shuffle_buffer_size=1024),
      validation_data=DataConfig(
          input_path='', is_training=False, drop_remainder=False,
          global_batch_size=256, feature_shape=(16, 224, 224, 3),
          temporal_stride=2))
  return ConstCLExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=task,
      trainer=cfg.TrainerConfig(
          train_steps=train_steps,
          validation_steps=KINETICS400_VAL_EXAMPLES // 256,
          validation_interval=5000,
          steps_per_loop=500,
          summary_interval=500,
          checkpoint_interval=5000,
          optimizer_config=_optimization(train_steps, 2500, 40.96)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


def toy_task(task: ConstCLPretrainTask) -> ConstCLPretrainTask:
  """Shrinks a pretraining task to the toy world in place; returns it.

  Tiny backbone, 8 frames of 64 px at stride 2, toy world data, small heads;
  the code paths are those of the real experiment.
  """
  task.model.backbone.resnet_3d_y = backbones.resnet_3d_y_tiny()
  task.model.backbone.resnet_3d_y.duplicate_res5 = (
      task.model.loss_endpoints == 'y' and task.model.local_loss != 'none')
  task.model.global_head = GlobalHead(
      hidden_dim=256, num_hidden_layers=2, projection_dim=64)
  task.model.local_head.context_length = min(
      task.model.local_head.context_length, 3)
  task.model.local_head.hidden_dim = 64
  task.model.local_head.mlp_dim = 128
  task.model.local_head.num_heads = 2
  task.model.local_head.num_layers = 2
  task.model.local_head.region_mlp_dim = 256
  task.model.local_head.dense_projection_dim = 64
  # The tiny backbone is far wider than its data: a larger local weight lets
  # the local loss move the features in a few hundred steps.
  task.losses.local_weight = 0.1
  for data, split, batch in ((task.train_data, 'train', 16),
                             (task.validation_data, 'validation', 16)):
    data.input_path = ''
    data.toy_world_split = split
    data.global_batch_size = batch
    data.feature_shape = (8, 64, 64, 3)
    data.temporal_stride = 2
    data.shuffle_buffer_size = 64
    data.cycle_length = 2
    data.num_boxes = 4
    # Milder views than the released ones (colour strength 1.0, crops from
    # 30% of the frame): with those, at batch 16 on 64-px toy videos, the
    # global branch collapses in the first 25 steps (every embedding at
    # cosine 0.97-0.99 to every other) and its held-out contrastive accuracy
    # stays at chance; with these it is ~0.2 after 300 steps (chance 0.03).
    # README, "Why the toy views are milder than the released ones".
    data.color_jitter_strength = 0.5
    data.min_crop_area = 0.6
  return task


def toy_trainer(train_steps: int = 300) -> cfg.TrainerConfig:
  return cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=4,
      validation_interval=100,
      steps_per_loop=50,
      summary_interval=50,
      checkpoint_interval=100,
      max_to_keep=3,
      optimizer_config=_optimization(train_steps, 30, 0.2))


@exp_factory.register_config_factory('const_cl_pretrain_toy')
def const_cl_pretrain_toy() -> cfg.ExperimentConfig:
  """`const_cl_pretrain_kinetics400` shrunk to the toy world (2 CPU cores)."""
  config = const_cl_pretrain_kinetics400()
  toy_task(config.task)
  config.runtime.mixed_precision_dtype = 'float32'
  config.trainer = toy_trainer()
  return config
