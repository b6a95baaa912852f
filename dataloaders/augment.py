"""CVRL spatial augmentations for one view of a video, drawn once per view.

The augmentation distribution follows the CVRL implementation in Model Garden
(`official/projects/video_ssl/dataloaders/video_ssl_input.py` and
`official/projects/video_ssl/ops/video_ssl_preprocess_ops.py`), applied with
the same parameters to every frame of a view:

  1. random resized crop: `tf.image.sample_distorted_bounding_box` semantics,
     area in [0.3, 1.0] of the frame, aspect ratio (w/h) in [0.5, 2.0]
     (video_ssl's values), min_object_covered 0.1, 100 attempts, whole frame
     as the fallback; then a bilinear resize to `crop_size`.
  2. horizontal flip, p 0.5.
  3. colour jitter, p 0.8, strength 1.0: brightness factor U[0.2, 1.8]
     (multiplicative), contrast U[0.2, 1.8], saturation U[0.2, 1.8], hue delta
     U[-0.2, 0.2] (fraction of a full turn), in a random order.
  4. grayscale, p 0.2 (after the jitter).
  5. Gaussian blur, sigma U[0.1, 2.0], kernel `crop_size // 10` (made odd),
     zero ('SAME') padding. video_ssl uses p 1.0 on view 0 and p 0.1 on
     view 1 (the BYOL asymmetry), our defaults.
  6. solarization (x -> 1 - x where x >= 0.5): view 1 only, p 0.2.

All random numbers are drawn first, statelessly from a per-view seed, into a
small dict of scalars (`draw_view_params`). Two renderings consume the dict:

* `augment_view_plain`: the reference. Decode full frames, crop, resize,
  per-op colour jitter with `tf.image` ops (HSV saturation/hue) in the drawn
  order with clipping after every op, exactly as video_ssl does.
* `augment_view_fast`: the production path. Decodes only the crop window
  (`tf.image.decode_and_crop_jpeg`), resizes once to the output size, and
  applies the whole colour jitter + grayscale + the 1/255 scaling as ONE
  3x3 matrix and offset per pixel:
    - brightness b: x -> b x;
    - contrast c: x -> c x + (1 - c) mean(x) (per-channel mean over the whole
      clip, as `tf.image.adjust_contrast` on the stacked clip in video_ssl);
    - saturation s: blend with the luma (x -> s x + (1 - s) Y(x)), i.e. the
      I and Q components of YIQ scaled by s;
    - hue h: rotation of (I, Q) by 2 pi h in YIQ space;
    - grayscale: x -> Y(x) on all three channels.
  Without intermediate clipping these maps all commute (each is linear and
  the contrast offset is the mean carried through the same linear map), so
  the drawn random order does not change the fused result; the order only
  mattered in CVRL through the clipping between ops, which the fused path
  applies once at the end. Saturation/hue are the linear YIQ forms (the
  torchvision/SimCLR-PyTorch saturation), not TF's HSV ones: same parameter
  distribution, slightly different pixel mapping (quantified in the tests).
  The blur uses separable 1-D kernels truncated at `blur_truncate` sigmas
  (the dropped tail weighs < 1e-4 at 4 sigma) instead of the fixed
  `crop_size // 10` kernel, and is computed only when drawn.
"""
import math
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from dataloaders import example_seeds

# Luma weights of `tf.image.rgb_to_grayscale`; the YIQ luma row is the same
# up to rounding, so saturation, hue and grayscale share one gray axis.
_GRAY = np.array([0.2989, 0.5870, 0.1140], np.float64)
_RGB_TO_YIQ = np.array([_GRAY,
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


_fold = example_seeds.fold


def draw_view_params(seed: tf.Tensor,
                     image_height: tf.Tensor,
                     image_width: tf.Tensor,
                     *,
                     min_area: float = 0.3,
                     max_area: float = 1.0,
                     min_aspect: float = 0.5,
                     max_aspect: float = 2.0,
                     flip_prob: float = 0.5,
                     color_jitter_prob: float = 0.8,
                     color_jitter_strength: float = 1.0,
                     grayscale_prob: float = 0.2,
                     blur_prob: float = 0.5,
                     solarize_prob: float = 0.0) -> Dict[str, tf.Tensor]:
  """Draws every random number of one view's augmentation.

  Args:
    seed: int [2] stateless seed of this view.
    image_height: source frame height (pixels).
    image_width: source frame width (pixels).
    min_area: smallest crop area, fraction of the frame.
    max_area: largest crop area.
    min_aspect: smallest crop aspect ratio (width / height).
    max_aspect: largest crop aspect ratio.
    flip_prob: probability of a horizontal flip.
    color_jitter_prob: probability of the colour jitter.
    color_jitter_strength: CVRL colour strength s (brightness, contrast,
      saturation 0.8 s; hue 0.2 s).
    grayscale_prob: probability of the grayscale conversion.
    blur_prob: probability of the Gaussian blur.
    solarize_prob: probability of the solarization.

  Returns:
    dict of scalars: `crop_y, crop_x, crop_h, crop_w` (int32 pixels),
    `flip, jitter, grayscale, blur, solarize` (bool), `brightness, contrast,
    saturation, hue, blur_sigma` (float32), and `jitter_order` (int32 [4], a
    permutation of brightness, contrast, saturation, hue; used by the plain
    path only).
  """
  seed = tf.cast(seed, tf.int64)
  size = tf.stack([tf.cast(image_height, tf.int32),
                   tf.cast(image_width, tf.int32), tf.constant(3)])
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      size, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=_fold(seed, 1), min_object_covered=0.1,
      aspect_ratio_range=(min_aspect, max_aspect),
      area_range=(min_area, max_area), max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  u = tf.random.stateless_uniform([10], seed=_fold(seed, 2))
  strength = color_jitter_strength
  b_lo, b_hi = max(1.0 - 0.8 * strength, 0.0), 1.0 + 0.8 * strength
  c_lo, c_hi = 1.0 - 0.8 * strength, 1.0 + 0.8 * strength
  hue_max = 0.2 * strength
  order = tf.argsort(tf.random.stateless_uniform([4], seed=_fold(seed, 3)))
  return {
      'crop_y': begin[0],
      'crop_x': begin[1],
      'crop_h': crop_size[0],
      'crop_w': crop_size[1],
      'flip': u[0] < flip_prob,
      'jitter': u[1] < color_jitter_prob,
      'brightness': b_lo + (b_hi - b_lo) * u[2],
      'contrast': c_lo + (c_hi - c_lo) * u[3],
      'saturation': c_lo + (c_hi - c_lo) * u[4],
      'hue': -hue_max + 2.0 * hue_max * u[5],
      'jitter_order': tf.cast(order, tf.int32),
      'grayscale': u[6] < grayscale_prob,
      'blur': u[7] < blur_prob,
      'blur_sigma': 0.1 + 1.9 * u[8],
      'solarize': u[9] < solarize_prob,
  }


def crop_window(params: Dict[str, tf.Tensor], image_height: tf.Tensor,
                image_width: tf.Tensor) -> tf.Tensor:
  """The crop as a normalized [y0, x0, y1, x1] window of the source frame."""
  h = tf.cast(image_height, tf.float32)
  w = tf.cast(image_width, tf.float32)
  y0 = tf.cast(params['crop_y'], tf.float32)
  x0 = tf.cast(params['crop_x'], tf.float32)
  return tf.stack([y0 / h, x0 / w,
                   (y0 + tf.cast(params['crop_h'], tf.float32)) / h,
                   (x0 + tf.cast(params['crop_w'], tf.float32)) / w])


def blur_kernel_radius(crop_size: int) -> int:
  """CVRL's blur radius: kernel_size = crop_size // 10, radius = half of it."""
  return (crop_size // 10) // 2


def _gaussian_blur(frames: tf.Tensor, sigma: tf.Tensor,
                   radius: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian blur of [T, H, W, 3] frames, zero ('SAME') padding."""
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  k = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
  k /= tf.reduce_sum(k)
  taps = 2 * radius + 1
  channels = 3
  k_h = tf.tile(tf.reshape(k, [1, taps, 1, 1]), [1, 1, channels, 1])
  k_v = tf.tile(tf.reshape(k, [taps, 1, 1, 1]), [1, 1, channels, 1])
  out = tf.nn.depthwise_conv2d(frames, k_h, [1, 1, 1, 1], 'SAME')
  return tf.nn.depthwise_conv2d(out, k_v, [1, 1, 1, 1], 'SAME')


def _solarize(frames: tf.Tensor) -> tf.Tensor:
  return tf.where(frames < 0.5, frames, 1.0 - frames)


def color_matrix(params: Dict[str, tf.Tensor],
                 channel_mean: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """The fused colour jitter + grayscale as `y = x @ matrix + offset`.

  Args:
    params: drawn view parameters (`jitter`, `brightness`, `contrast`,
      `saturation`, `hue`, `grayscale`).
    channel_mean: float32 [3], per-channel mean of the input clip (same units
      as the input x).

  Returns:
    (matrix [3, 3] acting on row vectors, offset [3]); the identity when
    neither jitter nor grayscale was drawn.
  """
  jitter = params['jitter']
  one = tf.constant(1.0)
  b = tf.where(jitter, params['brightness'], one)
  c = tf.where(jitter, params['contrast'], one)
  s = tf.where(jitter, params['saturation'], one)
  # Negative angle: matches the direction of tf.image.adjust_hue.
  theta = tf.where(jitter, params['hue'], 0.0) * (-2.0 * math.pi)
  cos, sin = tf.cos(theta), tf.sin(theta)
  zero = tf.constant(0.0)
  # Column-vector form: rgb' = A rgb with A = YIQ^-1 diag(1, s R) YIQ.
  mid = tf.stack([tf.stack([one, zero, zero]),
                  tf.stack([zero, s * cos, -s * sin]),
                  tf.stack([zero, s * sin, s * cos])])
  hs = tf.constant(_YIQ_TO_RGB, tf.float32) @ mid @ tf.constant(
      _RGB_TO_YIQ, tf.float32)
  gray = tf.constant(np.outer(np.ones(3), _GRAY), tf.float32)
  g = tf.where(params['grayscale'], gray, tf.eye(3))
  # y = G b H (c x + (1 - c) m): see the module docstring for why the ops
  # can be composed in any order once the intermediate clipping is dropped.
  a = g @ (b * hs)
  matrix = c * a
  offset = (1.0 - c) * tf.linalg.matvec(a, channel_mean)
  return tf.transpose(matrix), offset


def augment_view_fast(encoded_frames: tf.Tensor,
                      params: Dict[str, tf.Tensor],
                      crop_size: int,
                      blur_truncate: float = 4.0,
                      output_dtype: tf.DType = tf.float32) -> tf.Tensor:
  """Augments one view: crop-decode, one resize, fused colour, blur.

  Args:
    encoded_frames: string [T] JPEG frames of the view.
    params: output of `draw_view_params`.
    crop_size: output height and width.
    blur_truncate: blur kernel radius in sigmas (capped at CVRL's radius).
    output_dtype: dtype of the returned frames.

  Returns:
    [T, crop_size, crop_size, 3] frames in [0, 1].
  """
  window = tf.stack([params['crop_y'], params['crop_x'], params['crop_h'],
                     params['crop_w']])
  frames = tf.map_fn(
      lambda s: tf.image.decode_and_crop_jpeg(s, window, channels=3),
      encoded_frames, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                        tf.uint8))
  # Values stay in [0, 255] here; the 1/255 goes into the colour matrix.
  frames = tf.image.resize(frames, [crop_size, crop_size])
  frames = tf.cond(params['flip'], lambda: tf.reverse(frames, [2]),
                   lambda: frames)
  mean = tf.reduce_mean(frames, axis=[0, 1, 2]) / 255.0
  matrix, offset = color_matrix(params, mean)
  frames = tf.clip_by_value(
      tf.tensordot(frames, matrix / 255.0, axes=1) + offset, 0.0, 1.0)
  max_radius = blur_kernel_radius(crop_size)
  radius = tf.minimum(
      tf.cast(tf.math.ceil(blur_truncate * params['blur_sigma']), tf.int32),
      max_radius)
  frames = tf.cond(
      params['blur'],
      lambda: tf.clip_by_value(
          _gaussian_blur(frames, params['blur_sigma'], radius), 0.0, 1.0),
      lambda: frames)
  frames = tf.cond(params['solarize'], lambda: _solarize(frames),
                   lambda: frames)
  frames = tf.ensure_shape(frames, [None, crop_size, crop_size, 3])
  return tf.cast(frames, output_dtype)


def _plain_jitter(image: tf.Tensor, params: Dict[str, tf.Tensor]
                  ) -> tf.Tensor:
  """CVRL colour jitter, one tf.image op at a time in the drawn order."""
  ops = [
      lambda x: x * params['brightness'],
      lambda x: tf.image.adjust_contrast(x, params['contrast']),
      lambda x: tf.image.adjust_saturation(x, params['saturation']),
      lambda x: tf.image.adjust_hue(x, params['hue']),
  ]
  for i in range(4):
    op_id = params['jitter_order'][i]
    image = tf.switch_case(op_id, [lambda f=f: f(image) for f in ops])
    image = tf.clip_by_value(image, 0.0, 1.0)
  return image


def augment_view_plain(encoded_frames: tf.Tensor,
                       params: Dict[str, tf.Tensor],
                       crop_size: int,
                       output_dtype: tf.DType = tf.float32) -> tf.Tensor:
  """Reference rendering of the same drawn parameters (slow, as video_ssl).

  Decodes full frames, crops, resizes, flips, converts to [0, 1], then the
  per-op colour jitter on the clip stacked as one [T*H, W, 3] image (so the
  contrast mean is over the clip, as in video_ssl), grayscale, blur with the
  full CVRL kernel, clip, solarization.

  Args:
    encoded_frames: string [T] JPEG frames of the view.
    params: output of `draw_view_params`.
    crop_size: output height and width.
    output_dtype: dtype of the returned frames.

  Returns:
    [T, crop_size, crop_size, 3] frames in [0, 1].
  """
  frames = tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=3),
                     encoded_frames,
                     fn_output_signature=tf.TensorSpec([None, None, 3],
                                                       tf.uint8))
  frames = frames[:, params['crop_y']:params['crop_y'] + params['crop_h'],
                  params['crop_x']:params['crop_x'] + params['crop_w'], :]
  frames = tf.image.resize(frames, [crop_size, crop_size])
  frames = tf.cond(params['flip'], lambda: tf.image.flip_left_right(frames),
                   lambda: frames)
  frames = frames / 255.0
  num_frames = tf.shape(frames)[0]
  big = tf.reshape(frames, [-1, crop_size, 3])
  big = tf.cond(params['jitter'], lambda: _plain_jitter(big, params),
                lambda: big)
  big = tf.cond(params['grayscale'],
                lambda: tf.tile(tf.image.rgb_to_grayscale(big), [1, 1, 3]),
                lambda: big)
  frames = tf.reshape(big, [num_frames, crop_size, crop_size, 3])
  radius = blur_kernel_radius(crop_size)
  frames = tf.cond(
      params['blur'],
      lambda: _gaussian_blur(frames, params['blur_sigma'], tf.constant(radius)),
      lambda: frames)
  frames = tf.clip_by_value(frames, 0.0, 1.0)
  frames = tf.cond(params['solarize'], lambda: _solarize(frames),
                   lambda: frames)
  return tf.cast(frames, output_dtype)


def identity_params(image_height: int, image_width: int,
                    overrides: Optional[Dict[str, object]] = None
                    ) -> Dict[str, tf.Tensor]:
  """Parameters of the no-op augmentation (full frame), for tests/tools."""
  params = {
      'crop_y': 0, 'crop_x': 0, 'crop_h': image_height, 'crop_w': image_width,
      'flip': False, 'jitter': False, 'brightness': 1.0, 'contrast': 1.0,
      'saturation': 1.0, 'hue': 0.0, 'jitter_order': [0, 1, 2, 3],
      'grayscale': False, 'blur': False, 'blur_sigma': 1.0, 'solarize': False,
  }
  params.update(overrides or {})
  out = {}
  for k, v in params.items():
    if k in ('crop_y', 'crop_x', 'crop_h', 'crop_w', 'jitter_order'):
      out[k] = tf.constant(v, tf.int32)
    elif isinstance(v, bool):
      out[k] = tf.constant(v)
    else:
      out[k] = tf.constant(v, tf.float32)
  return out
