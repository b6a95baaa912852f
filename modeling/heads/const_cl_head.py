"""The ConST-CL head g(h, F'c): regions of one view query the other's context.
"""
from typing import List, Optional, Tuple

import tensorflow as tf
import tf_keras

from modeling.layers import position_encoding


class CrossAttentionBlock(tf_keras.layers.Layer):
  """Post-norm transformer decoder block: cross-attention, then an MLP.

  There is no self-attention between the queries: every region is decoded
  from its own feature and the context alone, so the prediction of one
  region cannot copy another's.
  """

  def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int,
               dropout_rate: float = 0.0, kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self._attention = tf_keras.layers.MultiHeadAttention(
        num_heads=num_heads, key_dim=hidden_dim, dropout=dropout_rate,
        kernel_regularizer=kernel_regularizer, name='cross_attention')
    self._norm1 = tf_keras.layers.LayerNormalization(epsilon=1e-6,
                                                     name='norm1')
    self._norm2 = tf_keras.layers.LayerNormalization(epsilon=1e-6,
                                                     name='norm2')
    self._mlp1 = tf_keras.layers.Dense(mlp_dim, activation='relu',
                                       kernel_regularizer=kernel_regularizer,
                                       name='mlp1')
    self._mlp2 = tf_keras.layers.Dense(hidden_dim,
                                       kernel_regularizer=kernel_regularizer,
                                       name='mlp2')
    self._dropout = tf_keras.layers.Dropout(dropout_rate)

  def call(self, query, context, training=None):
    attended, scores = self._attention(
        query=query, value=context, key=context,
        return_attention_scores=True, training=training)
    x = self._norm1(query + self._dropout(attended, training=training))
    y = self._mlp2(self._mlp1(x))
    x = self._norm2(x + self._dropout(y, training=training))
    return x, scores


class ConstCLHead(tf_keras.layers.Layer):
  """Transformer decoder over the target view's context.

  Query = projected region feature (+ an encoding of its box), keys/values =
  projected context tokens (+ learned (t, y, x) position encodings), a stack
  of cross-attention blocks, and a final linear back to the feature width.

  `time_spacing` is the spacing of the context frames and
  `max_time_offset` the largest |context frame - region frame| the head
  must encode (None: only the centred window's offsets, enough when the
  region frame is always the centre one); see
  `SpatioTemporalPositionEncoding` and `region_frames.max_context_offset`.
  """

  def __init__(self, output_dim: int, num_layers: int = 3, num_heads: int = 3,
               hidden_dim: int = 128, mlp_dim: int = 512,
               dropout_rate: float = 0.0, kernel_regularizer=None,
               time_spacing: int = 1, max_time_offset: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(output_dim=output_dim, num_layers=num_layers,
                        num_heads=num_heads, hidden_dim=hidden_dim,
                        mlp_dim=mlp_dim, dropout_rate=dropout_rate,
                        time_spacing=time_spacing,
                        max_time_offset=max_time_offset)
    self._query_projection = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer, name='query_proj')
    self._box_encoding = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer, name='box_encoding')
    self._context_projection = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer,
        name='context_proj')
    self._position_encoding = (
        position_encoding.SpatioTemporalPositionEncoding(
            hidden_dim, time_spacing=time_spacing,
            max_time_offset=max_time_offset, name='context_position'))
    self._blocks = [
        CrossAttentionBlock(hidden_dim, num_heads, mlp_dim, dropout_rate,
                            kernel_regularizer, name=f'block_{i}')
        for i in range(num_layers)
    ]
    self._output_projection = tf_keras.layers.Dense(
        output_dim, kernel_regularizer=kernel_regularizer, name='output_proj')

  @property
  def position_encoding(self):
    return self._position_encoding

  def call(self, regions: tf.Tensor, boxes: tf.Tensor, context: tf.Tensor,
           context_offsets: Optional[tf.Tensor] = None,
           training=None) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Predicts each region's feature in the context's view.

    Args:
      regions: [B, N, C] pooled region features of the source view.
      boxes: [B, N, 4] their normalized boxes (for the query's position).
      context: [B, L, H, W, C] the target view's context frames.
      context_offsets: int [B, L], each context frame's index minus the
        target view's region frame. Needed whenever the context window may
        have been shifted (region frame near a clip end); default: the
        region frame is the window's centre frame.
      training: training mode.

    Returns:
      predictions [B, N, output_dim] and the attention weights of every block,
      each [B, num_heads, N, L*H*W] (softmax over the context tokens).
    """
    boxes = tf.cast(boxes, regions.dtype)
    box_geometry = tf.concat([
        (boxes[..., :2] + boxes[..., 2:]) / 2.0,  # centre y, x
        boxes[..., 2:] - boxes[..., :2],  # height, width
    ], axis=-1)
    query = self._query_projection(regions) + self._box_encoding(box_geometry)
    tokens = self._position_encoding(self._context_projection(context),
                                     time_offsets=context_offsets)
    num_tokens = context.shape[1] * context.shape[2] * context.shape[3]
    tokens = tf.reshape(tokens, [-1, num_tokens, tokens.shape[-1]])
    attention = []
    for block in self._blocks:
      query, scores = block(query, tokens, training=training)
      attention.append(scores)
    return self._output_projection(query), attention

  def get_config(self):
    config = super().get_config()
    config.update(self._config)
    return config
