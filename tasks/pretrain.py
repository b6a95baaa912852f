"""ConST-CL self-supervised pretraining task."""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import task_factory
from official.vision.modeling import factory_3d

from configs import const_cl as exp_cfg
from dataloaders import cache
from dataloaders import region_sources
from dataloaders import ssl_parser
from dataloaders import toy_world
from dataloaders import video_records
from modeling import const_cl_model  # pylint: disable=unused-import
from modeling.backbones import branch_loading
from modeling.losses import contrastive

# Diagnostics reported for training and validation, in this order.
METRIC_NAMES = (
    'global_loss', 'local_loss', 'l2_loss',
    'global_contrastive_accuracy', 'global_entropy',
    'global_positive_similarity', 'global_negative_similarity',
    'local_contrastive_accuracy', 'local_entropy',
    'local_positive_similarity', 'local_negative_similarity',
)


class FirstNonFiniteStep(tf_keras.metrics.Metric):
  """The first training step (1-based) whose loss was not finite, else -1.

  Every replica sees the same value: the finiteness flag is all-reduced in
  the train step before it reaches this metric.
  """

  def __init__(self, name='first_nonfinite_step', **kwargs):
    super().__init__(name=name, **kwargs)
    self.first = self.add_weight(
        name='first', initializer=tf_keras.initializers.Constant(-1.0),
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def update_state(self, step, finite):
    step = tf.cast(step, tf.float32)
    take = tf.logical_and(tf.logical_not(finite), self.first < 0)
    self.first.assign(tf.where(take, step, self.first))

  def result(self):
    return self.first

  def reset_state(self):
    self.first.assign(-1.0)


def _toy_segment_pattern(paths: Dict[str, str], split: str, method: str,
                         num_boxes: int) -> str:
  """Toy-world records with `method` segment boxes, derived once and cached.

  The toy records store object boxes (the toy "detector"); the slic and
  felzenszwalb rows of Table 7 need segment boxes instead, so they are
  computed from the frames (`region_sources.precompute_regions`) into a
  folder beside the toy world, written under a temporary name and renamed
  into place when complete.
  """
  source = paths[split]
  folder = os.path.join(paths['dir'], f'regions_{method}_n{num_boxes}_{split}')
  pattern = os.path.join(folder, os.path.basename(source))

  def build(tmp):
    logging.info('toy world: deriving %s boxes of %s into %s (once)', method,
                 source, folder)
    region_sources.precompute_regions(source, tmp, method,
                                      num_boxes=num_boxes)

  cache.build_once(folder, build, f'toy {method} boxes')
  return pattern


def resolve_input_pattern(params: exp_cfg.DataConfig, name: str) -> str:
  """The file pattern to read; creates the toy world when asked for.

  Raises before any model is built when the pattern is empty or matches
  nothing, naming the config field and the pattern.
  """
  if not params.input_path and params.toy_world_split:
    paths = toy_world.ensure_named_dataset(params.toy_world)
    if params.region_source in region_sources.SEGMENT_METHODS:
      return _toy_segment_pattern(paths, params.toy_world_split,
                                  params.region_source, params.num_boxes)
    return paths[params.toy_world_split]
  pattern = params.input_path
  if isinstance(pattern, (list, tuple)):
    pattern = ','.join(pattern)
  if not pattern:
    raise ValueError(
        f'task.{name}.input_path is empty: set it to a file pattern of video '
        'TFRecords (e.g. /data/k400/train-*.tfrecord), or set '
        f'task.{name}.toy_world_split to use the toy world')
  # build_ssl_dataset checks the files' headers (and skips bad files with
  # skip_bad_records).
  video_records.match_tfrecord_files(pattern, f'task.{name}.input_path',
                                     check_headers=False)
  return pattern


def latest_checkpoint_step(model_dir: str) -> int:
  """Training step of the newest checkpoint in `model_dir`; 0 if none.

  Reads the trainer's `global_step` from the checkpoint (Model Garden saves
  it beside the model and optimizer); falls back to the `ckpt-N` file name.
  """
  if not model_dir:
    return 0
  path = tf.train.latest_checkpoint(model_dir)
  if not path:
    return 0
  try:
    return int(tf.train.load_checkpoint(path).get_tensor(
        'global_step/.ATTRIBUTES/VARIABLE_VALUE'))
  except (tf.errors.NotFoundError, ValueError):
    return int(os.path.basename(path).rsplit('-', 1)[-1])


def stack_views(features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """[B, 2, ...] per key -> [2B, ...] with all view-a clips first."""
  out = {}
  for key, value in features.items():
    if key == 'label':
      out[key] = value
      continue
    out[key] = tf.concat([value[:, 0], value[:, 1]], axis=0)
  return out


def l2_weight_decay(model: tf_keras.Model) -> tf.Tensor:
  """Sum of squared kernels / 2 (weight decay on kernels only)."""
  kernels = [v for v in model.trainable_variables if 'kernel' in v.name]
  if not kernels:
    return tf.constant(0.0)
  return tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in kernels])


def trainable_variables(model: tf_keras.Model,
                        freeze_until: str) -> List[tf.Variable]:
  """The variables a train step updates: all but the frozen backbone stages.

  Args:
    model: The pretraining model (with a `backbone` if `freeze_until`).
    freeze_until: `task.model.freeze_until`: '' (everything trains), '2'
      (stem and res2 keep their initial values) or '3' (res3 too).
  """
  if not freeze_until:
    # No backbone lookup: any model (e.g. a test's wrapper) trains as is.
    return model.trainable_variables
  frozen = branch_loading.frozen_variable_ids(model.backbone, freeze_until)
  return [v for v in model.trainable_variables if id(v) not in frozen]


def compute_losses(outputs: Mapping[str, Any], model: tf_keras.Model,
                   local_loss: str, losses_config: exp_cfg.Losses
                   ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Total loss and diagnostics from float32 model outputs.

  Total = L_global + local_weight * L_local + l2_weight_decay * L2, with the
  global loss the SUM and the local loss the MEAN of its two directions.
  """
  emb_a, emb_b = tf.split(outputs['global_embeddings'], 2, axis=0)
  g = contrastive.global_infonce(emb_a, emb_b,
                                 losses_config.global_temperature)
  logs = {
      'global_loss': g['loss'],
      'global_contrastive_accuracy': g['contrastive_accuracy'],
      'global_entropy': g['entropy'],
      'global_positive_similarity': g['positive_similarity'],
      'global_negative_similarity': g['negative_similarity'],
  }
  local = None
  if local_loss in ('const_cl', 'region'):
    directions = []
    for src, tgt in (('a', 'b'), ('b', 'a')):
      positive = contrastive.match_regions(
          outputs[f'regions_{src}'], outputs[f'regions_{tgt}'],
          outputs[f'mask_{tgt}'])
      directions.append(contrastive.region_infonce(
          outputs[f'pred_{src}2{tgt}'], outputs[f'mask_{src}'],
          outputs[f'regions_{tgt}'], outputs[f'mask_{tgt}'], positive,
          losses_config.local_temperature))
    local = {k: (directions[0][k] + directions[1][k]) / 2.0
             for k in directions[0]}
  elif local_loss == 'dense':
    local = contrastive.dense_infonce(outputs['dense_a'], outputs['dense_b'],
                                      losses_config.local_temperature)
  if local is not None:
    logs.update({
        'local_loss': local['loss'],
        'local_contrastive_accuracy': local['contrastive_accuracy'],
        'local_entropy': local['entropy'],
        'local_positive_similarity': local['positive_similarity'],
        'local_negative_similarity': local['negative_similarity'],
    })
  else:
    for k in ('local_loss', 'local_contrastive_accuracy', 'local_entropy',
              'local_positive_similarity', 'local_negative_similarity'):
      logs[k] = tf.constant(0.0)
  logs['l2_loss'] = l2_weight_decay(model)
  total = (logs['global_loss'] + losses_config.local_weight *
           logs['local_loss'] + losses_config.l2_weight_decay *
           logs['l2_loss'])
  return total, logs


@task_factory.register_task_cls(exp_cfg.ConstCLPretrainTask)
class ConstCLPretrainTask(base_task.Task):
  """Two views per video; global + contextualized region contrastive losses."""

  def __init__(self, params: exp_cfg.ConstCLPretrainTask,
               logging_dir: Optional[str] = None, name: Optional[str] = None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    # Resolved here, before the trainer builds the model, so a bad pattern
    # fails in seconds rather than after minutes of graph building.
    self._input_patterns = {}
    for data_name in ('train_data', 'validation_data'):
      data = getattr(params, data_name)
      if data.input_path or data.toy_world_split:
        self._input_patterns[data_name] = resolve_input_pattern(
            data, data_name)

  def build_model(self) -> tf_keras.Model:
    data = self.task_config.train_data
    input_specs = tf_keras.layers.InputSpec(
        shape=[None] + list(data.feature_shape))
    model = factory_3d.build_model(
        self.task_config.model.model_type, input_specs=input_specs,
        model_config=self.task_config.model, num_classes=0)
    # Create every variable now (the model is subclassed), so checkpoints
    # and the optimizer see them before the first distributed step.
    model(self.dummy_inputs(data, batch_size=2), training=False)
    freeze_until = self.task_config.model.freeze_until
    if freeze_until:
      logging.info('task.model.freeze_until=%s: the train step keeps %d of '
                   'the %d trainable variables fixed', freeze_until,
                   len(model.trainable_variables) -
                   len(trainable_variables(model, freeze_until)),
                   len(model.trainable_variables))
    return model

  @staticmethod
  def dummy_inputs(data: exp_cfg.DataConfig, batch_size: int = 2
                   ) -> Dict[str, tf.Tensor]:
    t, h, w, c = data.feature_shape
    n = 2 * batch_size
    boxes = tf.tile(tf.constant([[[[0.25, 0.25, 0.75, 0.75]]]]),
                    [n, t, data.num_boxes, 1])
    return {
        'image': tf.zeros([n, t, h, w, c]),
        'boxes': boxes,
        'box_mask': tf.ones([n, t, data.num_boxes]),
        'frame_index': tf.tile(tf.range(t)[None], [n, 1]),
    }

  def initialize(self, model: tf_keras.Model):
    """Loads the backbone of `init_checkpoint` (a model dir or prefix).

    The heads start fresh (`model.checkpoint_items` is the backbone). The
    checkpoint's backbone must have this one's shape: a ConST-CL or reset
    checkpoint for the Y backbone, a CVRL one for the single-res5 backbone.
    """
    if not self.task_config.init_checkpoint:
      return
    path = branch_loading.restore_init_checkpoint(
        model, self.task_config.init_checkpoint)
    logging.info('Initialized the backbone from %s', path)

  def build_inputs(self, params: exp_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None
                   ) -> tf.data.Dataset:
    data_name = 'train_data' if params.is_training else 'validation_data'
    pattern = self._input_patterns.get(data_name)
    if pattern is None:
      pattern = resolve_input_pattern(params, data_name)
    t, h, w, _ = params.feature_shape
    if h != w:
      raise ValueError(f'task.{data_name}.feature_shape needs square frames, '
                       f'got {params.feature_shape}')
    parser = ssl_parser.Parser(
        num_frames=t, stride=params.temporal_stride, crop_size=h,
        num_boxes=params.num_boxes, region_source=params.region_source,
        min_box_size=params.min_box_size, max_box_size=params.max_box_size,
        min_box_aspect=params.min_box_aspect,
        max_box_aspect=params.max_box_aspect,
        min_crop_area=params.min_crop_area,
        color_jitter_strength=params.color_jitter_strength,
        output_dtype=tf.dtypes.as_dtype(params.dtype))
    skip = self._resume_skip_examples(params, input_context)
    dataset = ssl_parser.build_ssl_dataset(
        pattern, parser, global_batch_size=params.global_batch_size,
        is_training=params.is_training,
        shuffle_buffer_size=params.shuffle_buffer_size,
        cycle_length=params.cycle_length or 8, seed=params.seed,
        input_context=input_context,
        skip_bad_records=params.skip_bad_records,
        deterministic=params.deterministic, skip_examples=skip,
        field=f'task.{data_name}.input_path',
        drop_remainder=params.drop_remainder)
    return dataset.map(stack_views, num_parallel_calls=tf.data.AUTOTUNE)

  def _resume_skip_examples(
      self, params: exp_cfg.DataConfig,
      input_context: Optional[tf.distribute.InputContext]) -> int:
    """Records this input pipeline consumed before the latest checkpoint.

    Orbit restores model, optimizer and step but not the input position;
    without this a restarted run would see its first batches again. Only
    with a fixed `seed` is the order reproducible, so only then is it worth
    reading past the consumed records.
    """
    if not params.is_training:
      return 0
    step = latest_checkpoint_step(self.logging_dir)
    if not step:
      return 0
    if params.seed is None:
      logging.warning(
          'Resuming at step %d with task.train_data.seed unset: the input '
          'order is random, so the data will not continue where the '
          'interrupted run stopped (set the seed to make it so).', step)
      return 0
    per_step = params.global_batch_size
    if input_context is not None:
      # Each pipeline feeds num_replicas / num_pipelines replicas a
      # per-replica batch every step.
      per_step = (input_context.get_per_replica_batch_size(
          params.global_batch_size) * input_context.num_replicas_in_sync //
                  input_context.num_input_pipelines)
    logging.info('Resuming the input at step %d: skipping %d x %d records',
                 step, step, per_step)
    return step * per_step

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    metrics = [tf_keras.metrics.Mean(name=n) for n in METRIC_NAMES]
    if training:
      metrics.append(FirstNonFiniteStep())
    return metrics

  def _update_metrics(self, metrics, logs):
    if metrics:
      for metric in metrics:
        if metric.name in logs:
          metric.update_state(logs[metric.name])

  def _forward(self, features, model, training):
    outputs = model(features, training=training)
    # Cast outputs to float32: under mixed precision the contrastive
    # softmax would otherwise run in bfloat16.
    outputs = tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x,
        outputs)
    return compute_losses(outputs, model, self.task_config.model.local_loss,
                          self.task_config.losses)

  def train_step(self, inputs, model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None):
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      total_loss, logs = self._forward(inputs, model, training=True)
      # Gradients are summed over replicas; each replica's loss is its share
      # of the global-batch loss.
      scaled_loss = total_loss / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)
    tvars = trainable_variables(model, self.task_config.model.freeze_until)
    grads = tape.gradient(scaled_loss, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, tvars)))
    self._update_metrics(metrics, logs)
    if metrics:
      # All replicas agree on whether this step was finite, so the guard in
      # train.py stops every worker at the same step.
      bad = tf.cast(tf.logical_not(tf.math.is_finite(total_loss)), tf.float32)
      ctx = tf.distribute.get_replica_context()
      if ctx is not None and ctx.num_replicas_in_sync > 1:
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad)
      for metric in metrics:
        if isinstance(metric, FirstNonFiniteStep):
          # `iterations` counts applied updates: this step's 1-based index.
          metric.update_state(optimizer.iterations, bad == 0)
    return {self.loss: total_loss}

  def validation_step(self, inputs, model: tf_keras.Model, metrics=None):
    total_loss, logs = self._forward(inputs, model, training=False)
    self._update_metrics(metrics, logs)
    return {self.loss: total_loss}

  def inference_step(self, inputs, model: tf_keras.Model):
    return model(inputs, training=False)
