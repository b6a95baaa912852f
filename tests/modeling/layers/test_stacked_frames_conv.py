"""`StackedFramesConv3D` equals `tf_keras.layers.Conv3D`, outputs and gradients.

The reference is Keras's own Conv3D with the same kernel; strides, odd sizes
and both paddings are covered, plus XLA compilation.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from modeling.layers import blocks_3d

CASES = [
    # input shape, kernel, strides, padding
    ((2, 8, 32, 32, 3), (5, 7, 7), (1, 2, 2), 'same'),
    ((2, 7, 33, 31, 3), (5, 7, 7), (2, 2, 2), 'same'),
    ((1, 9, 20, 20, 3), (3, 7, 7), (2, 2, 2), 'valid'),
    ((1, 4, 12, 12, 2), (1, 3, 3), (1, 1, 1), 'same'),
]


@pytest.mark.parametrize('shape,kernel,strides,padding', CASES)
def test_outputs_and_gradients_equal_conv3d(shape, kernel, strides, padding):
  x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
  ref = tf_keras.layers.Conv3D(6, kernel, strides, padding=padding,
                               use_bias=True, bias_initializer='he_normal')
  ours = blocks_3d.StackedFramesConv3D(6, kernel, strides, padding=padding,
                                       use_bias=True)
  ref(x)
  ours(x)
  assert [w.shape for w in ours.weights] == [w.shape for w in ref.weights]
  ours.set_weights(ref.get_weights())
  results = []
  for layer in (ref, ours):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
      loss = tf.reduce_sum(tf.sin(y))
    results.append((y, tape.gradient(loss, [x] + layer.trainable_weights)))
  (y_ref, g_ref), (y_ours, g_ours) = results
  assert y_ours.shape == y_ref.shape
  np.testing.assert_allclose(y_ours, y_ref, atol=1e-5)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_compiles_with_xla_and_keeps_static_shapes():
  layer = blocks_3d.StackedFramesConv3D(4, (5, 7, 7), (1, 2, 2),
                                        padding='same', use_bias=False)
  x = tf.random.stateless_normal([2, 8, 16, 16, 3], seed=[1, 2])
  eager = layer(x)
  compiled = tf.function(layer, jit_compile=True)(x)
  np.testing.assert_allclose(compiled, eager, atol=1e-5)
  symbolic = layer(tf_keras.Input(shape=(8, 16, 16, 3)))
  assert symbolic.shape.as_list() == [None, 8, 8, 8, 4]


def test_unsupported_arguments_are_errors():
  with pytest.raises(ValueError, match='dilation_rate'):
    blocks_3d.StackedFramesConv3D(4, 3, dilation_rate=2)
  with pytest.raises(ValueError, match='channels_last'):
    blocks_3d.StackedFramesConv3D(4, 3, data_format='channels_first')
