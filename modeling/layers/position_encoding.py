"""Learned spatio-temporal position encodings for the context tokens."""
import tensorflow as tf
import tf_keras


class SpatioTemporalPositionEncoding(tf_keras.layers.Layer):
  """Learned encoding of the (t, y, x) offsets of every context token.

  Factorized as `E_t[t] + E_y[y] + E_x[x]` over offsets from the centre of
  the [L, H, W] context block, so its size is (L + H + W) * dim rather than
  L * H * W * dim, and it is the same table for every video.
  """

  def __init__(self, dim: int, initializer_stddev: float = 0.02, **kwargs):
    super().__init__(**kwargs)
    self._dim = dim
    self._stddev = initializer_stddev

  def build(self, input_shape):
    # input_shape: [B, L, H, W, dim]
    _, length, height, width, _ = input_shape
    def init():
      # A fresh initializer per table: one shared unseeded instance would
      # give the three tables identical values.
      return tf_keras.initializers.TruncatedNormal(stddev=self._stddev)
    self.time_embedding = self.add_weight(
        name='time', shape=[length, self._dim], initializer=init())
    self.height_embedding = self.add_weight(
        name='height', shape=[height, self._dim], initializer=init())
    self.width_embedding = self.add_weight(
        name='width', shape=[width, self._dim], initializer=init())
    super().build(input_shape)

  def call(self, tokens):
    """Adds the encoding to tokens [B, L, H, W, dim]."""
    pos = (self.time_embedding[:, None, None, :] +
           self.height_embedding[None, :, None, :] +
           self.width_embedding[None, None, :, :])
    return tokens + tf.cast(pos, tokens.dtype)[None]

  def get_config(self):
    config = super().get_config()
    config.update({'dim': self._dim, 'initializer_stddev': self._stddev})
    return config
