"""Tests for tasks/features.py (clip sampling, crops, extraction)."""
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from dataloaders import toy_world
from dataloaders import video_records
from modeling import export as export_lib
from tasks import features as features_lib


def test_sample_clip_indices_by_hand():
  # 32 frames, T=8, s=2: span 15, last start 17; one clip is centred.
  np.testing.assert_array_equal(
      features_lib.sample_clip_indices(32, 8, 2, 1),
      [[8, 10, 12, 14, 16, 18, 20, 22]])
  two = features_lib.sample_clip_indices(32, 8, 2, 2)
  np.testing.assert_array_equal(two[:, 0], [0, 17])
  np.testing.assert_array_equal(two[1], 17 + 2 * np.arange(8))
  # Shorter than a clip: loops around (5 frames, T=4, s=2).
  np.testing.assert_array_equal(
      features_lib.sample_clip_indices(5, 4, 2, 1), [[0, 2, 4, 1]])
  with pytest.raises(ValueError, match='num_clips'):
    features_lib.sample_clip_indices(5, 4, 2, 0)


def test_center_crop_and_boxes_by_hand():
  # 60x80 -> shorter side 30: 30x40, centre crop drops 5 columns each side.
  assert features_lib.center_crop_geometry(60, 80, 30) == (30, 40, 0, 5)
  frames = np.zeros((1, 60, 80, 3), np.uint8)
  frames[:, :, 40:] = 200
  crop = features_lib.resize_and_center_crop(frames, 30)
  assert crop.shape == (1, 30, 30, 3)
  assert crop[0, 0, 0, 0] == 0 and crop[0, 0, -1, 0] == 200
  boxes, valid = features_lib.crop_boxes(
      np.array([[0.0, 0.25, 1.0, 0.75], [0.0, 0.0, 0.5, 0.1]]), 60, 80, 30)
  np.testing.assert_allclose(boxes[0], [0, 5 / 30, 1, 25 / 30], atol=1e-6)
  assert valid.tolist() == [True, False]  # box 2 is left of the crop


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  params = features_lib.load_experiment_config('const_cl_pretrain_toy')
  model = features_lib.build_pretrain_model(params)
  module = export_lib.ConstCLExportModule(params, model, 8, 64)
  data = tmp_path_factory.mktemp('videos')
  spec = toy_world.ToyWorldSpec(num_frames=12)
  toy_world.write_video_split(str(data), 'val', 3, seed=1, spec=spec,
                              num_shards=1)
  bad = video_records.make_sequence_example(
      encoded_frames=[b'not a jpeg'], video_id='broken')
  video_records.write_records(str(data / 'zbad.tfrecord'), [bad])
  return params, model, module, str(data)


def test_extract_npy_one_file_per_video(setup, tmp_path):
  _, model, module, data = setup
  extractor = features_lib.FeatureExtractor(
      module.serve, num_frames=8, stride=2, crop_size=64,
      endpoint='res5g_pooled', num_clips=2)
  pattern = os.path.join(data, '*.tfrecord')
  assert features_lib.count_records(pattern) == 4
  summary = features_lib.extract_features(
      features_lib.iter_tfrecord_videos(pattern), extractor, str(tmp_path),
      'npy', 'res5g_pooled', total=4, progress=False)
  assert summary['written'] == 3 and summary['skipped'] == 1
  assert 'broken' in summary['errors'][0]
  names = sorted(os.listdir(tmp_path))
  assert names == [f'toy_val_{i:06d}.npy' for i in range(3)]
  first = np.load(tmp_path / names[0])
  assert first.shape == (2, 256)
  # Independent check: the clips built by hand through the backbone.
  video = next(features_lib.iter_tfrecord_videos(pattern))
  frames = video.frames
  idx = features_lib.sample_clip_indices(12, 8, 2, 2)
  clips = frames[idx].astype(np.float32) / 255.0  # 64x64: crop is identity
  want = model.backbone(tf.constant(clips), training=False)['5g']
  np.testing.assert_allclose(first, want.numpy().mean(axis=(1, 2, 3)),
                             atol=1e-5)


def test_extract_tfrecord_and_video_files(setup, tmp_path):
  _, _, module, data = setup
  extractor = features_lib.FeatureExtractor(module.serve, 8, 2, 64, 'res5r')
  summary = features_lib.extract_features(
      features_lib.iter_tfrecord_videos(os.path.join(data, 'val-*')),
      extractor, str(tmp_path / 'rec'), 'tfrecord', 'res5r', progress=False)
  back = features_lib.read_feature_records(summary['outputs'][0])
  assert sorted(back) == [f'toy_val_{i:06d}' for i in range(3)]
  assert back['toy_val_000000'].shape == (1, 4, 2, 2, 256)
  # A folder of video files (cv2).
  vdir = tmp_path / 'vids'
  vdir.mkdir()
  writer = cv2.VideoWriter(str(vdir / 'clip_a.avi'),
                           cv2.VideoWriter_fourcc(*'MJPG'), 8, (80, 60))
  for i in range(10):
    writer.write(np.full((60, 80, 3), 20 * i, np.uint8))
  writer.release()
  (vdir / 'notes.txt').write_text('not a video')
  paths = features_lib.list_video_files(str(vdir))
  assert [os.path.basename(p) for p in paths] == ['clip_a.avi']
  frames = features_lib.read_video_file(paths[0])
  assert frames.shape == (10, 60, 80, 3)
  summary = features_lib.extract_features(
      features_lib.iter_video_files(paths),
      features_lib.FeatureExtractor(module.serve, 8, 2, 64,
                                    'global_embedding'),
      str(tmp_path / 'npy'), progress=False, endpoint='global_embedding')
  out = np.load(tmp_path / 'npy' / 'clip_a.npy')
  assert out.shape == (1, 64)
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)
  with pytest.raises(FileNotFoundError, match='no_dir'):
    features_lib.list_video_files(str(tmp_path / 'no_dir'))


def test_input_file_that_is_not_a_tfrecord_is_named(tmp_path):
  (tmp_path / 'clips-0.tfrecord').write_bytes(b'RIFF....AVI LIST' * 8)
  pattern = str(tmp_path / 'clips-*.tfrecord')
  for read in (features_lib.count_records,
               lambda p: next(features_lib.iter_tfrecord_videos(p))):
    with pytest.raises(ValueError, match=(
        r"--input_pattern='.*clips-\*.tfrecord': 1 of 1 files are not "
        'TFRecord files')):
      read(pattern)


def test_clip_geometry_refuses_non_positive_sizes():
  """--num_frames=0 was silently the training clip's; --crop_size=-5 failed
  in TensorFlow ('Dimension -5 must be >= 0')."""
  params = features_lib.load_experiment_config('const_cl_pretrain_toy', (),
                                               '')
  assert features_lib.clip_geometry(params)[0] >= 1
  for kwargs, message in (
      ({'num_frames': 0}, r"^--num_frames=0: must be >= 1 \(omit it for"),
      ({'crop_size': -5}, r'^--crop_size=-5: must be >= 1 ')):
    with pytest.raises(ValueError, match=message):
      features_lib.clip_geometry(params, **kwargs)
