"""Tests for the SiamFC tracking model: centre slice, stride, weight loading."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from configs import backbones as backbones_cfg
from modeling import tracking_model
from modeling.backbones import resnet_3d_y


def _tiny_backbone(dilate):
  cfg = backbones_cfg.resnet_3d_y_tiny()
  return resnet_3d_y.ResNet3DY(
      block_repeats=cfg.block_repeats, base_filters=cfg.base_filters,
      temporal_kernel_sizes=backbones_cfg.stage_temporal_kernel_sizes(cfg),
      dilate_res4_res5=dilate)


def test_centre_slice_arithmetic():
  # 5 frames, stem kernel 5 stride 2 'same': 3 slices centred on frames
  # 0, 2, 4 -> the tracked frame 2 is slice 1.
  assert tracking_model.centre_feature_slice(5, 5, 2, 1) == 1
  # 9 frames: 5 slices centred on 0, 2, 4, 6, 8 -> frame 4 is slice 2.
  assert tracking_model.centre_feature_slice(9, 5, 2, 1) == 2
  # No temporal stride: every frame has its slice.
  assert tracking_model.centre_feature_slice(5, 3, 1, 1) == 2
  # 3 frames at stride 2: slices centred on frames 0 and 2, none on 1.
  with pytest.raises(ValueError, match='no feature slice is centred on frame 1'):
    tracking_model.centre_feature_slice(3, 5, 2, 1)


def test_centre_slice_is_the_centre_frame_feature():
  """Stem slice t sees frames 2t-2..2t+2: changing frame 4 changes slice 1
  (frames 0..4, centred on the tracked frame 2) but not slice 0 (-2..2)."""
  backbone = _tiny_backbone(dilate=True)
  stem = tf_keras.Model(backbone.inputs, backbone.layers[1].output)
  clip = tf.random.uniform([1, 5, 31, 31, 3], seed=1)
  changed = tf.concat([clip[:, :4], clip[:, 4:] + 1.0], axis=1)
  a, b = stem(clip).numpy(), stem(changed).numpy()
  assert a.shape[1] == 3
  np.testing.assert_array_equal(a[:, 0], b[:, 0])  # frames -2..2 only
  assert np.abs(a[:, 1] - b[:, 1]).max() > 0  # frames 0..4


def test_feature_shapes_and_stride_8():
  backbone = _tiny_backbone(dilate=True)
  model = tracking_model.SiamFCTrackingModel(
      backbone, num_frames=5, centre_slice=1, exemplar_size=127,
      search_size=255)
  search = model.embed(tf.zeros([1, 5, 255, 255, 3]))
  exemplar = model.embed(tf.zeros([2, 5, 127, 127, 3]))
  channels = 8 * 8 * 4  # base 8, doubled 3 times, bottleneck x4
  assert search.shape == (1, 32, 32, channels)
  assert exemplar.shape == (2, 16, 16, channels)
  logits = model({'exemplar': tf.zeros([2, 5, 127, 127, 3]),
                  'search': tf.zeros([2, 5, 255, 255, 3])})['logits']
  assert logits.shape == (2, 17, 17, 1)
  # The undilated backbone is at stride 32 on the same input.
  plain = _tiny_backbone(dilate=False)(tf.zeros([1, 5, 255, 255, 3]))
  assert plain['5r'].shape[1:4] == (3, 8, 8)


def test_normalized_response_is_mean_cosine():
  backbone = _tiny_backbone(dilate=True)
  model = tracking_model.SiamFCTrackingModel(
      backbone, num_frames=5, centre_slice=1, exemplar_size=63,
      search_size=127)
  model.head.build(None)
  model.head.scale.assign(1.0)
  model.head.bias.assign(0.0)
  rng = np.random.default_rng(0)
  z = rng.normal(size=(1, 2, 2, 3)).astype(np.float32)
  x = rng.normal(size=(1, 3, 3, 3)).astype(np.float32)
  zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
  xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
  expected = np.zeros((2, 2))
  for i in range(2):
    for j in range(2):
      expected[i, j] = np.sum(zn[0] * xn[0, i:i + 2, j:j + 2]) / 4.0
  got = model.response(zn, xn).numpy()[0, ..., 0]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pretrained_weights_load_unchanged(tmp_path):
  # A "pretraining" backbone (undilated), saved as the pretraining task
  # saves it: the `backbone` checkpoint item.
  pretrained = _tiny_backbone(dilate=False)
  pretrained(tf.zeros([1, 5, 32, 32, 3]))
  for v in pretrained.variables:
    v.assign(tf.random.normal(v.shape, seed=len(v.name)))
  path = tf.train.Checkpoint(backbone=pretrained).write(
      str(tmp_path / 'pt'))

  adapted = _tiny_backbone(dilate=True)
  model = tracking_model.SiamFCTrackingModel(
      adapted, num_frames=5, centre_slice=1, exemplar_size=63,
      search_size=127)
  tf.train.Checkpoint(backbone=model.backbone).read(
      path).assert_existing_objects_matched()
  assert len(adapted.variables) == len(pretrained.variables)
  for a, p in zip(adapted.variables, pretrained.variables):
    assert a.shape == p.shape, (a.name, p.name)
    np.testing.assert_array_equal(a.numpy(), p.numpy())


def test_freeze_until_excludes_stem_and_res2():
  backbone = _tiny_backbone(dilate=True)
  model = tracking_model.SiamFCTrackingModel(
      backbone, num_frames=5, centre_slice=1, exemplar_size=63,
      search_size=127, freeze_until='2')
  model({'exemplar': tf.zeros([1, 5, 63, 63, 3]),
         'search': tf.zeros([1, 5, 127, 127, 3])})
  trained = {id(v) for v in model.tracking_trainable_variables}
  stem_kernel = backbone.layers[1].kernel
  assert id(stem_kernel) not in trained
  res5r = tf_keras.Model(backbone.inputs, backbone.output['5r'])
  assert id(res5r.trainable_variables[-1]) in trained
  assert id(model.head.scale) in trained
  # Stem: conv kernel + BN gamma/beta = 3. The one res2 block: 3 convs and
  # the projection shortcut (8 -> 32 channels), each kernel + BN gamma/beta,
  # no conv bias = 4 * 3 = 12. 15 variables frozen.
  res5g = tf_keras.Model(backbone.inputs, backbone.output['5g'])
  res5g_only = {id(v) for v in res5g.trainable_variables} - {
      id(v) for v in res5r.trainable_variables}
  # The unused res5g branch is left out as well (no gradient, and no weight
  # decay either): 15 + its variables.
  assert not res5g_only & trained
  assert len(res5g_only) > 0
  assert len(model.trainable_variables) - len(trained) == 15 + len(
      res5g_only)
