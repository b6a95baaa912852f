"""Tests of dataloaders/inspect.py and tools/inspect_tfrecord.py."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dataloaders import inspect as inspect_lib
from dataloaders import video_records
from dataloaders.converters import videos

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(REPO, 'tools', 'inspect_tfrecord.py')
OPENCV_DATA = '/usr/share/doc/opencv-doc/examples/data'
H, W = inspect_lib.CELL_HEIGHT, inspect_lib.CELL_WIDTH


def opencv_sample(name: str, tmp_dir) -> str:
  """Path of an OpenCV sample video (decompressed when Debian gzipped it)."""
  path = os.path.join(OPENCV_DATA, name)
  if os.path.exists(path):
    return path
  if os.path.exists(path + '.gz'):
    out = os.path.join(str(tmp_dir), name)
    with gzip.open(path + '.gz', 'rb') as src, open(out, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    return out
  pytest.fail(f'{path} missing: apt-get install -y opencv-doc')


@pytest.fixture
def synthetic(tmp_path):
  """Two shards: videos of 4, 6, 8 frames, labels 0, 2, 2, boxes on one."""
  rng = np.random.default_rng(0)
  frames = lambda t: rng.integers(0, 60, (t, 32, 48, 3), dtype=np.uint8)
  boxes = [np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 0.5]]),
           np.zeros((0, 4)), np.array([[0.2, 0.2, 0.6, 0.4]]),
           np.zeros((0, 4))]
  video_records.write_records(str(tmp_path / 'v-00000-of-00002.tfrecord'), [
      video_records.make_sequence_example(frames(4), label=0, video_id='a',
                                          boxes=boxes),
      video_records.make_sequence_example(frames(6), label=2, video_id='b'),
  ])
  video_records.write_records(str(tmp_path / 'v-00001-of-00002.tfrecord'), [
      video_records.make_sequence_example(frames(8), label=2, video_id='c'),
  ])
  (tmp_path / 'label_map.txt').write_text('cat\ndog\nemu\n')
  return str(tmp_path / 'v-*.tfrecord')


def test_stats_of_synthetic_records(synthetic):
  stats = inspect_lib.compute_stats(synthetic, ['cat', 'dog', 'emu'])
  assert stats['num_shards'] == 2
  assert stats['num_records'] == 3
  assert list(stats['records_per_shard'].values()) == [2, 1]
  assert stats['num_frames'] == 18
  assert stats['frames_per_video'] == {'min': 4, 'mean': 6.0, 'max': 8}
  assert stats['frame_sizes'] == {'32x48': 3}
  assert stats['label_histogram'] == {0: 1, 2: 2}
  assert stats['label_names'] == {0: 'cat', 2: 'emu'}
  assert stats['num_unlabelled'] == 0
  b = stats['boxes']
  assert b['videos_with_boxes'] == 1
  assert b['num_boxes'] == 3
  assert b['frames_with_boxes'] == 2
  # Per frame of the boxed video: 2, 0, 1, 0.
  assert b['boxes_per_frame'] == {'min': 0, 'mean': 0.75, 'max': 2}
  # Areas: 0.4 * 0.4 = 0.16, 1.0 * 0.5 = 0.5, 0.4 * 0.2 = 0.08.
  assert b['area']['min'] == pytest.approx(0.08)
  assert b['area']['max'] == pytest.approx(0.5)
  assert b['area']['mean'] == pytest.approx((0.16 + 0.5 + 0.08) / 3)
  assert b['num_invalid'] == 0
  assert 'emu' in inspect_lib.format_stats(stats)


def test_contact_sheet_size_and_boxes(synthetic):
  sheet = inspect_lib.contact_sheet(synthetic, num_videos=2,
                                    frames_per_video=4)
  assert sheet.shape == (2 * H, 4 * W, 3)
  # Frames are dark (< 60); boxes are pure green. Video `a` shows frames
  # 0, 1, 2, 3 (evenly spaced over 4): frames 0 and 2 have boxes.
  def green(row, col):
    cell = sheet[row * H + 12:(row + 1) * H, col * W:(col + 1) * W]
    return int(((cell[..., 1] == 255) & (cell[..., 0] == 0)).sum())
  assert green(0, 0) > 0 and green(0, 2) > 0
  assert green(0, 1) == 0 and green(0, 3) == 0 and green(1, 0) == 0
  # Only 3 videos: asking for 5 rows gives 3.
  sheet = inspect_lib.contact_sheet(synthetic, num_videos=5,
                                    frames_per_video=3)
  assert sheet.shape == (3 * H, 3 * W, 3)
  assert inspect_lib.evenly_spaced(8, 4) == [0, 2, 5, 7]


def test_marker_files_matched_by_the_pattern_are_an_error(synthetic, tmp_path):
  (tmp_path / 'v-00000-of-00002.tfrecord.done').write_text(
      json.dumps({'fingerprint': '0' * 64, 'results': {}}))
  with pytest.raises(ValueError, match=(
      r"--input_pattern='.*v-\*': 1 of 3 files are not TFRecord files .*: "
      r'.*v-00000-of-00002\.tfrecord\.done$')):
    inspect_lib.compute_stats(str(tmp_path / 'v-*'))


def test_tool_names_a_short_non_tfrecord_file_and_a_missing_label_map(
    synthetic, tmp_path):
  # 8 bytes: too short for one record, so tf.data reads it as 0 records.
  garbage = tmp_path / 'garbage.tfrecord'
  garbage.write_bytes(b'garbage\n')
  run = lambda *args: subprocess.run(
      [sys.executable, TOOL, *args], capture_output=True, text=True,
      check=False)
  proc = run(f'--input_pattern={garbage}')
  assert proc.returncode == 2
  assert proc.stderr.strip().endswith(
      f"error: --input_pattern='{garbage}': 1 of 1 files are not TFRecord "
      'files (unreadable, or the first record header does not check): '
      f'{garbage}')
  proc = run(f'--input_pattern={synthetic}',
             f'--label_map={tmp_path / "nothere.txt"}')
  assert proc.returncode == 2
  assert 'error: ' in proc.stderr and 'nothere.txt' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_tool_on_converted_real_video(tmp_path):
  inp = tmp_path / 'in'
  for cls in ('oak', 'pine'):
    (inp / cls).mkdir(parents=True)
    shutil.copy(opencv_sample('tree.avi', tmp_path), inp / cls / 'tree.avi')
  out = tmp_path / 'out'
  # 29.6 s of tree.avi at 2 fps: n_k = round(0.5 k * 14.999925) < 444 for
  # k = 0..59 -> 60 frames per video.
  videos.convert_videos(str(inp), str(out),
                        options=videos.ConvertOptions(fps=2.0, short_side=48),
                        num_shards=2, num_workers=1, progress=False)
  sheet_path, json_path = tmp_path / 'sheet.png', tmp_path / 'stats.json'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, TOOL, '--input_pattern', str(out / 'train-*'),
       '--label_map', str(out / 'label_map.txt'), '--contact_sheet',
       str(sheet_path), '--num_videos', '2', '--frames_per_video', '5',
       '--stats_json', str(json_path)],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert '2 records in 2 shards, 120 frames' in proc.stdout
  with open(json_path) as f:
    stats = json.load(f)
  assert stats['frames_per_video'] == {'min': 60, 'mean': 60.0, 'max': 60}
  # 320x240 -> short side 48: 64x48.
  assert stats['frame_sizes'] == {'48x64': 2}
  assert stats['label_histogram'] == {'0': 1, '1': 1}  # JSON keys are str.
  assert stats['label_names'] == {'0': 'oak', '1': 'pine'}
  assert stats['boxes'] is None
  png = cv2.imread(str(sheet_path))
  assert png.shape == (2 * H, 5 * W, 3)
