"""Spatio-temporal action localization (AVA) configs and experiments.

SPEC section 2: res5r features, an action-transformer head, sigmoid
cross-entropy over 80 classes (class index = action_id - 1), trained with
ground-truth person boxes (jittered), evaluated with ground-truth boxes
(mAP(GT)) or detector boxes above a score threshold (mAP(Det)) by frame-level
AP at IoU 0.5 over the classes of the label map (60 for AVA v2.2).

Experiments:
  const_cl_ava_v22       AVA v2.2; derives the backbone from
                         `const_cl_pretrain_kinetics400` (R3D-50 Y, res5r).
  const_cl_ava_kinetics  AVA-Kinetics; derives from const_cl_ava_v22, longer.
  const_cl_ava_toy       const_cl_ava_v22 shrunk to the toy world's AVA-format
                         data (converted to TFRecords on first use).

Clips: records hold key-frame-centred clips sampled at conversion time
(`tools/ava_to_tfrecords.py --num_frames 32 --stride 2 --fps 30`, i.e. 32
frames at stride 2); `feature_shape[0]` frames around the key frame are read.

Fine-tuning schedule (our choice, not from the paper): SGD momentum 0.9,
global batch 64, linear warm-up 1k steps then cosine decay from 0.1;
40k steps for AVA v2.2 (about 12 epochs of its ~211k training key frames),
80k for AVA-Kinetics; weight decay 1e-7 on kernels; bfloat16.
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
from configs import const_cl

FEATURE_ENDPOINTS = ('5r', '5g', '4')
TOY_SPLITS = ('', 'train', 'validation')
TOY_FILLERS = ('still', 'non_key')  # ToyAvaWorld.fillers

AVA_NUM_CLASSES = 80
# Number of action classes of the toy world (dataloaders/toy_world.py).
TOY_NUM_CLASSES = 8


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """AVA key-frame clips (TFRecords of `dataloaders/converters/ava.py`).

  When `input_path` is empty and `toy_world_split` is set, the toy world's
  AVA-format files are written and converted on first use (`task.toy_world`).
  """
  # A pattern, comma-separated patterns, or a list of them.
  input_path: Union[str, List[str]] = ''
  toy_world_split: str = ''  # '' | train | validation
  global_batch_size: int = 64
  is_training: bool = True
  drop_remainder: bool = True
  # [num_frames, height, width, channels]; train and validation must agree
  # (the position encodings are sized by the feature map).
  feature_shape: Tuple[int, int, int, int] = (32, 224, 224, 3)
  max_boxes: int = 16  # >= 1; boxes per clip, padded / truncated
  box_jitter: float = 0.0  # >= 0; training only, fraction of box size
  use_detections: bool = False  # evaluation only: detector boxes (mAP(Det))
  detection_score_threshold: float = 0.8  # in [0, 1]
  train_crop_scale: Tuple[float, float] = (0.8, 1.0)  # 0 < lo <= hi <= 1
  random_flip: bool = True
  # Evaluation: True keeps the centred window of the output aspect (loses
  # the sides of 16:9 movies), False resizes the whole frame to the output
  # size. Training crops take the same aspect (the output's, or the
  # frame's), so people are stretched alike in training and evaluation; a
  # feature_shape of the frames' aspect (e.g. 224 x 400 for 16:9) keeps
  # them undistorted.
  center_crop: bool = False
  shuffle_buffer_size: int = 1024
  cycle_length: Optional[int] = 8
  dtype: str = 'float32'  # float32 | bfloat16 | float16


@dataclasses.dataclass
class Evaluation(hyperparams.Config):
  """The official files mAP is computed against (empty: no mAP, CSV only)."""
  groundtruth_csv: str = ''  # e.g. ava_val_v2.2.csv
  labelmap: str = ''  # e.g. ava_action_list_v2.2_for_activitynet_2019.pbtxt
  exclusions_csv: str = ''  # e.g. ava_val_excluded_timestamps_v2.2.csv
  # Written into the model dir at every evaluation (overwritten).
  detections_csv_name: str = 'ava_detections.csv'


@dataclasses.dataclass
class ToyAvaWorld(hyperparams.Config):
  """The toy world's AVA-format data (written + converted on first use)."""
  num_train_videos: int = 60  # >= 1; 10 s each, 9 key frames
  num_validation_videos: int = 20  # >= 1
  seed: int = 0
  clip_num_frames: int = 8  # frames stored per key frame (>= feature_shape[0])
  clip_stride: int = 2  # in frames of the toy world's 8 fps
  short_side: int = 64
  # How the objects other than the two key actors move (ToyWorldSpec.fillers).
  # 'still' (the pretraining world's): they stand still, so a moving object's
  # trajectory action follows from its shape (a moving disc orbits) and the
  # head must tell which boxes move. 'non_key': any shape takes any motion, so
  # the trajectory action must be read from the motion itself.
  fillers: str = 'still'  # still | non_key
  cache_dir: str = ''  # '' -> dataloaders.toy_world.default_cache_root()


@dataclasses.dataclass
class ActionTransformerHead(hyperparams.Config):
  num_layers: int = 3
  num_heads: int = 3
  hidden_dim: int = 128
  mlp_dim: int = 512
  roi_crop_size: int = 4
  dropout_rate: float = 0.3
  # L2-normalize the features per position before the head, as the
  # pretraining's ConST-CL decoder reads res5r (SPEC s.1) and the SiamFC head
  # does. Raw pretrained res5r is ~8x the norm of a fresh backbone's, which
  # left the head at the label prior on the toy AVA task
  # (docs/toy_benchmark_findings.md, "The head's input scale").
  normalize_features: bool = True


@dataclasses.dataclass
class ActionLocalizationModel(hyperparams.Config):
  model_type: str = 'const_cl_action_localization'
  backbone: backbones.Backbone3D = dataclasses.field(
      default_factory=backbones.Backbone3D)
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(  # pylint: disable=g-long-lambda
          use_sync_bn=False, norm_momentum=0.9, norm_epsilon=1e-5))
  head: ActionTransformerHead = dataclasses.field(
      default_factory=ActionTransformerHead)
  # res5r for instance tasks (SPEC s.1). With the full Y backbone the
  # pretraining checkpoint loads as is (`init_checkpoint_modules: backbone`)
  # and res5g is computed but unused.
  feature_endpoint: str = '5r'  # 5r | 5g | 4
  # True: the backbone is not trained and always runs with training=False
  # (batch norm on its moving statistics), so only the head learns: AVA on
  # frozen features, the localization counterpart of linear evaluation.
  freeze_backbone: bool = False


@dataclasses.dataclass
class Losses(hyperparams.Config):
  l2_weight_decay: float = 1e-7  # on kernels


@dataclasses.dataclass
class ActionLocalizationTask(cfg.TaskConfig):
  """AVA fine-tuning / evaluation."""
  model: ActionLocalizationModel = dataclasses.field(
      default_factory=ActionLocalizationModel)
  losses: Losses = dataclasses.field(default_factory=Losses)
  num_classes: int = AVA_NUM_CLASSES  # logits; class index = action_id - 1
  train_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=True, box_jitter=0.05))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(  # pylint: disable=g-long-lambda
          is_training=False, drop_remainder=False, max_boxes=32))
  evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
  toy_world: ToyAvaWorld = dataclasses.field(default_factory=ToyAvaWorld)
  init_checkpoint: str = ''
  init_checkpoint_modules: str = 'backbone'  # backbone | all


def validate_task(task: ActionLocalizationTask) -> None:
  """Cross-field checks, raised with the offending values."""
  model = task.model
  if model.backbone.type != 'resnet_3d_y':
    raise ValueError(f'task.model.backbone.type must be resnet_3d_y, got '
                     f'{model.backbone.type!r}')
  backbones.check_resnet_3d_y(model.backbone.resnet_3d_y)
  if model.feature_endpoint not in FEATURE_ENDPOINTS:
    raise ValueError(f'task.model.feature_endpoint must be one of '
                     f'{FEATURE_ENDPOINTS}, got {model.feature_endpoint!r}')
  if model.feature_endpoint == '5r' and (
      not model.backbone.resnet_3d_y.duplicate_res5):
    raise ValueError('task.model.feature_endpoint=5r needs '
                     'task.model.backbone.resnet_3d_y.duplicate_res5=True '
                     '(without it 5r is the global branch res5g)')
  if task.num_classes < 1:
    raise ValueError(f'task.num_classes must be >= 1, got {task.num_classes}')
  if task.init_checkpoint_modules not in ('backbone', 'all'):
    raise ValueError(f'task.init_checkpoint_modules must be backbone or all, '
                     f'got {task.init_checkpoint_modules!r}')
  stride = const_cl.backbone_frame_stride(model)
  for name in ('train_data', 'validation_data'):
    data = getattr(task, name)
    if data.toy_world_split not in TOY_SPLITS:
      raise ValueError(f'task.{name}.toy_world_split must be one of '
                       f'{TOY_SPLITS}, got {data.toy_world_split!r}')
    if data.max_boxes < 1:
      raise ValueError(f'task.{name}.max_boxes must be >= 1, got '
                       f'{data.max_boxes}')
    if data.box_jitter < 0:
      raise ValueError(f'task.{name}.box_jitter must be >= 0, got '
                       f'{data.box_jitter}')
    if not 0 <= data.detection_score_threshold <= 1:
      raise ValueError(f'task.{name}.detection_score_threshold must be in '
                       f'[0, 1], got {data.detection_score_threshold}')
    lo, hi = data.train_crop_scale
    if not 0 < lo <= hi <= 1:
      raise ValueError(f'task.{name}.train_crop_scale must satisfy 0 < lo <= '
                       f'hi <= 1, got {data.train_crop_scale}')
    if data.feature_shape[0] % stride:
      raise ValueError(f'task.{name}.feature_shape[0] '
                       f'({data.feature_shape[0]}) must be a multiple of the '
                       f'backbone temporal stride ({stride})')
    if data.toy_world_split and (
        task.toy_world.clip_num_frames < data.feature_shape[0]):
      raise ValueError(f'task.toy_world.clip_num_frames '
                       f'({task.toy_world.clip_num_frames}) is smaller than '
                       f'task.{name}.feature_shape[0] '
                       f'({data.feature_shape[0]})')
  if task.train_data.use_detections:
    raise ValueError('task.train_data.use_detections must be False: detector '
                     'boxes have no labels to train on')
  if tuple(task.train_data.feature_shape) != tuple(
      task.validation_data.feature_shape):
    raise ValueError(
        f'task.train_data.feature_shape {task.train_data.feature_shape} and '
        f'task.validation_data.feature_shape '
        f'{task.validation_data.feature_shape} must agree: the learned '
        'position encodings are sized by the feature map')
  if task.toy_world.fillers not in TOY_FILLERS:
    raise ValueError(f'task.toy_world.fillers must be one of {TOY_FILLERS}, '
                     f'got {task.toy_world.fillers!r}')
  if task.toy_world.num_train_videos < 1 or (
      task.toy_world.num_validation_videos < 1):
    raise ValueError(f'task.toy_world needs >= 1 video per split, got '
                     f'{task.toy_world.num_train_videos} train and '
                     f'{task.toy_world.num_validation_videos} validation')


@dataclasses.dataclass
class ActionLocalizationExperimentConfig(cfg.ExperimentConfig):
  """Experiment config whose `validate()` also checks the task fields."""

  def validate(self):
    # Types first: the checks below assume them (configs/config_types.py).
    config_types.check_config_types(self)
    super().validate()
    if isinstance(self.task, ActionLocalizationTask):
      validate_task(self.task)


def _optimization(train_steps: int, warmup_steps: int,
                  learning_rate: float) -> optimization.OptimizationConfig:
  return optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd',
                    'sgd': {'momentum': 0.9, 'nesterov': False}},
      'learning_rate': {'type': 'cosine',
                        'cosine': {'initial_learning_rate': learning_rate,
                                   'decay_steps': train_steps}},
      'warmup': {'type': 'linear',
                 'linear': {'warmup_steps': warmup_steps}},
  })


@exp_factory.register_config_factory('const_cl_ava_v22')
def const_cl_ava_v22() -> cfg.ExperimentConfig:
  """AVA v2.2 fine-tuning from a ConST-CL checkpoint (SPEC s.2).

  Paths (records, ground truth, label map, exclusions, init_checkpoint) come
  from `configs/yaml/const_cl_ava_v22.yaml` or --params_override.
  """
  pretrain = const_cl.const_cl_pretrain_kinetics400()
  model = ActionLocalizationModel(
      backbone=pretrain.task.model.backbone,
      norm_activation=pretrain.task.model.norm_activation)
  train_steps = 40000
  return ActionLocalizationExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=ActionLocalizationTask(model=model),
      trainer=cfg.TrainerConfig(
          train_steps=train_steps,
          validation_steps=-1,  # the whole validation set: mAP needs it
          validation_interval=5000,
          steps_per_loop=500,
          summary_interval=500,
          checkpoint_interval=5000,
          best_checkpoint_eval_metric='mAP',
          best_checkpoint_metric_comp='higher',
          optimizer_config=_optimization(train_steps, 1000, 0.1)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


@exp_factory.register_config_factory('const_cl_ava_kinetics')
def const_cl_ava_kinetics() -> cfg.ExperimentConfig:
  """AVA-Kinetics: const_cl_ava_v22 with the joint data, twice as long."""
  config = const_cl_ava_v22()
  train_steps = 80000
  config.trainer.train_steps = train_steps
  config.trainer.optimizer_config = _optimization(train_steps, 1000, 0.1)
  return config


@exp_factory.register_config_factory('const_cl_ava_toy')
def const_cl_ava_toy() -> cfg.ExperimentConfig:
  """const_cl_ava_v22 on the toy world: tiny backbone, 8 frames of 64 px.

  Matches `const_cl_pretrain_toy`'s backbone, so its checkpoint loads with
  `task.init_checkpoint=<pretrain model_dir>`.
  """
  config = const_cl_ava_v22()
  pretrain = const_cl.const_cl_pretrain_toy()
  task = config.task
  task.model.backbone = pretrain.task.model.backbone
  task.model.norm_activation = pretrain.task.model.norm_activation
  task.model.head = ActionTransformerHead(
      num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, roi_crop_size=2,
      dropout_rate=0.1)
  task.num_classes = TOY_NUM_CLASSES
  for data, split, boxes in ((task.train_data, 'train', 4),
                             (task.validation_data, 'validation', 8)):
    data.input_path = ''
    data.toy_world_split = split
    data.global_batch_size = 16
    data.feature_shape = (8, 64, 64, 3)
    data.max_boxes = boxes
    data.shuffle_buffer_size = 256
    data.cycle_length = 2
  # The toy detector's false positives score below 0.6, its hits above.
  task.validation_data.detection_score_threshold = 0.5
  task.losses.l2_weight_decay = 1e-5
  config.runtime.mixed_precision_dtype = 'float32'
  train_steps = 300
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=-1,
      validation_interval=150,
      steps_per_loop=50,
      summary_interval=50,
      checkpoint_interval=150,
      max_to_keep=2,
      optimizer_config=_optimization(train_steps, 30, 0.05))
  return config
