"""ROIAlign on one frame of a feature map, XLA-friendly."""
import tensorflow as tf

from official.vision.ops import spatial_transform_ops


def roi_align_frame(features: tf.Tensor, boxes: tf.Tensor,
                    crop_size: int = 4) -> tf.Tensor:
  """Bilinear ROIAlign of normalized boxes on a single-frame feature map.

  `tf.image.crop_and_resize` has no XLA kernel, so this goes through Model
  Garden's gather-based `multilevel_crop_and_resize` with one level.

  Aligned ROIAlign (Detectron2's `aligned=True`): a normalized box covers
  continuous feature coordinates `box * [H, W, H, W]`, where cell k spans
  [k, k + 1) and its value sits at its centre k + 0.5. Model Garden's op
  reads cell k's value at coordinate k, so samples are taken half a cell
  up and left of the box's own coordinates; unshifted, every box read its
  features half a cell down and right, and a box and its mirror image in a
  flipped view read different features. Samples in the outer half cell
  (coordinates below 0.5 or above H - 0.5) take the edge cell's value on
  every side: Model Garden's op clamps at the bottom and right but
  extrapolates below index 0, so the map gets a copy of its first row and
  column in front and the boxes move by +0.5 instead of -0.5.

  Args:
    features: [B, H, W, C] feature map.
    boxes: [B, N, 4] normalized [ymin, xmin, ymax, xmax].
    crop_size: output side of each crop.

  Returns:
    [B, N, crop_size, crop_size, C] float32 crops.
  """
  features = tf.cast(features, tf.float32)
  height, width = features.shape[1], features.shape[2]
  if height is None or width is None:
    raise ValueError(f'roi_align_frame needs static spatial dims, got '
                     f'{features.shape}')
  scale = tf.constant([height, width, height, width], tf.float32)
  abs_boxes = tf.cast(boxes, tf.float32) * scale + 0.5
  padded = tf.concat([features[:, :1], features], axis=1)
  padded = tf.concat([padded[:, :, :1], padded], axis=2)
  return spatial_transform_ops.multilevel_crop_and_resize(
      {'0': padded}, abs_boxes, output_size=crop_size)


def roi_pool_vectors(features: tf.Tensor, boxes: tf.Tensor,
                     crop_size: int = 4) -> tf.Tensor:
  """ROIAlign crops averaged to one vector per box: [B, N, C]."""
  crops = roi_align_frame(features, boxes, crop_size)
  return tf.reduce_mean(crops, axis=[2, 3])
