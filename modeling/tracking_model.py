"""SiamFC tracking model on the ConST-CL backbone (SPEC section 2).

Backbone adaptation. The R3D "Y" backbone is built with
`dilate_res4_res5=True`: the first blocks of res4 and res5 have spatial
stride 1 and every 3x3 conv of res4/res5 is dilated by 2, so the features are
at stride 8 (127 px -> 16x16, 255 px -> 32x32; (255 - 127) / 8 + 1 = 17x17
responses) while every variable keeps its pretraining shape: a pretraining
checkpoint restores into it unchanged. Only one res5 branch is computed:
`res5r` (instance branch, the paper's choice for tracking) by default,
`res5g` by config. The whole Y backbone stays the `backbone` checkpoint item
so `tf.train.Checkpoint(backbone=...)` reads pretraining checkpoints as they
are; the unused branch gets no gradient and is left untouched.

Clips and the centre slice. Every crop is a clip of `2c + 1` frames (the
tracked frame and c = 2 neighbours on each side). The stem conv (temporal
kernel k = 5, stride s = 2, 'same' padding) gives ceil(5 / 2) = 3 temporal
slices; 'same' pads (3 - 1) * 2 + 5 - 5 = 4 frames, 2 before, so slice t is
centred on input frame 2t: slice 0 on frame 0, slice 1 on frame 2 (the
tracked frame), slice 2 on frame 4. Later stages have temporal stride 1 and
odd 'same' kernels, so the alignment holds up to res5, and the feature of the
tracked frame is slice 1, the middle one. `centre_feature_slice` does this
arithmetic for any clip length and stem, and refuses clips whose centre frame
has no slice of its own.

Similarity. By default (`normalize_features=True`) every feature vector is
L2-normalized along channels -- the space the pretraining's local loss shaped
res5r in -- and the exemplar kernel is divided by its number of cells, so the
correlation is the mean cosine similarity over exemplar cells, in [-1, 1],
whatever the width of the backbone. Raw correlations of R3D features grow
with C x h x w (1e4 and more for the tiny toy backbone already) and make the
learnable response scale of `SiamFCHead` diverge in a few SGD steps. The head
then maps the cosine to logits (scale_init 10, bias_init -5 in the configs).

Frozen stages. `freeze_until` ('' | '2' | '3') excludes the stem and res2
(and res3) from `tracking_trainable_variables`: their gradients are the
costly part of a step on CPU (55 s vs 3 s per toy step) and early layers are
commonly kept fixed when fine-tuning a tracker backbone.

Adjust layer. An optional 1x1 conv (`adjust_channels` > 0) reduces the
channels of the centre slice before the correlation (2048 -> e.g. 256 for
R3D-50 halves the correlation cost); by default there is none and the
backbone features are correlated directly, as in the paper.
"""
import math
from typing import Any, Dict, Mapping, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.modeling.backbones import factory as backbone_factory

from modeling.backbones import branch_loading
from modeling.heads import siamfc

TOTAL_STRIDE = 8
FEATURE_ENDPOINTS = ('5r', '5g')


def _same_centres(num_inputs: int, kernel: int, stride: int) -> np.ndarray:
  """Input index at the centre of each output of a 'same' 1-D window op."""
  num_outputs = math.ceil(num_inputs / stride)
  pad_total = max((num_outputs - 1) * stride + kernel - num_inputs, 0)
  pad_before = pad_total // 2
  return np.arange(num_outputs) * stride - pad_before + (kernel - 1) // 2


def centre_feature_slice(num_frames: int,
                         stem_conv_temporal_kernel_size: int = 5,
                         stem_conv_temporal_stride: int = 2,
                         stem_pool_temporal_stride: int = 1) -> int:
  """Index of the feature slice centred on the middle input frame.

  Args:
    num_frames: Input clip length (odd).
    stem_conv_temporal_kernel_size: Temporal kernel of the stem conv.
    stem_conv_temporal_stride: Temporal stride of the stem conv.
    stem_pool_temporal_stride: Temporal stride of the stem pool (its temporal
      kernel is 1 when the stride is 1, else 3, as in `ResNet3DY`).

  Returns:
    The slice index t of res4/res5 whose receptive field is centred on input
    frame `num_frames // 2` (1 for 5 frames and the R3D stem).

  Raises:
    ValueError: if no slice is centred on the middle frame.
  """
  if num_frames < 1 or num_frames % 2 == 0:
    raise ValueError(f'num_frames must be odd and >= 1, got {num_frames}')
  conv = _same_centres(num_frames, stem_conv_temporal_kernel_size,
                       stem_conv_temporal_stride)
  pool_kernel = 1 if stem_pool_temporal_stride == 1 else 3
  pool = _same_centres(len(conv), pool_kernel, stem_pool_temporal_stride)
  # Centre of pool output j in input frames (a pool window of 3 conv outputs
  # has the middle one as centre; a padded edge window is off-centre anyway).
  centres = conv[np.clip(pool, 0, len(conv) - 1)]
  middle = num_frames // 2
  hits = np.flatnonzero(centres == middle)
  if not hits.size:
    raise ValueError(
        f'no feature slice is centred on frame {middle} of a {num_frames}-'
        f'frame clip (stem temporal kernel {stem_conv_temporal_kernel_size}, '
        f'strides {stem_conv_temporal_stride}/{stem_pool_temporal_stride}; '
        f'slice centres {centres.tolist()}): use a clip with context frames '
        'a multiple of the temporal stride')
  return int(hits[0])


class SiamFCTrackingModel(tf_keras.Model):
  """Adapted (dilated) backbone branch + optional adjust conv + SiamFC head.

  `call({'exemplar': [B, T, z, z, 3], 'search': [B, T, x, x, 3]})` returns
  response logits `[B, r, r, 1]`, r = (x - z) / 8 + 1. `embed(clips)` gives
  the centre-slice features `[B, h, w, C]` (the tracker's `embed_fn`), and
  `response(exemplar_feat, search_feat)` the head's logits.
  """

  def __init__(self,
               backbone: tf_keras.Model,
               head: Optional[tf_keras.layers.Layer] = None,
               feature_endpoint: str = '5r',
               num_frames: int = 5,
               centre_slice: int = 1,
               adjust_channels: int = 0,
               exemplar_size: int = 127,
               search_size: int = 255,
               normalize_features: bool = True,
               freeze_until: str = '',
               **kwargs):
    """Initializes the model.

    Args:
      backbone: A `ResNet3DY` built with `dilate_res4_res5=True` (any input
        spatial size, 3 channels).
      head: The `SiamFCHead`; a default one when None.
      feature_endpoint: '5r' or '5g', the branch whose features are used.
      num_frames: Frames per input clip.
      centre_slice: Temporal feature slice of the centre frame (see
        `centre_feature_slice`).
      adjust_channels: Output channels of a 1x1 conv on the centre slice;
        0 for none.
      exemplar_size: Exemplar crop side the model is trained with.
      search_size: Search crop side the model is trained with.
      normalize_features: L2-normalize features and average the correlation
        over exemplar cells (see module docstring).
      freeze_until: '' (train everything), '2' (stem and res2 frozen) or
        '3' (up to res3 frozen).
      **kwargs: Passed to `tf_keras.Model`.
    """
    super().__init__(**kwargs)
    if feature_endpoint not in FEATURE_ENDPOINTS:
      raise ValueError(f'feature_endpoint must be one of {FEATURE_ENDPOINTS}, '
                       f'got {feature_endpoint!r}')
    if not 0 <= centre_slice < num_frames:
      raise ValueError(f'centre_slice ({centre_slice}) outside the '
                       f'{num_frames}-frame clip')
    siamfc.response_size(exemplar_size, search_size, TOTAL_STRIDE)
    self._backbone = backbone
    # A functional sub-model over the same layers: only the path to the
    # chosen endpoint is computed (the other res5 branch is skipped).
    self._branch = tf_keras.Model(backbone.inputs,
                                  backbone.output[feature_endpoint],
                                  name=f'branch_{feature_endpoint}')
    self._head = head if head is not None else siamfc.SiamFCHead(
        name='siamfc_head')
    self._adjust = None
    if adjust_channels:
      self._adjust = tf_keras.layers.Conv2D(
          adjust_channels, 1, use_bias=True, name='adjust')
    self._frozen_ids = branch_loading.frozen_variable_ids(backbone,
                                                          freeze_until)
    self._normalize_features = normalize_features
    self._feature_endpoint = feature_endpoint
    self._num_frames = num_frames
    self._centre_slice = centre_slice
    self.exemplar_size = exemplar_size
    self.search_size = search_size
    self.context_frames = num_frames // 2
    self.total_stride = TOTAL_STRIDE

  @property
  def backbone(self) -> tf_keras.Model:
    return self._backbone

  @property
  def head(self) -> tf_keras.layers.Layer:
    return self._head

  @property
  def checkpoint_items(self) -> Mapping[str, Any]:
    """Backbone (restorable from pretraining) plus the tracking layers."""
    items = dict(backbone=self._backbone, head=self._head)
    if self._adjust is not None:
      items['adjust'] = self._adjust
    return items

  @property
  def tracking_trainable_variables(self):
    """Trainable variables minus the frozen stages and the unused branch.

    The other res5 branch is not on the path to `feature_endpoint`: it gets
    no gradient from the loss, and left in this list it would still get the
    weight decay's (`tasks.tracking.kernel_l2`), shrinking the pretrained
    branch that the module docstring says stays as it is.
    """
    on_path = {id(v) for v in self._branch.trainable_variables}
    off_path = {id(v) for v in self._backbone.trainable_variables
                if id(v) not in on_path}
    return [v for v in self.trainable_variables
            if id(v) not in self._frozen_ids and id(v) not in off_path]

  def embed(self, clips: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Centre-frame features of clips.

    Args:
      clips: `[B, T, S, S, 3]` in [0, 1], the tracked frame in the middle.
      training: Batch-norm mode.

    Returns:
      `[B, ceil(S / 8), ceil(S / 8), C]` features.
    """
    clips = tf.convert_to_tensor(clips)
    if clips.shape.rank != 5 or (clips.shape[1] is not None and
                                 clips.shape[1] != self._num_frames):
      raise ValueError(f'embed expects clips [B, {self._num_frames}, S, S, 3],'
                       f' got {clips.shape}')
    features = self._branch(clips, training=training)
    features = features[:, self._centre_slice]
    if self._adjust is not None:
      features = self._adjust(features)
    if self._normalize_features:
      features = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1)
    return features

  def _logits(self, exemplar_feat, search_feat):
    if self._normalize_features:
      cells = tf.cast(tf.shape(exemplar_feat)[1] * tf.shape(exemplar_feat)[2],
                      exemplar_feat.dtype)
      exemplar_feat = exemplar_feat / cells
    return self._head([exemplar_feat, search_feat])

  def response(self, exemplar_feat: tf.Tensor,
               search_feat: tf.Tensor) -> tf.Tensor:
    """Head logits `[B, r, r, 1]`; a `[1, ...]` exemplar broadcasts."""
    exemplar_feat = tf.convert_to_tensor(exemplar_feat)
    search_feat = tf.convert_to_tensor(search_feat, exemplar_feat.dtype)
    num = tf.shape(search_feat)[0]
    exemplar_feat = tf.broadcast_to(
        exemplar_feat,
        tf.concat([[num], tf.shape(exemplar_feat)[1:]], axis=0))
    return self._logits(exemplar_feat, search_feat)

  def call(self, inputs: Mapping[str, tf.Tensor],
           training=None) -> Dict[str, tf.Tensor]:
    exemplar = self.embed(inputs['exemplar'], training=training)
    search = self.embed(inputs['search'], training=training)
    return {'logits': self._logits(exemplar, search)}


@factory_3d.register_model_builder('const_cl_siamfc')
def build_siamfc_tracking_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config,
    num_classes: int = 0,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None
) -> SiamFCTrackingModel:
  """Builds `SiamFCTrackingModel` from a `configs.tracking.SiamFCModel`.

  Args:
    input_specs: Ignored spatially: the backbone accepts any crop size.
    model_config: A `configs.tracking.SiamFCModel`.
    num_classes: Unused.
    l2_regularizer: Kernel regularizer of the backbone convs, or None.

  Returns:
    The model (variables not yet created).
  """
  del num_classes, input_specs
  if not model_config.backbone.resnet_3d_y.dilate_res4_res5:
    raise ValueError('build_siamfc_tracking_model: the backbone must be '
                     'dilated (resnet_3d_y.dilate_res4_res5=True)')
  backbone = backbone_factory.build_backbone(
      input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, None, 3]),
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation,
      l2_regularizer=l2_regularizer)
  b = model_config.backbone.resnet_3d_y
  crops = model_config.crops
  num_frames = 2 * crops.context_frames + 1
  centre = centre_feature_slice(num_frames, b.stem_conv_temporal_kernel_size,
                                b.stem_conv_temporal_stride,
                                b.stem_pool_temporal_stride)
  head = siamfc.SiamFCHead(scale_init=model_config.head_scale_init,
                           bias_init=model_config.head_bias_init,
                           name='siamfc_head')
  return SiamFCTrackingModel(
      backbone=backbone, head=head,
      feature_endpoint=model_config.feature_endpoint,
      num_frames=num_frames, centre_slice=centre,
      adjust_channels=model_config.adjust_channels,
      exemplar_size=crops.exemplar_size, search_size=crops.search_size,
      normalize_features=model_config.normalize_features,
      freeze_until=model_config.freeze_until,
      name='siamfc_tracking_model')
