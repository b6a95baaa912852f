"""Model Garden's video classification parser with per-example seeds.

`official.vision.dataloaders.video_input.Parser` draws its training clip
offset, crop and flip with stateful random ops, all without a seed, inside
the reader's parallel map: two runs of one seed get different augmentations,
and `enable_op_determinism` rejects the unseeded crop op. This subclass keeps
Model Garden's evaluation path and its training distribution (clip offset
uniform over the same range, frames wrapping around short videos, the same
`sample_distorted_bounding_box` crop with the aspect range scaled by the
output aspect, bilinear resize cast back to the frame dtype, a 50 % flip,
the same normalization) and draws them with stateless ops from the example's
`example_seeds.SEED_KEY` seed, which the task attaches in a deterministic
position of the pipeline.

Records without a seed, and the augmentations this path does not cover
(`random_stride_range`, `aug_random_rotation`, `aug_type`, audio), use Model
Garden's stateful path.
"""
from typing import Dict, Tuple

from absl import logging
import tensorflow as tf

from dataloaders import example_seeds
from official.vision.configs import video_classification as mg_video_cfg
from official.vision.dataloaders import video_input
from official.vision.ops import preprocess_ops_3d


def sample_clip_indices(num_source_frames: tf.Tensor, num_frames: int,
                        stride: int, seed: tf.Tensor) -> tf.Tensor:
  """Frame indices of a random training clip, as `sample_sequence` draws.

  The first frame is uniform over [0, L - (num_frames - 1) * stride) when
  that is positive, else over [0, L); indices past the end wrap around.

  Args:
    num_source_frames: L, frames in the video.
    num_frames: frames in the clip.
    stride: temporal stride.
    seed: int [2] stateless seed.

  Returns:
    int32 [num_frames].
  """
  length = tf.cast(num_source_frames, tf.int32)
  span = (num_frames - 1) * stride
  max_offset = tf.where(length > span, length - span, length)
  offset = tf.random.stateless_uniform(
      [], seed=seed, minval=0, maxval=max_offset, dtype=tf.int32)
  return (offset + tf.range(num_frames) * stride) % length


def random_crop_resize(frames: tf.Tensor, output_size: Tuple[int, int],
                       aspect_ratio: Tuple[float, float],
                       area_range: Tuple[float, float],
                       seed: tf.Tensor) -> tf.Tensor:
  """`preprocess_ops_3d.random_crop_resize` with a stateless crop draw."""
  out_h, out_w = output_size
  factor = out_w / out_h
  shape = tf.shape(frames)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape[1:], bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.1,
      aspect_ratio_range=(aspect_ratio[0] * factor, aspect_ratio[1] * factor),
      area_range=area_range, max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  frames = tf.slice(frames, tf.stack([0, begin[0], begin[1], 0]),
                    tf.stack([shape[0], size[0], size[1], shape[3]]))
  return tf.cast(tf.image.resize(frames, (out_h, out_w)), frames.dtype)


class Parser(video_input.Parser):
  """`video_input.Parser` whose training draws use the example's seed."""

  def __init__(self, input_params: mg_video_cfg.DataConfig,
               image_key: str = video_input.IMAGE_KEY,
               label_key: str = video_input.LABEL_KEY):
    super().__init__(input_params, image_key=image_key, label_key=label_key)
    self._crop_hw = (int(input_params.feature_shape[1]),
                     int(input_params.feature_shape[2]))
    self._seedable = not (self._random_stride_range or self._random_rotation
                          or self._augmenter is not None
                          or self._output_audio)
    if input_params.is_training and not self._seedable:
      logging.warning('video_parser: random_stride_range, aug_random_rotation, '
                   'aug_type or audio is set: training draws use Model '
                   "Garden's stateful ops (not reproducible per seed)")

  def _parse_train_data(
      self, decoded_tensors: Dict[str, tf.Tensor]
  ) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    seed = decoded_tensors.get(example_seeds.SEED_KEY)
    if seed is None or not self._seedable:
      return super()._parse_train_data(decoded_tensors)
    frames = decoded_tensors[self._image_key]
    index = sample_clip_indices(tf.shape(frames)[0], self._num_frames,
                                self._stride, example_seeds.fold(seed, 0))
    image = tf.gather(frames, index)
    if image.dtype == tf.string:
      image = preprocess_ops_3d.decode_image(image, self._num_channels)
    image = random_crop_resize(
        image, self._crop_hw,
        (self._min_aspect_ratio, self._max_aspect_ratio),
        (self._min_area_ratio, self._max_area_ratio),
        example_seeds.fold(seed, 1))
    flip = tf.random.stateless_uniform(
        [], seed=example_seeds.fold(seed, 2)) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[2]), lambda: image)
    image = tf.ensure_shape(
        image, [self._num_frames, *self._crop_hw, self._num_channels])
    image = preprocess_ops_3d.normalize_image(image,
                                              self._zero_centering_image)
    label = video_input.process_label(
        decoded_tensors[self._label_key], self._one_hot_label,
        self._num_classes, self._label_dtype)
    return {'image': tf.cast(image, self._dtype)}, label
