"""Spatio-temporal action localization model (backbone + action transformer).
"""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.modeling.backbones import factory as backbone_factory

# Registers the resnet_3d_y backbone builder used by the configs.
from modeling.backbones import resnet_3d_y  # pylint: disable=unused-import
from modeling.heads import action_transformer

FEATURE_ENDPOINTS = ('5r', '5g', '4')


class ActionLocalizationModel(tf_keras.Model):
  """Backbone features at `feature_endpoint` -> `ActionTransformerHead`.

  Inputs: image [B, T, H, W, 3] (key-frame-centred clip), boxes [B, M, 4]
  (normalized person boxes on the key frame). Outputs: `logits` [B, M, C]
  float32 and `scores` = sigmoid(logits).

  With `freeze_backbone=True` the backbone is not trainable and is ALWAYS
  called with `training=False` (batch norm on its moving statistics, which
  therefore stay as loaded), so only the head learns.
  """

  def __init__(self, backbone: tf_keras.Model,
               head: action_transformer.ActionTransformerHead,
               feature_endpoint: str = '5r', freeze_backbone: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    if feature_endpoint not in FEATURE_ENDPOINTS:
      raise ValueError(f'feature_endpoint must be one of {FEATURE_ENDPOINTS}, '
                       f'got {feature_endpoint!r}')
    self._backbone = backbone
    self._head = head
    self._feature_endpoint = feature_endpoint
    self._freeze_backbone = freeze_backbone
    if freeze_backbone:
      self._backbone.trainable = False

  @property
  def backbone(self):
    return self._backbone

  @property
  def head(self):
    return self._head

  @property
  def checkpoint_items(self) -> Mapping[str, Any]:
    return dict(backbone=self.backbone, head=self.head)

  def call(self, inputs: Mapping[str, tf.Tensor],
           training=None) -> Dict[str, tf.Tensor]:
    endpoints = self._backbone(
        inputs['image'], training=False if self._freeze_backbone else training)
    if self._feature_endpoint not in endpoints:
      raise ValueError(f'backbone has no endpoint {self._feature_endpoint!r}; '
                       f'it has {sorted(endpoints)}')
    outputs = self._head(endpoints[self._feature_endpoint], inputs['boxes'],
                         training=training)
    return {'logits': outputs['logits'],
            'scores': tf.sigmoid(outputs['logits'])}


@factory_3d.register_model_builder('const_cl_action_localization')
def build_action_localization_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config,
    num_classes: int,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
) -> ActionLocalizationModel:
  """Builds the model from a `configs.action_localization.ActionLocalizationModel`."""
  backbone = backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation,
      l2_regularizer=l2_regularizer)
  h = model_config.head
  head = action_transformer.ActionTransformerHead(
      num_classes=num_classes, num_layers=h.num_layers, num_heads=h.num_heads,
      hidden_dim=h.hidden_dim, mlp_dim=h.mlp_dim,
      roi_crop_size=h.roi_crop_size, dropout_rate=h.dropout_rate,
      normalize_features=h.normalize_features,
      kernel_regularizer=l2_regularizer, name='action_transformer')
  return ActionLocalizationModel(
      backbone=backbone, head=head,
      feature_endpoint=model_config.feature_endpoint,
      freeze_backbone=model_config.freeze_backbone,
      name='action_localization_model')
