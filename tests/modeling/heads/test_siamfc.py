"""Tests for the SiamFC head, labels and loss."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from modeling.heads import siamfc


def _reference_xcorr(z, x):
  b, hz, wz, _ = z.shape
  _, hx, wx, _ = x.shape
  out = np.zeros((b, hx - hz + 1, wx - wz + 1, 1), np.float64)
  for n in range(b):
    for i in range(hx - hz + 1):
      for j in range(wx - wz + 1):
        out[n, i, j, 0] = np.sum(z[n] * x[n, i:i + hz, j:j + wz])
  return out


def test_cross_correlation_matches_loop_and_compiles():
  rng = np.random.default_rng(0)
  z = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
  x = rng.standard_normal((3, 7, 6, 5)).astype(np.float32)
  expected = _reference_xcorr(z, x)
  out = siamfc.cross_correlation(z, x).numpy()
  assert out.shape == (3, 5, 5, 1)
  np.testing.assert_allclose(out, expected, atol=1e-5)
  jitted = tf.function(siamfc.cross_correlation, jit_compile=True)
  np.testing.assert_allclose(jitted(z, x).numpy(), expected, atol=1e-5)


def test_cross_correlation_rejects_bad_shapes():
  with pytest.raises(ValueError, match='channel mismatch'):
    siamfc.cross_correlation(tf.zeros([1, 2, 2, 3]), tf.zeros([1, 4, 4, 4]))
  with pytest.raises(ValueError, match='larger than search'):
    siamfc.cross_correlation(tf.zeros([1, 5, 5, 3]), tf.zeros([1, 4, 4, 3]))


def test_head_scale_and_bias():
  rng = np.random.default_rng(1)
  z = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
  x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
  head = siamfc.SiamFCHead()
  out = head((z, x)).numpy()
  np.testing.assert_allclose(out, 1e-3 * _reference_xcorr(z, x), atol=1e-6)
  assert sorted(w.name.split('/')[-1].split(':')[0]
                for w in head.trainable_weights) == ['bias', 'scale']
  head.bias.assign(0.5)
  np.testing.assert_allclose(head((z, x)).numpy(),
                             1e-3 * _reference_xcorr(z, x) + 0.5, atol=1e-6)


def test_head_under_mixed_bfloat16_keeps_a_float32_response():
  # train.py sets the global policy for runtime.mixed_precision_dtype:
  # bfloat16 (the GOT-10k experiment's); the head reads its float32
  # variables in bfloat16 there, and must still add them to the float32
  # response (it raised a dtype error before).
  rng = np.random.default_rng(2)
  z = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
  x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
  tf_keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    head = siamfc.SiamFCHead(bias_init=0.25)
    out = head((tf.cast(z, tf.bfloat16), tf.cast(x, tf.bfloat16)))
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  assert head.scale.dtype == tf.float32
  assert out.dtype == tf.float32
  # bfloat16 inputs: 8 bits of mantissa, so about 1% of the correlation.
  np.testing.assert_allclose(out.numpy(), 1e-3 * _reference_xcorr(z, x) + 0.25,
                             atol=3e-4)
  # The scale is read in float32: a change of 1e-6 (below bfloat16's
  # resolution at 1e-3) moves the response by 1e-6 * the correlation.
  zb, xb = tf.cast(z, tf.bfloat16), tf.cast(x, tf.bfloat16)
  xcorr = siamfc.cross_correlation(zb, xb).numpy().astype(np.float32)
  head.scale.assign(1e-3 + 1e-6)
  moved = head((zb, xb)).numpy()
  np.testing.assert_allclose(moved - out.numpy(), 1e-6 * xcorr, rtol=0.05,
                             atol=2e-8)
  assert np.abs(moved - out.numpy()).max() > 1e-7


def test_labels_small_response():
  # Radius 8 px at stride 8 = 1 cell: the centre and its 4-neighbours.
  labels, weights = siamfc.siamfc_labels(5, total_stride=8, positive_radius=8)
  expected = np.zeros((5, 5), np.float32)
  expected[2, 1:4] = 1
  expected[1:4, 2] = 1
  np.testing.assert_array_equal(labels, expected)
  np.testing.assert_allclose(weights[labels == 1], 0.5 / 5)
  np.testing.assert_allclose(weights[labels == 0], 0.5 / 20)


def test_labels_standard_sizes():
  # (255 - 127) / 8 + 1 = 17 cells; radius 2 cells: 1 + 4 + 4 + 4 = 13.
  labels, weights = siamfc.siamfc_labels()
  assert labels.shape == (17, 17)
  assert labels.sum() == 13
  assert labels[8, 10] == 1 and labels[9, 10] == 0
  assert weights.sum() == pytest.approx(1.0, abs=1e-6)


def test_logistic_loss():
  labels, weights = siamfc.siamfc_labels(5, total_stride=8, positive_radius=8)
  # Zero logits: every cell costs log 2, weights sum to 1.
  loss = siamfc.siamfc_logistic_loss(tf.zeros([2, 5, 5, 1]), labels, weights)
  assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)
  # Logits +-L agreeing with the labels: each cell costs log(1 + e^-L).
  logits = np.where(labels == 1, 3.0, -3.0)[None].repeat(2, 0)
  loss = siamfc.siamfc_logistic_loss(logits, labels, weights)
  assert float(loss) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)
