"""Learned spatio-temporal position encodings for the context tokens."""
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras


@tf.custom_gradient
def _dense_gradient_gather(table: tf.Tensor, rows: tf.Tensor):
  """`tf.gather(table, rows)` whose gradient for `table` is a dense tensor.

  tf.gather's gradient is IndexedSlices, which the optimizers apply with
  sparse ops that XLA cannot compile (ResourceSparseApplyKerasMomentum), so
  a jit-compiled train step would fail; the table is small, so the dense
  gradient costs nothing.
  """
  def grad(upstream):
    return tf.math.unsorted_segment_sum(upstream, rows,
                                        tf.shape(table)[0]), None
  return tf.gather(table, rows), grad


class SpatioTemporalPositionEncoding(tf_keras.layers.Layer):
  """Learned encoding of the (t, y, x) offsets of every context token.

  Factorized as `E_t[dt] + E_y[y] + E_x[x]`, so its size is about
  (L + H + W) * dim rather than L * H * W * dim, and it is the same table
  for every video. y and x index the [H, W] positions of the block; dt is
  the offset, in feature frames, of a context frame from the query's frame
  (the region frame of ConST-CL, the key frame of the action transformer).

  Without `time_offsets` in `call`, frame i of the [L, H, W] block is taken
  to be at dt = (i - L // 2) * time_spacing: the query's frame is the centre
  of the block. That holds for key-frame-centred AVA clips and for a
  ConST-CL context around a centre region frame, but not when the context
  window is shifted to stay inside the clip (region frame near an end, see
  `region_frames.context_frame_indices`): the region frame is then not the
  window's centre frame, and the caller must pass the true offsets
  `context_frames - region_frame`, or the decoder is told the wrong frame
  is the region's.

  Time table (the choice that keeps centre-frame models and their
  checkpoints unchanged): `time` [L, dim] holds the rows of the centred
  offsets (i - L // 2) * time_spacing, in that order, exactly as before
  offsets were supported, so a centre-frame model reads the same entries
  and has the same variables. With `max_time_offset` M, `time_extra` holds
  one row per other offset in [-M, M], ascending; it exists only then, so
  only models whose context windows can shift have it. A table of L rows
  alone cannot serve shifted windows: their offsets reach
  (L - 1) * spacing (`region_frames.max_context_offset`). An offset with no
  row (outside [-M, M], or off the spacing grid without `time_extra`) is
  looked up past the table's end: tf.gather fails on CPU, but XLA clamps
  silently, so callers must size M to cover every offset they can pass.
  """

  def __init__(self, dim: int, initializer_stddev: float = 0.02,
               time_spacing: int = 1, max_time_offset: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    if time_spacing < 1:
      raise ValueError(f'time_spacing must be >= 1, got {time_spacing}')
    if max_time_offset is not None and max_time_offset < 0:
      raise ValueError(f'max_time_offset must be >= 0, got {max_time_offset}')
    self._dim = dim
    self._stddev = initializer_stddev
    self._time_spacing = time_spacing
    self._max_time_offset = max_time_offset

  @property
  def time_spacing(self) -> int:
    return self._time_spacing

  @property
  def max_time_offset(self) -> Optional[int]:
    return self._max_time_offset

  def build(self, input_shape):
    # input_shape: [B, L, H, W, dim]
    _, length, height, width, _ = input_shape
    def init():
      # A fresh initializer per table: one shared unseeded instance would
      # give the tables identical values.
      return tf_keras.initializers.TruncatedNormal(stddev=self._stddev)
    self.time_embedding = self.add_weight(
        name='time', shape=[length, self._dim], initializer=init())
    self.height_embedding = self.add_weight(
        name='height', shape=[height, self._dim], initializer=init())
    self.width_embedding = self.add_weight(
        name='width', shape=[width, self._dim], initializer=init())
    centred = [(i - length // 2) * self._time_spacing for i in range(length)]
    bound = max(abs(d) for d in centred)
    if self._max_time_offset is not None:
      if self._max_time_offset < bound:
        raise ValueError(
            f'max_time_offset ({self._max_time_offset}) must cover the '
            f'centred offsets of {length} frames at spacing '
            f'{self._time_spacing} (up to {bound})')
      bound = self._max_time_offset
    extra = [d for d in range(-bound, bound + 1) if d not in centred]
    self.time_extra_embedding = None
    if self._max_time_offset is not None and extra:
      self.time_extra_embedding = self.add_weight(
          name='time_extra', shape=[len(extra), self._dim],
          initializer=init())
    else:
      extra = []
    # Row of offset d in concat([time, time_extra]) at index d + bound; an
    # offset without a row points past the end (see the class docstring).
    rows = np.full([2 * bound + 1], length + len(extra), np.int32)
    for row, d in enumerate(centred + extra):
      rows[d + bound] = row
    self._offset_bound = bound
    self._row_of_offset = rows
    super().build(input_shape)

  def call(self, tokens, time_offsets=None):
    """Adds the encoding to tokens [B, L, H, W, dim].

    Args:
      tokens: [B, L, H, W, dim].
      time_offsets: optional int [B, L], the offset of each context frame
        from the query's frame (context frame index - region frame index);
        default: the query's frame is the block's centre frame.

    Returns:
      tokens + encoding, [B, L, H, W, dim].
    """
    if time_offsets is None:
      time = self.time_embedding[None]  # [1, L, dim]
    else:
      if time_offsets.shape.rank != 2 or (
          time_offsets.shape[1] not in (None, tokens.shape[1])):
        raise ValueError(f'time_offsets must be [B, L={tokens.shape[1]}], '
                         f'got {time_offsets.shape}')
      table = self.time_embedding
      if self.time_extra_embedding is not None:
        table = tf.concat([table, self.time_extra_embedding], axis=0)
      rows = tf.gather(tf.constant(self._row_of_offset),
                       tf.cast(time_offsets, tf.int32) + self._offset_bound)
      time = _dense_gradient_gather(tf.convert_to_tensor(table),
                                    rows)  # [B, L, dim]
    pos = (time[:, :, None, None, :] +
           self.height_embedding[None, None, :, None, :] +
           self.width_embedding[None, None, None, :, :])
    return tokens + tf.cast(pos, tokens.dtype)

  def get_config(self):
    config = super().get_config()
    config.update({'dim': self._dim, 'initializer_stddev': self._stddev,
                   'time_spacing': self._time_spacing,
                   'max_time_offset': self._max_time_offset})
    return config
