"""Tests for tasks/attention_viz.py (attention maps, picture, summaries)."""
import os

from matplotlib import image as mpimg
import numpy as np
import pytest
import tensorflow as tf

from dataloaders import toy_world
from dataloaders import video_records
from tasks import attention_viz
from tasks import features as features_lib


def test_upsample_heat_is_a_distribution_over_the_frame_set():
  att = np.full((3, 2, 2), 1 / 12, np.float32)
  heat = attention_viz.upsample_heat(att, 64)
  assert heat.shape == (3, 64, 64)
  np.testing.assert_allclose(heat.sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(heat, 1 / (3 * 64 * 64), rtol=1e-5)
  peaked = np.zeros((3, 2, 2), np.float32)
  peaked[1, 0, 0] = 1.0
  heat = attention_viz.upsample_heat(peaked, 8)
  np.testing.assert_allclose(heat.sum(), 1.0, atol=1e-6)
  assert heat[0].sum() == 0 and heat[2].sum() == 0
  assert heat[1, 0, 0] == heat[1].max()


def test_parse_box():
  np.testing.assert_allclose(attention_viz.parse_box('0.1,0.2,0.5,0.6'),
                             [0.1, 0.2, 0.5, 0.6])
  with pytest.raises(ValueError, match='ymin < ymax'):
    attention_viz.parse_box('0.5,0.2,0.1,0.6')
  with pytest.raises(ValueError, match='3 numbers'):
    attention_viz.parse_box('0.1,0.2,0.5')


def test_figure_pixel_size_by_hand():
  # 1 + 3 columns and 2 rows of 2-inch panels plus a 0.25-inch title band.
  assert attention_viz.figure_pixel_size(3, 2.0, 100) == (800, 425)
  assert attention_viz.figure_pixel_size(5, 1.5, 80) == (720, 260)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  params = features_lib.load_experiment_config('const_cl_pretrain_toy')
  model = features_lib.build_pretrain_model(params)
  data = tmp_path_factory.mktemp('toy')
  pattern = toy_world.write_video_split(
      str(data), 'val', 2, seed=2, spec=toy_world.ToyWorldSpec(num_frames=24),
      num_shards=1)
  return params, model, pattern


def test_visualize_writes_picture_drawn_from_a_distribution(toy, tmp_path):
  params, model, pattern = toy
  out = str(tmp_path / 'att.png')
  result = attention_viz.visualize(params, model, pattern, out,
                                   video_index=1, layer=0)
  # Toy model: L=3 context frames of 2x2 res5r tokens, 64-px frames.
  assert result.attention.shape == (3, 2, 2)
  assert result.heat.shape == (3, 64, 64)
  np.testing.assert_allclose(result.attention.sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(result.heat.sum(), 1.0, atol=1e-5)
  assert result.layer == 0
  # Centre region frame: feature frame 2 of 4 -> input frame 4 -> source
  # frame 0 + 2 * 4 = 8. View b starts T*s/2 = 8 frames later; its context
  # frames are feature frames 1, 2, 3 (input 2, 4, 6 -> source 12, 16, 20).
  assert result.region_frame_a == 2 and result.source_frame_index == 8
  np.testing.assert_array_equal(result.context_frames_b, [1, 2, 3])
  np.testing.assert_array_equal(result.context_source_index, [12, 16, 20])
  # Box: the record's first box at source frame 8 (64x64: crop = identity).
  record = video_records.read_records(pattern)[1]
  np.testing.assert_allclose(result.box, record['boxes'][8][0], atol=1e-6)
  png = mpimg.imread(out)
  width, height = attention_viz.figure_pixel_size(3)
  assert png.shape[:2] == (height, width)
  with pytest.raises(ValueError, match='--layer 5 out of range'):
    attention_viz.visualize(params, model, pattern, out, layer=5)
  with pytest.raises(ValueError, match='--video_index 7 is out of range'):
    attention_viz.visualize(params, model, pattern, out, video_index=7)


def test_parser_views_with_flag_box(toy, tmp_path):
  params, model, pattern = toy
  box = np.array([0.1, 0.2, 0.6, 0.7], np.float32)
  result = attention_viz.visualize(params, model, pattern,
                                   str(tmp_path / 'p.png'), box=box,
                                   views='parser', seed=4)
  np.testing.assert_array_equal(result.box, box)
  np.testing.assert_allclose(result.heat.sum(), 1.0, atol=1e-5)
  assert os.path.getsize(tmp_path / 'p.png') > 0


def test_region_summary_images_draws_valid_boxes_only():
  images = tf.zeros([1, 8, 8, 3])
  boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
  out = attention_viz.region_summary_images(images, boxes,
                                            tf.constant([[1.0, 0.0]]))
  assert out.dtype == tf.uint8 and out.shape == (1, 8, 8, 3)
  out = out.numpy()[0]
  # Box 0 (colour 0 = (1, .2, .2)) spans rows/cols 0..3 (0.5 * 7 -> 3).
  np.testing.assert_array_equal(out[0, 0], [255, 51, 51])
  np.testing.assert_array_equal(out[3, 2], [255, 51, 51])
  np.testing.assert_array_equal(out[1, 1], [0, 0, 0])  # inside, not edge
  assert out[4:, 4:].max() == 0  # box 1 is masked out
  both = attention_viz.region_summary_images(
      images, boxes, tf.constant([[1.0, 1.0]])).numpy()[0]
  np.testing.assert_array_equal(both[7, 7], [51, 255, 51])
  # With a time axis: [B, T, H, W, 3] -> [B*T, H, W, 3].
  video = attention_viz.region_summary_images(
      tf.ones([2, 3, 8, 8, 3]) * 0.5, tf.tile(boxes[:, None], [2, 3, 1, 1]),
      tf.ones([2, 3, 2]))
  assert video.shape == (6, 8, 8, 3)
  # convert_image_dtype: int(0.5 * 255.5) = 127.
  np.testing.assert_array_equal(video.numpy()[0, 2, 2], [127, 127, 127])


def test_read_record_names_a_file_that_is_not_a_tfrecord(tmp_path):
  good = str(tmp_path / 'v-0.tfrecord')
  video_records.write_records(good, [video_records.make_sequence_example(
      np.zeros((2, 8, 8, 3), np.uint8), video_id='only')])
  assert video_records.read_sequence_example(
      attention_viz.read_record(good, 0))['video_id'] == 'only'
  (tmp_path / 'v-1.tfrecord').write_bytes(b'\x00' * 64)
  with pytest.raises(ValueError, match=(
      r"--input_pattern='.*v-\*.tfrecord': 1 of 2 files are not TFRecord "
      r'files .*v-1.tfrecord')):
    attention_viz.read_record(str(tmp_path / 'v-*.tfrecord'), 0)
