"""SiamFC single-object tracking task: fine-tune on GOT-10k, evaluate on OTB.

Training (`train.py --experiment=const_cl_tracking_*`): SiamFC pairs from the
GOT-10k-layout sequences of `task.train_dir` (`build_pair_dataset`), balanced
logistic loss on the response map with positives within
`losses.positive_radius` search pixels of the centre (16 px = 2 cells at
stride 8), plus `l2_weight_decay` x sum(kernel^2) / 2 (the gradient of which
is SGD weight decay). `init_checkpoint` with `init_checkpoint_modules:
backbone` loads the pretrained Y backbone unchanged into the dilated one.
`validation_step` reports the same loss on pairs of `task.validation_dir`.

Evaluation: `evaluate_tracker_on_otb(model, otb_dir, results_dir)` tracks
every sequence of an OTB-layout folder, writes `<Seq>.txt` results and
returns the OTB one-pass metrics (`tasks.evaluation.otb`).

Toy world: with `task.toy_world.enabled` every empty directory field is
filled with toy tracking sequences created on first use in a cache folder
(GOT-10k layout for training/validation, OTB layout for evaluation).
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import task_factory
from official.vision.modeling import factory_3d

from configs import tracking as exp_cfg
from dataloaders import cache
from dataloaders import example_seeds
from dataloaders import siamfc_pairs
from dataloaders import toy_world
from dataloaders import tracking_readers
from modeling import tracking_model
from modeling.backbones import branch_loading
from modeling.heads import siamfc
from tasks import tracking_inference
from tasks.evaluation import otb

METRIC_NAMES = ('logistic_loss', 'l2_loss', 'center_accuracy',
                'positive_score', 'negative_score')

_TOY_TRACKING_VERSION = 1


# ----------------------------------------------------------------------------
# Data folders.


def ensure_toy_tracking_data(toy: exp_cfg.ToyTrackingWorld,
                             spec: Optional[toy_world.ToyWorldSpec] = None
                             ) -> Dict[str, str]:
  """Toy tracking sequences in a cache folder, created on first use.

  Written into a temporary folder and renamed into place when complete, so
  an interrupted run never leaves half a dataset and racing processes are
  safe (the first rename wins).

  Args:
    toy: Sizes, seed and cache root.
    spec: Toy world spec; default `ToyWorldSpec()`.

  Returns:
    dict with `train` and `validation` (GOT-10k layout roots) and `eval`
    (OTB layout root).
  """
  spec = spec or toy_world.ToyWorldSpec()
  key = json.dumps({
      'spec': dataclasses.asdict(spec), 'train': toy.num_train_sequences,
      'validation': toy.num_validation_sequences,
      'eval': toy.num_eval_sequences, 'seed': toy.seed,
      'toy_world_version': toy_world.TOY_WORLD_VERSION,
      'version': _TOY_TRACKING_VERSION}, sort_keys=True)
  root = toy.cache_dir or toy_world.default_cache_root()
  folder = os.path.join(
      root, 'tracking-' + hashlib.sha1(key.encode()).hexdigest()[:16])
  paths = {'train': os.path.join(folder, 'got10k_train'),
           'validation': os.path.join(folder, 'got10k_val'),
           'eval': os.path.join(folder, 'otb')}
  start = time.time()

  def build(tmp):
    # Validation uses another seed than training: held-out sequences.
    toy_world.write_tracking_sequences(
        os.path.join(tmp, 'got10k_train'), toy.num_train_sequences,
        seed=toy.seed, spec=spec, layout='got10k')
    toy_world.write_tracking_sequences(
        os.path.join(tmp, 'got10k_val'), toy.num_validation_sequences,
        seed=toy.seed + 1, spec=spec, layout='got10k')
    toy_world.write_tracking_sequences(
        os.path.join(tmp, 'otb'), toy.num_eval_sequences, seed=toy.seed,
        spec=spec, layout='otb')
    with open(os.path.join(tmp, 'spec.json'), 'w') as f:
      f.write(key + '\n')

  if cache.build_once(folder, build, 'toy tracking'):
    logging.info('toy tracking data in %s (%.1fs)', folder,
                 time.time() - start)
  return paths


def resolve_dirs(params: exp_cfg.SiamFCTrackingTask) -> Dict[str, str]:
  """`train`, `validation`, `eval` folders; toy ones fill empty fields."""
  dirs = {'train': params.train_dir, 'validation': params.validation_dir,
          'eval': params.eval_dir}
  if params.toy_world.enabled and not all(dirs.values()):
    toy = ensure_toy_tracking_data(params.toy_world)
    dirs = {k: v or toy[k] for k, v in dirs.items()}
  return dirs


def sequence_dirs(root: str, field: str) -> List[str]:
  """Sub-folders of `root` holding a GOT-10k `groundtruth.txt`, sorted.

  Raises:
    ValueError: naming the config field when there is none.
  """
  if not root:
    raise ValueError(f'task.{field} is empty: set it to a GOT-10k-layout '
                     'folder of sequences (<dir>/<seq>/00000001.jpg, '
                     'groundtruth.txt), or enable task.toy_world')
  if not os.path.isdir(root):
    raise ValueError(f'task.{field}={root!r} is not a directory')
  dirs = sorted(
      os.path.join(root, d) for d in os.listdir(root)
      if os.path.isfile(os.path.join(root, d, 'groundtruth.txt')))
  if not dirs:
    raise ValueError(f'task.{field}={root!r} holds no GOT-10k sequence folder '
                     '(<seq>/groundtruth.txt)')
  return dirs


# ----------------------------------------------------------------------------
# Loss.


def response_diagnostics(logits: tf.Tensor, labels: np.ndarray
                         ) -> Dict[str, tf.Tensor]:
  """Center accuracy (peak inside the positive disc) and mean scores."""
  logits = tf.cast(logits, tf.float32)
  if logits.shape.rank == 4:
    logits = logits[..., 0]
  flat = tf.reshape(logits, [tf.shape(logits)[0], -1])
  pos = tf.constant(labels.reshape(-1), tf.float32)
  peak = tf.argmax(flat, axis=1)
  center_accuracy = tf.reduce_mean(tf.gather(pos, peak))
  probs = tf.sigmoid(flat)
  positive_score = tf.reduce_mean(
      tf.reduce_sum(probs * pos, axis=1) /
      tf.maximum(tf.reduce_sum(pos), 1.0))
  negative_score = tf.reduce_mean(
      tf.reduce_sum(probs * (1.0 - pos), axis=1) /
      tf.maximum(tf.reduce_sum(1.0 - pos), 1.0))
  return {'center_accuracy': center_accuracy,
          'positive_score': positive_score,
          'negative_score': negative_score}


def kernel_l2(model: tf_keras.Model) -> tf.Tensor:
  """sum(kernel^2) / 2 over the kernels being trained."""
  tvars = getattr(model, 'tracking_trainable_variables',
                  model.trainable_variables)
  kernels = [v for v in tvars if 'kernel' in v.name]
  if not kernels:
    return tf.constant(0.0)
  return tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in kernels])


# ----------------------------------------------------------------------------
# Task.


@task_factory.register_task_cls(exp_cfg.SiamFCTrackingTask)
class SiamFCTrackingTask(base_task.Task):
  """SiamFC fine-tuning of a ConST-CL backbone on GOT-10k-layout pairs."""

  def __init__(self, params: exp_cfg.SiamFCTrackingTask,
               logging_dir: Optional[str] = None, name: Optional[str] = None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    crops = params.model.crops
    r = siamfc.response_size(crops.exemplar_size, crops.search_size,
                             tracking_model.TOTAL_STRIDE)
    self._labels, self._weights = siamfc.siamfc_labels(
        r, tracking_model.TOTAL_STRIDE, params.losses.positive_radius)
    self._dirs = None

  @property
  def dirs(self) -> Dict[str, str]:
    if self._dirs is None:
      self._dirs = resolve_dirs(self.task_config)
    return self._dirs

  def build_model(self) -> tf_keras.Model:
    model = factory_3d.build_model(
        self.task_config.model.model_type,
        input_specs=tf_keras.layers.InputSpec(
            shape=[None, None, None, None, 3]),
        model_config=self.task_config.model, num_classes=0)
    # Create every variable now (subclassed model) so checkpoints and the
    # optimizer see them before the first distributed step.
    model(self.dummy_inputs(batch_size=1), training=False)
    return model

  def dummy_inputs(self, batch_size: int = 1) -> Dict[str, tf.Tensor]:
    crops = self.task_config.model.crops
    t = 2 * crops.context_frames + 1
    return {
        'exemplar': tf.zeros([batch_size, t, crops.exemplar_size,
                              crops.exemplar_size, 3]),
        'search': tf.zeros([batch_size, t, crops.search_size,
                            crops.search_size, 3]),
    }

  def initialize(self, model: tf_keras.Model):
    """Loads `init_checkpoint`: the backbone only, or every tracking item."""
    if not self.task_config.init_checkpoint:
      return
    resolved = branch_loading.restore_init_checkpoint(
        model, self.task_config.init_checkpoint,
        self.task_config.init_checkpoint_modules)
    logging.info('Initialized %s from %s',
                 self.task_config.init_checkpoint_modules, resolved)

  def build_inputs(self, params: exp_cfg.TrackingDataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None
                   ) -> tf.data.Dataset:
    field = 'train_dir' if params.is_training else 'validation_dir'
    root = self.dirs['train' if params.is_training else 'validation']
    crops = self.task_config.model.crops
    batch_size = params.global_batch_size
    pipeline_id = 0
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
      pipeline_id = input_context.input_pipeline_id  # hosts: other pairs
    seed = example_seeds.pipeline_base_seed(params.seed, pipeline_id,
                                            params.is_training)
    # Readers raise naming the sequence (fewer frames than ground-truth
    # lines, missing frames); an unreadable frame fails naming its file.
    return siamfc_pairs.build_pair_dataset(
        sequence_dirs(root, field), batch_size,
        exemplar_size=crops.exemplar_size, search_size=crops.search_size,
        context_frames=crops.context_frames,
        max_frame_gap=params.max_frame_gap, seed=seed,
        pairs_per_epoch=params.pairs_per_epoch or None,
        context_amount=crops.context_amount,
        scale_jitter=params.scale_jitter, shift_jitter=params.shift_jitter,
        drop_remainder=params.drop_remainder)

  def build_metrics(self, training: bool = True
                    ) -> List[tf_keras.metrics.Metric]:
    return [tf_keras.metrics.Mean(name=n) for n in METRIC_NAMES]

  def build_losses(self, logits: tf.Tensor, model: tf_keras.Model
                   ) -> Dict[str, tf.Tensor]:
    """Total loss and diagnostics for response logits `[B, r, r, 1]`."""
    logits = tf.cast(logits, tf.float32)
    logistic = siamfc.siamfc_logistic_loss(logits, self._labels,
                                           self._weights)
    l2 = kernel_l2(model)
    logs = {'logistic_loss': logistic, 'l2_loss': l2}
    logs.update(response_diagnostics(logits, self._labels))
    logs['total_loss'] = (logistic +
                          self.task_config.losses.l2_weight_decay * l2)
    return logs

  def _update_metrics(self, metrics, logs):
    for metric in metrics or []:
      metric.update_state(logs[metric.name])

  def train_step(self, inputs, model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None):
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = model(inputs, training=True)
      logs = self.build_losses(outputs['logits'], model)
      # Gradients are summed over replicas; each replica's loss is its share
      # of the global-batch loss.
      scaled_loss = logs['total_loss'] / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)
    tvars = model.tracking_trainable_variables
    grads = tape.gradient(scaled_loss, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    # The unused res5 branch of the Y backbone is not in `tvars`; a layer
    # that gets no gradient (None) is skipped.
    pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
    optimizer.apply_gradients(pairs)
    self._update_metrics(metrics, logs)
    return {self.loss: logs['total_loss']}

  def validation_step(self, inputs, model: tf_keras.Model, metrics=None):
    outputs = model(inputs, training=False)
    logs = self.build_losses(outputs['logits'], model)
    self._update_metrics(metrics, logs)
    return {self.loss: logs['total_loss']}

  def inference_step(self, inputs, model: tf_keras.Model):
    return model(inputs, training=False)


# ----------------------------------------------------------------------------
# Tracking with a trained model.


def make_tracker(model: tracking_model.SiamFCTrackingModel,
                 **tracker_kwargs) -> tracking_inference.SiamFCTracker:
  """A `SiamFCTracker` whose features and responses come from `model`.

  Args:
    model: A built `SiamFCTrackingModel`.
    **tracker_kwargs: `SiamFCTracker` settings (scales, window, ...); the
      crop sizes and context frames come from the model.

  Returns:
    The tracker; `embed_fn` and `response_fn` run as tf.functions.
  """
  embed = tf.function(lambda clips: model.embed(clips, training=False),
                      reduce_retracing=True)
  respond = tf.function(model.response, reduce_retracing=True)

  def embed_fn(clips):
    return embed(tf.convert_to_tensor(clips, tf.float32)).numpy()

  def response_fn(exemplar_feat, search_feat):
    return respond(tf.convert_to_tensor(exemplar_feat, tf.float32),
                   tf.convert_to_tensor(search_feat, tf.float32)).numpy()

  return tracking_inference.SiamFCTracker(
      embed_fn, exemplar_size=model.exemplar_size,
      search_size=model.search_size, total_stride=model.total_stride,
      context_frames=model.context_frames, response_fn=response_fn,
      **tracker_kwargs)


def tracker_kwargs_from_config(params: exp_cfg.SiamFCTrackingTask
                               ) -> Dict[str, Any]:
  t = params.tracker
  return dict(num_scales=t.num_scales, scale_step=t.scale_step,
              scale_penalty=t.scale_penalty, scale_lr=t.scale_lr,
              window_influence=t.window_influence,
              response_up=t.response_up,
              context_amount=params.model.crops.context_amount)


def track_sequence_dir(model: tracking_model.SiamFCTrackingModel,
                       sequence_dir: str,
                       tracker_kwargs: Optional[Dict[str, Any]] = None
                       ) -> Dict[str, Tuple[tracking_readers.Sequence,
                                            np.ndarray]]:
  """Tracks the target(s) of one GOT-10k or OTB sequence folder.

  Returns:
    name -> (sequence, `[n, 4]` 0-based boxes); two entries for an OTB
    two-target folder. Write them with the sequence's `pixel_origin`.

  Raises:
    ValueError: naming the sequence (and frame) when it cannot be read.
  """
  results = {}
  # One tracker for all targets: `init` resets its state, and its
  # tf.functions are traced once instead of once per target.
  tracker = make_tracker(model, **(tracker_kwargs or {}))
  for sequence in tracking_readers.read_sequence(sequence_dir):
    start = time.time()
    results[sequence.name] = sequence, tracking_inference.track_sequence(
        sequence, tracker=tracker)
    logging.info('tracked %s: %d frames in %.1fs', sequence.name,
                 len(sequence), time.time() - start)
  return results


def track_sequences(model: tracking_model.SiamFCTrackingModel,
                    sequences: Sequence[tracking_readers.Sequence],
                    tracker_kwargs: Optional[Dict[str, Any]] = None
                    ) -> Iterator[Tuple[tracking_readers.Sequence,
                                        np.ndarray]]:
  """Yields (sequence, `[n, 4]` boxes) for each sequence, in order.

  One tracker serves every sequence: `SiamFCTracker.init` resets all of its
  per-sequence state, and the tf.functions of `make_tracker` are traced
  once (a tracker per sequence retraced them each time; one is 1.17x
  faster on 8 toy sequences, `tools/benchmark.py --sections=tracker`).
  """
  tracker = make_tracker(model, **(tracker_kwargs or {}))
  for sequence in sequences:
    yield sequence, tracking_inference.track_sequence(sequence,
                                                      tracker=tracker)


def track_dataset(model: tracking_model.SiamFCTrackingModel,
                  dataset_dir: str, results_dir: str,
                  tracker_kwargs: Optional[Dict[str, Any]] = None
                  ) -> List[str]:
  """Tracks every sequence of a folder; writes `<results_dir>/<Seq>.txt`.

  Returns:
    The sequence names, sorted.
  """
  sequences = tracking_readers.list_sequences(dataset_dir)
  if not sequences:
    raise ValueError(f'no tracking sequence found in {dataset_dir}')
  os.makedirs(results_dir, exist_ok=True)
  for sequence, boxes in track_sequences(model, sequences, tracker_kwargs):
    tracking_inference.write_results(
        os.path.join(results_dir, f'{sequence.name}.txt'), boxes,
        sequence.pixel_origin)
  return [s.name for s in sequences]


def evaluate_tracker_on_otb(model: tracking_model.SiamFCTrackingModel,
                            otb_dir: str, results_dir: str,
                            tracker_kwargs: Optional[Dict[str, Any]] = None
                            ) -> Dict[str, Any]:
  """Tracks every OTB sequence and returns the one-pass metrics.

  Args:
    model: A built (and restored) `SiamFCTrackingModel`.
    otb_dir: OTB-layout dataset folder.
    results_dir: Where `<Seq>.txt` results are written.
    tracker_kwargs: Optional `SiamFCTracker` settings.

  Returns:
    `tasks.evaluation.otb.evaluate_otb`'s dict: `precision` (at 20 px) and
    `success` (AUC) in [0, 1], curves and per-sequence values.
  """
  track_dataset(model, otb_dir, results_dir, tracker_kwargs)
  return otb.evaluate_otb(otb_dir, results_dir)


def build_model_from_config(params: exp_cfg.SiamFCTrackingTask,
                            checkpoint: Optional[str] = None,
                            field: str = 'checkpoint'
                            ) -> tracking_model.SiamFCTrackingModel:
  """Builds the task's model and restores `checkpoint` (file or folder).

  A fine-tuned tracking checkpoint restores every item; a pretraining
  checkpoint (no SiamFC head) restores the backbone and leaves the head at
  its initial values, with a warning. None keeps the random initialization.
  A path with no checkpoint raises a ValueError naming `field` (the flag or
  config field that gave it).
  """
  task = SiamFCTrackingTask(params)
  model = task.build_model()
  if not checkpoint:
    logging.warning('no checkpoint: tracking with a randomly initialized '
                    'model')
    return model
  path = branch_loading.resolve_checkpoint_path(checkpoint, field)
  names = {name.split('/')[0] for name, _ in tf.train.list_variables(path)}
  if 'backbone' not in names:
    raise ValueError(f'{field}={checkpoint!r}: {path} has no `backbone` item '
                     f'(top-level items: {sorted(names)})')
  items = {k: v for k, v in model.checkpoint_items.items() if k in names}
  missing = sorted(set(model.checkpoint_items) - set(items))
  if missing:
    logging.warning('checkpoint %s has no %s: left at initial values', path,
                    missing)
  branch_loading.restore_items(path, items, ' and '.join(items), field)
  return model
