"""Single-object tracking configs (SiamFC on a ConST-CL backbone, SPEC s.2).

`const_cl_tracking_got10k` holds the paper's protocol: the res5r branch of the
pretrained R3D "Y" backbone, dilated to feature stride 8, embeds 5-frame
clips (the tracked frame and 2 neighbours on each side) of 127 px exemplars
and 255 px search images; SiamFC's logistic loss on GOT-10k training pairs,
SGD momentum 0.9, weight decay 5e-4, 20 epochs; one-pass evaluation on
OTB2015. `const_cl_tracking_toy` derives from it for the toy world.

Where the data comes from (task fields, not data fields, because one task
reads three folder trees of two layouts):
  train_dir       GOT-10k-layout root (`<root>/<seq>/00000001.jpg`,
                  `groundtruth.txt`), pairs for `train_data`;
  validation_dir  GOT-10k-layout root of held-out sequences, pairs for
                  `validation_data` (the validation loss);
  eval_dir        OTB-layout root (`<root>/<Seq>/img/0001.jpg`,
                  `groundtruth_rect.txt`) for `tools/track.py` +
                  `tools/otb_eval.py`.
With `toy_world.enabled` every empty one of them is filled with toy-world
sequences created on first use in a cache folder.
"""
import dataclasses
from typing import Optional

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import common

from configs import backbones
from configs import config_types

FEATURE_ENDPOINTS = ('5r', '5g')

# GOT-10k train split: 9,335 sequences. SiamFC-style training samples a fixed
# number of pairs per epoch; 9,335 sequences x 10 pairs ~ 93k pairs.
GOT10K_TRAIN_SEQUENCES = 9335
GOT10K_PAIRS_PER_EPOCH = 10 * GOT10K_TRAIN_SEQUENCES


@dataclasses.dataclass
class TrackingDataConfig(cfg.DataConfig):
  """SiamFC training pairs (`dataloaders.siamfc_pairs.build_pair_dataset`).

  The sequence folders are `task.train_dir` (is_training) or
  `task.validation_dir` (not is_training).
  """
  global_batch_size: int = 8
  is_training: bool = True
  drop_remainder: bool = True
  # Pairs per pass over the data; 0 repeats forever (training). Validation
  # needs a finite number (it is read `trainer.validation_steps` batches).
  pairs_per_epoch: int = 0  # int >= 0
  max_frame_gap: int = 100  # largest frame distance exemplar <-> search
  scale_jitter: float = 0.05  # relative window-size jitter, in [0, 1)
  shift_jitter: float = 4.0  # search-window shift, search-crop pixels
  # Pair-sampling seed. None: drawn from the global TensorFlow seed for
  # training (so `train.py --seed=S` gives each seed its own pairs, as in the
  # other tasks' input pipelines) and 0 for evaluation.
  seed: Optional[int] = None


@dataclasses.dataclass
class Crops(hyperparams.Config):
  """Crop geometry shared by training pairs and the tracker."""
  exemplar_size: int = 127
  search_size: int = 255
  context_frames: int = 2  # neighbours on each side of the tracked frame
  context_amount: float = 0.5  # SiamFC context margin


@dataclasses.dataclass
class SiamFCModel(hyperparams.Config):
  """Dilated backbone branch + optional 1x1 adjust + SiamFC head.

  `crops` lives here because the model is trained for that geometry (it sets
  the response size) and the tracker must use it with the model; the pair
  pipeline reads it from here too.
  """
  model_type: str = 'const_cl_siamfc'
  crops: Crops = dataclasses.field(default_factory=Crops)
  backbone: backbones.Backbone3D = dataclasses.field(
      default_factory=lambda: backbones.Backbone3D(  # pylint: disable=g-long-lambda
          type='resnet_3d_y',
          resnet_3d_y=backbones.ResNet3DY(dilate_res4_res5=True)))
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(  # pylint: disable=g-long-lambda
          use_sync_bn=False, norm_momentum=0.9, norm_epsilon=1e-5))
  feature_endpoint: str = '5r'  # 5r (instance branch, paper) | 5g
  # Output channels of a 1x1 conv after the centre slice; 0 = no adjust
  # layer (the paper correlates the backbone features directly).
  adjust_channels: int = 0  # int >= 0
  # L2-normalized features, correlation averaged over exemplar cells (mean
  # cosine in [-1, 1]); the head maps it to logits. See
  # modeling/tracking_model.py for why raw correlations diverge.
  normalize_features: bool = True
  head_scale_init: float = 10.0
  head_bias_init: float = -5.0
  # Backbone stages kept fixed (configs.backbones.FREEZE_UNTIL).
  freeze_until: str = ''


@dataclasses.dataclass
class SiamFCLosses(hyperparams.Config):
  # SiamFC's positive radius, in search-crop pixels (16 px / stride 8 =
  # 2 response cells).
  positive_radius: float = 16.0
  l2_weight_decay: float = 5e-4


@dataclasses.dataclass
class TrackerParams(hyperparams.Config):
  """SiamFC inference (`tasks.tracking_inference.SiamFCTracker`)."""
  num_scales: int = 3  # odd
  scale_step: float = 1.0375
  scale_penalty: float = 0.9745
  scale_lr: float = 0.59
  window_influence: float = 0.176
  response_up: int = 16


@dataclasses.dataclass
class ToyTrackingWorld(hyperparams.Config):
  """Toy-world tracking sequences, created on first use in a cache folder."""
  enabled: bool = False
  num_train_sequences: int = 48
  num_validation_sequences: int = 8
  num_eval_sequences: int = 8
  seed: int = 0
  cache_dir: str = ''  # '' -> dataloaders.toy_world.default_cache_root()


@dataclasses.dataclass
class SiamFCTrackingTask(cfg.TaskConfig):
  """SiamFC fine-tuning of a pretrained backbone; OTB evaluation."""
  model: SiamFCModel = dataclasses.field(default_factory=SiamFCModel)
  losses: SiamFCLosses = dataclasses.field(default_factory=SiamFCLosses)
  tracker: TrackerParams = dataclasses.field(default_factory=TrackerParams)
  train_data: TrackingDataConfig = dataclasses.field(
      default_factory=lambda: TrackingDataConfig(is_training=True))
  validation_data: TrackingDataConfig = dataclasses.field(
      default_factory=lambda: TrackingDataConfig(  # pylint: disable=g-long-lambda
          is_training=False, drop_remainder=True, pairs_per_epoch=512,
          scale_jitter=0.0, shift_jitter=0.0, seed=1))
  train_dir: str = ''  # GOT-10k train root
  validation_dir: str = ''  # GOT-10k-layout held-out root (validation loss)
  eval_dir: str = ''  # OTB2015 root (tools/track.py + tools/otb_eval.py)
  # What `init_checkpoint` restores: the pretrained backbone, or every
  # tracking item (backbone, head, adjust) of a tracking checkpoint.
  init_checkpoint_modules: str = 'backbone'  # backbone | all
  toy_world: ToyTrackingWorld = dataclasses.field(
      default_factory=ToyTrackingWorld)


def feature_frame_stride(model: SiamFCModel) -> int:
  b = model.backbone.resnet_3d_y
  return b.stem_conv_temporal_stride * b.stem_pool_temporal_stride


def validate_tracking_task(task: SiamFCTrackingTask) -> None:
  """Cross-field checks, raised with the offending values."""
  model = task.model
  if model.backbone.type != 'resnet_3d_y':
    raise ValueError(f'task.model.backbone.type must be resnet_3d_y, got '
                     f'{model.backbone.type!r}')
  b = model.backbone.resnet_3d_y
  backbones.check_resnet_3d_y(b)
  if not b.dilate_res4_res5:
    raise ValueError('task.model.backbone.resnet_3d_y.dilate_res4_res5 must be '
                     'True for tracking (SiamFC needs feature stride 8)')
  if model.feature_endpoint not in FEATURE_ENDPOINTS:
    raise ValueError(f'task.model.feature_endpoint must be one of '
                     f'{FEATURE_ENDPOINTS}, got {model.feature_endpoint!r}')
  backbones.check_freeze_until(model.freeze_until)
  if model.adjust_channels < 0:
    raise ValueError(f'task.model.adjust_channels must be >= 0, got '
                     f'{model.adjust_channels}')
  crops = model.crops
  if crops.context_frames < 0:
    raise ValueError(f'task.model.crops.context_frames must be >= 0, got '
                     f'{crops.context_frames}')
  stride = feature_frame_stride(model)
  if crops.context_frames % stride:
    # The centre frame must be the centre of one feature slice: with 'same'
    # padding slice t is centred on input frame t * stride.
    raise ValueError(
        f'task.model.crops.context_frames ({crops.context_frames}) must be '
        f'a multiple of the backbone temporal stride ({stride}) so the centre '
        'frame has its own feature slice')
  # Feature stride 8: the response map is (x - z) / 8 + 1 cells.
  total_stride = 8
  if crops.exemplar_size < total_stride or (
      crops.search_size <= crops.exemplar_size):
    raise ValueError(f'task.model.crops: need 8 <= exemplar_size '
                     f'({crops.exemplar_size}) < search_size '
                     f'({crops.search_size})')
  if (crops.search_size - crops.exemplar_size) % total_stride:
    raise ValueError(f'task.model.crops: search_size - exemplar_size '
                     f'({crops.search_size} - {crops.exemplar_size}) must be '
                     f'a multiple of the feature stride ({total_stride})')
  if crops.exemplar_size % 2 == 0 or crops.search_size % 2 == 0:
    raise ValueError(f'task.model.crops: exemplar_size '
                     f'({crops.exemplar_size}) and '
                     f'search_size ({crops.search_size}) must be odd so the '
                     'target centre falls on the centre response cell')
  # A label map without a positive cell leaves the loss with negatives only
  # and the positive-score diagnostic undefined. The cell nearest the centre
  # is at distance 0 (odd response side) or sqrt(2) / 2 cells (even side).
  side = (crops.search_size - crops.exemplar_size) // total_stride + 1
  nearest = 0.0 if side % 2 else total_stride * 0.5 ** 0.5
  if not task.losses.positive_radius >= nearest:
    raise ValueError(
        f'task.losses.positive_radius ({task.losses.positive_radius}) must '
        f'be >= {nearest:.2f} px so the {side}x{side} label map has a '
        'positive cell')
  if task.tracker.num_scales < 1 or task.tracker.num_scales % 2 == 0:
    raise ValueError(f'task.tracker.num_scales must be odd and >= 1, got '
                     f'{task.tracker.num_scales}')
  if not 0 < task.tracker.scale_penalty <= 1:
    raise ValueError(f'task.tracker.scale_penalty must be in (0, 1], got '
                     f'{task.tracker.scale_penalty}')
  for data_name in ('train_data', 'validation_data'):
    data = getattr(task, data_name)
    if data.pairs_per_epoch < 0:
      raise ValueError(f'task.{data_name}.pairs_per_epoch must be >= 0, got '
                       f'{data.pairs_per_epoch}')
    if not 0 <= data.scale_jitter < 1:
      raise ValueError(f'task.{data_name}.scale_jitter must be in [0, 1), got '
                       f'{data.scale_jitter}')
    if data.global_batch_size < 1:
      raise ValueError(f'task.{data_name}.global_batch_size must be >= 1, got '
                       f'{data.global_batch_size}')
  if task.validation_data.is_training:
    raise ValueError('task.validation_data.is_training must be False')
  if not task.train_data.is_training:
    raise ValueError('task.train_data.is_training must be True')
  if task.init_checkpoint_modules not in ('all', 'backbone'):
    raise ValueError(f'task.init_checkpoint_modules must be all or backbone, '
                     f'got {task.init_checkpoint_modules!r}')


@dataclasses.dataclass
class TrackingExperimentConfig(cfg.ExperimentConfig):
  """Experiment config whose `validate()` also checks the task fields."""

  def validate(self):
    # Types first: the checks below assume them (configs/config_types.py).
    config_types.check_config_types(self)
    super().validate()
    if isinstance(self.task, SiamFCTrackingTask):
      validate_tracking_task(self.task)


def _optimization(train_steps: int, learning_rate: float,
                  final_learning_rate: float, warmup_steps: int
                  ) -> optimization.OptimizationConfig:
  """SGD momentum 0.9 with SiamFC's exponential decay over the run."""
  config = {
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': 0.9}},
      'learning_rate': {
          'type': 'exponential',
          'exponential': {
              'initial_learning_rate': learning_rate,
              'decay_steps': train_steps,
              'decay_rate': final_learning_rate / learning_rate,
          },
      },
  }
  if warmup_steps:
    config['warmup'] = {'type': 'linear',
                        'linear': {'warmup_steps': warmup_steps}}
  return optimization.OptimizationConfig(config)


@exp_factory.register_config_factory('const_cl_tracking_got10k')
def const_cl_tracking_got10k() -> cfg.ExperimentConfig:
  """SiamFC on GOT-10k train, evaluated on OTB2015 (SPEC s.2).

  Fine-tunes from a pretraining checkpoint: set `task.init_checkpoint`
  (init_checkpoint_modules is `backbone`), `task.train_dir`,
  `task.validation_dir` and `task.eval_dir`.
  """
  batch_size = 32
  epochs = 20
  steps_per_epoch = GOT10K_PAIRS_PER_EPOCH // batch_size
  train_steps = epochs * steps_per_epoch
  task = SiamFCTrackingTask(
      train_data=TrackingDataConfig(is_training=True,
                                    global_batch_size=batch_size),
      validation_data=TrackingDataConfig(
          is_training=False, global_batch_size=batch_size,
          pairs_per_epoch=100 * batch_size, scale_jitter=0.0,
          shift_jitter=0.0, seed=1))
  return TrackingExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=task,
      trainer=cfg.TrainerConfig(
          train_steps=train_steps,
          validation_steps=100,
          validation_interval=steps_per_epoch,
          steps_per_loop=500,
          summary_interval=500,
          checkpoint_interval=steps_per_epoch,
          # SiamFC: 1e-2 decayed geometrically to 1e-5 over the 20 epochs.
          optimizer_config=_optimization(train_steps, 1e-2, 1e-5, 0)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


@exp_factory.register_config_factory('const_cl_tracking_toy')
def const_cl_tracking_toy() -> cfg.ExperimentConfig:
  """`const_cl_tracking_got10k` shrunk to the toy world (2 CPU cores).

  Tiny dilated backbone (as `const_cl_pretrain_toy`, so its checkpoints
  load), 63/127 crops of 64 px toy frames (response 9x9, positive radius
  2 cells as in the real setting), toy sequences created on first use.
  """
  config = const_cl_tracking_got10k()
  task = config.task
  tiny = backbones.resnet_3d_y_tiny()
  tiny.dilate_res4_res5 = True
  task.model.backbone.resnet_3d_y = tiny
  task.model.crops.exemplar_size = 63
  task.model.crops.search_size = 127
  # Training the stem and res2 too makes a 200-step CPU run 149-159 s of
  # training instead of 79-103 s (two runs side by side;
  # docs/toy_benchmark_findings.md, "Where the tracking gain went"): keep
  # them.
  task.model.freeze_until = '2'
  task.toy_world.enabled = True
  task.train_data.global_batch_size = 8
  task.train_data.max_frame_gap = 16
  task.validation_data.global_batch_size = 8
  task.validation_data.pairs_per_epoch = 32
  task.validation_data.max_frame_gap = 16
  config.runtime.mixed_precision_dtype = 'float32'
  train_steps = 200
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=4,
      validation_interval=100,
      steps_per_loop=50,
      summary_interval=50,
      checkpoint_interval=100,
      max_to_keep=2,
      optimizer_config=_optimization(train_steps, 1e-2, 1e-3, 10))
  return config

