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
import contextlib
import itertools
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

import tf_keras

from official.modeling import tf_utils
from official.vision.modeling.layers import nn_blocks_3d


# Smallest H*W at which a stride-1 1x3x3 conv runs as a 2D conv over frames.
# Forward + backward of one conv, 8 clips of 8 frames, TF 2.20 CPU, 2 cores
# (median of 9): 28x28x64 -> 64: Conv3D 242 ms, 2D 119 ms; 14x14x128 -> 128:
# 162 vs 121 ms; 7x7x256 -> 256: 122 vs 136 ms; 4x4x512 -> 512: 151 vs
# 309 ms. So 2D from 14x14 up, the 3D op below. The same area also splits
# spatially strided 3x3 convs between a strided 2D conv (from 14x14 up:
# 14x14x256 -> 256, 70 ms as a 2D conv, 117 ms as a matmul) and one matmul
# (`MatmulConv3D`) below it (7x7x512 -> 512: 169 vs 124 ms); fwd + bwd on
# 32 frames.
_MIN_FRAMEWISE_AREA = 14 * 14
# Most kernel taps (kt*kh*kw) of a strided conv computed by `MatmulConv3D`.
_MAX_MATMUL_TAPS = 9
# Smallest H*W at which a spatially strided 1x1x1 conv is a strided 2D conv
# rather than a strided slice and a matmul (fwd + bwd, 32 frames: 28x28x256
# -> 512, 54 vs 76 ms; 14x14x512 -> 1024, 106 vs 59 ms).
_MIN_SLICED_2D_AREA = 28 * 28
# The remaining stride-1 convs (3x1x1 temporal convs everywhere, 1x3x3 convs
# below 14x14) keep TensorFlow's Conv3D forward op but take their gradients
# from `MatmulGradConv3D`: TF's CPU Conv3DBackpropFilter and -Input kernels
# each took about twice the time of the forward Conv3D on the same convs in
# a ConST-CL step (8 clips of 8x112x112; TF profiler, README "Performance").
# In the whole step the custom gradients save 3-5% by same-round ratio, 7-8%
# by median step time (two runs of `tools/benchmark.py --sections=forms`).

# Forms `conv3d_layer_for` must not return (inside `plain_conv3d_for`).
_DISABLED_FORMS = set()


def _triple(value, name: str):
  """An int or 3 ints (numpy ones too) as a list of 3 Python ints."""
  if isinstance(value, (int, np.integer)):
    return [int(value)] * 3
  values = [int(v) for v in value]
  if len(values) != 3:
    raise ValueError(f'conv3d_layer_for: {name} must be an int or 3 ints, got '
                     f'{value}')
  return values


def conv3d_layer_for(kernel_size, strides, dilation_rate=(1, 1, 1),
                     frame_size: Optional[Tuple[int, int]] = None):
  """The layer class computing a Conv3D fastest on a TensorFlow CPU.

  A fixed rule with thresholds measured on a 2-core CPU (TF 2.20, fp32; see
  the constants above), not a search. All choices have the variables of
  `tf_keras.layers.Conv3D` (one [kt, kh, kw, C, F] kernel) and its outputs,
  so checkpoints do not care and on TPU/GPU, where XLA lowers every form to
  the same convolution or dot, they compute the same conv; what is slow on
  CPU is the backward pass of TensorFlow's Conv3D and of strided Conv2D.
  Frame sizes are compared by area (H*W).

  Args:
    kernel_size: int or 3 ints (t, h, w).
    strides: int or 3 ints.
    dilation_rate: int or 3 ints; dilated convs keep `Conv3D`.
    frame_size: (height, width) of the input frames; None (or a None in it)
      when unknown, e.g. a backbone built for any input size.

  Returns:
    * `tf_keras.layers.Conv3D` for dilated convs;
    * `MatmulConv3D` for 1x1x1 kernels, except spatially strided ones on
      frames of known area >= 28*28, which get `StackedFramesConv3D`;
    * for spatially strided convs: `MatmulConv3D` on frames of known area
      < 14*14 when the kernel has at most 9 taps, else
      `StackedFramesConv3D` (also when the frame size is unknown);
    * for spatial stride 1: `StackedFramesConv3D` for 1xkxk kernels (k > 1)
      on frames of known area >= 14*14; else `MatmulGradConv3D` (Conv3D's
      forward op, faster gradients; temporal kt x 1 x 1 kernels always)
      for odd kernels at temporal stride 1, `Conv3D` otherwise.
    Inside `plain_conv3d_for(...)`, `Conv3D` instead of the forms it names.
  """
  choice = _fastest_form(kernel_size, strides, dilation_rate, frame_size)
  if choice in _DISABLED_FORMS:
    return tf_keras.layers.Conv3D
  return choice


@contextlib.contextmanager
def plain_conv3d_for(*forms):
  """Within the block, `conv3d_layer_for` returns `Conv3D` for `forms`.

  For measuring what a form gains in a whole model (tools/benchmark.py
  --sections=forms): layers built inside the block use TensorFlow's Conv3D
  wherever the rule would pick one of `forms` (none: the rule unchanged;
  `*CONV3D_FORMS`: Conv3D everywhere). The choice is made when a layer is
  built, so build the model inside the block.
  """
  saved = set(_DISABLED_FORMS)
  _DISABLED_FORMS.update(forms)
  try:
    yield
  finally:
    _DISABLED_FORMS.clear()
    _DISABLED_FORMS.update(saved)


def _fastest_form(kernel_size, strides, dilation_rate, frame_size):
  """`conv3d_layer_for` without the `plain_conv3d_for` switch."""
  kernel = _triple(kernel_size, 'kernel_size')
  strides = _triple(strides, 'strides')
  dilation = _triple(dilation_rate, 'dilation_rate')
  if dilation != [1, 1, 1]:
    return tf_keras.layers.Conv3D
  known = frame_size is not None and None not in frame_size
  area = frame_size[0] * frame_size[1] if known else 0
  spatially_strided = strides[1:] != [1, 1]
  if kernel == [1, 1, 1]:
    # The strided copy and its gradient cost more than the 2D conv's stride
    # on large frames.
    return (StackedFramesConv3D
            if spatially_strided and area >= _MIN_SLICED_2D_AREA
            else MatmulConv3D)
  if spatially_strided:
    # The im2col copy grows with the taps: a 5x7x7 stem stays a 2D conv.
    small_kernel = int(np.prod(kernel)) <= _MAX_MATMUL_TAPS
    return (MatmulConv3D if known and area < _MIN_FRAMEWISE_AREA and
            small_kernel else StackedFramesConv3D)
  if area >= _MIN_FRAMEWISE_AREA and kernel[0] == 1:
    return StackedFramesConv3D
  if strides[0] == 1 and all(k % 2 for k in kernel):
    return MatmulGradConv3D
  return tf_keras.layers.Conv3D


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
    frame_size = (input_shape[2], input_shape[3])

    def conv(filters, kernel_size, strides, dilation_rate=(1, 1, 1),
             padding='valid'):
      # The block's input frame size: the shortcut, temporal and spatial
      # convs see it; the expand conv (after the stride) is 1x1x1, whose
      # choice does not depend on it.
      layer = conv3d_layer_for(kernel_size, strides, dilation_rate,
                               frame_size)
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


class _Conv3DForm(tf_keras.layers.Conv3D):
  """Base of the Conv3D forms: Conv3D's variables and outputs, other ops.

  Checks the arguments the forms support (channels last, 'same' or 'valid'
  padding, no dilation, no groups), falls back to the plain op when the
  frame count or size is unknown (a model rebuilt from its config without
  input specs; real inputs come with static shapes), and gives the
  per-axis output size and TF's padding (the odd pad at the end). Each form
  defines `_static_convolution(inputs, kernel)`; the base is not used alone.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    name = type(self).__name__
    if self.data_format != 'channels_last':
      raise ValueError(f'{name} supports channels_last only, got '
                       f'{self.data_format}')
    if tuple(self.dilation_rate) != (1, 1, 1) or self.groups != 1:
      raise ValueError(f'{name} supports no dilation and no groups, got '
                       f'dilation_rate={self.dilation_rate}, '
                       f'groups={self.groups}')
    if self.padding not in ('same', 'valid'):
      raise ValueError(f"{name} padding must be 'same' or 'valid', got "
                       f'{self.padding!r}')

  def _geometry(self, size: int, kernel: int, stride: int):
    """(output size, [pad before, pad after]) along one axis."""
    if self.padding == 'same':
      out = -(-size // stride)
      pad = max((out - 1) * stride + kernel - size, 0)
      return out, [pad // 2, pad - pad // 2]
    return (size - kernel) // stride + 1, [0, 0]

  def convolution_op(self, inputs, kernel):
    if None in inputs.shape[1:4]:
      return super().convolution_op(inputs, kernel)
    # Defined by each form: the conv on inputs of static frame count and size.
    return self._static_convolution(inputs, kernel)  # pylint: disable=no-member


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class StackedFramesConv3D(_Conv3DForm):
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
  Used for the stem, spatially strided convs on frames of 14x14 and up (and
  strided 1x1x1 ones from 28x28 up), and stride-1 1x3x3 convs on frames of
  14x14 and up (`conv3d_layer_for`); not for temporal (kt x 1 x 1) convs,
  where the concatenated copies make it slower (`MatmulGradConv3D` there).
  """

  def _static_convolution(self, inputs, kernel):
    kt, kh, kw, c, f = kernel.shape
    st, sh, sw = self.strides
    out_t, pad_t = self._geometry(inputs.shape[1], kt, st)
    if any(pad_t):
      inputs = tf.pad(inputs, [[0, 0], pad_t, [0, 0], [0, 0], [0, 0]])
    # Channel order (temporal offset, input channel) matches the kernel
    # reshape below. A 1xkxk kernel at temporal stride 1 needs no copy.
    if kt == 1 and st == 1:
      stacked = inputs
    else:
      # Whole frames by gather: a strided slice of the 3-channel stem input
      # on the frame axis took 8x as long (106 vs 13 ms per step at
      # 8x8x112x112).
      stacked = tf.concat(
          [tf.gather(inputs, list(range(i, i + (out_t - 1) * st + 1, st)),
                     axis=1) for i in range(kt)], axis=-1)
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


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class MatmulConv3D(_Conv3DForm):
  """A `Conv3D` computed as one matrix multiplication.

  Same variables (a [kt, kh, kw, C, F] kernel), same outputs as
  `tf_keras.layers.Conv3D` (channels last, 'same' or 'valid' padding, no
  dilation). The kt*kh*kw shifted, strided views of the padded input are
  concatenated on the channel axis (im2col; a 1x1x1 kernel needs only the
  strided view) and multiplied by the kernel reshaped to [kt*kh*kw*C, F].
  Why: on CPU the matmul and its gradients beat TensorFlow's Conv3D gradients
  for 1x1x1 kernels, and the strided Conv2D input gradient on small frames
  (fwd + bwd, 32 frames of 8 clips, 2 cores: 1x1 stride 2 7x7x1024 -> 2048:
  205 ms as a strided 2D conv, 75 ms as a matmul; 1x1 28x28x256 -> 64:
  64 ms as Conv3D, 30 ms as a matmul). The im2col copy makes large kernels
  on large frames slower; `conv3d_layer_for` picks where it pays. Compiles
  under XLA (slices, concat, matmul).
  """

  def _static_convolution(self, inputs, kernel):
    kernel_dims = kernel.shape[:3]
    c, f = kernel.shape[3], kernel.shape[4]
    outs, pads = zip(*(self._geometry(n, k, st) for n, k, st in
                       zip(inputs.shape[1:4], kernel_dims, self.strides)))
    outs = list(outs)
    if any(p for pair in pads for p in pair):
      inputs = tf.pad(inputs, [[0, 0], *pads, [0, 0]])
    # Offset order (t, h, w) then channel: the row order of the kernel
    # reshape below. The identity view (1x1x1, stride 1) is not copied.
    views = []
    for offsets in itertools.product(*(range(k) for k in kernel_dims)):
      if list(inputs.shape[1:4]) == outs and self.strides == (1, 1, 1):
        views.append(inputs)
        continue
      views.append(inputs[(slice(None),) + tuple(
          slice(o, o + (n - 1) * st + 1, st)
          for o, n, st in zip(offsets, outs, self.strides))])
    stacked = views[0] if len(views) == 1 else tf.concat(views, axis=-1)
    # Static batch when known (XLA, TPU), dynamic in the functional build.
    batch = stacked.shape[0] or tf.shape(stacked)[0]
    rows = int(np.prod(kernel_dims)) * c
    outputs = tf.matmul(tf.reshape(stacked, [-1, rows]),
                        tf.reshape(kernel, [rows, f]))
    return tf.reshape(outputs, [batch] + outs + [f])


def _shifted_copies(t: tf.Tensor, kernel_dims) -> tf.Tensor:
  """The kernel taps of a stride-1 'same' conv, as shifted copies of `t`.

  Args:
    t: [B, T, H, W, C] with static T, H, W.
    kernel_dims: (kt, kh, kw), each odd.

  Returns:
    [B, T, H, W, kt*kh*kw*C]: copy number k (offsets (a, b, c) in row-major
    order, channels C each) holds t[q + centre - (a, b, c)] at position q, and
    zeros where that falls outside t.
  """
  centres = [(k - 1) // 2 for k in kernel_dims]
  padded = tf.pad(t, [[0, 0]] + [[c, c] for c in centres] + [[0, 0]])
  sizes = t.shape[1:4]
  views = []
  for offsets in itertools.product(*(range(k) for k in kernel_dims)):
    starts = [k - 1 - o for k, o in zip(kernel_dims, offsets)]
    views.append(padded[(slice(None),) + tuple(
        slice(s, s + n) for s, n in zip(starts, sizes))])
  return views[0] if len(views) == 1 else tf.concat(views, axis=-1)


@tf.custom_gradient
def _conv3d_same_with_matmul_grads(inputs, kernel):
  """tf.nn.conv3d (stride 1, 'same', odd kernel) with custom gradients.

  With y[q] = sum_k x[q + k - centre] w[k]:
    dL/dx = the same 'same' conv of dL/dy with the kernel flipped in t, h, w
            and its channel axes swapped (TF's fast forward Conv3D op);
    dL/dw[k] = sum_q x[q]^T dL/dy[q - k + centre]: one matmul of the input
            against the shifted copies of dL/dy (F channels each, fewer than
            the input's C in the bottleneck's reducing convs).
  """
  outputs = tf.nn.conv3d(inputs, kernel, [1] * 5, 'SAME')

  def grad(d_outputs):
    kernel_dims = kernel.shape[:3]
    c, f = kernel.shape[3], kernel.shape[4]
    taps = int(np.prod(kernel_dims))
    flipped = tf.transpose(tf.reverse(kernel, [0, 1, 2]), [0, 1, 2, 4, 3])
    d_inputs = tf.nn.conv3d(d_outputs, flipped, [1] * 5, 'SAME')
    shifted = _shifted_copies(d_outputs, kernel_dims)
    d_kernel = tf.matmul(tf.reshape(inputs, [-1, c]),
                         tf.reshape(shifted, [-1, taps * f]), transpose_a=True)
    d_kernel = tf.transpose(tf.reshape(d_kernel, [c, taps, f]), [1, 0, 2])
    return d_inputs, tf.reshape(d_kernel, list(kernel_dims) + [c, f])

  return outputs, grad


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class MatmulGradConv3D(_Conv3DForm):
  """A stride-1 `Conv3D` whose gradients avoid TF's CPU Conv3D backprop ops.

  Same variables, same outputs (the forward op is Conv3D itself). The input
  gradient is a forward Conv3D with the flipped, transposed kernel, and the
  kernel gradient one matmul against shifted copies of the output gradient
  (`_conv3d_same_with_matmul_grads`); both equal Conv3D's gradients to
  float32 rounding. Why: TensorFlow's CPU Conv3DBackpropFilter and
  Conv3DBackpropInput each took about twice the time of the forward op on
  the same convs, a third of the op time of a ConST-CL train step (see the
  constants above). Used for the stride-1 convs `conv3d_layer_for` does not
  send to `StackedFramesConv3D`: 3x1x1 temporal convs, 1x3x3 convs below
  14x14.
  Strided, 'valid' or even-sized kernels run the plain op. Compiles under
  XLA (conv, pad, slices, matmul).
  """

  def _static_convolution(self, inputs, kernel):
    if (tuple(self.strides) != (1, 1, 1) or self.padding != 'same' or
        any(k % 2 == 0 for k in kernel.shape[:3])):
      return super(_Conv3DForm, self).convolution_op(inputs, kernel)
    return _conv3d_same_with_matmul_grads(inputs, tf.convert_to_tensor(kernel))


# Every form `conv3d_layer_for` can return besides `Conv3D`.
CONV3D_FORMS = (StackedFramesConv3D, MatmulConv3D, MatmulGradConv3D)
