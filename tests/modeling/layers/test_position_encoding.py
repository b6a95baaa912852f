"""Spatio-temporal position encoding: time is the offset from the region frame.

The context window is shifted to stay inside the clip when the region frame
is near an end (T=8, L=5: region frame 0 -> window [0 1 2 3 4], the region
frame at window index 0, not 2), so the encoding must follow the offsets
`context_frames - region_frame`, not the position in the window.
"""
import numpy as np
import pytest
import tensorflow as tf

from modeling.layers import position_encoding
from modeling.layers import region_frames

DIM = 6


def _layer(length, height=2, width=3, **kwargs):
  layer = position_encoding.SpatioTemporalPositionEncoding(DIM, **kwargs)
  layer.build([None, length, height, width, DIM])
  return layer


def _windows(num_frames, length):
  """(context frames [T, L], offsets from the region frame [T, L])."""
  t = tf.range(num_frames, dtype=tf.int32)
  ctx = region_frames.context_frame_indices(t, num_frames, length)
  return ctx.numpy(), (ctx - t[:, None]).numpy()


def _released_formula(layer, tokens):
  """The encoding as released: time indexed by position in the window."""
  pos = (layer.time_embedding[:, None, None, :] +
         layer.height_embedding[None, :, None, :] +
         layer.width_embedding[None, None, :, :])
  return tokens + pos[None]


def test_region_frame_slice_gets_the_offset_zero_encoding_anywhere():
  # The released layer indexed time by window position: region frame 0's
  # own slice (window index 0) got the row of offset -2. The model-level
  # check is in tests/modeling/test_const_cl_context_offsets.py.
  num_frames, length = 8, 5
  layer = _layer(length, time_spacing=1, max_time_offset=4)
  ctx, offsets = _windows(num_frames, length)
  assert ctx[0].tolist() == [0, 1, 2, 3, 4] and offsets[0].tolist() == [
      0, 1, 2, 3, 4]
  tokens = tf.zeros([num_frames, length, 2, 3, DIM])
  enc = layer(tokens, time_offsets=tf.constant(offsets)).numpy()
  # Region frame 4: the centred window [2..6], the region frame at index 2.
  released = _released_formula(layer, tokens).numpy()
  np.testing.assert_array_equal(enc[4, 2], released[0, 2])
  for t in range(num_frames):
    i = ctx[t].tolist().index(t)
    np.testing.assert_array_equal(enc[t, i], enc[4, 2], err_msg=f't={t}')
  # The shifted window t=0 does not read its centre row for frame 2: that
  # frame is 2 frames after the region frame, not the region frame.
  assert np.abs(enc[0, 2] - enc[4, 2]).max() > 1e-4


def test_same_offset_same_encoding_different_offset_different_encoding():
  num_frames, length = 8, 5
  layer = _layer(length, time_spacing=1, max_time_offset=4)
  _, offsets = _windows(num_frames, length)
  enc = layer(tf.zeros([num_frames, length, 2, 3, DIM]),
              time_offsets=tf.constant(offsets)).numpy()
  by_offset = {}
  for t in range(num_frames):
    for i in range(length):
      by_offset.setdefault(int(offsets[t, i]), []).append(enc[t, i])
  assert sorted(by_offset) == list(range(-4, 5))
  for d, encs in by_offset.items():
    for e in encs[1:]:
      np.testing.assert_array_equal(e, encs[0], err_msg=f'offset {d}')
  firsts = np.stack([by_offset[d][0] for d in sorted(by_offset)])
  gaps = np.abs(firsts[:, None] - firsts[None]).max(axis=(2, 3, 4))
  assert (gaps + np.eye(len(firsts)) > 1e-4).all()


@pytest.mark.parametrize('num_frames,length', [
    (8, 5), (8, 3), (8, 1), (8, 7), (4, 3), (5, 5), (16, 5), (9, 3)])
def test_the_table_covers_every_offset_of_every_region_frame(num_frames,
                                                             length):
  bound = region_frames.max_context_offset(num_frames, length)
  spacing = region_frames.context_spacing(num_frames, length)
  _, offsets = _windows(num_frames, length)
  assert np.abs(offsets).max() == bound  # the bound is attained, not loose
  layer = _layer(length, time_spacing=spacing, max_time_offset=bound)
  # On CPU an offset without a row is an error (see the next test).
  layer(tf.zeros([num_frames, length, 2, 3, DIM]),
        time_offsets=tf.constant(offsets))


def test_an_offset_without_a_row_is_an_error_on_cpu():
  layer = _layer(5)  # centre-only table: offsets -2..2
  with pytest.raises(tf.errors.InvalidArgumentError):
    layer(tf.zeros([1, 5, 2, 3, DIM]),
          time_offsets=tf.constant([[0, 1, 2, 3, 4]]))


@pytest.mark.parametrize('num_frames,length,max_offset', [
    (8, 5, None), (8, 5, 4), (8, 3, None), (8, 3, 4), (1, 1, None)])
def test_centre_case_is_the_released_encoding(num_frames, length,
                                              max_offset):
  # Same variables (names, shapes) as released: `time_extra` exists only
  # for tables that serve shifted windows.
  spacing = region_frames.context_spacing(num_frames, length)
  layer = _layer(length, time_spacing=spacing, max_time_offset=max_offset)
  names = {v.name.split('/')[-1].split(':')[0]: tuple(v.shape)
           for v in layer.weights}
  released = {'time': (length, DIM), 'height': (2, DIM), 'width': (3, DIM)}
  if max_offset is None:
    assert names == released
  else:
    extra = 2 * max_offset + 1 - length
    assert names == dict(released, time_extra=(extra, DIM))
  # Same outputs, bit for bit, with the centred offsets or without any.
  center = tf.constant([num_frames // 2])
  ctx = region_frames.context_frame_indices(center, num_frames, length)
  offsets = tf.tile(ctx - center[:, None], [2, 1])
  assert offsets.numpy()[0].tolist() == [
      (i - length // 2) * spacing for i in range(length)]
  tokens = tf.random.stateless_normal([2, length, 2, 3, DIM], seed=[1, 2])
  want = _released_formula(layer, tokens).numpy()
  np.testing.assert_array_equal(layer(tokens).numpy(), want)
  np.testing.assert_array_equal(
      layer(tokens, time_offsets=offsets).numpy(), want)


def test_relative_encoding_compiles_with_xla():
  layer = _layer(5, time_spacing=1, max_time_offset=4)
  _, offsets = _windows(8, 5)
  tokens = tf.random.stateless_normal([8, 5, 2, 3, DIM], seed=[3, 4])
  offsets = tf.constant(offsets)
  eager = layer(tokens, time_offsets=offsets)
  compiled = tf.function(lambda x, o: layer(x, time_offsets=o),
                         jit_compile=True)
  np.testing.assert_allclose(compiled(tokens, offsets).numpy(),
                             eager.numpy(), atol=1e-6)


def test_bad_tables_are_config_errors():
  with pytest.raises(ValueError, match='time_spacing'):
    _layer(3, time_spacing=0)
  with pytest.raises(ValueError, match=r'max_time_offset \(1\)'):
    _layer(5, max_time_offset=1)  # the centred window alone needs 2
  layer = _layer(5, time_spacing=1, max_time_offset=4)
  with pytest.raises(ValueError, match='time_offsets must be'):
    layer(tf.zeros([1, 5, 2, 3, DIM]), time_offsets=tf.zeros([1, 3],
                                                             tf.int32))
