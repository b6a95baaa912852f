"""Action recognition model: one backbone branch + pooled linear classifier.

SPEC section 2: the backbone keeps one res5 branch (a `ResNet3DY` built with
`duplicate_res5=False`; the branch weights come from a Y checkpoint through
`modeling.backbones.branch_loading`), its res5 output is global-average
pooled over time and space, then dropout and a linear layer give logits.
"""
from typing import Mapping, Optional, Union

import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.modeling.backbones import factory as backbone_factory

from modeling.backbones import resnet_3d_y  # pylint: disable=unused-import


class ClassificationModel(tf_keras.Model):
  """Backbone -> global average pool of `endpoint` -> dropout -> Dense.

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
      **kwargs: Passed to `tf_keras.Model`.

    Raises:
      ValueError: on a bad `num_classes`, `dropout_rate` or `endpoint`.
    """
    super().__init__(**kwargs)
    if num_classes < 1:
      raise ValueError(f'ClassificationModel: num_classes must be >= 1, got '
                       f'{num_classes}')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'ClassificationModel: dropout_rate must be in [0, 1),'
                       f' got {dropout_rate}')
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
    x = self._dropout(x, training=training)
    return self._classifier(x)

  def get_config(self):
    return {
        'num_classes': self._num_classes,
        'endpoint': self._endpoint,
        'dropout_rate': self._dropout_rate,
        'freeze_backbone': self._freeze_backbone,
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
      kernel_regularizer=l2_regularizer, name='const_cl_classification')
