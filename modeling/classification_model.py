"""Action recognition model: one backbone branch + pooled linear classifier.

SPEC section 2: the backbone keeps one res5 branch (a `ResNet3DY` built with
`duplicate_res5=False`; the branch weights come from a Y checkpoint through
`modeling.backbones.branch_loading`), its res5 output is global-average
pooled over time and space, optionally normalized (`pooled_norm`), then
dropout and a linear layer give logits.
"""
from typing import Mapping, Optional, Union

import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.modeling.backbones import factory as backbone_factory

from configs.video_classification import POOLED_NORMS
from modeling.backbones import resnet_3d_y  # pylint: disable=unused-import


class ClassificationModel(tf_keras.Model):
  """Backbone -> average pool of `endpoint` -> norm -> dropout -> Dense.

  With `freeze_backbone=True` (linear evaluation) the backbone is not
  trainable and is ALWAYS called with `training=False`, so batch norm uses
  and keeps its pretrained moving statistics even in a training step; the
  pooled features also stop gradients, so no backward pass runs through it.
  """

  def __init__(self,
               backbone: tf_keras.Model,
               num_classes: int,
               endpoint: str = '5g',
               dropout_rate: float = 0.0,
               freeze_backbone: bool = False,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               pooled_norm: str = 'none',
               norm_momentum: float = 0.99,
               norm_epsilon: float = 1e-3,
               **kwargs):
    """Initializes the model.

    Args:
      backbone: A backbone returning a dict of endpoints (e.g. `ResNet3DY`).
      num_classes: Number of classes (>= 1).
      endpoint: The endpoint to pool ('5g'; with a single-branch backbone
        '5g' and '5r' are the same tensor).
      dropout_rate: Dropout rate before the classifier, in [0, 1).
      freeze_backbone: Linear evaluation: frozen backbone in inference mode.
      kernel_regularizer: Regularizer of the classifier kernel, or None.
      pooled_norm: One of POOLED_NORMS, applied to the pooled features.
      norm_momentum: Moving-statistics momentum of 'batch_norm'.
      norm_epsilon: Variance epsilon of 'batch_norm'.
      **kwargs: Passed to `tf_keras.Model`.

    Raises:
      ValueError: on a bad `num_classes`, `dropout_rate`, `endpoint` or
        `pooled_norm`.
    """
    super().__init__(**kwargs)
    if num_classes < 1:
      raise ValueError(f'ClassificationModel: num_classes must be >= 1, got '
                       f'{num_classes}')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'ClassificationModel: dropout_rate must be in [0, 1),'
                       f' got {dropout_rate}')
    if pooled_norm not in POOLED_NORMS:
      raise ValueError(f'ClassificationModel: pooled_norm must be one of '
                       f'{POOLED_NORMS}, got {pooled_norm!r}')
    specs = getattr(backbone, 'output_specs', None)
    if specs is not None and endpoint not in specs:
      raise ValueError(f'ClassificationModel: endpoint {endpoint!r} is not '
                       f'one of the backbone endpoints {sorted(specs)}')
    self._backbone = backbone
    self._num_classes = num_classes
    self._endpoint = endpoint
    self._dropout_rate = dropout_rate
    self._freeze_backbone = freeze_backbone
    if freeze_backbone:
      self._backbone.trainable = False
    self._pooled_norm = pooled_norm
    self._feature_norm = None
    if pooled_norm == 'batch_norm':
      self._feature_norm = tf_keras.layers.BatchNormalization(
          center=False, scale=False, momentum=norm_momentum,
          epsilon=norm_epsilon, dtype='float32', name='pooled_norm')
    self._dropout = tf_keras.layers.Dropout(dropout_rate)
    # float32 logits: under mixed precision the softmax and the loss would
    # otherwise run in bfloat16.
    self._classifier = tf_keras.layers.Dense(
        num_classes, kernel_regularizer=kernel_regularizer,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        dtype='float32', name='classifier')

  @property
  def backbone(self) -> tf_keras.Model:
    return self._backbone

  @property
  def classifier(self) -> tf_keras.layers.Dense:
    return self._classifier

  @property
  def freeze_backbone(self) -> bool:
    return self._freeze_backbone

  def pooled_features(self, images: tf.Tensor, training=None) -> tf.Tensor:
    """[B, T, H, W, 3] -> [B, C] average of the endpoint over T, H, W."""
    backbone_training = False if self._freeze_backbone else training
    endpoints = self._backbone(images, training=backbone_training)
    pooled = tf.reduce_mean(endpoints[self._endpoint], axis=[1, 2, 3])
    if self._freeze_backbone:
      pooled = tf.stop_gradient(pooled)
    return pooled

  def call(self, inputs: Union[tf.Tensor, Mapping[str, tf.Tensor]],
           training=None) -> tf.Tensor:
    """Returns [B, num_classes] float32 logits."""
    images = inputs['image'] if isinstance(inputs, Mapping) else inputs
    x = self.pooled_features(images, training=training)
    if self._pooled_norm == 'l2':
      x = tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)
    elif self._feature_norm is not None:
      x = self._feature_norm(x, training=training)
    x = self._dropout(x, training=training)
    return self._classifier(x)

  def get_config(self):
    return {
        'num_classes': self._num_classes,
        'endpoint': self._endpoint,
        'dropout_rate': self._dropout_rate,
        'freeze_backbone': self._freeze_backbone,
        'pooled_norm': self._pooled_norm,
    }


@factory_3d.register_model_builder('const_cl_classification')
def build_classification_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config,
    num_classes: int,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
    freeze_backbone: bool = False) -> ClassificationModel:
  """Builds `ClassificationModel` from a `configs.video_classification`.

  Args:
    input_specs: `InputSpec` of the [B, T, H, W, 3] input.
    model_config: A `configs.video_classification.ClassificationModel`.
    num_classes: Number of classes.
    l2_regularizer: Kernel regularizer (fine-tuning weight decay) or None.
    freeze_backbone: Linear evaluation (see `ClassificationModel`).

  Returns:
    The model.
  """
  backbone_cfg = model_config.backbone.get()
  if getattr(backbone_cfg, 'duplicate_res5', False):
    raise ValueError('build_classification_model: the backbone must have a '
                     'single res5 (duplicate_res5=False); the branch is '
                     'chosen when the pretraining checkpoint is loaded')
  backbone = backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation,
      l2_regularizer=l2_regularizer)
  return ClassificationModel(
      backbone=backbone, num_classes=num_classes, endpoint='5g',
      dropout_rate=model_config.dropout_rate,
      freeze_backbone=freeze_backbone,
      kernel_regularizer=l2_regularizer,
      pooled_norm=model_config.pooled_norm,
      norm_momentum=model_config.norm_activation.norm_momentum,
      norm_epsilon=model_config.norm_activation.norm_epsilon,
      name='const_cl_classification')
