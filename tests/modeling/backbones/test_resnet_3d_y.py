"""Tests for the R3D "Y" backbone and its dilated bottleneck block.

Parameter counts include the BN moving statistics (`count_params()` counts
every variable). Counts do not depend on the input size, so the R3D-50 models
are built on tiny inputs and, where no tensor has to flow, only traced.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.vision.configs import common
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import resnet_3d
from official.vision.modeling.layers import nn_blocks_3d

from configs import backbones as backbones_cfg
from modeling.backbones import resnet_3d_y
from modeling.layers import blocks_3d

R3D50_KERNELS = ((1, 1, 1), (1, 1, 1, 1), (3, 3, 3, 3, 3, 3), (3, 3, 3))
TINY_KERNELS = ((1,), (1,), (3,), (3,))

# SPEC section 1: plain R3D-50 with these block specs, the Y backbone, and the
# second res5 copy.
R3D50_PARAMS = 31_725_248
R3D50_Y_PARAMS = 51_955_392
RES5_PARAMS = 20_230_144


def _spec(t, h, w=None):
  return tf_keras.layers.InputSpec(shape=[None, t, h, w or h, 3])


def _bottleneck_params(c_in, filters, temporal_kernel, projection):
  """Variables of one bottleneck block, counted by hand.

  Convs have no bias; every BN has 4 variables per channel (gamma, beta,
  moving mean, moving variance).

  Args:
    c_in: Input channels.
    filters: Bottleneck width (the block outputs 4x).
    temporal_kernel: Temporal kernel size of the first conv.
    projection: Whether the block has a 1x1 projection shortcut (+ BN).

  Returns:
    The number of scalars in the block's variables.
  """
  convs = (temporal_kernel * c_in * filters + 9 * filters * filters +
           filters * 4 * filters)
  bns = 4 * (filters + filters + 4 * filters)
  if projection:
    convs += c_in * 4 * filters
    bns += 4 * 4 * filters
  return convs + bns


def _stage_params(c_in, filters, kernels):
  total = 0
  for j, k in enumerate(kernels):
    total += _bottleneck_params(c_in if j == 0 else 4 * filters, filters, k,
                                projection=(j == 0))
  return total


def _stem_params(width, temporal_kernel=5):
  return temporal_kernel * 7 * 7 * 3 * width + 4 * width


def _block_layers(model):
  return [l for l in model.layers
          if isinstance(l, blocks_3d.DilatedBottleneckBlock3D)]


@pytest.fixture(scope='module')
def r3d50_models():
  """Model Garden R3D-50, our Y backbone and our single-res5 backbone.

  Building an R3D-50 costs a few CPU seconds, so the file builds four in
  total: these three and the dilated one of the factory test. The Y backbone
  is only traced (no tensor flows), on the SPEC's 16x224x224 input; the two
  single-res5 networks run on 8x64x64.
  """
  # Seeded weights: the endpoint comparison's tolerance was checked on them.
  tf_keras.utils.set_random_seed(0)
  spec = _spec(8, 64)
  mg = resnet_3d.ResNet3D(
      model_id=50,
      temporal_strides=[1, 1, 1, 1],
      temporal_kernel_sizes=[list(k) for k in R3D50_KERNELS],
      stem_conv_temporal_kernel_size=5,
      stem_conv_temporal_stride=2,
      stem_pool_temporal_stride=1,
      input_specs=spec)
  y = resnet_3d_y.ResNet3DY(
      block_repeats=(3, 4, 6, 3), base_filters=64,
      temporal_kernel_sizes=R3D50_KERNELS, input_specs=_spec(16, 224))
  c5 = resnet_3d_y.ResNet3DY(
      block_repeats=(3, 4, 6, 3), base_filters=64,
      temporal_kernel_sizes=R3D50_KERNELS, input_specs=spec,
      duplicate_res5=False)
  return mg, y, c5


def test_r3d50_parameter_counts(r3d50_models):
  mg, y, c5 = r3d50_models
  assert mg.count_params() == R3D50_PARAMS
  assert c5.count_params() == R3D50_PARAMS
  assert y.count_params() == R3D50_Y_PARAMS
  assert y.count_params() - c5.count_params() == RES5_PARAMS
  # The hand count agrees: stem + res2..res5 (+ one more res5 for the Y).
  widths = (64, 128, 256, 512)
  c_ins = (64, 256, 512, 1024)
  stages = [_stage_params(c, f, k)
            for c, f, k in zip(c_ins, widths, R3D50_KERNELS)]
  assert stages[3] == RES5_PARAMS
  assert _stem_params(64) + sum(stages) == R3D50_PARAMS


def test_single_res5_matches_model_garden_resnet3d(r3d50_models):
  """Same weights -> equal endpoints: our c5 network IS Model Garden's.

  Equal to float32 rounding, not bit for bit: our stem computes the same
  convolution as one 2D conv over stacked frames (StackedFramesConv3D), which
  sums the same products in another order.
  """
  mg, _, c5 = r3d50_models
  assert [w.shape for w in mg.weights] == [w.shape for w in c5.weights]
  c5.set_weights(mg.get_weights())
  x = tf.random.stateless_normal([1, 8, 64, 64, 3], seed=[1, 2])
  ref = mg(x, training=False)
  out = c5(x, training=False)
  for level in ('2', '3', '4'):
    np.testing.assert_allclose(out[level].numpy(), ref[level].numpy(),
                               rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['5g'].numpy(), ref['5'].numpy(),
                             rtol=1e-4, atol=1e-5)
  # Without duplication the two res5 endpoints are one tensor.
  np.testing.assert_array_equal(out['5r'].numpy(), out['5g'].numpy())
  assert c5.output_specs['5r'] == c5.output_specs['5g']


def test_r3d50_endpoint_shapes(r3d50_models):
  _, y, c5 = r3d50_models
  # 8x64x64: stem conv /2 in T,H,W -> 4x32x32; pool /2 in H,W -> 4x16x16;
  # res2 keeps it, res3..res5 halve H,W: 8x8, 4x4, 2x2.
  expected = {'2': [None, 4, 16, 16, 256], '3': [None, 4, 8, 8, 512],
              '4': [None, 4, 4, 4, 1024], '5g': [None, 4, 2, 2, 2048],
              '5r': [None, 4, 2, 2, 2048]}
  assert {k: v.as_list() for k, v in c5.output_specs.items()} == expected
  # SPEC: 16x224x224 -> res4 8x14x14x1024, res5g/res5r 8x7x7x2048.
  assert y.output_specs['2'].as_list() == [None, 8, 56, 56, 256]
  assert y.output_specs['3'].as_list() == [None, 8, 28, 28, 512]
  assert y.output_specs['4'].as_list() == [None, 8, 14, 14, 1024]
  assert y.output_specs['5g'].as_list() == [None, 8, 7, 7, 2048]
  assert y.output_specs['5r'].as_list() == [None, 8, 7, 7, 2048]
  res5_blocks = [l for l in _block_layers(y) if l._filters == 512]
  assert len(res5_blocks) == 6  # 3 in res5g + 3 in res5r
  assert sum(l.count_params() for l in res5_blocks) == 2 * RES5_PARAMS


def _tiny(input_specs, **kwargs):
  return resnet_3d_y.ResNet3DY(
      block_repeats=(1, 1, 1, 1), base_filters=8,
      temporal_kernel_sizes=TINY_KERNELS, input_specs=input_specs, **kwargs)


# Tiny variant, by hand (see _bottleneck_params): stem 5*7*7*3*8 + 4*8 = 5,912;
# res2 (8 -> 8 -> 32, t=1) 1,472; res3 (32 -> 16 -> 64, t=1) 6,528;
# res4 (64 -> 32 -> 128, t=3) 28,928; res5 (128 -> 64 -> 256, t=3) 113,152.
TINY_STAGE_PARAMS = (1_472, 6_528, 28_928, 113_152)
TINY_Y_PARAMS = 5_912 + 1_472 + 6_528 + 28_928 + 2 * 113_152  # 269,144


def test_tiny_parameter_count_decomposes():
  model = _tiny(_spec(4, 32))
  assert TINY_Y_PARAMS == 269_144
  assert model.count_params() == TINY_Y_PARAMS
  assert _stem_params(8) == 5_912
  stage_inputs = (8, 32, 64, 128)
  for stage, expected in enumerate(TINY_STAGE_PARAMS):
    assert _stage_params(stage_inputs[stage], 8 * 2**stage,
                         TINY_KERNELS[stage]) == expected
    blocks = [l for l in _block_layers(model) if l._filters == 8 * 2**stage]
    assert sum(l.count_params() for l in blocks) == expected * (
        2 if stage == 3 else 1)
  single = _tiny(_spec(4, 32), duplicate_res5=False)
  assert single.count_params() == TINY_Y_PARAMS - TINY_STAGE_PARAMS[3]


def test_tiny_y_branches_are_independent():
  model = _tiny(_spec(4, 32))
  out = model(tf.random.stateless_normal([1, 4, 32, 32, 3], seed=[3, 4]),
              training=False)
  # Both branches read res4 but own differently initialized weights.
  assert not np.allclose(out['5g'].numpy(), out['5r'].numpy())
  g_blocks = [l for l in _block_layers(model) if l._filters == 64]
  assert len(g_blocks) == 2
  assert g_blocks[0].weights[0] is not g_blocks[1].weights[0]


def test_tiny_endpoint_shapes_and_values():
  model = _tiny(_spec(8, 64))
  expected = {'2': [2, 4, 16, 16, 32], '3': [2, 4, 8, 8, 64],
              '4': [2, 4, 4, 4, 128], '5g': [2, 4, 2, 2, 256],
              '5r': [2, 4, 2, 2, 256]}
  out = model(tf.random.stateless_normal([2, 8, 64, 64, 3], seed=[5, 6]),
              training=False)
  assert {k: v.shape.as_list() for k, v in out.items()} == expected
  for v in out.values():
    # Every endpoint ends with a ReLU.
    assert np.all(np.isfinite(v.numpy())) and v.numpy().min() >= 0.0


def test_tiny_dilated_loads_undilated_weights(tmp_path):
  spec = _spec(5, 256)
  plain = _tiny(spec)
  dilated = _tiny(spec, dilate_res4_res5=True)
  assert [(w.name.split('/')[-1], w.shape) for w in dilated.weights] == [
      (w.name.split('/')[-1], w.shape) for w in plain.weights]
  assert dilated.count_params() == plain.count_params() == TINY_Y_PARAMS
  # Object-graph checkpoint written by the undilated (pretraining) model.
  path = tf.train.Checkpoint(backbone=plain).write(str(tmp_path / 'ckpt'))
  status = tf.train.Checkpoint(backbone=dilated).read(path)
  status.assert_existing_objects_matched()
  for a, b in zip(dilated.weights, plain.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

  out = dilated(tf.zeros([1, 5, 256, 256, 3]), training=False)
  # 256 -> 128 -> 64 -> 64 (res2) -> 32 (res3) -> 32 (res4, res5): stride 8.
  assert out['4'].shape.as_list() == [1, 3, 32, 32, 128]
  assert out['5r'].shape.as_list() == [1, 3, 32, 32, 256]
  dilations = {l._filters: l._spatial_conv.dilation_rate
               for l in _block_layers(dilated)}
  assert dilations == {8: (1, 1, 1), 16: (1, 1, 1), 32: (1, 2, 2),
                       64: (1, 2, 2)}


def test_dilated_block_equals_undilated_block_on_subsampled_grid():
  """dilation 2 at even positions == dilation 1 on the even sub-grid.

  The 1x1 convs and (inference) BN are pointwise, and a 3x3 conv dilated by 2
  with 'same' padding reads, at an even position 2i, the even positions
  2i-2, 2i, 2i+2 (zero outside) -- the neighbours of i on the sub-grid.
  """
  x = tf.random.stateless_normal([1, 3, 8, 8, 16], seed=[7, 8])
  # Seeded weights; over 10 random draws the error was < 1e-3 of the
  # tolerance and the dilation-1 outputs differed by > 1.2 (needs 1e-3).
  tf_keras.utils.set_random_seed(8)
  kwargs = dict(filters=8, temporal_kernel_size=3, temporal_strides=1,
                spatial_strides=1)
  dilated = blocks_3d.DilatedBottleneckBlock3D(spatial_dilation=2, **kwargs)
  plain = blocks_3d.DilatedBottleneckBlock3D(spatial_dilation=1, **kwargs)
  dilated(x)
  plain(x[:, :, ::2, ::2])
  assert len(dilated.weights) == len(plain.weights) == 20  # 5 convs + 4 BNs
  clone = blocks_3d.DilatedBottleneckBlock3D.from_config(dilated.get_config())
  assert clone.get_config()['spatial_dilation'] == 2
  plain.set_weights(dilated.get_weights())
  got = dilated(x, training=False)[:, :, ::2, ::2]
  want = plain(x[:, :, ::2, ::2], training=False)
  np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
  # And it is not a no-op: at dilation 1 on the full grid the values differ.
  assert not np.allclose(plain(x, training=False)[:, :, ::2, ::2].numpy(),
                         want.numpy(), atol=1e-3)


_MM = blocks_3d.MatmulConv3D
_SF = blocks_3d.StackedFramesConv3D
_MG = blocks_3d.MatmulGradConv3D


@pytest.mark.parametrize('size,stride,spatial,shortcut', [
    (14, 1, _SF, _MM),  # 1x3x3 as 2D convs over frames from 14x14 up
    (13, 1, _MG, _MM),  # below: Conv3D with the custom gradients
    (7, 2, _MM, _MM),  # strided, small frames: matmuls
    (28, 2, _SF, _SF),  # strided on 28x28: strided 2D convs
])
def test_block_picks_fast_conv_forms_and_equals_model_garden(
    size, stride, spatial, shortcut):
  """Each conv takes the class `conv3d_layer_for` picks for its size; the
  block stays Model Garden's BottleneckBlock3D (same weights, same outputs
  and input gradients to float32 rounding)."""
  x = tf.random.stateless_normal([2, 3, size, size, 16], seed=[3, 4])
  # Seeded weights; over 10 random draws per case the largest error was
  # 0.03 of the gradient tolerance (outputs: bitwise equal).
  tf_keras.utils.set_random_seed(size)
  kwargs = dict(filters=8, temporal_kernel_size=3, temporal_strides=1,
                spatial_strides=stride)
  ours = blocks_3d.DilatedBottleneckBlock3D(**kwargs)
  mg = nn_blocks_3d.BottleneckBlock3D(**kwargs)
  ours(x)
  mg(x)
  assert type(ours._spatial_conv) is spatial
  assert type(ours._shortcut_conv) is shortcut
  # The 3x1x1 conv has the custom gradients; the 1x1x1 expand conv is a
  # matmul.
  assert type(ours._temporal_conv) is _MG
  assert type(ours._expand_conv) is _MM
  ours.set_weights(mg.get_weights())
  for training in (False, True):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      got = ours(x, training=training)
      want = mg(x, training=training)
      got_loss = tf.reduce_sum(got * got)
      want_loss = tf.reduce_sum(want * want)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(tape.gradient(got_loss, x).numpy(),
                               tape.gradient(want_loss, x).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_block_rejects_stride_with_dilation():
  with pytest.raises(ValueError, match='spatial_strides'):
    blocks_3d.DilatedBottleneckBlock3D(
        filters=8, temporal_kernel_size=1, temporal_strides=1,
        spatial_strides=2, spatial_dilation=2)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match='res4 has 1 blocks but 2'):
    resnet_3d_y.ResNet3DY(
        block_repeats=(1, 1, 1, 1), base_filters=8,
        temporal_kernel_sizes=((1,), (1,), (3, 3), (3,)),
        input_specs=_spec(4, 32))
  with pytest.raises(ValueError, match='block_repeats must be 4'):
    resnet_3d_y.ResNet3DY(
        block_repeats=(1, 1, 1), base_filters=8,
        temporal_kernel_sizes=((1,), (1,), (3,)), input_specs=_spec(4, 32))
  with pytest.raises(ValueError, match='stem_pool_temporal_stride'):
    _tiny(_spec(4, 32), stem_pool_temporal_stride=0)


def test_get_config_round_trip():
  model = _tiny(_spec(4, 32), dilate_res4_res5=True, duplicate_res5=False)
  config = model.get_config()
  assert config['dilate_res4_res5'] and not config['duplicate_res5']
  clone = resnet_3d_y.ResNet3DY.from_config(config)
  assert clone.get_config() == config
  assert clone.count_params() == TINY_Y_PARAMS - TINY_STAGE_PARAMS[3]


def test_factory_builds_dilated_r3d50_from_config(r3d50_models):
  _, y, _ = r3d50_models
  norm_activation = common.NormActivation(
      use_sync_bn=True, norm_momentum=0.9, norm_epsilon=1e-5)
  config = backbones_cfg.Backbone3D()
  config.resnet_3d_y.dilate_res4_res5 = True
  model = factory.build_backbone(
      input_specs=_spec(5, 255),
      backbone_config=config,
      norm_activation_config=norm_activation)
  assert isinstance(model, resnet_3d_y.ResNet3DY)
  # 255 -> stem 128 -> pool 64 -> res3 32 -> res4 32 -> res5 32 (stride 8;
  # 'same' padding rounds up). 5 frames -> 3 after the temporal stride 2.
  assert model.output_specs['3'].as_list() == [None, 3, 32, 32, 512]
  assert model.output_specs['4'].as_list() == [None, 3, 32, 32, 1024]
  assert model.output_specs['5g'].as_list() == [None, 3, 32, 32, 2048]
  assert model.output_specs['5r'].as_list() == [None, 3, 32, 32, 2048]
  # Dilation changes no variable: same count, same shapes in the same order
  # as the undilated Y backbone built directly (not through the factory).
  assert model.count_params() == R3D50_Y_PARAMS
  assert [w.shape for w in model.weights] == [w.shape for w in y.weights]
  bns = [l for l in model.layers
         if isinstance(l, tf_keras.layers.BatchNormalization)]
  assert bns and bns[0].synchronized and bns[0].momentum == 0.9
  assert bns[0].epsilon == 1e-5

  tiny_cfg = backbones_cfg.Backbone3D(
      type='resnet_3d_y', resnet_3d_y=backbones_cfg.resnet_3d_y_tiny())
  tiny_cfg.resnet_3d_y.dilate_res4_res5 = True
  tiny = factory.build_backbone(
      input_specs=_spec(5, 255), backbone_config=tiny_cfg,
      norm_activation_config=common.NormActivation(),
      l2_regularizer=tf_keras.regularizers.L2(1e-6))
  # The config's tiny variant is the tiny net above (stem as wide as res2,
  # 8); dilation adds no variable.
  assert tiny.count_params() == TINY_Y_PARAMS == 269_144
  assert tiny.output_specs['5g'].as_list() == [None, 3, 32, 32, 256]
  # One L2 term per conv kernel: the stem + 4 convs (incl. projection) in each
  # of the 5 blocks (res2, res3, res4, res5g, res5r).
  assert len(tiny.losses) == 1 + 4 * 5


def test_factory_rejects_inconsistent_config():
  cfg = backbones_cfg.Backbone3D()
  cfg.resnet_3d_y.block_repeats = (1, 1, 1, 1)
  cfg.resnet_3d_y.model_id = 14
  with pytest.raises(ValueError, match='temporal_kernel_sizes has 16'):
    factory.build_backbone(
        input_specs=_spec(4, 32), backbone_config=cfg,
        norm_activation_config=common.NormActivation())
