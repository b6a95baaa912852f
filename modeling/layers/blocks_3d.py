"""3D residual blocks for the ConST-CL backbones.

Model Garden's `nn_blocks_3d.BottleneckBlock3D` has no dilation. Tracking
(SiamFC, SPEC section 2) trades the spatial stride of res4/res5 for a dilation
of 2, and the pretraining checkpoint must load unchanged into the dilated
network. A dilated 3x3 conv has the same kernel shape as an undilated one, so
the block below subclasses Model Garden's block (reusing its `call`) and builds
the same sublayers with a dilated spatial conv: every variable (conv kernels,
BN gamma/beta/moving statistics) keeps the shape, the attribute name and the
creation order of the original block.
"""
from typing import Optional

import tensorflow as tf

import tf_keras

from official.modeling import tf_utils
from official.vision.modeling.layers import nn_blocks_3d


# Smallest H*W at which a stride-1 1x3x3 conv runs as a 2D conv over frames.
# Forward + backward of one conv, 8 clips of 8 frames, TF 2.20 CPU, 2 cores
# (median of 9): 28x28x64 -> 64: Conv3D 242 ms, 2D 119 ms; 14x14x128 -> 128:
# 162 vs 121 ms; 7x7x256 -> 256: 122 vs 136 ms; 4x4x512 -> 512: 151 vs
# 309 ms. So 2D from 14x14 up, the 3D op below.
_MIN_FRAMEWISE_AREA = 14 * 14


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class DilatedBottleneckBlock3D(nn_blocks_3d.BottleneckBlock3D):
  """Model Garden's 3D bottleneck block with a spatially dilated 3x3 conv.

  Layout (as `nn_blocks_3d.BottleneckBlock3D`): [t,1,1] conv -> BN -> act ->
  [1,3,3] conv (dilation [1,d,d]) -> BN -> act -> [1,1,1] conv to 4*filters ->
  BN, plus a shortcut (projection conv + BN when the channel count changes),
  then act. With `spatial_dilation=1` it is exactly Model Garden's block.
  """

  def __init__(self,
               filters: int,
               temporal_kernel_size: int,
               temporal_strides: int,
               spatial_strides: int,
               spatial_dilation: int = 1,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               bias_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               **kwargs):
    """Initializes the block.

    Args:
      filters: Bottleneck width; the block outputs `4 * filters` channels.
      temporal_kernel_size: Temporal kernel size of the first (t x 1 x 1) conv.
      temporal_strides: Temporal stride of the first conv and the shortcut.
      spatial_strides: Spatial stride of the 3x3 conv and the shortcut.
      spatial_dilation: Spatial dilation rate of the 3x3 conv. Keras cannot
        combine a stride > 1 with a dilation > 1, so one of them must be 1.
      kernel_initializer: Kernel initializer of the convs.
      kernel_regularizer: Kernel regularizer of the convs, or None.
      bias_regularizer: Bias regularizer of the convs, or None.
      activation: Name of the activation function.
      use_sync_bn: Whether to use synchronized batch normalization.
      norm_momentum: Momentum of the BN moving averages.
      norm_epsilon: Epsilon added to the BN variance.
      **kwargs: Passed to `tf_keras.layers.Layer`.

    Raises:
      ValueError: if `spatial_dilation` < 1, or both the spatial stride and the
        spatial dilation are > 1.
    """
    if spatial_dilation < 1:
      raise ValueError(
          f'DilatedBottleneckBlock3D: spatial_dilation must be >= 1, got '
          f'{spatial_dilation}')
    if spatial_dilation > 1 and spatial_strides > 1:
      raise ValueError(
          'DilatedBottleneckBlock3D: a 3x3 conv cannot have both '
          f'spatial_strides ({spatial_strides}) and spatial_dilation '
          f'({spatial_dilation}) > 1')
    super().__init__(
        filters=filters,
        temporal_kernel_size=temporal_kernel_size,
        temporal_strides=temporal_strides,
        spatial_strides=spatial_strides,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer,
        activation=activation,
        use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        **kwargs)
    self._spatial_dilation = spatial_dilation

  def build(self, input_shape):
    # Creates the sublayers in the same order and under the same attribute
    # names as `nn_blocks_3d.BottleneckBlock3D.build`, so `get_weights()` order
    # and checkpoint keys match Model Garden's block; only the spatial conv
    # gains a dilation. (Calling the parent's build and then replacing the
    # conv would move it to the end of the tracked layers and break the
    # weight order.)
    height, width = input_shape[2], input_shape[3]
    large = (height is not None and width is not None and
             height * width >= _MIN_FRAMEWISE_AREA)

    def conv(filters, kernel_size, strides, dilation_rate=(1, 1, 1),
             padding='valid'):
      # Spatially strided convs, and 1x3x3 convs on large frames, as 2D
      # convs over frames (same variables): TensorFlow's CPU Conv3D gradient
      # is ~10x slower for the strided ones (0.097 s vs 0.008 s for a 1x3x3
      # stride-2 conv on a 32x4x16x16x16 batch) and ~2x for the others at
      # 28x28 (see `_MIN_FRAMEWISE_AREA`).
      strided = list(strides)[1:] != [1, 1]
      kernel = ([kernel_size] * 3 if isinstance(kernel_size, int)
                else list(kernel_size))
      framewise = (large and kernel[0] == 1 and kernel[1:] != [1, 1] and
                   tuple(dilation_rate) == (1, 1, 1))
      layer = (StackedFramesConv3D if strided or framewise
               else tf_keras.layers.Conv3D)
      return layer(
          filters=filters,
          kernel_size=kernel_size,
          strides=strides,
          dilation_rate=dilation_rate,
          padding=padding,
          use_bias=False,
          kernel_initializer=tf_utils.clone_initializer(
              self._kernel_initializer),
          kernel_regularizer=self._kernel_regularizer,
          bias_regularizer=self._bias_regularizer)

    def norm():
      return self._norm(
          axis=self._bn_axis,
          momentum=self._norm_momentum,
          epsilon=self._norm_epsilon,
          synchronized=self._use_sync_bn)

    strides = [
        self._temporal_strides, self._spatial_strides, self._spatial_strides
    ]
    self._shortcut_maxpool = tf_keras.layers.MaxPool3D(
        pool_size=[1, 1, 1], strides=strides)
    self._shortcut_conv = conv(4 * self._filters, 1, strides)
    self._norm0 = norm()
    self._temporal_conv = conv(
        self._filters, [self._temporal_kernel_size, 1, 1],
        [self._temporal_strides, 1, 1], padding='same')
    self._norm1 = norm()
    self._spatial_conv = conv(
        self._filters, [1, 3, 3], [1, self._spatial_strides,
                                   self._spatial_strides],
        dilation_rate=[1, self._spatial_dilation, self._spatial_dilation],
        padding='same')
    self._norm2 = norm()
    self._expand_conv = conv(
        4 * self._filters, [1, 1, 1], [1, 1, 1], padding='same')
    self._norm3 = norm()
    # Read by the parent's `call`; never used by the ConST-CL backbone.
    self._squeeze_excitation = None
    self._stochastic_depth = None
    self._self_gating = None
    tf_keras.layers.Layer.build(self, input_shape)

  def get_config(self):
    config = super().get_config()
    config['spatial_dilation'] = self._spatial_dilation
    # Not exposed by this block (always off in the ConST-CL backbone).
    for key in ('use_self_gating', 'se_ratio', 'stochastic_depth_drop_rate'):
      config.pop(key, None)
    return config


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class FramewiseMaxPool3D(tf_keras.layers.MaxPool3D):
  """`MaxPool3D` with a temporal window and stride of 1, as a 2D pool.

  Same outputs as `tf_keras.layers.MaxPool3D` (channels last); TensorFlow's
  CPU MaxPool3DGrad is ~5x slower than the 2D one (0.41 s vs 0.08 s for the
  stem pool of a 32x4x32x32x64 toy batch). Other windows use the 3D op.
  """

  def call(self, inputs):
    if (self.pool_size[0] != 1 or self.strides[0] != 1 or
        self.data_format != 'channels_last' or None in inputs.shape[1:]):
      return super().call(inputs)
    _, frames, height, width, channels = inputs.shape
    batch = inputs.shape[0] or tf.shape(inputs)[0]
    pooled = tf.nn.max_pool2d(
        tf.reshape(inputs, [-1, height, width, channels]),
        ksize=list(self.pool_size[1:]), strides=list(self.strides[1:]),
        padding=self.padding.upper())
    return tf.reshape(pooled, [batch, frames, pooled.shape[1],
                               pooled.shape[2], channels])


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class StackedFramesConv3D(tf_keras.layers.Conv3D):
  """A `Conv3D` computed as one 2D convolution over stacked frames.

  Same variables (a [kt, kh, kw, C, F] kernel), same outputs as
  `tf_keras.layers.Conv3D` (channels last, 'same' or 'valid' padding, no
  dilation). Why: TensorFlow's CPU kernel for the filter gradient of a
  strided 3D conv on a thin input is pathologically slow — the 5x7x7 stem on
  3 RGB channels took ~4 s per backward pass on a 4x8x32x32 batch, against
  ~0.03 s for this form — and it dominated every toy training step. The `kt`
  temporally shifted copies of the input are concatenated on the channel axis
  (kt*C channels) and convolved with the kernel reshaped to
  [kh, kw, kt*C, F]; the 2D kernels are fast on CPU and compile under XLA.
  Used for the stem, spatially strided convs and 1x3x3 convs on large frames
  (`DilatedBottleneckBlock3D`); temporal (kt x 1 x 1) convs stay 3D, where
  the concatenated copies make it slower.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.data_format != 'channels_last':
      raise ValueError('StackedFramesConv3D supports channels_last only, got '
                       f'{self.data_format}')
    if tuple(self.dilation_rate) != (1, 1, 1) or self.groups != 1:
      raise ValueError('StackedFramesConv3D supports no dilation and no '
                       f'groups, got dilation_rate={self.dilation_rate}, '
                       f'groups={self.groups}')
    if self.padding not in ('same', 'valid'):
      raise ValueError("StackedFramesConv3D padding must be 'same' or "
                       f"'valid', got {self.padding!r}")

  def convolution_op(self, inputs, kernel):
    if None in inputs.shape[1:4]:
      # Unknown frame count or size (a model rebuilt from its config without
      # input specs): the plain op; real inputs come with static shapes.
      return super().convolution_op(inputs, kernel)
    kt, kh, kw, c, f = kernel.shape
    st, sh, sw = self.strides
    frames = inputs.shape[1]
    if self.padding == 'same':
      out_t = -(-frames // st)
      pad = max((out_t - 1) * st + kt - frames, 0)
      inputs = tf.pad(inputs, [[0, 0], [pad // 2, pad - pad // 2], [0, 0],
                               [0, 0], [0, 0]])
    else:
      out_t = (frames - kt) // st + 1
    # Channel order (temporal offset, input channel) matches the kernel
    # reshape below.
    stacked = tf.concat(
        [inputs[:, i:i + (out_t - 1) * st + 1:st] for i in range(kt)],
        axis=-1)
    # Static batch when known (XLA, TPU), dynamic in the functional build.
    batch = stacked.shape[0] or tf.shape(stacked)[0]
    height, width = stacked.shape[2], stacked.shape[3]
    kernel_2d = tf.reshape(tf.transpose(kernel, [1, 2, 0, 3, 4]),
                           [kh, kw, kt * c, f])
    outputs = tf.nn.conv2d(
        tf.reshape(stacked, [batch * out_t, height, width, kt * c]),
        kernel_2d, strides=[1, sh, sw, 1], padding=self.padding.upper())
    return tf.reshape(outputs, [batch, out_t, outputs.shape[1],
                                outputs.shape[2], f])
