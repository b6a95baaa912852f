"""Spatio-temporal action localization task (AVA v2.2 / AVA-Kinetics).

Training: ground-truth person boxes (jittered), masked sigmoid cross-entropy.
Evaluation: ground-truth boxes (mAP(GT)) or detector boxes above a score
threshold (mAP(Det), `validation_data.use_detections`). Every validation step
returns the per-box sigmoid scores with the boxes in the ORIGINAL frame's
normalized coordinates; `aggregate_logs` collects them on the host and
`reduce_aggregated_logs` turns them into AVA detection rows (one per box per
class), writes them to `<model_dir>/<evaluation.detections_csv_name>` (the
official evaluator, `tools/ava_eval.py`, reads that file as is) and computes
frame-level mAP with `tasks.evaluation.ava.evaluate` against
`evaluation.groundtruth_csv`.

The toy world (`validation_data.toy_world_split`) is written in the official
AVA formats (videos, CSVs, label map) and converted to TFRecords by
`dataloaders.converters.ava.convert` on first use, in a cache folder, so the
real path runs end to end.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import input_reader
from official.core import task_factory
from official.vision.modeling import factory_3d

from configs import action_localization as exp_cfg
from dataloaders import ava_parser
from dataloaders import cache
from dataloaders import example_seeds
from dataloaders import toy_world
from dataloaders import video_records
from dataloaders.converters import ava as ava_converter
from modeling import action_localization_model  # pylint: disable=unused-import
from modeling.backbones import branch_loading
from modeling.heads import action_transformer
from tasks import pretrain
from tasks.evaluation import ava as ava_eval

# Per-box tensors returned by `validation_step` and gathered on the host.
EVAL_OUTPUT_KEYS = ('scores', 'original_boxes', 'box_mask', 'video_id',
                    'timestamp')
# Per-clip counts of boxes the parser could not score (dataloaders/
# ava_parser.py): summed over the evaluation and reported when non-zero.
EVAL_COUNT_KEYS = ('num_boxes_dropped', 'num_boxes_cropped_out')
# Bump when the toy AVA layout or conversion changes, to rebuild caches.
# 2: the validation records include detection-only key frames (mAP(Det)
# counts their detections as false positives).
_TOY_AVA_VERSION = 2


# ---------------------------------------------------------------------------
# Toy world data.


def _toy_paths(folder: str) -> Dict[str, str]:
  out = {}
  for split in ('train', 'validation'):
    d = os.path.join(folder, split)
    out[split] = os.path.join(d, 'records', f'{split}-*.tfrecord')
    out[f'{split}_groundtruth'] = os.path.join(d, f'ava_{split}_v2.2.csv')
    out[f'{split}_detections'] = os.path.join(
        d, f'ava_{split}_predicted_boxes.csv')
    out[f'{split}_exclusions'] = os.path.join(
        d, f'ava_{split}_excluded_timestamps_v2.2.csv')
    out[f'{split}_videos'] = os.path.join(d, 'videos')
  out['labelmap'] = os.path.join(folder, 'train', 'ava_action_list_v2.2.pbtxt')
  out['dir'] = folder
  return out


def ensure_toy_ava_dataset(toy: exp_cfg.ToyAvaWorld) -> Dict[str, str]:
  """The toy world's AVA data and its TFRecords, created on first use.

  Writes both splits with `toy_world.write_ava_dataset` (videos, CSVs, label
  map exactly as AVA ships them), converts each with
  `dataloaders.converters.ava.convert` (detections and exclusions included)
  into `<split>/records/`, and renames the finished folder into place under
  `<cache_dir>/ava-<hash of the settings>` (atomic: a crash or a racing
  process never leaves a half dataset).

  Args:
    toy: the `task.toy_world` config.

  Returns:
    dict with `train` / `validation` record patterns, `<split>_groundtruth`,
    `<split>_detections`, `<split>_exclusions`, `<split>_videos`, `labelmap`
    and `dir`.
  """
  spec = toy_world.ToyWorldSpec(num_frames=80, fillers=toy.fillers)
  settings = {'toy': toy.as_dict(), 'spec': dataclasses.asdict(spec),
              'world_version': toy_world.TOY_WORLD_VERSION,
              'version': _TOY_AVA_VERSION}
  settings['toy'].pop('cache_dir', None)
  key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()
                     ).hexdigest()[:16]
  root = toy.cache_dir or toy_world.default_cache_root()
  folder = os.path.join(root, f'ava-{key}')
  paths = _toy_paths(folder)
  opts = ava_converter.ClipOptions(
      num_frames=toy.clip_num_frames, stride=toy.clip_stride,
      fps=float(spec.fps), short_side=toy.short_side)

  def build(tmp):
    logging.info('toy AVA: writing %d train + %d validation videos and '
                 'converting them in %s', toy.num_train_videos,
                 toy.num_validation_videos, folder)
    for split, num in (('train', toy.num_train_videos),
                       ('validation', toy.num_validation_videos)):
      split_dir = os.path.join(tmp, split)
      files = toy_world.write_ava_dataset(split_dir, num, seed=toy.seed,
                                          spec=spec, split=split)
      summary = ava_converter.convert(
          files['annotations'], files['label_map'], files['videos_dir'],
          os.path.join(split_dir, 'records'),
          detections_csv=files['detections'],
          exclusions_csv=files['excluded'], opts=opts,
          num_shards=min(2, num), prefix=split,
          # Frames with detections only matter to mAP(Det) (validation).
          detection_only_key_frames=split == 'validation')
      if summary['key_frames_written'] < 1:
        raise RuntimeError(f'toy AVA {split}: the converter wrote no key '
                           f'frame: {ava_converter.format_summary(summary)}')

  cache.build_once(folder, build, 'toy AVA')
  return paths


# ---------------------------------------------------------------------------
# Evaluation rows.


def detection_rows(video_ids: Sequence[Any], timestamps: np.ndarray,
                   original_boxes: np.ndarray, box_mask: np.ndarray,
                   scores: np.ndarray,
                   action_ids: Optional[Iterable[int]] = None
                   ) -> List[ava_eval.AvaRow]:
  """AVA detection rows: one per valid box per class.

  Args:
    video_ids: [N] video ids (str or bytes).
    timestamps: [N] key-frame times in seconds.
    original_boxes: [N, M, 4] ymin, xmin, ymax, xmax normalized in the
      ORIGINAL frame (the parser's `original_boxes`).
    box_mask: [N, M] 1 for real boxes.
    scores: [N, M, C] per-class scores; class index c is action id c + 1.
    action_ids: the action ids to write (e.g. the label map's); default all
      C classes.

  Returns:
    `AvaRow`s (x1, y1, x2, y2 = xmin, ymin, xmax, ymax) with scores, in
    example, box, action order.
  """
  scores = np.asarray(scores, np.float64)
  boxes = np.asarray(original_boxes, np.float64)
  mask = np.asarray(box_mask)
  n, m, c = scores.shape
  if boxes.shape != (n, m, 4) or mask.shape != (n, m) or (
      len(video_ids) != n or len(timestamps) != n):
    raise ValueError(f'detection_rows: shapes disagree: scores {scores.shape}'
                     f', original_boxes {boxes.shape}, box_mask {mask.shape},'
                     f' {len(video_ids)} video ids, {len(timestamps)} '
                     'timestamps')
  if action_ids is None:
    classes = list(range(c))
  else:
    classes = sorted(int(a) - 1 for a in action_ids)
    bad = [a + 1 for a in classes if not 0 <= a < c]
    if bad:
      raise ValueError(f'detection_rows: action ids {bad} are outside the '
                       f'{c} model classes (ids 1..{c})')
  rows = []
  for i in range(n):
    vid = video_ids[i]
    vid = vid.decode('utf-8') if isinstance(vid, bytes) else str(vid)
    ts = ava_eval.normalize_timestamp(float(timestamps[i]))
    for j in np.nonzero(mask[i] > 0)[0]:
      ymin, xmin, ymax, xmax = (float(v) for v in boxes[i, j])
      box = (xmin, ymin, xmax, ymax)
      for k in classes:
        rows.append(ava_eval.AvaRow(vid, ts, box, k + 1, -1,
                                    float(scores[i, j, k])))
  return rows


def _host_concat(values) -> np.ndarray:
  """Per-replica tensors (a tuple from `experimental_local_results`) or one
  tensor -> one numpy array concatenated on the batch axis."""
  if isinstance(values, (tuple, list)):
    return np.concatenate([np.asarray(v) for v in values], axis=0)
  return np.asarray(values)


# ---------------------------------------------------------------------------
# The task.


@task_factory.register_task_cls(exp_cfg.ActionLocalizationTask)
class ActionLocalizationTask(base_task.Task):
  """Action-transformer fine-tuning and AVA mAP evaluation."""

  def __init__(self, params: exp_cfg.ActionLocalizationTask,
               logging_dir: Optional[str] = None, name: Optional[str] = None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    self._toy_paths = None
    uses_toy = any(getattr(params, d).toy_world_split and
                   not getattr(params, d).input_path
                   for d in ('train_data', 'validation_data'))
    if uses_toy:
      # Before the model is built: a data problem fails in seconds.
      self._toy_paths = ensure_toy_ava_dataset(params.toy_world)
    self._groundtruth = None

  # -- model ----------------------------------------------------------------

  def build_model(self) -> tf_keras.Model:
    data = self.task_config.train_data
    input_specs = tf_keras.layers.InputSpec(
        shape=[None] + list(data.feature_shape))
    model = factory_3d.build_model(
        self.task_config.model.model_type, input_specs=input_specs,
        model_config=self.task_config.model,
        num_classes=self.task_config.num_classes)
    # Create every variable now (the model is subclassed) so checkpoints and
    # the optimizer see them before the first distributed step.
    model(self.dummy_inputs(data), training=False)
    return model

  @staticmethod
  def dummy_inputs(data: exp_cfg.DataConfig, batch_size: int = 1
                   ) -> Dict[str, tf.Tensor]:
    return {
        'image': tf.zeros([batch_size] + list(data.feature_shape)),
        'boxes': tf.tile(tf.constant([[[0.25, 0.25, 0.75, 0.75]]]),
                         [batch_size, data.max_boxes, 1]),
    }

  def initialize(self, model: tf_keras.Model):
    """Loads `init_checkpoint`: the backbone only, or backbone and head."""
    if not self.task_config.init_checkpoint:
      return
    path = branch_loading.restore_init_checkpoint(
        model, self.task_config.init_checkpoint,
        self.task_config.init_checkpoint_modules)
    logging.info('Initialized %s from %s',
                 self.task_config.init_checkpoint_modules, path)

  # -- data -----------------------------------------------------------------

  def _input_pattern(self, params: exp_cfg.DataConfig, name: str) -> str:
    if not params.input_path and params.toy_world_split:
      if self._toy_paths is None:
        self._toy_paths = ensure_toy_ava_dataset(self.task_config.toy_world)
      return self._toy_paths[params.toy_world_split]
    pattern = params.input_path
    if isinstance(pattern, (list, tuple)):
      pattern = ','.join(pattern)
    if not pattern:
      raise ValueError(
          f'task.{name}.input_path is empty: set it to the key-frame '
          'TFRecords of tools/ava_to_tfrecords.py (e.g. '
          '/data/ava/tfrecords/val/ava_val-*.tfrecord), or set '
          f'task.{name}.toy_world_split')
    video_records.match_tfrecord_files(pattern, f'task.{name}.input_path')
    return pattern

  def build_inputs(self, params: exp_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None
                   ) -> tf.data.Dataset:
    name = 'train_data' if params.is_training else 'validation_data'
    if (not params.is_training and input_context is not None and
        input_context.num_input_pipelines > 1):
      # Each worker would read its shard of the key frames and compute mAP
      # on it alone against the whole ground truth (`aggregate_logs` sees
      # the local replicas only), counting the other shards as missed.
      raise ValueError(
          f'AVA evaluation with {input_context.num_input_pipelines} input '
          'pipelines (workers) would score each worker on its own shard of '
          'task.validation_data: evaluate in a single-worker job instead '
          '(e.g. --mode=continuous_eval beside the training job, or '
          '--mode=train on the workers and --mode=eval on one)')
    pattern = self._input_pattern(params, name)
    t, h, w, _ = params.feature_shape
    parser = ava_parser.Parser(
        num_frames=t, crop_size=(h, w), max_boxes=params.max_boxes,
        num_classes=self.task_config.num_classes,
        box_jitter=params.box_jitter if params.is_training else 0.0,
        use_detections=params.use_detections,
        detection_score_threshold=params.detection_score_threshold,
        is_training=params.is_training,
        train_crop_scale=tuple(params.train_crop_scale),
        random_flip=params.random_flip, center_crop=params.center_crop,
        seed=params.seed)
    dtype = tf.dtypes.as_dtype(params.dtype)

    def postprocess(features):
      features = dict(features)
      features['image'] = tf.cast(features['image'], dtype)
      if params.is_training:
        # Strings do not go to accelerators; training does not need them.
        features.pop('video_id')
        features.pop('timestamp')
      return features

    reader = input_reader.InputReader(
        params=params.replace(input_path=pattern),
        dataset_fn=tf.data.TFRecordDataset,
        decoder_fn=ava_parser.Decoder(
            check_detection_fields=params.use_detections).decode,
        sample_fn=example_seeds.attach_example_seeds(
            params.seed, params.is_training, input_context),
        parser_fn=parser.parse_fn(params.is_training),
        postprocess_fn=postprocess)
    return reader.read(input_context=input_context)

  # -- losses and steps -----------------------------------------------------

  def build_losses(self, labels: tf.Tensor, model_outputs: Mapping[str, Any],
                   box_mask: tf.Tensor, aux_losses=None) -> tf.Tensor:
    """Masked sigmoid cross-entropy, normalized by the GLOBAL box count."""
    del aux_losses
    return action_transformer.masked_sigmoid_cross_entropy(
        labels, model_outputs['logits'], box_mask,
        num_valid=action_transformer.global_valid_boxes(box_mask))

  def build_metrics(self, training: bool = True
                    ) -> List[tf_keras.metrics.Metric]:
    names = ['classification_loss', 'l2_loss', 'num_valid_boxes']
    if not training:
      names = ['classification_loss', 'num_valid_boxes']
    return [tf_keras.metrics.Mean(name=n) for n in names]

  @staticmethod
  def _update(metrics, logs):
    for metric in metrics or ():
      if metric.name in logs:
        metric.update_state(logs[metric.name])

  def train_step(self, inputs, model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None):
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = model(inputs, training=True)
      # Each replica's classification loss is its share of the global mean
      # (normalized by the global box count), so replicas' gradients add up.
      cls_loss = self.build_losses(inputs['labels'], outputs,
                                   inputs['box_mask'])
      l2 = pretrain.l2_weight_decay(model)
      loss = cls_loss + (self.task_config.losses.l2_weight_decay * l2 /
                         num_replicas)
      scaled = loss
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled = optimizer.get_scaled_loss(loss)
    tvars = model.trainable_variables
    grads = tape.gradient(scaled, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    # The unused res5 branch of the Y backbone (res5g when reading res5r)
    # has no gradient; leave it out instead of feeding None to the optimizer.
    pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
    optimizer.apply_gradients(pairs)
    self._update(metrics, {
        'classification_loss': cls_loss * num_replicas, 'l2_loss': l2,
        'num_valid_boxes': tf.reduce_sum(inputs['box_mask'])})
    return {self.loss: loss * num_replicas}

  def validation_step(self, inputs, model: tf_keras.Model, metrics=None):
    outputs = model(inputs, training=False)
    logs = {k: inputs[k] for k in EVAL_OUTPUT_KEYS + EVAL_COUNT_KEYS
            if k in inputs}
    logs['scores'] = outputs['scores']
    self._update(metrics,
                 {'num_valid_boxes': tf.reduce_sum(inputs['box_mask'])})
    if not self.task_config.validation_data.use_detections:
      # Detector boxes carry no labels: there is no loss to report.
      loss = action_transformer.masked_sigmoid_cross_entropy(
          inputs['labels'], outputs['logits'], inputs['box_mask'])
      self._update(metrics, {'classification_loss': loss})
      logs[self.loss] = loss
    return logs

  def inference_step(self, inputs, model: tf_keras.Model):
    return model(inputs, training=False)

  # -- evaluation on the host -----------------------------------------------

  def aggregate_logs(self, state=None, step_outputs=None):
    """Gathers the per-box outputs of every validation step (host side)."""
    if state is None:
      state = {k: [] for k in EVAL_OUTPUT_KEYS}
    for key in EVAL_OUTPUT_KEYS + EVAL_COUNT_KEYS:
      if key in step_outputs:
        state.setdefault(key, []).append(_host_concat(step_outputs[key]))
    return state

  def _evaluation_files(self) -> Dict[str, str]:
    ev = self.task_config.evaluation
    files = {'groundtruth': ev.groundtruth_csv, 'labelmap': ev.labelmap,
             'exclusions': ev.exclusions_csv}
    data = self.task_config.validation_data
    if self._toy_paths and data.toy_world_split and not data.input_path:
      split = data.toy_world_split
      files = {'groundtruth': files['groundtruth'] or
                              self._toy_paths[f'{split}_groundtruth'],
               'labelmap': files['labelmap'] or self._toy_paths['labelmap'],
               'exclusions': files['exclusions'] or
                             self._toy_paths[f'{split}_exclusions']}
    return files

  def _load_groundtruth(self, files):
    if self._groundtruth is None:
      labelmap = ava_eval.read_labelmap(files['labelmap'])
      rows = ava_eval.read_groundtruth_csv(files['groundtruth'],
                                           set(labelmap))
      excluded = (ava_eval.read_exclusions_csv(files['exclusions'])
                  if files['exclusions'] else set())
      self._groundtruth = (labelmap, rows, excluded)
    return self._groundtruth

  def reduce_aggregated_logs(self, aggregated_logs,
                             global_step: Optional[tf.Tensor] = None
                             ) -> Dict[str, float]:
    """Detection rows -> CSV in the model dir -> frame-level mAP."""
    logs = {k: np.concatenate(v, axis=0) if v else np.zeros([0])
            for k, v in aggregated_logs.items()}
    files = self._evaluation_files()
    have_gt = bool(files['groundtruth'] and files['labelmap'])
    labelmap = gt_rows = excluded = None
    if have_gt:
      labelmap, gt_rows, excluded = self._load_groundtruth(files)
    rows = detection_rows(
        logs['video_id'], logs['timestamp'], logs['original_boxes'],
        logs['box_mask'], logs['scores'],
        action_ids=sorted(labelmap) if labelmap else None)
    results = {'num_detection_rows': float(len(rows)),
               'num_evaluated_key_frames': float(len(logs['video_id']))}
    for key in EVAL_COUNT_KEYS:
      if key in logs:
        results[key] = float(np.sum(logs[key]))
    # Ground-truth boxes left unscored are misses; detector boxes (mAP(Det))
    # are the lowest-scored ones past max_boxes, or ones outside the crop.
    cost = ('detections not scored (mAP(Det) loses their true positives)'
            if self.task_config.validation_data.use_detections else
            'ground-truth boxes not scored: each counts as missed')
    if results.get('num_boxes_dropped'):
      logging.warning(
          '%d %s: beyond task.validation_data.max_boxes (%d); raise it',
          results['num_boxes_dropped'], cost,
          self.task_config.validation_data.max_boxes)
    if results.get('num_boxes_cropped_out'):
      logging.warning(
          '%d %s: outside the centre crop (task.validation_data.center_crop='
          'false resizes the whole frame)', results['num_boxes_cropped_out'],
          cost)
    if self.logging_dir:
      tf.io.gfile.makedirs(self.logging_dir)
      path = os.path.join(self.logging_dir,
                          self.task_config.evaluation.detections_csv_name)
      ava_eval.write_detections_csv(path, rows)
      logging.info('AVA detections (%d rows) written to %s', len(rows), path)
    if not have_gt:
      logging.warning('task.evaluation.groundtruth_csv / labelmap not set: '
                      'detections written, mAP not computed')
      return results
    result = ava_eval.evaluate(gt_rows, rows, labelmap, excluded)
    evaluated = {ava_eval.frame_key(v.decode('utf-8') if isinstance(v, bytes)
                                    else v, t)
                 for v, t in zip(logs['video_id'], logs['timestamp'])}
    # Records of detection-only key frames (no ground truth) are evaluated
    # too: count only the ground-truth frames among the evaluated ones.
    gt_frames = ({r.key for r in gt_rows} -
                 {ava_eval.frame_key(v, t) for v, t in excluded or ()})
    if len(evaluated & gt_frames) < result['num_frames']:
      logging.warning(
          'evaluated %d key frames but %s has %d: the mAP counts the others '
          'as missed (set trainer.validation_steps=-1 for the full set)',
          len(evaluated & gt_frames), files['groundtruth'],
          result['num_frames'])
    results['mAP'] = float(result['mAP'])
    step = int(global_step.numpy()) if global_step is not None else -1
    logging.info('AVA mAP %.4f over %d classes at step %d; per class: %s',
                 result['mAP'], result['num_classes_evaluated'], step,
                 {k: round(v, 4) for k, v in result['per_class'].items()})
    if self.logging_dir:
      summary = {k: result[k] for k in (
          'mAP', 'per_class', 'num_classes_evaluated',
          'classes_without_groundtruth', 'num_frames', 'num_detections',
          'dropped')}
      summary['global_step'] = step
      summary['files'] = files
      with tf.io.gfile.GFile(os.path.join(self.logging_dir,
                                          'ava_eval_results.json'), 'w') as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return results
