"""Downstream action recognition configs: linear evaluation and fine-tuning.

SPEC section 2: a single-branch backbone (res5g by default) restored from a
ConST-CL (or CVRL) pretraining checkpoint, global average pooling, a linear
classifier. Linear evaluation freezes the backbone (batch norm in inference
mode), has no dropout and no weight decay, and trains with SGD momentum 0.9;
fine-tuning trains every layer with dropout. Training clips are 32x224 at
stride 2; evaluation takes 10 clips x 3 crops of 32x256 at stride 2 per video
and averages the softmax scores per video.

Registered experiments (each with a `_toy` variant on the toy world):
  const_cl_linear_eval_kinetics400, const_cl_linear_eval_ucf101,
  const_cl_linear_eval_hmdb51, const_cl_finetune_ucf101,
  const_cl_finetune_hmdb51.

The data configs derive from Model Garden's video classification
`DataConfig` (feature_shape, temporal_stride, num_test_clips, num_test_crops,
num_classes, tfds_name, ...); the toy variants derive from the real ones and
take the backbone of the toy pretraining experiment.
"""
import dataclasses

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import common
from official.vision.configs import video_classification as mg_video

from configs import backbones
from configs import config_types
from configs import const_cl

BRANCHES = ('res5g', 'res5r')
# How the classifier normalizes the pooled features: 'none'; 'l2' (unit
# length); 'batch_norm' (batch normalization without scale and offset, the
# linear probe of MAE, He et al. 2022: every feature dimension at zero mean
# and unit variance whatever the backbone's feature scale).
POOLED_NORMS = ('none', 'l2', 'batch_norm')

# Dataset sizes (train, validation/test): Kinetics-400 as the pretraining
# config counts it; UCF101 and HMDB51 split 1.
KINETICS400_NUM_CLASSES = 400
UCF101_NUM_CLASSES = 101
UCF101_SPLIT1_TRAIN_EXAMPLES = 9537
UCF101_SPLIT1_TEST_EXAMPLES = 3783
HMDB51_NUM_CLASSES = 51
HMDB51_SPLIT1_TRAIN_EXAMPLES = 3570
HMDB51_SPLIT1_TEST_EXAMPLES = 1530

# The labelled toy worlds (defined in configs/const_cl.py).
TOY_WORLDS = const_cl.TOY_WORLDS
TOY_NUM_CLASSES = TOY_WORLDS['pairs']['num_classes']


@dataclasses.dataclass
class DataConfig(mg_video.DataConfig):
  """Model Garden's video classification input plus the toy world.

  Sources, exactly one of: `input_path` (Model Garden video TFRecords, SPEC
  section 3), `tfds_name` (+ `tfds_split`, e.g. `ucf101`), or
  `toy_world_split` (the toy world `toy_world`, generated on first use).
  """
  toy_world_split: str = ''  # '' | train | validation
  toy_world: str = 'pairs'  # pairs | shapes (TOY_WORLDS)


@dataclasses.dataclass
class ClassificationModel(hyperparams.Config):
  """Single-branch Y backbone + global average pool + dropout + linear."""
  model_type: str = 'const_cl_classification'
  backbone: backbones.Backbone3D = dataclasses.field(
      default_factory=lambda: backbones.Backbone3D(  # pylint: disable=g-long-lambda
          type='resnet_3d_y',
          resnet_3d_y=backbones.ResNet3DY(duplicate_res5=False)))
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(  # pylint: disable=g-long-lambda
          use_sync_bn=False, norm_momentum=0.9, norm_epsilon=1e-5))
  # Which res5 branch of a Y pretraining checkpoint becomes the single res5:
  # res5g for holistic tasks (classification), res5r allowed for ablations.
  branch: str = 'res5g'  # res5g | res5r
  dropout_rate: float = 0.0  # 0 for linear evaluation
  # Normalization of the pooled features before the classifier
  # (POOLED_NORMS).
  pooled_norm: str = 'none'


@dataclasses.dataclass
class Losses(hyperparams.Config):
  label_smoothing: float = 0.0
  l2_weight_decay: float = 0.0  # 0 for linear evaluation


@dataclasses.dataclass
class VideoClassificationTask(cfg.TaskConfig):
  """Linear evaluation (`linear_eval=True`) or fine-tuning of a backbone.

  `init_checkpoint` is a pretraining model dir or checkpoint file; only
  `init_checkpoint_modules: backbone` is supported (the pretraining heads
  have no use here). An empty `init_checkpoint` is an error unless
  `allow_random_init` is set (the random-initialization baseline), so a
  forgotten override cannot silently evaluate random features.
  """
  model: ClassificationModel = dataclasses.field(
      default_factory=ClassificationModel)
  train_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(  # pylint: disable=g-long-lambda
          is_training=False, drop_remainder=False))
  losses: Losses = dataclasses.field(default_factory=Losses)
  # True: frozen backbone run with training=False (BN statistics fixed),
  # only the classifier trains. False: every layer trains (fine-tuning).
  linear_eval: bool = True
  init_checkpoint: str = ''
  init_checkpoint_modules: str = 'backbone'  # backbone
  allow_random_init: bool = False


def validate_classification_task(task: VideoClassificationTask) -> None:
  """Cross-field checks, raised with the offending values."""
  model = task.model
  if model.backbone.type != 'resnet_3d_y':
    raise ValueError('task.model.backbone.type must be resnet_3d_y, got '
                     f'{model.backbone.type!r}')
  backbones.check_resnet_3d_y(model.backbone.resnet_3d_y)
  if model.backbone.resnet_3d_y.duplicate_res5:
    raise ValueError(
        'task.model.backbone.resnet_3d_y.duplicate_res5 must be False: the '
        'classifier uses one res5 branch, chosen by task.model.branch '
        f'({model.branch!r}) when the Y checkpoint is loaded')
  if model.branch not in BRANCHES:
    raise ValueError(f'task.model.branch must be one of {BRANCHES}, got '
                     f'{model.branch!r}')
  if not 0.0 <= model.dropout_rate < 1.0:
    raise ValueError('task.model.dropout_rate must be in [0, 1), got '
                     f'{model.dropout_rate}')
  if model.pooled_norm not in POOLED_NORMS:
    raise ValueError(f'task.model.pooled_norm must be one of {POOLED_NORMS},'
                     f' got {model.pooled_norm!r}')
  if task.init_checkpoint_modules != 'backbone':
    raise ValueError('task.init_checkpoint_modules must be backbone (a '
                     'pretraining checkpoint has no classifier), got '
                     f'{task.init_checkpoint_modules!r}')
  if task.linear_eval:
    if model.dropout_rate:
      raise ValueError('linear evaluation uses no dropout: '
                       f'task.model.dropout_rate is {model.dropout_rate}')
    if task.losses.l2_weight_decay:
      raise ValueError('linear evaluation uses no weight decay: '
                       'task.losses.l2_weight_decay is '
                       f'{task.losses.l2_weight_decay}')
  num_classes = task.train_data.num_classes
  for name in ('train_data', 'validation_data'):
    data = getattr(task, name)
    if data.num_classes < 1:
      raise ValueError(f'task.{name}.num_classes must be >= 1, got '
                       f'{data.num_classes}')
    if data.num_classes != num_classes:
      raise ValueError(f'task.{name}.num_classes ({data.num_classes}) != '
                       f'task.train_data.num_classes ({num_classes})')
    if data.is_multilabel:
      raise ValueError(f'task.{name}.is_multilabel: action recognition here '
                       'is single-label (softmax)')
    if not data.one_hot:
      raise ValueError(f'task.{name}.one_hot must be True')
    if data.toy_world_split not in ('', 'train', 'validation'):
      raise ValueError(f'task.{name}.toy_world_split must be "", train or '
                       f'validation, got {data.toy_world_split!r}')
    if data.toy_world not in TOY_WORLDS:
      raise ValueError(f'task.{name}.toy_world must be one of '
                       f'{sorted(TOY_WORLDS)}, got {data.toy_world!r}')
    sources = [s for s in ('input_path', 'tfds_name', 'toy_world_split')
               if getattr(data, s)]
    if len(sources) > 1:
      raise ValueError(f'task.{name}: set only one of input_path, tfds_name '
                       f'and toy_world_split, got {sources}')
    if data.tfds_name and not data.tfds_split:
      raise ValueError(f'task.{name}.tfds_name={data.tfds_name!r} needs '
                       'tfds_split')
    t, h, w, c = data.feature_shape
    if c != 3 or min(t, h, w) < 1:
      raise ValueError(f'task.{name}.feature_shape must be [T, H, W, 3], got '
                       f'{data.feature_shape}')
    if data.num_test_clips < 1 or data.num_test_crops < 1:
      raise ValueError(
          f'task.{name}: num_test_clips ({data.num_test_clips}) and '
          f'num_test_crops ({data.num_test_crops}) must be >= 1')
  train_t = task.train_data.feature_shape[0]
  val_t = task.validation_data.feature_shape[0]
  if train_t != val_t:
    raise ValueError(f'task.train_data.feature_shape[0] ({train_t}) and '
                     f'task.validation_data.feature_shape[0] ({val_t}) must '
                     'match: clips are stacked along the batch axis')
  if task.train_data.num_test_clips * task.train_data.num_test_crops != 1:
    raise ValueError('task.train_data: one view per training video '
                     '(num_test_clips = num_test_crops = 1)')


@dataclasses.dataclass
class VideoClassificationExperimentConfig(cfg.ExperimentConfig):
  """Experiment config whose `validate()` also checks the task fields."""

  def validate(self):
    # Types first: the checks below assume them (configs/config_types.py).
    config_types.check_config_types(self)
    super().validate()
    if isinstance(self.task, VideoClassificationTask):
      validate_classification_task(self.task)


def _optimization(train_steps: int, warmup_steps: int, learning_rate: float
                  ) -> optimization.OptimizationConfig:
  """SGD momentum 0.9, linear warm-up, cosine decay; weight decay is a loss."""
  config = {
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
  }
  if warmup_steps:
    config['warmup'] = {'type': 'linear',
                        'linear': {'warmup_steps': warmup_steps}}
  return optimization.OptimizationConfig(config)


def _data(is_training: bool, num_classes: int, num_examples: int,
          batch_size: int) -> DataConfig:
  """A SPEC section 2 clip config: train 32x224, eval 32x256 x 10 x 3."""
  if is_training:
    return DataConfig(
        is_training=True, drop_remainder=True, num_classes=num_classes,
        num_examples=num_examples, global_batch_size=batch_size,
        feature_shape=(32, 224, 224, 3), temporal_stride=2,
        num_test_clips=1, num_test_crops=1, min_image_size=256,
        shuffle_buffer_size=1024, split='train')
  return DataConfig(
      is_training=False, drop_remainder=False, num_classes=num_classes,
      num_examples=num_examples, global_batch_size=batch_size,
      feature_shape=(32, 256, 256, 3), temporal_stride=2,
      num_test_clips=10, num_test_crops=3, min_image_size=256,
      split='test')


def _experiment(*, num_classes: int, train_examples: int, val_examples: int,
                linear_eval: bool, train_batch: int, eval_batch: int,
                epochs: int, learning_rate: float, warmup_epochs: int,
                dropout_rate: float, l2_weight_decay: float
                ) -> VideoClassificationExperimentConfig:
  """Builds a real-data experiment; steps come from the dataset sizes."""
  task = VideoClassificationTask(
      model=ClassificationModel(dropout_rate=dropout_rate),
      losses=Losses(l2_weight_decay=l2_weight_decay),
      train_data=_data(True, num_classes, train_examples, train_batch),
      validation_data=_data(False, num_classes, val_examples, eval_batch),
      linear_eval=linear_eval)
  # No source is set by default: a user gives `input_path` (TFRecords) or
  # `tfds_name` (e.g. `ucf101/ucf101_1_256` for UCF101 split 1), which reads
  # the splits below.
  task.train_data.tfds_split = 'train'
  task.validation_data.tfds_split = 'test'
  steps_per_epoch = max(1, train_examples // train_batch)
  train_steps = epochs * steps_per_epoch
  return VideoClassificationExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=task,
      trainer=cfg.TrainerConfig(
          train_steps=train_steps,
          # -1: the whole validation split once, so every video is scored
          # exactly once at video level.
          validation_steps=-1,
          validation_interval=steps_per_epoch * max(1, epochs // 10),
          steps_per_loop=steps_per_epoch,
          summary_interval=steps_per_epoch,
          checkpoint_interval=steps_per_epoch,
          max_to_keep=3,
          best_checkpoint_export_subdir='best_ckpt',
          best_checkpoint_eval_metric='video_top_1_accuracy',
          best_checkpoint_metric_comp='higher',
          optimizer_config=_optimization(
              train_steps, warmup_epochs * steps_per_epoch, learning_rate)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


# Linear evaluation schedule (not given by SPEC; our choice, in the spirit of
# CVRL's linear protocol): batch 1024, 100 epochs, cosine decay from 32. The
# rate is a plain number: a YAML changing the batch must change it too.
_LINEAR = dict(linear_eval=True, train_batch=1024, eval_batch=64, epochs=100,
               learning_rate=32.0, warmup_epochs=0, dropout_rate=0.0,
               l2_weight_decay=0.0)
# Fine-tuning schedule (our choice): batch 128, 50 epochs, dropout 0.5.
_FINETUNE = dict(linear_eval=False, train_batch=128, eval_batch=32,
                 epochs=50, learning_rate=0.16, warmup_epochs=2,
                 dropout_rate=0.5, l2_weight_decay=1e-4)


@exp_factory.register_config_factory('const_cl_linear_eval_kinetics400')
def const_cl_linear_eval_kinetics400() -> VideoClassificationExperimentConfig:
  """Kinetics-400 linear evaluation on res5g (paper: 66.6 top-1)."""
  return _experiment(
      num_classes=KINETICS400_NUM_CLASSES,
      train_examples=const_cl.KINETICS400_TRAIN_EXAMPLES,
      val_examples=const_cl.KINETICS400_VAL_EXAMPLES, **_LINEAR)


@exp_factory.register_config_factory('const_cl_linear_eval_ucf101')
def const_cl_linear_eval_ucf101() -> VideoClassificationExperimentConfig:
  """UCF101 split 1 linear evaluation on res5g."""
  config = _experiment(
      num_classes=UCF101_NUM_CLASSES,
      train_examples=UCF101_SPLIT1_TRAIN_EXAMPLES,
      val_examples=UCF101_SPLIT1_TEST_EXAMPLES,
      **dict(_LINEAR, train_batch=256, learning_rate=8.0))
  return config


@exp_factory.register_config_factory('const_cl_linear_eval_hmdb51')
def const_cl_linear_eval_hmdb51() -> VideoClassificationExperimentConfig:
  """HMDB51 split 1 linear evaluation on res5g."""
  return _experiment(
      num_classes=HMDB51_NUM_CLASSES,
      train_examples=HMDB51_SPLIT1_TRAIN_EXAMPLES,
      val_examples=HMDB51_SPLIT1_TEST_EXAMPLES,
      **dict(_LINEAR, train_batch=256, learning_rate=8.0))


@exp_factory.register_config_factory('const_cl_finetune_ucf101')
def const_cl_finetune_ucf101() -> VideoClassificationExperimentConfig:
  """UCF101 split 1 fine-tuning of every layer (paper: 94.8 top-1)."""
  return _experiment(
      num_classes=UCF101_NUM_CLASSES,
      train_examples=UCF101_SPLIT1_TRAIN_EXAMPLES,
      val_examples=UCF101_SPLIT1_TEST_EXAMPLES,
      **_FINETUNE)


@exp_factory.register_config_factory('const_cl_finetune_hmdb51')
def const_cl_finetune_hmdb51() -> VideoClassificationExperimentConfig:
  """HMDB51 split 1 fine-tuning of every layer (paper: 71.9 top-1)."""
  return _experiment(
      num_classes=HMDB51_NUM_CLASSES,
      train_examples=HMDB51_SPLIT1_TRAIN_EXAMPLES,
      val_examples=HMDB51_SPLIT1_TEST_EXAMPLES, **_FINETUNE)


def toy_variant(config: VideoClassificationExperimentConfig,
                train_steps: int = 300, learning_rate: float = 0.5,
                world: str = 'pairs'
                ) -> VideoClassificationExperimentConfig:
  """Shrinks a real classification experiment to the toy world in place.

  The backbone is the toy pretraining experiment's (tiny R3D, one res5),
  clips are 8 frames of 64 px at stride 2, evaluation takes 2 clips x 3
  crops of 64 px from frames resized to 72 px (the 3 crops then differ), and
  the data is the labelled toy world `world`. Everything else (linear_eval,
  branch, dropout, optimizer type) is the parent's.

  Args:
    config: A registered real-data experiment.
    train_steps: Training steps (the toy train splits have 500 videos).
    learning_rate: Initial cosine learning rate.
    world: The toy world (TOY_WORLDS): 'pairs' for Kinetics experiments
      (the pretraining world itself), 'shapes' for the transfer sets.

  Returns:
    `config`, changed.
  """
  pretrain = const_cl.const_cl_pretrain_toy()
  task = config.task
  task.model.backbone.resnet_3d_y = pretrain.task.model.backbone.resnet_3d_y
  task.model.backbone.resnet_3d_y.duplicate_res5 = False
  task.model.norm_activation = pretrain.task.model.norm_activation
  sizes = TOY_WORLDS[world]
  for data, split, batch in ((task.train_data, 'train', 16),
                             (task.validation_data, 'validation', 8)):
    data.input_path = ''
    data.tfds_name = ''
    data.tfds_split = ''
    data.toy_world_split = split
    data.toy_world = world
    data.num_classes = sizes['num_classes']
    data.num_examples = sizes[split]
    data.global_batch_size = batch
    data.feature_shape = (8, 64, 64, 3)
    data.temporal_stride = 2
    data.shuffle_buffer_size = 64
    data.cycle_length = 2
  task.validation_data.num_test_clips = 2
  task.validation_data.num_test_crops = 3
  task.validation_data.min_image_size = 72
  config.runtime.mixed_precision_dtype = 'float32'
  steps_per_epoch = sizes['train'] // task.train_data.global_batch_size
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=-1,
      validation_interval=100,
      steps_per_loop=50,
      summary_interval=50,
      checkpoint_interval=100,
      max_to_keep=3,
      optimizer_config=_optimization(train_steps,
                                     min(steps_per_epoch, train_steps // 10),
                                     learning_rate))
  return config


def _register_toy(name: str, parent, **kwargs):
  def factory() -> VideoClassificationExperimentConfig:
    return toy_variant(parent(), **kwargs)
  factory.__doc__ = f'`{parent.__name__}` shrunk to the toy world.'
  factory.__name__ = name
  exp_factory.register_config_factory(name)(factory)
  return factory


const_cl_linear_eval_kinetics400_toy = _register_toy(
    'const_cl_linear_eval_kinetics400_toy', const_cl_linear_eval_kinetics400)
# The transfer sets' stand-in is the shapes world: pretraining on the pairs
# world, then linear evaluation or fine-tuning on another labelled world, is
# the paper's K400 -> UCF101 / HMDB51 protocol.
const_cl_linear_eval_ucf101_toy = _register_toy(
    'const_cl_linear_eval_ucf101_toy', const_cl_linear_eval_ucf101,
    world='shapes')
const_cl_linear_eval_hmdb51_toy = _register_toy(
    'const_cl_linear_eval_hmdb51_toy', const_cl_linear_eval_hmdb51,
    world='shapes')
const_cl_finetune_ucf101_toy = _register_toy(
    'const_cl_finetune_ucf101_toy', const_cl_finetune_ucf101,
    learning_rate=0.05, world='shapes')
const_cl_finetune_hmdb51_toy = _register_toy(
    'const_cl_finetune_hmdb51_toy', const_cl_finetune_hmdb51,
    learning_rate=0.05, world='shapes')

