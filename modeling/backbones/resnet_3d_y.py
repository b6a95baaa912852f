"""The R3D "Y" backbone of ConST-CL (SPEC section 1).

A 3D ResNet (Model Garden's R3D layout: [t,1,1] conv then [1,3,3] conv in each
bottleneck) whose res5 stage is duplicated: `res5g` (global loss, holistic
tasks) and `res5r` (local loss, instance tasks), both fed by res4. The tree
looks like a "Y" with the trunk res2..res4.

With `duplicate_res5=False` and `base_filters=64` the network is, layer for
layer and variable for variable, Model Garden's `ResNet3D` (stem width 64, no
self-gating/SE/stochastic depth, temporal stride 1 everywhere), so weights move
between the two with `set_weights`.

Feature strides (spatial, 'same' padding): stem conv 2, stem pool 2, res3 2,
res4 2, res5 2 -> res5 at stride 32. `dilate_res4_res5=True` (tracking) sets the
spatial stride of the first res4 and res5 blocks to 1 and dilates every 3x3
conv of res4 and res5 by 2 -> res4/res5 at stride 8: a 255x255 (or 256x256)
search image gives 32x32 res4/res5 maps (255 -> 128 -> 64 -> 64 -> 32 -> 32),
a 127x127 exemplar gives 16x16.
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory

from configs import backbones as backbones_cfg
from modeling.layers import blocks_3d

layers = tf_keras.layers

# Endpoint names, in the order the model outputs them.
ENDPOINTS = ('2', '3', '4', '5g', '5r')


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class ResNet3DY(tf_keras.Model):
  """3D ResNet with a duplicated res5 (`res5g`, `res5r`)."""

  def __init__(
      self,
      block_repeats: Sequence[int],
      base_filters: int,
      temporal_kernel_sizes: Sequence[Sequence[int]],
      input_specs: layers.InputSpec = layers.InputSpec(
          shape=[None, None, None, None, 3]),
      stem_conv_temporal_kernel_size: int = 5,
      stem_conv_temporal_stride: int = 2,
      stem_pool_temporal_stride: int = 1,
      stem_filters: int = 0,
      duplicate_res5: bool = True,
      dilate_res4_res5: bool = False,
      activation: str = 'relu',
      use_sync_bn: bool = False,
      norm_momentum: float = 0.99,
      norm_epsilon: float = 0.001,
      kernel_initializer: str = 'VarianceScaling',
      kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
      bias_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
      **kwargs):
    """Initializes the backbone.

    Args:
      block_repeats: Number of bottleneck blocks of res2, res3, res4, res5.
      base_filters: Bottleneck width of res2 and width of the stem; doubled
        per stage; every block outputs 4x its bottleneck width.
      temporal_kernel_sizes: One sequence per stage (res2..res5) holding the
        temporal kernel size of each block's first conv.
      input_specs: `InputSpec` of the [B, T, H, W, C] input.
      stem_conv_temporal_kernel_size: Temporal kernel size of the stem conv.
      stem_conv_temporal_stride: Temporal stride of the stem conv.
      stem_filters: Width of the stem conv; 0 means `base_filters`. (The
        stem conv class comes from `blocks_3d.conv3d_layer_for`: TensorFlow's
        CPU Conv3DBackpropFilter for the strided 3-channel stem took seconds
        per step even at toy sizes, worst for narrow stems.)
      stem_pool_temporal_stride: Temporal stride of the stem max-pool (its
        temporal kernel is 1 when this is 1, else 3, as Model Garden's).
      duplicate_res5: If True, build res5g and res5r; if False, a single res5
        whose output is returned under both '5g' and '5r'.
      dilate_res4_res5: If True, res4 and res5 keep the spatial resolution
        (stride 1) and dilate their 3x3 convs by 2 (feature stride 8).
      activation: Name of the activation function.
      use_sync_bn: Whether to use synchronized batch normalization.
      norm_momentum: Momentum of the BN moving averages.
      norm_epsilon: Epsilon added to the BN variance.
      kernel_initializer: Kernel initializer of the convs.
      kernel_regularizer: Kernel regularizer of the convs, or None.
      bias_regularizer: Bias regularizer of the convs, or None.
      **kwargs: Passed to `tf_keras.Model`.

    Raises:
      ValueError: if the block specs are inconsistent or a size is < 1.
    """
    block_repeats = tuple(int(r) for r in block_repeats)
    temporal_kernel_sizes = tuple(
        tuple(int(k) for k in stage) for stage in temporal_kernel_sizes)
    _check_args(block_repeats, base_filters, temporal_kernel_sizes,
                stem_conv_temporal_kernel_size, stem_conv_temporal_stride,
                stem_pool_temporal_stride)
    self._block_repeats = block_repeats
    self._base_filters = base_filters
    self._temporal_kernel_sizes = temporal_kernel_sizes
    self._input_specs = input_specs
    self._stem_conv_temporal_kernel_size = stem_conv_temporal_kernel_size
    self._stem_conv_temporal_stride = stem_conv_temporal_stride
    self._stem_pool_temporal_stride = stem_pool_temporal_stride
    if stem_filters < 0:
      raise ValueError(f'stem_filters must be >= 0, got {stem_filters}')
    self._stem_filters = stem_filters or base_filters
    self._duplicate_res5 = duplicate_res5
    self._dilate_res4_res5 = dilate_res4_res5
    self._activation = activation
    self._use_sync_bn = use_sync_bn
    self._norm_momentum = norm_momentum
    self._norm_epsilon = norm_epsilon
    self._kernel_initializer = kernel_initializer
    self._kernel_regularizer = kernel_regularizer
    self._bias_regularizer = bias_regularizer
    if tf_keras.backend.image_data_format() == 'channels_last':
      self._bn_axis = -1
    else:
      self._bn_axis = 1

    inputs = tf_keras.Input(shape=input_specs.shape[1:])
    endpoints = self._build_model(inputs)
    self._output_specs = {k: endpoints[k].get_shape() for k in endpoints}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  def _build_model(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Builds stem, res2..res4 and the res5 branch(es); returns endpoints."""
    # The 3-channel strided stem conv runs as a stacked-frame 2D conv (its
    # 5x7x7 kernel has too many taps for the matmul form): same variable and
    # outputs, ~100x faster filter gradient on CPU than Conv3D.
    stem_kernel = [self._stem_conv_temporal_kernel_size, 7, 7]
    stem_strides = [self._stem_conv_temporal_stride, 2, 2]
    stem_conv = blocks_3d.conv3d_layer_for(
        stem_kernel, stem_strides, frame_size=tuple(inputs.shape[2:4]))
    x = stem_conv(
        filters=self._stem_filters,
        kernel_size=stem_kernel,
        strides=stem_strides,
        use_bias=False,
        padding='same',
        kernel_initializer=tf_utils.clone_initializer(
            self._kernel_initializer),
        kernel_regularizer=self._kernel_regularizer,
        bias_regularizer=self._bias_regularizer)(inputs)
    x = layers.BatchNormalization(
        axis=self._bn_axis,
        momentum=self._norm_momentum,
        epsilon=self._norm_epsilon,
        synchronized=self._use_sync_bn)(x)
    x = tf_utils.get_activation(self._activation)(x)
    # A temporal pool kernel of 1 when not striding in time keeps frames
    # independent in the stem, as Model Garden's ResNet3D does.
    pool_temporal_kernel = 1 if self._stem_pool_temporal_stride == 1 else 3
    x = blocks_3d.FramewiseMaxPool3D(
        pool_size=[pool_temporal_kernel, 3, 3],
        strides=[self._stem_pool_temporal_stride, 2, 2],
        padding='same')(x)

    endpoints = {}
    for i in range(3):
      x = self._block_group(x, stage=i, name=f'block_group_l{i + 2}')
      endpoints[str(i + 2)] = x
    res4 = x
    endpoints['5g'] = self._block_group(res4, stage=3, name='block_group_l5g')
    if self._duplicate_res5:
      endpoints['5r'] = self._block_group(
          res4, stage=3, name='block_group_l5r')
    else:
      endpoints['5r'] = endpoints['5g']
    return endpoints

  def _block_group(self, inputs: tf.Tensor, stage: int, name: str):
    """Builds the blocks of stage `stage` (0 = res2 ... 3 = res5)."""
    dilated = self._dilate_res4_res5 and stage >= 2
    first_spatial_stride = 1 if (stage == 0 or dilated) else 2
    x = inputs
    for j in range(self._block_repeats[stage]):
      x = blocks_3d.DilatedBottleneckBlock3D(
          filters=self._base_filters * 2**stage,
          temporal_kernel_size=self._temporal_kernel_sizes[stage][j],
          temporal_strides=1,
          spatial_strides=first_spatial_stride if j == 0 else 1,
          spatial_dilation=2 if dilated else 1,
          kernel_initializer=self._kernel_initializer,
          kernel_regularizer=self._kernel_regularizer,
          bias_regularizer=self._bias_regularizer,
          activation=self._activation,
          use_sync_bn=self._use_sync_bn,
          norm_momentum=self._norm_momentum,
          norm_epsilon=self._norm_epsilon)(x)
    return tf.identity(x, name=name)

  def get_config(self):
    return {
        'block_repeats': self._block_repeats,
        'base_filters': self._base_filters,
        'temporal_kernel_sizes': self._temporal_kernel_sizes,
        'stem_conv_temporal_kernel_size': self._stem_conv_temporal_kernel_size,
        'stem_conv_temporal_stride': self._stem_conv_temporal_stride,
        'stem_pool_temporal_stride': self._stem_pool_temporal_stride,
        'stem_filters': self._stem_filters,
        'duplicate_res5': self._duplicate_res5,
        'dilate_res4_res5': self._dilate_res4_res5,
        'activation': self._activation,
        'use_sync_bn': self._use_sync_bn,
        'norm_momentum': self._norm_momentum,
        'norm_epsilon': self._norm_epsilon,
        'kernel_initializer': self._kernel_initializer,
        'kernel_regularizer': self._kernel_regularizer,
        'bias_regularizer': self._bias_regularizer,
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self):
    """A dict of {endpoint: TensorShape}: '2', '3', '4', '5g', '5r'."""
    return self._output_specs


def _check_args(block_repeats, base_filters, temporal_kernel_sizes,
                stem_conv_temporal_kernel_size, stem_conv_temporal_stride,
                stem_pool_temporal_stride):
  """Raises a ValueError naming the bad ResNet3DY argument."""
  where = 'modeling/backbones/resnet_3d_y.py ResNet3DY'
  if len(block_repeats) != 4 or min(block_repeats) < 1:
    raise ValueError(
        f'{where}: block_repeats must be 4 ints >= 1 (res2..res5), got '
        f'{block_repeats}')
  if len(temporal_kernel_sizes) != 4:
    raise ValueError(
        f'{where}: temporal_kernel_sizes must have one entry per stage (4), '
        f'got {len(temporal_kernel_sizes)}: {temporal_kernel_sizes}')
  for stage, (repeats, kernels) in enumerate(
      zip(block_repeats, temporal_kernel_sizes)):
    if len(kernels) != repeats:
      raise ValueError(
          f'{where}: res{stage + 2} has {repeats} blocks but '
          f'{len(kernels)} temporal kernel sizes: {kernels}')
    if kernels and min(kernels) < 1:
      raise ValueError(
          f'{where}: res{stage + 2} temporal kernel sizes must be >= 1, got '
          f'{kernels}')
  if base_filters < 1:
    raise ValueError(f'{where}: base_filters must be >= 1, got {base_filters}')
  for arg_name, value in (
      ('stem_conv_temporal_kernel_size', stem_conv_temporal_kernel_size),
      ('stem_conv_temporal_stride', stem_conv_temporal_stride),
      ('stem_pool_temporal_stride', stem_pool_temporal_stride)):
    if value < 1:
      raise ValueError(f'{where}: {arg_name} must be >= 1, got {value}')


@factory.register_backbone_builder('resnet_3d_y')
def build_resnet_3d_y(
    input_specs: layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
) -> tf_keras.Model:
  """Builds the R3D "Y" backbone from a `configs.backbones.Backbone3D`.

  Args:
    input_specs: `InputSpec` of the [B, T, H, W, C] input.
    backbone_config: A one-of backbone config whose `type` is 'resnet_3d_y'.
    norm_activation_config: Model Garden's `common.NormActivation` config.
    l2_regularizer: Kernel regularizer of the convs, or None.

  Returns:
    A `ResNet3DY`.

  Raises:
    ValueError: if the backbone type is not 'resnet_3d_y' or the
      `ResNet3DY` config is inconsistent.
  """
  if backbone_config.type != 'resnet_3d_y':
    raise ValueError(
        f'build_resnet_3d_y: backbone type must be resnet_3d_y, got '
        f'{backbone_config.type}')
  cfg = backbone_config.get()
  return ResNet3DY(
      block_repeats=cfg.block_repeats,
      base_filters=cfg.base_filters,
      temporal_kernel_sizes=backbones_cfg.stage_temporal_kernel_sizes(cfg),
      input_specs=input_specs,
      stem_conv_temporal_kernel_size=cfg.stem_conv_temporal_kernel_size,
      stem_filters=cfg.stem_filters,
      stem_conv_temporal_stride=cfg.stem_conv_temporal_stride,
      stem_pool_temporal_stride=cfg.stem_pool_temporal_stride,
      duplicate_res5=cfg.duplicate_res5,
      dilate_res4_res5=cfg.dilate_res4_res5,
      activation=norm_activation_config.activation,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=norm_activation_config.norm_momentum,
      norm_epsilon=norm_activation_config.norm_epsilon,
      kernel_regularizer=l2_regularizer)
