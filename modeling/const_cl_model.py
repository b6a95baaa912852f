"""The ConST-CL pretraining model and its registered builder."""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.modeling.backbones import factory as backbone_factory

from modeling.heads import const_cl_head
from modeling.heads import global_head
from modeling.layers import region_frames
from modeling.layers import roi

LOCAL_LOSSES = ('const_cl', 'region', 'dense', 'none')
LOSS_ENDPOINTS = ('y', 'c5', 'c4p')


def _split_views(x: tf.Tensor):
  """[2B, ...] with view a first -> ([B, ...], [B, ...])."""
  a, b = tf.split(x, 2, axis=0)
  return a, b


class ConstCLModel(tf_keras.Model):
  """Y backbone + global MLP head + a local head.

  Inputs are both views stacked on the batch axis, view a first:
    image [2B, T, H, W, 3], boxes [2B, T, N, 4], box_mask [2B, T, N],
    frame_index [2B, T].
  The backbone runs once on the 2B clips (batch norm sees both views, as in
  CVRL). Outputs (float32 is left to the task):
    global_embeddings [2B, P];
    for region losses (`const_cl`, `region`): regions_a/b [B, N, C] (pooled
      L2-normalized features at each view's region frame), mask_a/b [B, N],
      pred_a2b / pred_b2a [B, N, C] (view-a regions predicted in view b and
      vice versa), region_frame_a/b [B];
    for `dense`: dense_a/b [B, T*H*W, D];
    with `return_attention=True` (const_cl): attention_a2b/b2a, lists of
      [B, heads, N, L*H*W] per decoder block.
  """

  def __init__(self,
               backbone: tf_keras.Model,
               global_projection: tf_keras.layers.Layer,
               local_head: Optional[tf_keras.layers.Layer],
               local_loss: str = 'const_cl',
               loss_endpoints: str = 'y',
               region_frame: str = 'center',
               context_length: int = 5,
               frame_stride: int = 2,
               roi_crop_size: int = 4,
               **kwargs):
    super().__init__(**kwargs)
    if local_loss not in LOCAL_LOSSES:
      raise ValueError(f'local_loss must be one of {LOCAL_LOSSES}, got '
                       f'{local_loss!r}')
    if loss_endpoints not in LOSS_ENDPOINTS:
      raise ValueError(f'loss_endpoints must be one of {LOSS_ENDPOINTS}, got '
                       f'{loss_endpoints!r}')
    if (local_loss != 'none') != (local_head is not None):
      raise ValueError(f'local_loss={local_loss!r} and local_head '
                       f'{local_head!r} disagree')
    self._backbone = backbone
    self._global_projection = global_projection
    self._local_head = local_head
    self._local_loss = local_loss
    self._loss_endpoints = loss_endpoints
    self._region_frame = region_frame
    self._context_length = context_length
    self._frame_stride = frame_stride
    self._roi_crop_size = roi_crop_size

  @property
  def backbone(self):
    return self._backbone

  @property
  def global_projection(self):
    return self._global_projection

  @property
  def local_head(self):
    """The local head, or None for CVRL (`local_loss='none'`)."""
    return self._local_head

  @property
  def checkpoint_items(self) -> Mapping[str, Any]:
    """What downstream tasks restore with `init_checkpoint_modules`."""
    return dict(backbone=self.backbone)

  @property
  def local_loss(self) -> str:
    return self._local_loss

  def local_features(self, endpoints: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """The feature map the local loss works on, per `loss_endpoints`."""
    if self._loss_endpoints == 'y':
      return endpoints['5r']
    if self._loss_endpoints == 'c5':
      return endpoints['5g']
    # c4p: res4 average-pooled 2x2 in space.
    return tf.nn.avg_pool3d(endpoints['4'], ksize=[1, 2, 2],
                            strides=[1, 2, 2], padding='VALID')

  def call(self, inputs: Mapping[str, tf.Tensor], training=None,
           return_attention: bool = False) -> Dict[str, Any]:
    endpoints = self._backbone(inputs['image'], training=training)
    pooled = tf.reduce_mean(endpoints['5g'], axis=[1, 2, 3])
    outputs = {
        'global_embeddings': self._global_projection(pooled,
                                                     training=training)
    }
    if self._local_loss == 'none':
      return outputs
    local = self.local_features(endpoints)
    if self._local_loss == 'dense':
      flat = tf.reshape(local, [-1, local.shape[1] * local.shape[2] *
                                local.shape[3], local.shape[4]])
      projected = self._local_head(flat, training=training)
      outputs['dense_a'], outputs['dense_b'] = _split_views(projected)
      return outputs

    local = tf.math.l2_normalize(tf.cast(local, tf.float32), axis=-1)
    feat_a, feat_b = _split_views(local)
    num_feature_frames = local.shape[1]
    stride = self._frame_stride
    frame_index = inputs['frame_index'][:, ::stride][:, :num_feature_frames]
    frames_a, frames_b = _split_views(frame_index)
    t_a, t_b = region_frames.select_region_frames(
        frames_a, frames_b, self._region_frame, bool(training))
    boxes_a, boxes_b = _split_views(inputs['boxes'])
    masks_a, masks_b = _split_views(inputs['box_mask'])
    # Boxes of feature frame t are those of its first input frame.
    boxes_a = tf.gather(boxes_a, t_a * stride, batch_dims=1)
    boxes_b = tf.gather(boxes_b, t_b * stride, batch_dims=1)
    mask_a = tf.gather(masks_a, t_a * stride, batch_dims=1)
    mask_b = tf.gather(masks_b, t_b * stride, batch_dims=1)
    regions_a = roi.roi_pool_vectors(
        tf.gather(feat_a, t_a, batch_dims=1), boxes_a, self._roi_crop_size)
    regions_b = roi.roi_pool_vectors(
        tf.gather(feat_b, t_b, batch_dims=1), boxes_b, self._roi_crop_size)
    outputs.update({
        'regions_a': regions_a, 'regions_b': regions_b,
        'mask_a': tf.cast(mask_a, tf.float32),
        'mask_b': tf.cast(mask_b, tf.float32),
        'region_frame_a': t_a, 'region_frame_b': t_b,
        'boxes_a': boxes_a, 'boxes_b': boxes_b,
    })
    if self._local_loss == 'region':
      outputs['pred_a2b'] = self._local_head(regions_a, training=training)
      outputs['pred_b2a'] = self._local_head(regions_b, training=training)
      return outputs

    ctx_a = region_frames.context_frame_indices(t_a, num_feature_frames,
                                                self._context_length)
    ctx_b = region_frames.context_frame_indices(t_b, num_feature_frames,
                                                self._context_length)
    self._check_time_table(num_feature_frames)
    context_a = tf.gather(feat_a, ctx_a, batch_dims=1)
    context_b = tf.gather(feat_b, ctx_b, batch_dims=1)
    # The context is encoded by its offsets from the region frame, not by
    # its position in the window: near a clip end the window is shifted and
    # the region frame is not its centre frame.
    pred_a2b, attention_a2b = self._local_head(
        regions_a, boxes_a, context_b, context_offsets=ctx_b - t_b[:, None],
        training=training)
    pred_b2a, attention_b2a = self._local_head(
        regions_b, boxes_b, context_a, context_offsets=ctx_a - t_a[:, None],
        training=training)
    outputs.update({'pred_a2b': pred_a2b, 'pred_b2a': pred_b2a,
                    'context_frames_a': ctx_a, 'context_frames_b': ctx_b})
    if return_attention:
      outputs['attention_a2b'] = attention_a2b
      outputs['attention_b2a'] = attention_b2a
    return outputs

  def _check_time_table(self, num_feature_frames: int):
    """Fails unless the head encodes every context offset that can occur.

    A missing offset would read past the time table, which tf.gather
    rejects on CPU but XLA clamps silently to the last row.
    """
    encoding = self._local_head.position_encoding
    spacing = region_frames.context_spacing(num_feature_frames,
                                            self._context_length)
    needed = None if self._region_frame == 'center' else (
        region_frames.max_context_offset(num_feature_frames,
                                         self._context_length))
    if encoding.time_spacing != spacing or (
        needed is not None and (encoding.max_time_offset or 0) < needed):
      raise ValueError(
          f'the local head encodes context offsets at spacing '
          f'{encoding.time_spacing} up to {encoding.max_time_offset}, but '
          f'region_frame={self._region_frame!r} with {num_feature_frames} '
          f'feature frames and context_length={self._context_length} needs '
          f'spacing {spacing} up to {needed} (None: the centred window); '
          'build the head with build_const_cl_model')


def local_feature_key(loss_endpoints: str) -> str:
  """The backbone endpoint the local loss reads (before c4p's pooling)."""
  return '4' if loss_endpoints == 'c4p' else (
      '5r' if loss_endpoints == 'y' else '5g')


def local_feature_channels(backbone: tf_keras.Model,
                           loss_endpoints: str) -> int:
  return int(backbone.output_specs[local_feature_key(loss_endpoints)][-1])


@factory_3d.register_model_builder('const_cl')
def build_const_cl_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config,
    num_classes: int = 0,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
) -> ConstCLModel:
  """Builds `ConstCLModel` from a `configs.const_cl.ConstCLModel`."""
  del num_classes  # Self-supervised.
  norm = model_config.norm_activation
  backbone = backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=model_config.backbone,
      norm_activation_config=norm,
      l2_regularizer=l2_regularizer)
  ghead = model_config.global_head
  global_projection = global_head.GlobalProjectionHead(
      hidden_dim=ghead.hidden_dim,
      num_hidden_layers=ghead.num_hidden_layers,
      projection_dim=ghead.projection_dim,
      use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
      norm_epsilon=norm.norm_epsilon, kernel_regularizer=l2_regularizer,
      name='global_head')
  lhead = model_config.local_head
  channels = local_feature_channels(backbone, model_config.loss_endpoints)
  local_head = None
  if model_config.local_loss == 'const_cl':
    key = local_feature_key(model_config.loss_endpoints)
    num_frames = backbone.output_specs[key][1]
    if num_frames is None:
      raise ValueError('the ConST-CL head needs a static number of frames '
                       f'(input_specs {input_specs.shape})')
    # Only the random and nearest strategies can shift the context window
    # (region frame near a clip end); the centre one keeps the head's time
    # table, variables and outputs as they were.
    max_offset = None
    if model_config.region_frame != 'center':
      max_offset = region_frames.max_context_offset(num_frames,
                                                    lhead.context_length)
    local_head = const_cl_head.ConstCLHead(
        output_dim=channels, num_layers=lhead.num_layers,
        num_heads=lhead.num_heads, hidden_dim=lhead.hidden_dim,
        mlp_dim=lhead.mlp_dim, dropout_rate=lhead.dropout_rate,
        kernel_regularizer=l2_regularizer,
        time_spacing=region_frames.context_spacing(num_frames,
                                                   lhead.context_length),
        max_time_offset=max_offset, name='const_cl_head')
  elif model_config.local_loss == 'region':
    local_head = global_head.RegionMLP(
        hidden_dim=lhead.region_mlp_dim, output_dim=channels,
        use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon, kernel_regularizer=l2_regularizer,
        name='region_head')
  elif model_config.local_loss == 'dense':
    local_head = global_head.RegionMLP(
        hidden_dim=lhead.region_mlp_dim,
        output_dim=lhead.dense_projection_dim,
        use_sync_bn=norm.use_sync_bn, norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon, kernel_regularizer=l2_regularizer,
        name='dense_head')
  b = model_config.backbone.resnet_3d_y
  return ConstCLModel(
      backbone=backbone,
      global_projection=global_projection,
      local_head=local_head,
      local_loss=model_config.local_loss,
      loss_endpoints=model_config.loss_endpoints,
      region_frame=model_config.region_frame,
      context_length=lhead.context_length,
      frame_stride=b.stem_conv_temporal_stride * b.stem_pool_temporal_stride,
      roi_crop_size=lhead.roi_crop_size,
      name='const_cl_model')
