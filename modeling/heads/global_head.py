"""The CVRL global projection head."""
import tensorflow as tf
import tf_keras


class GlobalProjectionHead(tf_keras.layers.Layer):
  """`num_hidden_layers` x (dense, BN, ReLU) then a linear projection.

  Hidden dense layers have no bias: the batch norm right after would cancel
  it. With 2048 inputs, hidden 2048, 3 hidden layers and 128 outputs this is
  the released head's 12.87M parameters (BN statistics included).
  """

  def __init__(self, hidden_dim: int = 2048, num_hidden_layers: int = 3,
               projection_dim: int = 128, use_sync_bn: bool = False,
               norm_momentum: float = 0.9, norm_epsilon: float = 1e-5,
               kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self._config = dict(hidden_dim=hidden_dim,
                        num_hidden_layers=num_hidden_layers,
                        projection_dim=projection_dim, use_sync_bn=use_sync_bn,
                        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon)
    self._hidden = []
    for i in range(num_hidden_layers):
      self._hidden.append((
          tf_keras.layers.Dense(hidden_dim, use_bias=False,
                                kernel_regularizer=kernel_regularizer,
                                name=f'hidden_{i}'),
          tf_keras.layers.BatchNormalization(
              momentum=norm_momentum, epsilon=norm_epsilon,
              synchronized=use_sync_bn, name=f'hidden_{i}_bn')))
    self._projection = tf_keras.layers.Dense(
        projection_dim, kernel_regularizer=kernel_regularizer,
        name='projection')

  def call(self, x, training=None):
    for dense, norm in self._hidden:
      x = tf.nn.relu(norm(dense(x), training=training))
    return self._projection(x)

  def get_config(self):
    config = super().get_config()
    config.update(self._config)
    return config


class RegionMLP(tf_keras.layers.Layer):
  """dense, BN, ReLU, dense: the context-free region projection (Eq. 3) and
  the per-voxel projection of the dense baseline (Eq. 1)."""

  def __init__(self, hidden_dim: int, output_dim: int,
               use_sync_bn: bool = False, norm_momentum: float = 0.9,
               norm_epsilon: float = 1e-5, kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self._hidden = tf_keras.layers.Dense(
        hidden_dim, use_bias=False, kernel_regularizer=kernel_regularizer,
        name='hidden')
    self._norm = tf_keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
        name='hidden_bn')
    self._out = tf_keras.layers.Dense(
        output_dim, kernel_regularizer=kernel_regularizer, name='output')

  def call(self, x, training=None):
    return self._out(tf.nn.relu(self._norm(self._hidden(x),
                                           training=training)))
