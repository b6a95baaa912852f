"""Global MLP head, ConST-CL head and ROI pooling: counts, shapes, values."""
import numpy as np
import tensorflow as tf

from modeling.heads import const_cl_head
from modeling.heads import global_head
from modeling.layers import roi


def test_global_head_has_the_released_parameter_count():
  head = global_head.GlobalProjectionHead(2048, 3, 128)
  head(tf.zeros([2, 2048]))
  # 3 x (2048*2048 kernel + 4*2048 BN incl. statistics) + 2048*128 + 128.
  assert head.count_params() == 3 * (2048 * 2048 + 4 * 2048) + 2048 * 128 + 128
  assert head.count_params() == 12_869_760  # "12.87M" in SPEC s.1


def _head_and_inputs(batch=2, regions=3, channels=32, length=3, size=2):
  head = const_cl_head.ConstCLHead(output_dim=channels, num_layers=2,
                                   num_heads=3, hidden_dim=16, mlp_dim=24)
  rng = np.random.default_rng(0)
  h = tf.constant(rng.normal(size=(batch, regions, channels)), tf.float32)
  boxes = tf.constant(np.tile([[0.1, 0.2, 0.6, 0.7]], (batch, regions, 1)),
                      tf.float32)
  ctx = tf.constant(rng.normal(size=(batch, length, size, size, channels)),
                    tf.float32)
  return head, h, boxes, ctx


def test_const_cl_head_shapes_and_attention_is_a_distribution():
  head, h, boxes, ctx = _head_and_inputs()
  z, attention = head(h, boxes, ctx)
  assert z.shape == (2, 3, 32)
  assert len(attention) == 2
  for scores in attention:
    assert scores.shape == (2, 3, 3, 3 * 2 * 2)  # [B, heads, N, L*H*W]
    np.testing.assert_allclose(scores.numpy().sum(-1), 1.0, atol=1e-5)


def test_const_cl_head_parameter_count():
  head, h, boxes, ctx = _head_and_inputs()
  head(h, boxes, ctx)
  c, d, heads, mlp, length, size = 32, 16, 3, 24, 3, 2
  proj = 2 * (c * d + d) + (4 * d + d)  # query, context, box encoding
  pos = (length + size + size) * d
  mha = 3 * (d * heads * d + heads * d) + (heads * d * d + d)
  block = mha + 2 * 2 * d + (d * mlp + mlp) + (mlp * d + d)
  out = d * c + c
  assert head.count_params() == proj + pos + 2 * block + out


def test_const_cl_head_uses_the_context():
  head, h, boxes, ctx = _head_and_inputs()
  z1, _ = head(h, boxes, ctx)
  z2, _ = head(h, boxes, ctx * 2.0)
  assert np.abs(z1.numpy() - z2.numpy()).max() > 1e-3


def test_const_cl_head_compiles_with_xla():
  head, h, boxes, ctx = _head_and_inputs()
  eager, _ = head(h, boxes, ctx)
  compiled = tf.function(lambda a, b, c: head(a, b, c)[0], jit_compile=True)
  np.testing.assert_allclose(compiled(h, boxes, ctx).numpy(), eager.numpy(),
                             atol=1e-4)


def test_roi_pool_of_a_linear_ramp_is_the_ramp_at_the_box_centre():
  # feature(y, x) = x: cell i spans [i, i + 1), its value i sits at i + 0.5.
  # Box x in [2, 6] samples its 4 bin centres 2.5, 3.5, 4.5, 5.5, i.e. cells
  # 2, 3, 4, 5 (mean 3.5); box x in [4, 8] cells 4-7 (mean 5.5); the full
  # box the mean of all 8 cells (3.5). Cell 0's box samples feature index
  # -0.375, -0.125, 0.125, 0.375: 0, 0 (left of cell 0's centre, its
  # value), 0.125, 0.375 (mean 0.125).
  h = w = 8
  xs = np.tile(np.arange(w, dtype=np.float32)[None, :, None], (h, 1, 1))
  feat = tf.constant(xs[None])  # [1, 8, 8, 1]
  boxes = tf.constant([[[0.25, 0.25, 0.75, 0.75], [0.0, 0.5, 1.0, 1.0],
                        [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.125, 0.125]]])
  vec = roi.roi_pool_vectors(feat, boxes, crop_size=4).numpy()
  np.testing.assert_allclose(vec[0, :, 0], [3.5, 5.5, 3.5, 0.125], atol=1e-5)


def test_roi_pool_is_flip_equivariant():
  # A box in a view and its mirror image in the flipped view read the same
  # features (the pretraining's region correspondence across flipped views).
  rng = np.random.default_rng(0)
  feat = rng.normal(size=(1, 7, 7, 16)).astype(np.float32)
  # Boxes inside, whole, and thin at the left and top edges (samples in the
  # outer half cell take the edge cell's value, as at the right edge).
  box = np.array([[[0.2, 0.1, 0.6, 0.45], [0.0, 0.0, 1.0, 1.0],
                   [0.0, 0.0, 1.0, 0.1], [0.0, 0.3, 0.1, 0.9]]], np.float32)
  mirrored = box[..., [0, 3, 2, 1]] * [1, -1, 1, -1] + [0, 1, 0, 1]
  vec = roi.roi_pool_vectors(tf.constant(feat), tf.constant(box))
  vec_flipped = roi.roi_pool_vectors(tf.constant(feat[:, :, ::-1]),
                                     tf.constant(mirrored, tf.float32))
  np.testing.assert_allclose(vec_flipped.numpy(), vec.numpy(), atol=1e-5)


def test_roi_pool_samples_at_the_edges_take_the_edge_cell():
  # feature(y, x) = x on 7 columns: a thin box at the left edge reads
  # column 0 (value 0) for its samples left of column 0's centre, never
  # less; at the right edge, column 6.
  xs = np.tile(np.arange(7, dtype=np.float32)[None, :, None], (7, 1, 1))
  boxes = tf.constant([[[0.0, 0.0, 1.0, 0.1], [0.0, 0.9, 1.0, 1.0]]])
  crops = roi.roi_align_frame(tf.constant(xs[None]), boxes, crop_size=4)
  left, right = crops.numpy()[0, 0, 0, :, 0], crops.numpy()[0, 1, 0, :, 0]
  # Box x in [0, 0.7]: samples at 0.0875 + 0.175 i, i.e. feature index
  # -0.4125 ... 0.1125: clamped to 0 below index 0.
  np.testing.assert_allclose(left, [0.0, 0.0, 0.0, 0.1125], atol=1e-5)
  np.testing.assert_allclose(right, 6.0 - left[::-1], atol=1e-5)


def test_roi_pool_compiles_with_xla():
  feat = tf.random.normal([2, 4, 4, 8])
  boxes = tf.constant([[[0.1, 0.1, 0.6, 0.9]] * 3] * 2)
  eager = roi.roi_pool_vectors(feat, boxes)
  compiled = tf.function(roi.roi_pool_vectors, jit_compile=True)
  np.testing.assert_allclose(compiled(feat, boxes).numpy(), eager.numpy(),
                             atol=1e-5)
