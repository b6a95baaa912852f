"""Runs tools/videos_to_tfrecords.py as users do, on OpenCV's sample videos."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dataloaders import video_records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(REPO, 'tools', 'videos_to_tfrecords.py')
OPENCV_DATA = '/usr/share/doc/opencv-doc/examples/data'


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


def run_tool(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=300)


def test_bad_videos_reported_good_ones_converted(tmp_path):
  tree = opencv_sample('tree.avi', tmp_path)
  vtest = opencv_sample('vtest.avi', tmp_path)
  inp, out = tmp_path / 'in', tmp_path / 'out'
  (inp / 'people').mkdir(parents=True)
  (inp / 'trees').mkdir()
  shutil.copy(tree, inp / 'trees' / 'tree.avi')
  with open(vtest, 'rb') as f:
    data = f.read()
  (inp / 'people' / 'truncated.avi').write_bytes(data[:len(data) // 10])
  (inp / 'people' / 'notavideo.avi').write_text('not a video\n' * 50)
  cap = cv2.VideoCapture(str(inp / 'people' / 'truncated.avi'))
  n = 0
  while cap.read()[0]:
    n += 1
  assert 0 < n < 795

  proc = run_tool('--input_dir', str(inp), '--output_dir', str(out),
                  '--fps', '5', '--short_side', '64', '--num_shards', '2',
                  '--num_workers', '2', '--noprogress')
  assert proc.returncode == 1, proc.stderr
  assert 'converted 1 of 3 videos' in proc.stdout
  assert f'people/truncated: partial decode: {n} of 795 frames' in proc.stdout
  assert 'people/notavideo: cannot open as a video' in proc.stdout
  with open(out / 'summary.json') as f:
    summary = json.load(f)
  assert sorted(d['video_id'] for d in summary['failed']) == [
      'people/notavideo', 'people/truncated']
  recs = video_records.read_records(str(out / 'train-*-of-00002.tfrecord'))
  assert [(r['video_id'], r['label'], len(r['frames'])) for r in recs] == [
      ('trees/tree', [1], 148)]  # 29.6 s * 5 fps (see test_videos.py).
  assert (out / 'label_map.txt').read_text() == 'people\ntrees\n'


def test_unwritable_output_and_bad_csv_fail_before_work(tmp_path):
  inp = tmp_path / 'in'
  (inp / 'a').mkdir(parents=True)
  (inp / 'a' / 'x.avi').write_text('never read')
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  proc = run_tool('--input_dir', str(inp), '--output_dir',
                  str(blocker / 'out'), '--noprogress')
  assert proc.returncode == 2
  assert f'error: output_dir {blocker}/out is not a writable folder' in (
      proc.stderr)

  csv_path = tmp_path / 'bad.csv'
  csv_path.write_text('label,youtube_id,time_start,time_end,split\n'
                      'a,x,0,10,train\n'
                      'a,y,0,10\n')
  proc = run_tool('--input_dir', str(inp), '--output_dir',
                  str(tmp_path / 'out'), '--csv', str(csv_path),
                  '--noprogress')
  assert proc.returncode == 2
  assert f'{csv_path}:3: expected 5 fields' in proc.stderr
  assert not list((tmp_path / 'out').glob('*.tfrecord'))


def test_nothing_converted_exits_1_and_leaves_no_shard_or_marker(tmp_path):
  inp, out = tmp_path / 'in', tmp_path / 'out'
  (inp / 'cls').mkdir(parents=True)
  (inp / 'cls' / 'a.mp4').write_text('not a video\n')
  args = ('--input_dir', str(inp), '--output_dir', str(out),
          '--num_shards', '2', '--num_workers', '1', '--noprogress')
  proc = run_tool(*args)
  assert proc.returncode == 1, proc.stderr
  assert 'cls/a: cannot open as a video' in proc.stdout
  assert (f'error: nothing was written to {out}: 0 of 1 videos converted '
          '(1 failed, 0 CSV rows without a file; reasons above)') in (
              proc.stderr)
  assert not list(out.glob('*.tfrecord'))
  assert not os.listdir(out / '.progress')
  # The file fixed, the rerun converts it instead of resuming from markers.
  writer = cv2.VideoWriter(str(inp / 'cls' / 'a.mp4'),
                           cv2.VideoWriter_fourcc(*'mp4v'), 10, (32, 24))
  for _ in range(10):
    writer.write(np.full((24, 32, 3), 128, np.uint8))
  writer.release()
  proc = run_tool(*args)
  assert proc.returncode == 0, proc.stderr
  assert 'converted 1 of 1 videos' in proc.stdout
  assert 'shards written: 2, skipped (already done): 0' in proc.stdout


def write_gray_video(path, num_frames=10):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10,
                           (32, 24))
  for _ in range(num_frames):
    writer.write(np.full((24, 32, 3), 128, np.uint8))
  writer.release()


def test_shard_of_failed_videos_is_not_written_and_redone(tmp_path):
  inp, out = tmp_path / 'in', tmp_path / 'out'
  (inp / 'a').mkdir(parents=True)
  (inp / 'b').mkdir()
  write_gray_video(inp / 'a' / 'good.mp4')
  (inp / 'b' / 'bad.mp4').write_bytes(b'\x00garbage\xff' * 100)
  args = ('--input_dir', str(inp), '--output_dir', str(out),
          '--num_shards', '2', '--num_workers', '1', '--noprogress')
  shard0 = 'train-00000-of-00002.tfrecord'
  shard1 = 'train-00001-of-00002.tfrecord'  # Only b/bad: all failed.
  proc = run_tool(*args)
  assert proc.returncode == 1, proc.stderr
  assert 'converted 1 of 2 videos' in proc.stdout
  assert 'b/bad: cannot open as a video' in proc.stdout
  assert ('shards not written (all their videos failed; no marker, a rerun '
          f'retries them): 1\n  {shard1}') in proc.stdout
  assert f'{out / shard1} not written: all 1 of its videos failed' in (
      proc.stderr)
  assert '1 of 2 shards not written (all their videos failed)' in (
      proc.stderr)
  assert sorted(p.name for p in out.glob('*.tfrecord')) == [shard0]
  assert os.listdir(out / '.progress') == [shard0 + '.done']
  with open(out / 'summary.json') as f:
    summary = json.load(f)
  assert summary['shards_written'] == [shard0]
  assert summary['shards_empty'] == [shard1]
  # The file fixed, the rerun keeps shard 0 and converts shard 1.
  write_gray_video(inp / 'b' / 'bad.mp4')
  proc = run_tool(*args)
  assert proc.returncode == 0, proc.stderr
  assert 'converted 2 of 2 videos' in proc.stdout
  assert 'shards written: 1, skipped (already done): 1' in proc.stdout
  assert 'shards not written' not in proc.stdout
  recs = video_records.read_records(str(out / 'train-*-of-00002.tfrecord'))
  assert sorted(r['video_id'] for r in recs) == ['a/good', 'b/bad']
