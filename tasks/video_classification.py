"""Action recognition task: linear evaluation and fine-tuning (SPEC s.2).

The model is a single-branch backbone + pooled linear classifier
(`modeling.classification_model`); `initialize` restores the chosen res5
branch of a ConST-CL (Y) or CVRL (single res5) pretraining checkpoint
(`modeling.backbones.branch_loading`). Linear evaluation freezes the
backbone and runs it in inference mode in every step.

Inputs are Model Garden video TFRecords (`input_path`), a TFDS video dataset
(`tfds_name`, e.g. `ucf101`) or the labelled toy world (`toy_world_split`);
decoding and clip sampling are Model Garden's (`video_input.Decoder` /
`VideoTfdsDecoder`, and `video_input.Parser` through `dataloaders.
video_parser`, which draws the training augmentations from per-example
stateless seeds). Each decoded record's label is checked against
`num_classes` with the record's `clip/id` (else its file) in the error.

Evaluation feeds `num_test_clips * num_test_crops` views per video and
reports clip- and video-level top-1 / top-5 (`tasks.evaluation.
classification`): `clip_top_1_accuracy`, `clip_top_5_accuracy`,
`video_top_1_accuracy`, `video_top_5_accuracy`.
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import input_reader
from official.core import task_factory
from official.vision.dataloaders import video_input
from official.vision.modeling.backbones import factory as backbone_factory

from configs import video_classification as exp_cfg
from dataloaders import example_seeds
from dataloaders import toy_world
from dataloaders import video_parser
from dataloaders import video_records
from modeling import classification_model
from modeling.backbones import branch_loading
from tasks.evaluation import classification as cls_eval

TOP_KS = (1, 5)
SOURCE_KEY = 'source'
RECORD_ID_KEY = 'record_id'


def resolve_input_pattern(params: exp_cfg.DataConfig, name: str) -> str:
  """The TFRecord file pattern to read ('' for TFDS); makes the toy world.

  Raises:
    ValueError: naming the config field when no source is set or the
      pattern matches no file.
  """
  if params.tfds_name:
    return ''
  if params.toy_world_split:
    paths = toy_world.ensure_named_dataset(params.toy_world)
    return paths[params.toy_world_split]
  pattern = params.input_path
  if isinstance(pattern, (list, tuple)):
    pattern = ','.join(pattern)
  if not pattern:
    raise ValueError(
        f'task.{name}: no input: set input_path to a file pattern of video '
        'TFRecords, tfds_name (+ tfds_split) to a TFDS video dataset, or '
        'toy_world_split to use the toy world')
  video_records.match_tfrecord_files(pattern, f'task.{name}.input_path')
  return pattern


def tagged_tfrecord_dataset(filenames) -> tf.data.Dataset:
  """TFRecords as {'serialized', 'source'}: each record knows its file.

  Model Garden's reader calls this with one file name (interleave) or a
  list of names (a single file); both are handled.
  """
  files = tf.reshape(tf.convert_to_tensor(filenames, tf.string), [-1])

  def read(f):
    return tf.data.TFRecordDataset(f).map(
        lambda s: {'serialized': s, SOURCE_KEY: f})

  return tf.data.Dataset.from_tensor_slices(files).flat_map(read)


def _check_record(decoded: Dict[str, tf.Tensor], record_id: tf.Tensor,
                  image_key: str, label_key: str, num_classes: int
                  ) -> Dict[str, tf.Tensor]:
  """Asserts one label in [0, num_classes) and >= 1 frame, naming the record.

  `tf.debugging.Assert` puts its data (the record id and the labels) into the
  InvalidArgumentError, so a bad record fails with its name rather than
  becoming a silent all-zero one-hot label.
  """
  label = tf.reshape(tf.cast(decoded[label_key], tf.int64), [-1])
  num_frames = tf.shape(decoded[image_key])[0]
  checks = [
      tf.debugging.Assert(
          tf.equal(tf.size(label), 1),
          [f'{label_key}: expected exactly one label per video; record:',
           record_id, 'labels:', label], summarize=8),
      tf.debugging.Assert(
          tf.reduce_all((label >= 0) & (label < num_classes)),
          [f'{label_key}: label outside [0, num_classes={num_classes}); '
           'record:', record_id, 'label:', label], summarize=8),
      tf.debugging.Assert(
          num_frames > 0,
          [f'{image_key}: video has no frames; record:', record_id]),
  ]
  with tf.control_dependencies(checks):
    out = dict(decoded)
    out[label_key] = tf.identity(label)
    out[RECORD_ID_KEY] = tf.identity(record_id)
  return out


class CheckedDecoder:
  """Model Garden's video TFRecord decoder + `clip/id` + label checks.

  Takes {'serialized', 'source'} elements from `tagged_tfrecord_dataset`.
  The record id is `clip/id` when the record has one, else its file name.
  """

  def __init__(self, num_classes: int,
               image_key: str = video_input.IMAGE_KEY,
               label_key: str = video_input.LABEL_KEY):
    self._decoder = video_input.Decoder(image_key=image_key,
                                        label_key=label_key)
    self._decoder.add_context(video_records.VIDEO_ID_KEY,
                              tf.io.VarLenFeature(tf.string))
    self._num_classes = num_classes
    self._image_key = image_key
    self._label_key = label_key

  def decode(self, record: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    decoded = self._decoder.decode(record['serialized'])
    clip_id = tf.reshape(decoded.pop(video_records.VIDEO_ID_KEY), [-1])
    record_id = tf.cond(
        tf.size(clip_id) > 0,
        lambda: tf.strings.join([record[SOURCE_KEY], ':', clip_id[0]]),
        lambda: record[SOURCE_KEY])
    return _check_record(decoded, record_id, self._image_key,
                         self._label_key, self._num_classes)


class CheckedTfdsDecoder:
  """Model Garden's `VideoTfdsDecoder` (TFDS `video`, `label`) + checks.

  The record id is the TFDS `tfds_id` when present, else
  `<tfds_name>/<split>`.
  """

  def __init__(self, num_classes: int, tfds_name: str, split: str,
               image_key: str = video_input.IMAGE_KEY,
               label_key: str = video_input.LABEL_KEY):
    self._decoder = video_input.VideoTfdsDecoder(image_key=image_key,
                                                 label_key=label_key)
    self._num_classes = num_classes
    self._default_id = f'{tfds_name}/{split}'
    self._image_key = image_key
    self._label_key = label_key

  def decode(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    decoded = self._decoder.decode(features)
    if 'tfds_id' in features:
      record_id = tf.strings.join([self._default_id, ':',
                                   features['tfds_id']])
    else:
      record_id = tf.constant(self._default_id)
    return _check_record(decoded, record_id, self._image_key,
                         self._label_key, self._num_classes)


@task_factory.register_task_cls(exp_cfg.VideoClassificationTask)
class VideoClassificationTask(base_task.Task):
  """Linear evaluation / fine-tuning of a pretrained backbone."""

  def __init__(self, params: exp_cfg.VideoClassificationTask,
               logging_dir: Optional[str] = None, name: Optional[str] = None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    exp_cfg.validate_classification_task(params)
    # Checked here, before the trainer builds anything, so a wrong path
    # fails in seconds with the field and path in the message.
    if params.init_checkpoint:
      branch_loading.resolve_checkpoint_path(params.init_checkpoint)
    elif not params.allow_random_init:
      raise ValueError(
          'task.init_checkpoint is empty: set it to a ConST-CL/CVRL '
          'pretraining model dir (or checkpoint prefix), or set '
          'task.allow_random_init=True for the random-initialization '
          'baseline')
    self._input_patterns = {}
    for data_name in ('train_data', 'validation_data'):
      data = getattr(params, data_name)
      if data.toy_world_split:
        world_classes = toy_world.num_classes(
            toy_world.named_world(data.toy_world).spec)
        if data.num_classes != world_classes:
          raise ValueError(
              f'task.{data_name}.num_classes ({data.num_classes}) != '
              f'{world_classes}, the class count of toy world '
              f'{data.toy_world!r}')
      if data.input_path or data.toy_world_split:
        self._input_patterns[data_name] = resolve_input_pattern(
            data, data_name)

  @property
  def num_classes(self) -> int:
    return self.task_config.train_data.num_classes

  @property
  def num_test_views(self) -> int:
    data = self.task_config.validation_data
    return data.num_test_clips * data.num_test_crops

  def _input_shape(self) -> List[Optional[int]]:
    """[T, H, W, 3]; None where train and eval clips differ (224 vs 256)."""
    return [a if a == b else None for a, b in zip(
        self.task_config.train_data.feature_shape,
        self.task_config.validation_data.feature_shape)]

  def _l2_regularizer(self):
    decay = float(self.task_config.losses.l2_weight_decay)
    # Halved: Keras' l2 is sum(w^2), tf.nn.l2_loss is sum(w^2) / 2.
    return tf_keras.regularizers.l2(decay / 2.0) if decay else None

  def build_backbone(self, duplicate_res5: bool) -> tf_keras.Model:
    """A backbone from the task's config; Y when `duplicate_res5`."""
    model_cfg = self.task_config.model.as_dict()
    model_cfg['backbone']['resnet_3d_y']['duplicate_res5'] = duplicate_res5
    model_cfg = exp_cfg.ClassificationModel(model_cfg)
    input_specs = tf_keras.layers.InputSpec(shape=[None] + self._input_shape())
    return backbone_factory.build_backbone(
        input_specs=input_specs, backbone_config=model_cfg.backbone,
        norm_activation_config=model_cfg.norm_activation)

  def build_model(self) -> tf_keras.Model:
    input_specs = tf_keras.layers.InputSpec(shape=[None] + self._input_shape())
    model = classification_model.build_classification_model(
        input_specs, self.task_config.model, self.num_classes,
        l2_regularizer=self._l2_regularizer(),
        freeze_backbone=self.task_config.linear_eval)
    t, h, w, c = self.task_config.train_data.feature_shape
    # Create every variable now (subclassed model) for checkpoints and the
    # optimizer.
    model(tf.zeros([1, t, h, w, c]), training=False)
    return model

  def initialize(self, model: tf_keras.Model):
    """Restores the chosen branch of `init_checkpoint` into the backbone."""
    params = self.task_config
    if not params.init_checkpoint:
      logging.warning('task.init_checkpoint is empty: RANDOM initialization '
                      '(allow_random_init=True)')
      return

    def build(duplicate_res5):
      backbone = self.build_backbone(duplicate_res5)
      t, h, w, c = params.train_data.feature_shape
      backbone(tf.zeros([1, t, h, w, c]), training=False)
      return backbone

    branch_loading.load_backbone_branch(
        params.init_checkpoint, model.backbone, build,
        branch=params.model.branch)

  def build_inputs(self, params: exp_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None
                   ) -> tf.data.Dataset:
    data_name = 'train_data' if params.is_training else 'validation_data'
    pattern = self._input_patterns.get(data_name)
    if pattern is None:
      pattern = resolve_input_pattern(params, data_name)
    if pattern:
      params = params.replace(input_path=pattern)
    decoder = self.build_decoder(params)
    parser = video_parser.Parser(
        input_params=params, image_key=params.image_field_key,
        label_key=params.label_field_key)
    reader = input_reader.InputReader(
        params,
        dataset_fn=tagged_tfrecord_dataset,
        decoder_fn=decoder.decode,
        sample_fn=example_seeds.attach_example_seeds(
            params.seed, params.is_training, input_context),
        parser_fn=parser.parse_fn(params.is_training),
        postprocess_fn=video_input.PostBatchProcessor(params))
    return reader.read(input_context=input_context)

  def build_decoder(self, params: exp_cfg.DataConfig):
    """The TFDS decoder when `tfds_name` is set, else the TFRecord one."""
    if params.tfds_name:
      return CheckedTfdsDecoder(
          params.num_classes, params.tfds_name, params.tfds_split,
          image_key=params.image_field_key, label_key=params.label_field_key)
    return CheckedDecoder(params.num_classes,
                          image_key=params.image_field_key,
                          label_key=params.label_field_key)

  def build_losses(self, labels: tf.Tensor, model_outputs: tf.Tensor,
                   aux_losses: Optional[Any] = None) -> Dict[str, tf.Tensor]:
    """Softmax cross-entropy on logits (+ weight decay); per-replica mean."""
    class_loss = tf.reduce_mean(tf_keras.losses.categorical_crossentropy(
        labels, tf.cast(model_outputs, tf.float32), from_logits=True,
        label_smoothing=self.task_config.losses.label_smoothing))
    total = class_loss
    logs = {'class_loss': class_loss}
    if aux_losses:
      reg = tf.add_n([tf.cast(l, tf.float32) for l in aux_losses])
      logs['reg_loss'] = reg
      total += reg
    logs[self.loss] = total
    return logs

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    names = [f'clip_top_{k}_accuracy' for k in TOP_KS]
    if not training:
      names += [f'video_top_{k}_accuracy' for k in TOP_KS]
    return [tf_keras.metrics.Mean(name=n) for n in names]

  @staticmethod
  def _update(metrics, values: Mapping[str, tf.Tensor]):
    for metric in metrics or []:
      metric.update_state(values[metric.name])

  def train_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None):
    features, labels = inputs
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      # The model runs a frozen backbone with training=False itself.
      logits = model(features, training=True)
      logs = self.build_losses(labels, logits, aux_losses=model.losses)
      # Gradients are summed over replicas.
      scaled_loss = logs[self.loss] / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)
    tvars = model.trainable_variables
    grads = tape.gradient(scaled_loss, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, tvars)))
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    sparse = tf.argmax(labels, axis=-1)
    self._update(metrics, {
        f'clip_top_{k}_accuracy': cls_eval.top_k_correct(
            probabilities, sparse, k) for k in TOP_KS})
    return logs

  def validation_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                      metrics=None):
    features, labels = inputs
    logits = tf.cast(model(features, training=False), tf.float32)
    num_views = self.num_test_views
    # Clip-level loss: each view against its video's label.
    clip_labels = tf.repeat(labels, num_views, axis=0)
    logs = self.build_losses(clip_labels, logits, aux_losses=model.losses)
    correct = cls_eval.multi_view_correct(
        tf.nn.softmax(logits), tf.argmax(labels, axis=-1), num_views, TOP_KS)
    self._update(metrics, correct)
    return logs

  def inference_step(self, inputs, model: tf_keras.Model) -> tf.Tensor:
    """Video-level probabilities [B, num_classes] (views averaged)."""
    logits = tf.cast(model(inputs, training=False), tf.float32)
    return cls_eval.video_scores(tf.nn.softmax(logits), self.num_test_views)
