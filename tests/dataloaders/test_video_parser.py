"""The seeded video classification parser: Model Garden's training
distribution, drawn from the example's stateless seed."""
import numpy as np
import tensorflow as tf

from configs import video_classification as vc_cfg
from dataloaders import example_seeds
from dataloaders import video_parser
from official.vision.dataloaders import video_input
from official.vision.ops import preprocess_ops_3d


def _indices(length, num_frames, stride, seed):
  return video_parser.sample_clip_indices(
      tf.constant(length), num_frames, stride,
      tf.constant([7, seed], tf.int64)).numpy()


def test_clip_offsets_cover_model_gardens_range_and_wrap_the_same_way():
  for length, num_frames, stride, offsets in [(10, 4, 2, {0, 1, 2, 3}),
                                              (3, 4, 1, {0, 1, 2})]:
    seen = set()
    for seed in range(200):
      idx = _indices(length, num_frames, stride, seed)
      seen.add(int(idx[0]))
      # Model Garden's own index maker for that offset (the reference).
      want = preprocess_ops_3d._sample_or_pad_sequence_indices(  # pylint: disable=protected-access
          tf.range(length), num_frames, stride, tf.constant(int(idx[0])))
      np.testing.assert_array_equal(idx, want.numpy())
    assert seen == offsets


def _frames(num_frames=4, height=24, width=32):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, [num_frames, height, width, 3], np.uint8)
  return frames, tf.stack([tf.io.encode_jpeg(f) for f in frames])


def _params(**kwargs):
  params = vc_cfg.DataConfig(feature_shape=(4, 16, 16, 3), num_classes=5,
                             is_training=True, one_hot=True)
  return params.replace(**kwargs)


def test_full_frame_crop_equals_model_gardens_clip_or_its_mirror():
  # Area 1 and aspect 4:3 leave one crop (the whole 24x32 frame); a 4-frame
  # video gives one clip offset. Model Garden's stateful path must then
  # return our clip or its mirror image, pixel for pixel.
  _, encoded = _frames()
  params = _params(aug_min_area_ratio=1.0, aug_max_area_ratio=1.0,
                   aug_min_aspect_ratio=4 / 3, aug_max_aspect_ratio=4 / 3)
  parser = video_parser.Parser(params)
  mg = video_input.Parser(params)
  label = tf.constant(3, tf.int64)
  reference, _ = mg._parse_train_data(  # pylint: disable=protected-access
      {video_input.IMAGE_KEY: encoded, video_input.LABEL_KEY: label})
  reference = reference['image'].numpy()
  flips = set()
  for seed in range(8):
    features, onehot = parser.parse_fn(True)(
        {video_input.IMAGE_KEY: encoded, video_input.LABEL_KEY: label,
         example_seeds.SEED_KEY: tf.constant([1, seed], tf.int64)})
    image = features['image'].numpy()
    assert image.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(onehot.numpy(), [0, 0, 0, 1, 0])
    mirrored = np.array_equal(image, reference[:, :, ::-1])
    assert mirrored or np.array_equal(image, reference)
    flips.add(mirrored)
  assert flips == {True, False}


def test_same_seed_same_clip_other_seeds_other_clips():
  _, encoded = _frames(num_frames=9)
  parser = video_parser.Parser(_params(aug_min_area_ratio=0.3))

  def parse(seed):
    features, _ = parser.parse_fn(True)(
        {video_input.IMAGE_KEY: encoded,
         video_input.LABEL_KEY: tf.constant(0, tf.int64),
         example_seeds.SEED_KEY: tf.constant(seed, tf.int64)})
    return features['image'].numpy()

  first = parse([4, 4])
  np.testing.assert_array_equal(parse([4, 4]), first)
  assert all(np.abs(parse([4, k]) - first).max() > 0.05 for k in range(5, 9))


def test_without_a_seed_model_gardens_path_parses_the_same_clip():
  _, encoded = _frames()
  params = _params(aug_min_area_ratio=1.0, aug_max_area_ratio=1.0,
                   aug_min_aspect_ratio=4 / 3, aug_max_aspect_ratio=4 / 3)
  decoded = {video_input.IMAGE_KEY: encoded,
             video_input.LABEL_KEY: tf.constant(0, tf.int64)}
  reference, _ = video_input.Parser(params)._parse_train_data(decoded)  # pylint: disable=protected-access
  reference = reference['image'].numpy()
  features, _ = video_parser.Parser(params).parse_fn(True)(decoded)
  image = features['image'].numpy()
  assert (np.array_equal(image, reference)
          or np.array_equal(image, reference[:, :, ::-1]))


def test_crop_aspect_is_scaled_by_the_output_aspect_and_area_in_range():
  # Frames whose red channel is the row and green the column (uint8, as a
  # TFDS decoder gives them): the corners of the resized clip give back the
  # crop window. Aspect range (1, 1) on a 16x24 output must give crops of
  # aspect 1.5 in pixels (Model Garden scales the range by out_w / out_h).
  height, width = 120, 160
  yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  frame = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)
  frames = tf.constant(np.repeat(frame[None], 4, axis=0))
  params = _params(feature_shape=(4, 16, 24, 3), aug_min_area_ratio=0.3,
                   aug_max_area_ratio=0.6, aug_min_aspect_ratio=1.0,
                   aug_max_aspect_ratio=1.0)
  parser = video_parser.Parser(params)
  for seed in range(20):
    features, _ = parser.parse_fn(True)(
        {video_input.IMAGE_KEY: frames,
         video_input.LABEL_KEY: tf.constant(0, tf.int64),
         example_seeds.SEED_KEY: tf.constant([2, seed], tf.int64)})
    image = np.round(features['image'].numpy()[0] * 255)
    # Output pixel i samples input y0 + (i + 0.5) * h / 16 - 0.5 (bilinear,
    # half-pixel centres), so the first and last rows are 15 h / 16 apart.
    crop_h = (image[-1, 0, 0] - image[0, 0, 0]) * 16 / 15
    crop_w = abs(image[0, -1, 1] - image[0, 0, 1]) * 24 / 23
    assert abs(crop_w / crop_h - 1.5) < 0.1, (seed, crop_h, crop_w)
    assert 0.27 < crop_h * crop_w / (height * width) < 0.63, (seed, crop_h,
                                                                crop_w)
