"""ClassificationModel: shapes, pooling, frozen backbone in inference mode."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from configs import backbones as backbones_cfg
from modeling import classification_model
from modeling.backbones import resnet_3d_y


def _backbone():
  cfg = backbones_cfg.resnet_3d_y_tiny()
  return resnet_3d_y.ResNet3DY(
      block_repeats=cfg.block_repeats, base_filters=cfg.base_filters,
      temporal_kernel_sizes=backbones_cfg.stage_temporal_kernel_sizes(cfg),
      duplicate_res5=False,
      input_specs=tf_keras.layers.InputSpec(shape=[None, 4, None, None, 3]))


def _bn_stats(model):
  return [v.numpy().copy() for v in model.backbone.weights
          if 'moving_' in v.name]


def test_logits_are_a_linear_map_of_the_pooled_res5():
  model = classification_model.ClassificationModel(_backbone(), 7)
  x = tf.random.uniform([2, 4, 32, 32, 3])
  logits = model({'image': x}, training=False)
  assert logits.shape == (2, 7) and logits.dtype == tf.float32
  res5 = model.backbone(x, training=False)['5g'].numpy()
  pooled = res5.mean(axis=(1, 2, 3))  # independent numpy pooling
  kernel, bias = (w.numpy() for w in model.classifier.weights)
  np.testing.assert_allclose(logits.numpy(), pooled @ kernel + bias,
                             rtol=1e-4, atol=1e-5)
  # Eval clips may be larger than training clips (256 vs 224 px).
  assert model(tf.zeros([1, 4, 48, 48, 3])).shape == (1, 7)


def test_frozen_backbone_runs_in_inference_mode():
  model = classification_model.ClassificationModel(
      _backbone(), 5, freeze_backbone=True)
  x = tf.random.uniform([2, 4, 32, 32, 3])
  model(x, training=False)
  # Only the classifier trains.
  assert {v.ref() for v in model.trainable_variables} == {
      v.ref() for v in model.classifier.weights}
  before = _bn_stats(model)
  model(x, training=True)
  for a, b in zip(before, _bn_stats(model)):
    np.testing.assert_array_equal(a, b)
  # Training-mode call = inference-mode call when frozen (no dropout).
  np.testing.assert_allclose(model(x, training=True).numpy(),
                             model(x, training=False).numpy(), rtol=1e-6)


def test_fine_tuning_backbone_updates_batch_norm_statistics():
  model = classification_model.ClassificationModel(
      _backbone(), 5, dropout_rate=0.5)
  x = tf.random.uniform([2, 4, 32, 32, 3])
  model(x, training=False)
  before = _bn_stats(model)
  model(x, training=True)
  assert any(not np.array_equal(a, b)
             for a, b in zip(before, _bn_stats(model)))
  assert len(model.trainable_variables) > 2


def test_bad_arguments_are_errors():
  with pytest.raises(ValueError, match='num_classes must be >= 1, got 0'):
    classification_model.ClassificationModel(_backbone(), 0)
  with pytest.raises(ValueError, match=r'dropout_rate must be in \[0, 1\)'):
    classification_model.ClassificationModel(_backbone(), 3, dropout_rate=1.0)
  with pytest.raises(ValueError, match="endpoint '6'"):
    classification_model.ClassificationModel(_backbone(), 3, endpoint='6')
  with pytest.raises(ValueError, match="pooled_norm must be one of .*'bn'"):
    classification_model.ClassificationModel(_backbone(), 3, pooled_norm='bn')


def _pooled_and_classifier(model, x):
  pooled = model.backbone(x, training=False)['5g'].numpy().mean(
      axis=(1, 2, 3))
  kernel, bias = (w.numpy() for w in model.classifier.weights)
  return pooled, kernel, bias


def test_l2_pooled_norm_feeds_unit_length_features():
  model = classification_model.ClassificationModel(
      _backbone(), 4, freeze_backbone=True, pooled_norm='l2')
  x = tf.random.uniform([3, 4, 32, 32, 3])
  logits = model(x, training=True).numpy()
  pooled, kernel, bias = _pooled_and_classifier(model, x)
  unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  np.testing.assert_allclose(logits, unit @ kernel + bias, rtol=1e-4,
                             atol=1e-6)


def test_batch_norm_pooled_norm_standardizes_each_dimension():
  model = classification_model.ClassificationModel(
      _backbone(), 4, freeze_backbone=True, pooled_norm='batch_norm',
      norm_momentum=0.9, norm_epsilon=1e-5)
  x = tf.random.uniform([6, 4, 32, 32, 3])
  logits = model(x, training=True).numpy()
  pooled, kernel, bias = _pooled_and_classifier(model, x)
  mean, var = pooled.mean(0), pooled.var(0)
  standard = (pooled - mean) / np.sqrt(var + 1e-5)
  np.testing.assert_allclose(logits, standard @ kernel + bias, rtol=1e-3,
                             atol=1e-4)
  # No scale or offset to learn: the classifier is still all that trains.
  assert {v.ref() for v in model.trainable_variables} == {
      v.ref() for v in model.classifier.weights}
  # One training step moved the moving statistics 10 % of the way
  # (momentum 0.9) from their initial 0 and 1 to the batch's mean and
  # (biased) variance.
  norm = model.get_layer('pooled_norm')
  np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * mean,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(norm.moving_variance.numpy(),
                             0.9 + 0.1 * var, rtol=1e-4)
  # Inference reads those moving statistics.
  moving = (pooled - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-5)
  np.testing.assert_allclose(model(x, training=False).numpy(),
                             moving @ kernel + bias, rtol=1e-3, atol=1e-4)
