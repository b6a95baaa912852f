"""Action-transformer head for spatio-temporal action localization (AVA).

Each person box is ROIAligned on the key frame's slice of the clip's feature
map (res5r); the pooled vector is the query of a transformer decoder whose
keys/values are all spatio-temporal tokens of the clip (plus learned (t, y, x)
position encodings). The decoded query gives one multi-label logit per class.
Static shapes throughout (boxes padded to `max_boxes`), so the head compiles
with XLA.
"""
from typing import Dict, Optional

import tensorflow as tf
import tf_keras

from modeling.heads import const_cl_head
from modeling.layers import position_encoding
from modeling.layers import roi


def key_frame_index(num_feature_frames: int) -> int:
  """The feature frame of the key frame: the centre temporal slice.

  Clips are key-frame centred (key frame at input position T // 2), and the
  backbone's temporal strides keep the centre at feature frame T' // 2.
  """
  return num_feature_frames // 2


class ActionTransformerHead(tf_keras.layers.Layer):
  """ROI queries decoded against the clip's tokens; per-box class logits."""

  def __init__(self,
               num_classes: int,
               num_layers: int = 3,
               num_heads: int = 3,
               hidden_dim: int = 128,
               mlp_dim: int = 512,
               roi_crop_size: int = 4,
               dropout_rate: float = 0.0,
               normalize_features: bool = True,
               kernel_regularizer=None,
               **kwargs):
    """Initializes the head.

    Args:
      num_classes: logits per box (80 for AVA: class index = action_id - 1).
      num_layers: cross-attention decoder blocks.
      num_heads: attention heads.
      hidden_dim: transformer width (features are projected to it).
      mlp_dim: hidden width of each block's MLP.
      roi_crop_size: ROIAlign output side before averaging to a vector.
      dropout_rate: dropout in the blocks and before the classifier.
      normalize_features: L2-normalize the features per position (over
        channels) before pooling and projecting them, as pretraining's local
        head reads res5r; the head is then blind to the feature scale.
      kernel_regularizer: optional kernel regularizer of the dense layers.
      **kwargs: keras Layer arguments.
    """
    super().__init__(**kwargs)
    if num_classes < 1 or num_layers < 1 or num_heads < 1 or hidden_dim < 1:
      raise ValueError(
          f'ActionTransformerHead: num_classes ({num_classes}), num_layers '
          f'({num_layers}), num_heads ({num_heads}) and hidden_dim '
          f'({hidden_dim}) must be >= 1')
    self._config = dict(num_classes=num_classes, num_layers=num_layers,
                        num_heads=num_heads, hidden_dim=hidden_dim,
                        mlp_dim=mlp_dim, roi_crop_size=roi_crop_size,
                        dropout_rate=dropout_rate,
                        normalize_features=normalize_features)
    self._roi_crop_size = roi_crop_size
    self._normalize_features = normalize_features
    self._query_projection = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer, name='query_proj')
    # The query's box geometry tells the decoder where the person is, which
    # the pooled appearance alone does not.
    self._box_encoding = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer, name='box_encoding')
    self._context_projection = tf_keras.layers.Dense(
        hidden_dim, kernel_regularizer=kernel_regularizer,
        name='context_proj')
    self._position_encoding = (
        position_encoding.SpatioTemporalPositionEncoding(
            hidden_dim, name='context_position'))
    self._blocks = [
        const_cl_head.CrossAttentionBlock(
            hidden_dim, num_heads, mlp_dim, dropout_rate, kernel_regularizer,
            name=f'block_{i}') for i in range(num_layers)
    ]
    self._dropout = tf_keras.layers.Dropout(dropout_rate)
    # float32 whatever the global policy: bfloat16 logits keep 8 bits of
    # mantissa, so under mixed_bfloat16 many boxes' scores tie and the AP's
    # ranking of them is arbitrary. Same variable names and shapes (the
    # kernel is float32 under mixed policies anyway): checkpoints still load.
    self._classifier = tf_keras.layers.Dense(
        num_classes, kernel_regularizer=kernel_regularizer,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        dtype='float32', name='classifier')

  def call(self, features: tf.Tensor, boxes: tf.Tensor,
           training=None) -> Dict[str, tf.Tensor]:
    """Per-box logits.

    Args:
      features: [B, T', H', W', C] clip features (res5r); static T', H', W'.
      boxes: [B, M, 4] normalized [ymin, xmin, ymax, xmax] person boxes on the
        key frame (padding boxes are fine: the loss masks them).
      training: training mode.

    Returns:
      dict with `logits` [B, M, num_classes] (float32) and `attention`, the
      last block's weights [B, num_heads, M, T'*H'*W'].
    """
    t, h, w = features.shape[1], features.shape[2], features.shape[3]
    if None in (t, h, w):
      raise ValueError(f'ActionTransformerHead needs static T, H, W, got '
                       f'features of shape {features.shape}')
    features = tf.cast(features, tf.float32)
    if self._normalize_features:
      features = tf.math.l2_normalize(features, axis=-1)
    boxes = tf.cast(boxes, tf.float32)
    key = features[:, key_frame_index(t)]
    pooled = roi.roi_pool_vectors(key, boxes, self._roi_crop_size)
    box_geometry = tf.concat([
        (boxes[..., :2] + boxes[..., 2:]) / 2.0,  # centre y, x
        boxes[..., 2:] - boxes[..., :2],  # height, width
    ], axis=-1)
    query = self._query_projection(pooled) + self._box_encoding(box_geometry)
    tokens = self._position_encoding(self._context_projection(features))
    tokens = tf.reshape(tokens, [-1, t * h * w, tokens.shape[-1]])
    scores = None
    for block in self._blocks:
      query, scores = block(query, tokens, training=training)
    logits = self._classifier(self._dropout(query, training=training))
    return {'logits': tf.cast(logits, tf.float32), 'attention': scores}

  def get_config(self):
    config = super().get_config()
    config.update(self._config)
    return config


def masked_sigmoid_cross_entropy(labels: tf.Tensor, logits: tf.Tensor,
                                 box_mask: tf.Tensor,
                                 num_valid: Optional[tf.Tensor] = None
                                 ) -> tf.Tensor:
  """Multi-label sigmoid cross-entropy averaged over the valid boxes.

  loss = sum_{b,m} mask[b,m] * mean_c BCE(labels[b,m,c], logits[b,m,c])
         / max(num_valid, 1)

  Args:
    labels: [B, M, C] multi-hot targets.
    logits: [B, M, C] logits.
    box_mask: [B, M] 1 for real boxes, 0 for padding / cropped-away boxes.
    num_valid: the normalizer; default the local `sum(box_mask)`. Pass the
      count summed over replicas to make the replicas' losses add up to the
      global-batch mean (see `global_valid_boxes`).

  Returns:
    Scalar float32 loss (0 when there is no valid box, never NaN).
  """
  labels = tf.cast(labels, tf.float32)
  logits = tf.cast(logits, tf.float32)
  mask = tf.cast(box_mask, tf.float32)
  per_element = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                        logits=logits)
  per_box = tf.reduce_mean(per_element, axis=-1)
  if num_valid is None:
    num_valid = tf.reduce_sum(mask)
  return tf.reduce_sum(per_box * mask) / tf.maximum(
      tf.cast(num_valid, tf.float32), 1.0)


def global_valid_boxes(box_mask: tf.Tensor) -> tf.Tensor:
  """Valid boxes summed over all replicas (the local count outside one).

  Dividing each replica's summed loss by this count makes the sum of the
  replicas' gradients the gradient of the global-batch mean, whatever the
  number of boxes on each replica.
  """
  local = tf.reduce_sum(tf.cast(box_mask, tf.float32))
  ctx = tf.distribute.get_replica_context()
  if ctx is None:  # Cross-replica context: the caller sees everything.
    return local
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)
