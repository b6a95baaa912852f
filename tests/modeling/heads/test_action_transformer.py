"""Action-transformer head, its masked loss and the localization model."""
import re

import numpy as np
import pytest
import tensorflow as tf

from official.core import exp_factory
from official.vision.modeling import factory_3d
import tf_keras

from configs import action_localization as al_cfg
from modeling import action_localization_model
from modeling.heads import action_transformer


def _head_and_inputs(batch=2, boxes=3, channels=16, t=4, size=2,
                     num_classes=5):
  head = action_transformer.ActionTransformerHead(
      num_classes=num_classes, num_layers=2, num_heads=2, hidden_dim=8,
      mlp_dim=12, roi_crop_size=2, dropout_rate=0.0)
  rng = np.random.default_rng(0)
  feats = tf.constant(rng.normal(size=(batch, t, size, size, channels)),
                      tf.float32)
  box = tf.constant(np.tile([[0.1, 0.2, 0.6, 0.9]], (batch, boxes, 1)),
                    tf.float32)
  return head, feats, box


def test_key_frame_is_the_centre_slice():
  assert [action_transformer.key_frame_index(t) for t in (1, 2, 4, 8, 16)] \
      == [0, 1, 2, 4, 8]


def test_head_shapes_and_attention_over_all_tokens():
  head, feats, boxes = _head_and_inputs()
  out = head(feats, boxes)
  assert out['logits'].shape == (2, 3, 5)
  assert out['logits'].dtype == tf.float32
  # [B, heads, M, T*H*W]: every query attends to all 4*2*2 clip tokens.
  assert out['attention'].shape == (2, 2, 3, 16)
  np.testing.assert_allclose(out['attention'].numpy().sum(-1), 1.0,
                             atol=1e-5)


def test_classifier_computes_in_float32_under_mixed_bfloat16():
  # bfloat16 logits (8-bit mantissa) tie for many boxes, which makes the
  # AP's ranking of them arbitrary.
  rng = np.random.default_rng(1)
  feats = tf.constant(rng.normal(size=(16, 2, 4, 4, 16)), tf.float32)
  y0x0 = rng.uniform(0, 0.5, size=(16, 8, 2))
  boxes = tf.constant(np.concatenate([y0x0, y0x0 + 0.4], -1), tf.float32)
  variables = {}
  for policy in ('float32', 'mixed_bfloat16'):
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
      head = action_transformer.ActionTransformerHead(
          num_classes=20, num_layers=1, num_heads=2, hidden_dim=16,
          mlp_dim=16, dropout_rate=0.0, name='head')
      logits = head(feats, boxes)['logits']
    finally:
      tf_keras.mixed_precision.set_global_policy('float32')
    variables[policy] = sorted((v.name, tuple(v.shape))
                               for v in head.weights)
  assert head._classifier.compute_dtype == 'float32'
  assert head._classifier.kernel.dtype == tf.float32
  assert logits.dtype == tf.float32
  values = logits.numpy()
  as_bf16 = tf.cast(tf.cast(logits, tf.bfloat16), tf.float32).numpy()
  assert len(np.unique(values)) > 2 * len(np.unique(as_bf16))
  # Checkpoint compatible: the same variables as under float32.
  assert variables['mixed_bfloat16'] == variables['float32']


def test_query_comes_from_the_key_frame_and_keys_from_the_clip():
  head, feats, boxes = _head_and_inputs()
  base = head(feats, boxes)['logits'].numpy()
  # A non-key frame changes the logits only through the keys/values.
  f = feats.numpy()
  f[:, 0] += 3.0
  changed = head(tf.constant(f), boxes)['logits'].numpy()
  assert np.abs(changed - base).max() > 1e-4
  # Different boxes on the same clip give different logits.
  other = tf.constant(np.tile([[0.5, 0.0, 1.0, 0.4]], (2, 3, 1)), tf.float32)
  assert np.abs(head(feats, other)['logits'].numpy() - base).max() > 1e-4


def test_normalize_features_reads_each_position_as_a_unit_vector():
  normalized, feats, boxes = _head_and_inputs()  # normalizes by default
  plain = action_transformer.ActionTransformerHead(
      num_classes=5, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=12,
      roi_crop_size=2, dropout_rate=0.0, normalize_features=False)
  normalized(feats, boxes)
  plain(feats, boxes)
  plain.set_weights(normalized.get_weights())  # same head, only the switch
  f = feats.numpy()
  unit = f / np.linalg.norm(f, axis=-1, keepdims=True)
  # On features, the normalizing head equals the plain head on unit vectors.
  np.testing.assert_allclose(normalized(feats, boxes)['logits'].numpy(),
                             plain(tf.constant(unit), boxes)['logits'].numpy(),
                             rtol=1e-5, atol=1e-6)
  # So it is blind to a per-position positive scale; the plain head is not.
  scale = np.random.default_rng(2).uniform(0.5, 20.0, f.shape[:-1] + (1,))
  scaled = tf.constant(f * scale, tf.float32)
  np.testing.assert_allclose(normalized(scaled, boxes)['logits'].numpy(),
                             normalized(feats, boxes)['logits'].numpy(),
                             rtol=1e-4, atol=1e-5)
  assert np.abs(plain(scaled, boxes)['logits'].numpy() -
                plain(feats, boxes)['logits'].numpy()).max() > 1e-3
  assert normalized.get_config()['normalize_features'] is True
  assert plain.get_config()['normalize_features'] is False


def _np_loss(labels, logits, mask, num_valid=None):
  # Independent reference: BCE = max(x, 0) - x*z + log(1 + exp(-|x|)).
  bce = (np.maximum(logits, 0) - logits * labels +
         np.log1p(np.exp(-np.abs(logits))))
  per_box = bce.mean(-1)
  n = mask.sum() if num_valid is None else num_valid
  return (per_box * mask).sum() / max(n, 1.0)


def test_masked_sigmoid_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 4, 6)).astype(np.float32) * 3
  labels = (rng.uniform(size=(2, 4, 6)) < 0.3).astype(np.float32)
  mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
  got = action_transformer.masked_sigmoid_cross_entropy(labels, logits, mask)
  np.testing.assert_allclose(got.numpy(), _np_loss(labels, logits, mask),
                             rtol=1e-5)
  # Padded boxes do not matter, whatever their logits.
  logits2 = logits.copy()
  logits2[0, 2:] = 100.0
  got2 = action_transformer.masked_sigmoid_cross_entropy(labels, logits2,
                                                         mask)
  np.testing.assert_allclose(got2.numpy(), got.numpy(), rtol=1e-6)
  # An explicit (global) normalizer.
  got3 = action_transformer.masked_sigmoid_cross_entropy(labels, logits,
                                                         mask, num_valid=6.0)
  np.testing.assert_allclose(got3.numpy(),
                             _np_loss(labels, logits, mask, 6.0), rtol=1e-5)


def test_loss_at_zero_logits_is_log2_and_zero_without_boxes():
  labels = np.zeros([1, 2, 3], np.float32)
  logits = np.zeros([1, 2, 3], np.float32)
  got = action_transformer.masked_sigmoid_cross_entropy(
      labels, logits, np.array([[1, 0]], np.float32))
  np.testing.assert_allclose(got.numpy(), np.log(2.0), rtol=1e-6)
  none = action_transformer.masked_sigmoid_cross_entropy(
      labels, logits, np.zeros([1, 2], np.float32))
  assert none.numpy() == 0.0


def test_global_valid_boxes_sums_over_replicas(mirrored_strategy):
  strategy = mirrored_strategy  # Shared: see tests/conftest.py.
  masks = [tf.constant([[1.0, 1.0, 0.0]]), tf.constant([[1.0, 0.0, 0.0]])]
  per_replica = strategy.experimental_distribute_values_from_function(
      lambda ctx: masks[ctx.replica_id_in_sync_group])
  result = strategy.run(action_transformer.global_valid_boxes,
                        args=(per_replica,))
  values = [float(v) for v in strategy.experimental_local_results(result)]
  assert values == [3.0, 3.0]


def test_head_compiles_with_xla():
  head, feats, boxes = _head_and_inputs()
  eager = head(feats, boxes)['logits']
  compiled = tf.function(lambda f, b: head(f, b)['logits'], jit_compile=True)
  np.testing.assert_allclose(compiled(feats, boxes).numpy(), eager.numpy(),
                             atol=1e-4)


def test_registered_builder_reads_res5r():
  config = exp_factory.get_exp_config('const_cl_ava_toy').task
  model = factory_3d.build_model(
      'const_cl_action_localization',
      input_specs=tf_keras.layers.InputSpec(shape=[None, 8, 32, 32, 3]),
      model_config=config.model, num_classes=al_cfg.TOY_NUM_CLASSES)
  assert isinstance(model, action_localization_model.ActionLocalizationModel)
  out = model({'image': tf.zeros([2, 8, 32, 32, 3]),
               'boxes': tf.fill([2, 4, 4], 0.5) +
                        tf.constant([-0.25, -0.25, 0.25, 0.25])})
  assert out['logits'].shape == (2, 4, 8)
  np.testing.assert_allclose(out['scores'].numpy(),
                             tf.sigmoid(out['logits']).numpy(), atol=1e-6)
  assert set(model.checkpoint_items) == {'backbone', 'head'}
  # The config's switch reaches the head: on by default, off when overridden.
  assert model.checkpoint_items['head'].get_config()['normalize_features']
  config.model.head.normalize_features = False
  plain = factory_3d.build_model(
      'const_cl_action_localization',
      input_specs=tf_keras.layers.InputSpec(shape=[None, 8, 32, 32, 3]),
      model_config=config.model, num_classes=al_cfg.TOY_NUM_CLASSES)
  assert not plain.checkpoint_items['head'].get_config()['normalize_features']


def test_model_takes_the_endpoint_as_a_str_only():
  # validate() turns an override's int 4 into '4' (configs/config_types.py);
  # the model does not guess what another type means.
  with pytest.raises(ValueError, match=re.escape(
      "feature_endpoint must be one of ('5r', '5g', '4'), got 4")):
    action_localization_model.ActionLocalizationModel(
        backbone=None, head=None, feature_endpoint=4)
