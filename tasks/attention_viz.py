"""Attention maps of the ConST-CL head (paper Appendix D, Figure 4).

A region of view a queries the context frames of view b through the decoder;
the attention of one query, averaged over heads, is a distribution over the
L*H'*W' context tokens (it sums to 1 over the whole frame set, not per
frame). It is upsampled to the frame size, renormalized so the drawn array
still sums to 1 over the set, and drawn over the context frames next to the
source frame with its box.

Two ways to make the clip pair:
  * `center` (default, clearest): both views are centre crops (shorter side
    resized to the crop size); view a starts at frame `start_a`, view b
    `view_offset` frames later.
  * `parser`: the pretraining parser (random crops, flips, colour) with a
    fixed seed.

Also here: `region_summary_images`, the sampled regions drawn on frames for
TensorBoard image summaries during pretraining.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg

from configs import const_cl as exp_cfg
from dataloaders import ssl_parser
from dataloaders import video_records
from modeling.layers import region_frames
from tasks import features as features_lib

VIEW_MODES = ('center', 'parser')
# Figure layout: 2 rows x (1 + L) columns of square panels.
PANEL_INCHES = 2.0
TITLE_INCHES = 0.25  # band above the panels for the figure title
DEFAULT_DPI = 100
_BOX_COLORS = ((1.0, 0.2, 0.2), (0.2, 1.0, 0.2), (0.3, 0.5, 1.0),
               (1.0, 1.0, 0.2), (1.0, 0.3, 1.0), (0.2, 1.0, 1.0),
               (1.0, 0.6, 0.1), (1.0, 1.0, 1.0))


@dataclasses.dataclass
class ClipPair:
  """Two views of one video, model-ready.

  Attributes:
    images: float32 [2, T, S, S, 3] in [0, 1], view a first.
    frame_index: int32 [2, T] source frame of every frame.
    box: float32 [4] the query box in view-a coordinates.
    box_source: where the box came from ('flag', 'record', 'center').
    video_id: the record's `clip/id` (or '').
  """
  images: np.ndarray
  frame_index: np.ndarray
  box: np.ndarray
  box_source: str
  video_id: str


@dataclasses.dataclass
class AttentionResult:
  """What the picture is drawn from.

  Attributes:
    attention: float32 [L, H', W'] head-averaged attention of the query over
      the context tokens (sums to 1).
    heat: float32 [L, S, S] `attention` upsampled to the frame size,
      renormalized to sum to 1 over the frame set.
    source_frame: float32 [S, S, 3] view a's region frame.
    context_images: float32 [L, S, S, 3] view b's context frames.
    box: float32 [4] the query box (view a, normalized).
    region_frame_a: feature-frame index of the source frame.
    context_frames_b: int [L] feature-frame indices of the context frames.
    source_frame_index: source-video frame of the source frame.
    context_source_index: int [L] source-video frames of the context frames.
    layer: the decoder layer drawn (non-negative index).
  """
  attention: np.ndarray
  heat: np.ndarray
  source_frame: np.ndarray
  context_images: np.ndarray
  box: np.ndarray
  region_frame_a: int
  context_frames_b: np.ndarray
  source_frame_index: int
  context_source_index: np.ndarray
  layer: int


def parse_box(text: str) -> np.ndarray:
  """'ymin,xmin,ymax,xmax' (normalized) -> float32 [4], validated."""
  try:
    box = np.array([float(v) for v in text.split(',')], np.float32)
  except ValueError as e:
    raise ValueError(f'--box {text!r}: expected 4 comma-separated numbers') \
        from e
  if box.shape != (4,):
    raise ValueError(f'--box {text!r}: expected ymin,xmin,ymax,xmax, got '
                     f'{box.size} numbers')
  if not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
    raise ValueError(f'--box {text!r}: need 0 <= ymin < ymax <= 1 and '
                     '0 <= xmin < xmax <= 1 (normalized view-a coordinates)')
  return box


def centered_box(fraction: float = 0.5) -> np.ndarray:
  lo, hi = (1 - fraction) / 2, (1 + fraction) / 2
  return np.array([lo, lo, hi, hi], np.float32)


def read_record(pattern: str, index: int) -> bytes:
  """The serialized record number `index` of the files matching `pattern`."""
  files = video_records.match_tfrecord_files(pattern, '--input_pattern')
  if index < 0:
    raise ValueError(f'--video_index must be >= 0, got {index}')
  count = 0
  for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
    if count == index:
      return serialized
    count += 1
  raise ValueError(f'--video_index {index} is out of range: {pattern!r} '
                   f'holds {count} records')


def region_frame_indices(frame_index: np.ndarray, frame_stride: int,
                         strategy: str) -> Tuple[int, int]:
  """The model's region feature frames (t_a, t_b) for this clip pair."""
  num_feature_frames = frame_index.shape[1] // frame_stride
  fi = frame_index[:, ::frame_stride][:, :num_feature_frames]
  t_a, t_b = region_frames.select_region_frames(
      tf.constant(fi[:1]), tf.constant(fi[1:]), strategy, training=False)
  return int(t_a.numpy()[0]), int(t_b.numpy()[0])


def make_center_pair(serialized: bytes, num_frames: int, stride: int,
                     crop_size: int, frame_stride: int, region_frame: str,
                     box: Optional[np.ndarray] = None, box_index: int = 0,
                     start_a: int = 0,
                     view_offset: Optional[int] = None) -> ClipPair:
  """Two centre-cropped views of a record; the box from flag/record/centre.

  Args:
    serialized: one video SequenceExample.
    num_frames: T.
    stride: temporal stride.
    crop_size: S.
    frame_stride: input frames per backbone feature frame.
    region_frame: the model's region-frame strategy.
    box: the query box in view-a coordinates, or None to take the record's
      box number `box_index` at view a's region frame (else a centred box).
    box_index: which record box.
    start_a: first source frame of view a.
    view_offset: source frames between the starts of views a and b (default
      half a clip, T * stride // 2: the views overlap by half).

  Returns:
    A `ClipPair`.
  """
  record = video_records.read_sequence_example(serialized)
  name = record['video_id'] or ''
  if not record['frames']:
    raise ValueError(f'video {name!r} has no frames')
  frames = features_lib.decode_jpeg_frames(record['frames'])
  length, height, width = frames.shape[:3]
  if view_offset is None:
    view_offset = num_frames * stride // 2
  starts = np.array([start_a, start_a + view_offset])
  frame_index = np.mod(starts[:, None] + stride * np.arange(num_frames)[None],
                       length).astype(np.int32)
  images = np.stack([
      features_lib.resize_and_center_crop(frames[fi], crop_size)
      for fi in frame_index]).astype(np.float32) / 255.0
  source = 'flag'
  if box is None:
    t_a, _ = region_frame_indices(frame_index, frame_stride, region_frame)
    src_frame = frame_index[0, t_a * frame_stride]
    source, box = 'center', centered_box()
    if record['boxes'] is not None:
      cand, valid = features_lib.crop_boxes(record['boxes'][src_frame],
                                            height, width, crop_size)
      cand = cand[valid]
      if len(cand):
        if not 0 <= box_index < len(cand):
          raise ValueError(f'--box_index {box_index} out of range: video '
                           f'{name!r} has {len(cand)} boxes at frame '
                           f'{src_frame}')
        source, box = 'record', cand[box_index]
  return ClipPair(images, frame_index, np.asarray(box, np.float32), source,
                  name)


def make_parser_pair(serialized: bytes, num_frames: int, stride: int,
                     crop_size: int, num_boxes: int, frame_stride: int,
                     region_frame: str, box: Optional[np.ndarray] = None,
                     box_index: int = 0, seed: int = 0) -> ClipPair:
  """Two views through the pretraining parser with a fixed seed.

  The record's boxes (when it has some) go through the same crop and flip
  ('detector' region source); without `box`, valid box number `box_index` at
  view a's region frame is the query, else a centred box.
  """
  decoded = ssl_parser.Decoder(read_boxes=True).decode(tf.constant(serialized))
  has_boxes = int(tf.shape(decoded['boxes'])[0]) > 0
  parser = ssl_parser.Parser(
      num_frames=num_frames, stride=stride, crop_size=crop_size,
      num_boxes=num_boxes,
      region_source='detector' if has_boxes else 'random')
  try:
    example = parser.parse(decoded, tf.constant([seed, 0], tf.int64))
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(f'the parser refused video '
                     f'{decoded["video_id"].numpy()!r}: '
                     f'{str(e).splitlines()[0]}') from e
  images = example['image'].numpy().astype(np.float32)
  frame_index = example['frame_index'].numpy()
  source = 'flag'
  if box is None:
    source, box = 'center', centered_box()
    if has_boxes:
      t_a, _ = region_frame_indices(frame_index, frame_stride, region_frame)
      frame = t_a * frame_stride
      boxes = example['boxes'].numpy()[0, frame]
      valid = example['box_mask'].numpy()[0, frame] > 0
      cand = boxes[valid]
      if len(cand):
        if not 0 <= box_index < len(cand):
          raise ValueError(f'--box_index {box_index} out of range: '
                           f'{len(cand)} valid boxes in view a')
        source, box = 'record', cand[box_index]
  return ClipPair(images, frame_index, np.asarray(box, np.float32), source,
                  decoded['video_id'].numpy().decode('utf-8'))


def model_inputs(pair: ClipPair, num_boxes: int) -> Dict[str, tf.Tensor]:
  """The model's input dict for one clip pair (batch of one video).

  Every box slot of every frame of view a holds the query box, so whichever
  frame the model picks as the region frame pools it; view b gets a centred
  box (its regions are not drawn).
  """
  t = pair.images.shape[1]
  boxes = np.empty((2, t, num_boxes, 4), np.float32)
  boxes[0] = pair.box
  boxes[1] = centered_box()
  return {
      'image': tf.constant(pair.images),
      'boxes': tf.constant(boxes),
      'box_mask': tf.ones([2, t, num_boxes]),
      'frame_index': tf.constant(pair.frame_index, tf.int32),
  }


def upsample_heat(attention: np.ndarray, size: int) -> np.ndarray:
  """[L, h, w] distribution -> [L, size, size], bilinear, sums to 1 again.

  Renormalizing keeps the drawn map a distribution over the whole frame set
  (pixel areas are equal, so each frame's share stays close to its tokens').
  """
  att = tf.constant(attention[..., None], tf.float32)
  up = tf.image.resize(att, [size, size], method='bilinear')[..., 0].numpy()
  up = np.maximum(up, 0.0)
  total = up.sum()
  if not np.isfinite(total) or total <= 0:
    raise ValueError(f'attention map has no mass (sum {total})')
  return (up / total).astype(np.float32)


def compute_attention(model: tf_keras.Model, pair: ClipPair, num_boxes: int,
                      frame_stride: int, layer: int = -1) -> AttentionResult:
  """Runs the model on a clip pair and takes the query's a->b attention.

  Args:
    model: a `ConstCLModel` with `local_loss='const_cl'`.
    pair: the clip pair.
    num_boxes: N box slots of the model input.
    frame_stride: input frames per backbone feature frame.
    layer: decoder layer (Python indexing: -1 = last).

  Returns:
    An `AttentionResult`.
  """
  if getattr(model, 'local_loss', 'const_cl') != 'const_cl':
    raise ValueError(f'attention maps need a model with local_loss=const_cl, '
                     f'got {model.local_loss!r}')
  outputs = model(model_inputs(pair, num_boxes), training=False,
                  return_attention=True)
  layers = outputs['attention_a2b']
  if not -len(layers) <= layer < len(layers):
    raise ValueError(f'--layer {layer} out of range: the head has '
                     f'{len(layers)} decoder layers')
  layer = layer % len(layers)
  scores = layers[layer].numpy()  # [1, heads, N, L*h*w]
  context = outputs['context_frames_b'].numpy()[0]
  t_a = int(outputs['region_frame_a'].numpy()[0])
  # Frames are square, so are the feature maps: h = w = sqrt(tokens/frame).
  per_frame = scores.shape[-1] // len(context)
  side = int(round(np.sqrt(per_frame)))
  if side * side * len(context) != scores.shape[-1]:
    raise ValueError(f'{scores.shape[-1]} attention tokens are not '
                     f'{len(context)} square frames')
  attention = scores[0, :, 0].mean(axis=0).reshape(len(context), side, side)
  size = pair.images.shape[2]
  heat = upsample_heat(attention, size)
  return AttentionResult(
      attention=attention.astype(np.float32), heat=heat,
      source_frame=pair.images[0, t_a * frame_stride],
      context_images=pair.images[1, context * frame_stride],
      box=pair.box, region_frame_a=t_a, context_frames_b=context,
      source_frame_index=int(pair.frame_index[0, t_a * frame_stride]),
      context_source_index=pair.frame_index[1, context * frame_stride],
      layer=layer)


def figure_pixel_size(num_context_frames: int,
                      panel_inches: float = PANEL_INCHES,
                      dpi: int = DEFAULT_DPI) -> Tuple[int, int]:
  """(width, height) in pixels of `draw_attention`'s PNG."""
  cols, rows = 1 + num_context_frames, 2
  return (int(round(cols * panel_inches * dpi)),
          int(round((rows * panel_inches + TITLE_INCHES) * dpi)))


def draw_attention(result: AttentionResult, path: str, title: str = '',
                   panel_inches: float = PANEL_INCHES,
                   dpi: int = DEFAULT_DPI) -> Tuple[int, int]:
  """Writes the picture; returns its (width, height) in pixels.

  Layout, 2 rows x (1 + L) square panels: top, the source frame (view a)
  with the query box, then view b's L context frames; bottom, the box
  zoomed in, then the heat maps over the context frames (one colour scale
  for the whole set; each panel's title gives its share of the attention).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  num = result.heat.shape[0]
  cols, rows = 1 + num, 2
  height = rows * panel_inches + TITLE_INCHES
  fig = plt.figure(figsize=(cols * panel_inches, height), dpi=dpi)
  panels_top = rows * panel_inches / height  # figure fraction
  margin_top = 0.16  # of a panel, for its title
  pad = 0.03

  def panel(row, col):
    x0 = col / cols + pad / cols
    y0 = panels_top * (1 - (row + 1) / rows + pad / rows)
    ax = fig.add_axes([x0, y0, (1 - 2 * pad) / cols,
                       panels_top * (1 - margin_top - pad) / rows])
    ax.set_xticks([])
    ax.set_yticks([])
    return ax

  size = result.source_frame.shape[0]
  ymin, xmin, ymax, xmax = (np.asarray(result.box) * size).tolist()
  ax = panel(0, 0)
  ax.imshow(np.clip(result.source_frame, 0, 1))
  ax.add_patch(patches.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin,
                                 ymax - ymin, fill=False, edgecolor='red',
                                 linewidth=2))
  ax.set_title(f'view a, frame {result.source_frame_index}', fontsize=8)
  ax = panel(1, 0)
  top, left = int(np.floor(ymin)), int(np.floor(xmin))
  bottom = max(int(np.ceil(ymax)), top + 1)
  right = max(int(np.ceil(xmax)), left + 1)
  ax.imshow(np.clip(result.source_frame[top:bottom, left:right], 0, 1),
            interpolation='nearest')
  ax.set_title('query region', fontsize=8)
  vmax = float(result.heat.max())
  for i in range(num):
    ax = panel(0, 1 + i)
    ax.imshow(np.clip(result.context_images[i], 0, 1))
    ax.set_title(f'view b, frame {int(result.context_source_index[i])}',
                 fontsize=8)
    ax = panel(1, 1 + i)
    ax.imshow(np.clip(result.context_images[i], 0, 1))
    ax.imshow(result.heat[i], cmap='jet', alpha=0.55, vmin=0.0, vmax=vmax)
    ax.set_title(f'attention {float(result.heat[i].sum()):.2f}', fontsize=8)
  if title:
    fig.text(0.5, 1 - 0.5 * TITLE_INCHES / height, title, ha='center',
             va='center', fontsize=8)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return figure_pixel_size(num, panel_inches, dpi)


def visualize(params: cfg.ExperimentConfig, model: tf_keras.Model,
              input_pattern: str, output: str, video_index: int = 0,
              box: Optional[np.ndarray] = None, box_index: int = 0,
              layer: int = -1, views: str = 'center', seed: int = 0,
              view_offset: Optional[int] = None,
              dpi: int = DEFAULT_DPI) -> AttentionResult:
  """Draws the attention picture of one video of `input_pattern`.

  Clip size, stride and box slots are the experiment's training values.

  Returns:
    The `AttentionResult` the picture was drawn from.
  """
  if views not in VIEW_MODES:
    raise ValueError(f'--views must be one of {VIEW_MODES}, got {views!r}')
  data = params.task.train_data
  num_frames, crop_size = data.feature_shape[0], data.feature_shape[1]
  frame_stride = exp_cfg.backbone_frame_stride(params.task.model)
  serialized = read_record(input_pattern, video_index)
  if views == 'center':
    pair = make_center_pair(serialized, num_frames, data.temporal_stride,
                            crop_size, frame_stride,
                            params.task.model.region_frame, box, box_index,
                            view_offset=view_offset)
  else:
    pair = make_parser_pair(serialized, num_frames, data.temporal_stride,
                            crop_size, data.num_boxes, frame_stride,
                            params.task.model.region_frame, box, box_index,
                            seed)
  result = compute_attention(model, pair, data.num_boxes, frame_stride, layer)
  title = (f'{pair.video_id or f"video {video_index}"}: decoder layer '
           f'{result.layer}, heads averaged, box from {pair.box_source}')
  draw_attention(result, output, title=title, dpi=dpi)
  return result


def region_summary_images(images: tf.Tensor, boxes: tf.Tensor,
                          mask: tf.Tensor) -> tf.Tensor:
  """Frames with their valid region boxes drawn, for image summaries.

  Args:
    images: float [B, H, W, 3] in [0, 1] (or [B, T, H, W, 3] with per-frame
      boxes [B, T, N, 4]; time is folded into the batch).
    boxes: float [B, N, 4] normalized [ymin, xmin, ymax, xmax].
    mask: [B, N], > 0 for valid boxes; invalid boxes are not drawn.

  Returns:
    uint8 [B, H, W, 3] (or [B*T, H, W, 3]), box n in colour n (cycled).
  """
  images = tf.convert_to_tensor(images)
  if images.shape.rank == 5:
    images = tf.reshape(images, [-1] + images.shape[2:].as_list())
    boxes = tf.reshape(boxes, [-1] + boxes.shape[2:].as_list())
    mask = tf.reshape(mask, [-1, mask.shape[-1]])
  images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
  boxes = tf.cast(boxes, tf.float32)
  valid = tf.cast(mask, tf.float32) > 0
  for n in range(boxes.shape[1]):
    # One box at a time so invalid boxes can be left out per image
    # (draw_bounding_boxes has no mask, and padded zero boxes would draw a
    # dot in the corner).
    color = tf.constant([_BOX_COLORS[n % len(_BOX_COLORS)]], tf.float32)
    drawn = tf.image.draw_bounding_boxes(images, boxes[:, n:n + 1], color)
    images = tf.where(valid[:, n, None, None, None], drawn, images)
  return tf.image.convert_image_dtype(images, tf.uint8, saturate=True)
