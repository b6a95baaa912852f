"""SiamFC head: exemplar/search cross-correlation, labels and logistic loss.

SiamFC (Bertinetto et al. 2016) slides the exemplar feature map over the
search feature map; the response map is trained with a balanced logistic loss
against a disc of positives around its centre. Everything here is static-shape
TensorFlow and compiles with XLA.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras


def cross_correlation(exemplar_feat: tf.Tensor,
                      search_feat: tf.Tensor) -> tf.Tensor:
  """Per-example 'valid' cross-correlation of exemplar over search features.

  out[b, i, j, 0] = sum_{u, v, c} z[b, u, v, c] * x[b, i + u, j + v, c].

  The batch is folded into channels so that one depthwise convolution
  computes every example's correlation with its own exemplar: XLA has a
  kernel for it, unlike a per-example loop or map_fn.

  Args:
    exemplar_feat: `[B, hz, wz, C]`.
    search_feat: `[B, hx, wx, C]` with hx >= hz and wx >= wz.

  Returns:
    `[B, hx - hz + 1, wx - wz + 1, 1]`, in the dtype of the inputs.
  """
  z = tf.convert_to_tensor(exemplar_feat)
  x = tf.convert_to_tensor(search_feat, dtype=z.dtype)
  if z.shape.rank != 4 or x.shape.rank != 4:
    raise ValueError(f'cross_correlation expects rank-4 inputs, got exemplar '
                     f'{z.shape} and search {x.shape}')
  if (z.shape[-1] is not None and x.shape[-1] is not None and
      z.shape[-1] != x.shape[-1]):
    raise ValueError(f'channel mismatch: exemplar {z.shape} vs search '
                     f'{x.shape}')
  for axis in (1, 2):
    if (z.shape[axis] is not None and x.shape[axis] is not None and
        z.shape[axis] > x.shape[axis]):
      raise ValueError(f'exemplar {z.shape} larger than search {x.shape}')
  zs, xs = tf.shape(z), tf.shape(x)
  b, hz, wz, c = zs[0], zs[1], zs[2], zs[3]
  hx, wx = xs[1], xs[2]
  # [1, hx, wx, B*C]: channel index = b * C + c.
  x_folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, hx, wx, b * c])
  # Depthwise filter [hz, wz, B*C, 1] with the same channel order.
  z_folded = tf.reshape(tf.transpose(z, [1, 2, 0, 3]), [hz, wz, b * c, 1])
  out = tf.nn.depthwise_conv2d(x_folded, z_folded, strides=[1, 1, 1, 1],
                               padding='VALID')
  ho, wo = hx - hz + 1, wx - wz + 1
  out = tf.reshape(out, [ho, wo, b, c])
  out = tf.reduce_sum(out, axis=-1)  # [ho, wo, B]
  return tf.transpose(out, [2, 0, 1])[..., None]


@tf_keras.utils.register_keras_serializable(package='ConstCL')
class SiamFCHead(tf_keras.layers.Layer):
  """Cross-correlation followed by SiamFC's adjust layer.

  `out = scale * xcorr(z, x) + bias`. SiamFC's raw correlation values grow
  with the feature dimension and magnitude; a small learnable scale (0.001 at
  init) brings the logits into the range of the logistic loss without a
  BatchNorm, so the response stays a pure function of the two inputs.
  """

  def __init__(self, scale_init: float = 1e-3, bias_init: float = 0.0,
               **kwargs):
    """Initializes the head.

    Args:
      scale_init: Initial value of the response scale.
      bias_init: Initial value of the response bias.
      **kwargs: Passed to `tf_keras.layers.Layer`.
    """
    super().__init__(**kwargs)
    self._scale_init = scale_init
    self._bias_init = bias_init

  def build(self, input_shape):
    # Read in float32 under a mixed policy too (no autocast): a bfloat16
    # read would round the scale (1e-3 -> 0.00099945) and make small
    # updates to it invisible in the response.
    self.scale = self.add_weight(
        name='scale', shape=[], dtype=tf.float32,
        initializer=tf_keras.initializers.Constant(self._scale_init),
        experimental_autocast=False)
    self.bias = self.add_weight(
        name='bias', shape=[], dtype=tf.float32,
        initializer=tf_keras.initializers.Constant(self._bias_init),
        experimental_autocast=False)
    super().build(input_shape)

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    """Returns logits `[B, ho, wo, 1]` for inputs `(exemplar, search)`."""
    exemplar_feat, search_feat = inputs
    response = cross_correlation(exemplar_feat, search_feat)
    # Response in float32 even under mixed precision: the sums over
    # hz*wz*C products overflow bfloat16 precision quickly.
    response = tf.cast(response, tf.float32)
    return self.scale * response + self.bias

  def get_config(self):
    config = super().get_config()
    config.update(scale_init=self._scale_init, bias_init=self._bias_init)
    return config


def response_size(exemplar_size: int, search_size: int,
                  total_stride: int) -> int:
  """Response side for crops of the given sizes: (x - z) / stride + 1."""
  if (search_size - exemplar_size) % total_stride:
    raise ValueError(f'search_size - exemplar_size ({search_size} - '
                     f'{exemplar_size}) must be a multiple of total_stride '
                     f'({total_stride})')
  return (search_size - exemplar_size) // total_stride + 1


def siamfc_labels(response_size_: Optional[int] = None,
                  total_stride: int = 8,
                  positive_radius: float = 16.0,
                  exemplar_size: int = 127,
                  search_size: int = 255) -> Tuple[np.ndarray, np.ndarray]:
  """Balanced logistic labels of SiamFC.

  A response cell is positive when its Euclidean distance (in cells) to the
  centre cell is <= positive_radius / total_stride (i.e. the radius in search
  crop pixels), negative otherwise. Weights give the positives and the
  negatives half of the total weight each (0.5 / #pos, 0.5 / #neg), so every
  label map sums to weight 1 and the loss is a weighted mean.

  Args:
    response_size_: Side of the response map; None derives it from the crop
      sizes and total_stride.
    total_stride: Feature stride of the backbone (search pixels per cell).
    positive_radius: Positive radius in search-crop pixels.
    exemplar_size: Exemplar crop side (used when response_size_ is None).
    search_size: Search crop side (used when response_size_ is None).

  Returns:
    (labels, weights), float32 arrays `[r, r]`; labels in {0, 1}.
  """
  r = response_size_
  if r is None:
    r = response_size(exemplar_size, search_size, total_stride)
  if r < 1:
    raise ValueError(f'response size must be >= 1, got {r}')
  offsets = np.arange(r, dtype=np.float64) - (r - 1) / 2.0
  dist = np.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2)
  labels = (dist <= positive_radius / total_stride).astype(np.float32)
  num_pos = labels.sum()
  num_neg = labels.size - num_pos
  weights = np.zeros_like(labels)
  if num_pos:
    weights[labels == 1] = 0.5 / num_pos if num_neg else 1.0 / num_pos
  if num_neg:
    weights[labels == 0] = 0.5 / num_neg if num_pos else 1.0 / num_neg
  return labels, weights


def siamfc_logistic_loss(logits: tf.Tensor, labels, weights) -> tf.Tensor:
  """Weighted logistic loss, summed over cells and averaged over the batch.

  Args:
    logits: `[B, r, r]` or `[B, r, r, 1]` response logits.
    labels: `[r, r]` (shared) or `[B, r, r]` labels in {0, 1}.
    weights: Same shape as `labels`; per-example weights summing to 1.

  Returns:
    Scalar float32 loss.
  """
  logits = tf.cast(logits, tf.float32)
  if logits.shape.rank == 4:
    logits = tf.squeeze(logits, axis=-1)
  labels = tf.cast(tf.convert_to_tensor(labels), tf.float32)
  weights = tf.cast(tf.convert_to_tensor(weights), tf.float32)
  labels = tf.broadcast_to(labels, tf.shape(logits))
  weights = tf.broadcast_to(weights, tf.shape(logits))
  per_cell = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                     logits=logits)
  return tf.reduce_mean(tf.reduce_sum(per_cell * weights, axis=[1, 2]))
