"""Tests of the video converter on real videos nobody here made.

The videos are OpenCV's samples from Debian's `opencv-doc` package:
  vtest.avi  768x576, 10 fps, 795 frames (79.5 s), MS-MPEG4.
  tree.avi   320x240, 1e6/66667 = 14.999925 fps, 444 frames (29.6 s), Cinepak
             drop-frame AVI: only 68 chunks hold pictures, the other 376 are
             empty ("repeat the previous picture"), so OpenCV decodes 68
             frames whose timestamps span the whole 29.6 s.
"""
import csv
import gzip
import json
import math
import os
import shutil

import cv2
import numpy as np
import pytest

from dataloaders import video_records
from dataloaders.converters import videos

OPENCV_DATA = '/usr/share/doc/opencv-doc/examples/data'
FPS = 5.0
SHORT = 64
# 768x576 and 320x240 both have aspect 4:3: the short side 64 gives a width of
# round(64 * 4 / 3) = round(85.33) = 85.
SHAPE = (64, 85, 3)
# vtest: output times t_k = 0.2 k s; source index n_k = 10 t_k = 2k < 795
# -> k = 0..397 -> 398 frames.
VTEST_FRAMES = 398
# tree: n_k = floor(0.2 k * 14.999925 + 0.5) < 444 holds for k <= 147
# (k = 148: 443.998 rounds to 444) -> 148 frames (= 29.6 s * 5 fps).
TREE_FRAMES = 148


def opencv_sample(name: str, tmp_dir: str) -> str:
  """Path of an OpenCV sample video (decompressed when Debian gzipped it)."""
  path = os.path.join(OPENCV_DATA, name)
  if os.path.exists(path):
    return path
  if os.path.exists(path + '.gz'):
    out = os.path.join(tmp_dir, name)
    if not os.path.exists(out):
      with gzip.open(path + '.gz', 'rb') as src, open(out, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    return out
  pytest.fail(f'{path} missing: apt-get install -y opencv-doc')


def count_decodable(path: str) -> int:
  """Independent reference: frames cv2 decodes before it stops."""
  cap = cv2.VideoCapture(path)
  n = 0
  while cap.read()[0]:
    n += 1
  cap.release()
  return n


def decode_jpeg(data: bytes) -> np.ndarray:
  return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope='module')
def samples(tmp_path_factory):
  d = str(tmp_path_factory.mktemp('samples'))
  vtest = opencv_sample('vtest.avi', d)
  tree = opencv_sample('tree.avi', d)
  truncated = os.path.join(d, 'truncated.avi')
  with open(vtest, 'rb') as f:
    data = f.read()
  with open(truncated, 'wb') as f:
    f.write(data[:int(len(data) * 0.3)])  # No index, stops after ~24 s.
  return {'vtest': vtest, 'tree': tree, 'truncated': truncated}


@pytest.fixture(scope='module')
def converted(samples, tmp_path_factory):
  """Folder `people/{vtest,truncated}`, `trees/{tree,notavideo}` converted."""
  root = tmp_path_factory.mktemp('folder')
  inp, out = root / 'in', root / 'out'
  (inp / 'people').mkdir(parents=True)
  (inp / 'trees').mkdir()
  shutil.copy(samples['vtest'], inp / 'people' / 'vtest.avi')
  shutil.copy(samples['truncated'], inp / 'people' / 'truncated.avi')
  shutil.copy(samples['tree'], inp / 'trees' / 'tree.avi')
  (inp / 'trees' / 'notavideo.avi').write_text('just some text\n' * 20)
  (inp / 'trees' / 'README.txt').write_text('ignored')
  summary = videos.convert_videos(
      str(inp), str(out),
      options=videos.ConvertOptions(fps=FPS, short_side=SHORT),
      num_shards=3, num_workers=2, output_prefix='train', progress=False)
  return {'summary': summary, 'out': str(out), 'in': str(inp)}


def test_folder_conversion_frames_sizes_labels(converted):
  recs = {r['video_id']: r for r in video_records.read_records(
      os.path.join(converted['out'], 'train-*-of-00003.tfrecord'))}
  assert sorted(recs) == ['people/vtest', 'trees/tree']
  vtest, tree = recs['people/vtest'], recs['trees/tree']
  assert len(vtest['frames']) == VTEST_FRAMES
  assert len(tree['frames']) == TREE_FRAMES
  # Sorted class folders: people -> 0, trees -> 1.
  assert vtest['label'] == [0] and vtest['label_text'] == 'people'
  assert tree['label'] == [1] and tree['label_text'] == 'trees'
  assert vtest['boxes'] is None
  for rec in (vtest, tree):
    for t in (0, len(rec['frames']) // 2, len(rec['frames']) - 1):
      assert decode_jpeg(rec['frames'][t]).shape == SHAPE


def reference_jpeg(frame: np.ndarray) -> bytes:
  """Independent path: INTER_AREA resize to 64x85, JPEG quality 90."""
  small = cv2.resize(frame, (85, 64), interpolation=cv2.INTER_AREA)
  ok, buf = cv2.imencode('.jpg', small, [cv2.IMWRITE_JPEG_QUALITY, 90])
  assert ok
  return buf.tobytes()


def test_folder_conversion_matches_source_pixels(converted, samples):
  """Output frame k of vtest is source frame 2k, resized and JPEG-encoded."""
  rec = [r for r in video_records.read_records(
      os.path.join(converted['out'], 'train-*')) if
         r['video_id'] == 'people/vtest'][0]
  cap = cv2.VideoCapture(samples['vtest'])
  source = [cap.read()[1] for _ in range(23)]
  # t = 2.0 s -> source index 10 * 2.0 = 20; the bytes are identical.
  assert rec['frames'][10] == reference_jpeg(source[20])
  assert rec['frames'][11] == reference_jpeg(source[22])
  assert rec['frames'][10] != reference_jpeg(source[21])


def test_tree_drop_frames_keep_real_timing(converted, samples):
  """tree.avi's pictures appear at their timestamps, not one per frame."""
  cap = cv2.VideoCapture(samples['tree'])
  times = []
  while cap.read()[0]:
    times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
  assert len(times) == 68
  rec = [r for r in video_records.read_records(
      os.path.join(converted['out'], 'train-*')) if
         r['video_id'] == 'trees/tree'][0]
  # Output frames at t = 0 .. 0.6 s show the first picture (the second one
  # is at 0.733 s), so they are the same JPEG bytes.
  assert times[1] == pytest.approx(0.7333, abs=1e-3)
  assert rec['frames'][0] == rec['frames'][3]
  assert rec['frames'][3] != rec['frames'][4]  # t = 0.8 s: second picture.


def test_label_map_and_summary(converted, samples):
  out = converted['out']
  with open(os.path.join(out, 'label_map.txt')) as f:
    assert f.read() == 'people\ntrees\n'
  with open(os.path.join(out, 'label_map.json')) as f:
    assert json.load(f) == {'people': 0, 'trees': 1}
  with open(os.path.join(out, 'summary.json')) as f:
    summary = json.load(f)
  assert summary == json.loads(json.dumps(converted['summary']))
  assert summary['num_videos'] == 4
  assert summary['num_converted'] == 2
  assert summary['num_failed'] == 2
  assert summary['num_frames'] == VTEST_FRAMES + TREE_FRAMES
  reasons = {d['video_id']: d['reason'] for d in summary['failed']}
  n = count_decodable(samples['truncated'])
  assert 0 < n < 795
  assert reasons['people/truncated'] == f'partial decode: {n} of 795 frames'
  assert reasons['trees/notavideo'].startswith('cannot open as a video')
  assert summary['ignored_files'] == [
      os.path.join(converted['in'], 'trees', 'README.txt')]
  # Shard 2 holds only trees/notavideo: all its videos failed, so it is not
  # written (no empty TFRecord for training) and gets no resume marker.
  assert summary['shards_empty'] == ['train-00002-of-00003.tfrecord']
  assert summary['shards_written'] == [
      'train-00000-of-00003.tfrecord', 'train-00001-of-00003.tfrecord']
  assert sorted(os.listdir(out)) == [
      '.progress', 'label_map.json', 'label_map.txt', 'summary.json',
      'train-00000-of-00003.tfrecord', 'train-00001-of-00003.tfrecord']
  assert sorted(os.listdir(os.path.join(out, '.progress'))) == [
      'train-00000-of-00003.tfrecord.done',
      'train-00001-of-00003.tfrecord.done']


def test_allow_partial_keeps_decoded_frames(samples, tmp_path):
  n = count_decodable(samples['truncated'])
  job = videos.VideoJob('truncated', samples['truncated'])
  with pytest.raises(videos.VideoDecodeError,
                     match=f'partial decode: {n} of 795 frames'):
    videos.decode_video(job, videos.ConvertOptions(fps=FPS, short_side=SHORT))
  (tmp_path / 'in' / 'a').mkdir(parents=True)
  shutil.copy(samples['truncated'], tmp_path / 'in' / 'a' / 'truncated.avi')
  summary = videos.convert_videos(
      str(tmp_path / 'in'), str(tmp_path / 'out'),
      options=videos.ConvertOptions(fps=FPS, short_side=SHORT,
                                    allow_partial=True),
      num_shards=1, num_workers=1, progress=False)
  assert summary['num_failed'] == 0
  assert summary['partial'][0]['reason'] == f'partial decode: {n} of 795 frames'
  recs = video_records.read_records(str(tmp_path / 'out' / 'train-*'))
  # Source frames 0..n-1 are covered; n_k = 2k < n -> ceil(n / 2) frames.
  assert len(recs[0]['frames']) == math.ceil(n / 2)


def test_resume_skips_finished_shards(samples, tmp_path):
  inp, out = tmp_path / 'in', tmp_path / 'out'
  for cls in ('a', 'b'):
    (inp / cls).mkdir(parents=True)
    shutil.copy(samples['tree'], inp / cls / f'tree_{cls}.avi')
  kwargs = dict(options=videos.ConvertOptions(fps=2.0, short_side=32),
                num_shards=2, num_workers=1, progress=False)
  first = videos.convert_videos(str(inp), str(out), **kwargs)
  shards = [str(out / videos.shard_name('train', s, 2)) for s in range(2)]
  assert first['shards_written'] == [os.path.basename(p) for p in shards]
  # Pretend the run died while writing shard 1: its marker is missing.
  os.remove(out / '.progress' / (os.path.basename(shards[1]) + '.done'))
  past = 1_000_000_000
  for p in shards:
    os.utime(p, (past, past))
  second = videos.convert_videos(str(inp), str(out), **kwargs)
  assert second['shards_skipped'] == [os.path.basename(shards[0])]
  assert second['shards_written'] == [os.path.basename(shards[1])]
  assert os.path.getmtime(shards[0]) == past
  assert os.path.getmtime(shards[1]) != past
  # The summary still covers the videos of the skipped shard.
  assert second['num_converted'] == 2
  assert second['num_frames'] == first['num_frames']
  # Changed options do not match the markers: everything is redone.
  kwargs['options'] = videos.ConvertOptions(fps=1.0, short_side=32)
  third = videos.convert_videos(str(inp), str(out), **kwargs)
  assert third['shards_skipped'] == []
  # 29.6 s at 1 fps: n_k = round(k * 14.999925) < 444 for k = 0..29 -> 30.
  assert third['num_frames'] == 2 * 30


def test_unwritable_output_dir_fails_before_work(samples, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  inp = tmp_path / 'in'
  (inp / 'a').mkdir(parents=True)
  shutil.copy(samples['tree'], inp / 'a' / 'tree.avi')
  with pytest.raises(ValueError, match='output_dir .*a_file/out is not a '
                     'writable folder'):
    videos.convert_videos(str(inp), str(blocker / 'out'), progress=False)


def _write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
    w.writerows(rows)


def test_csv_mode_trims_full_videos(samples, tmp_path):
  inp = tmp_path / 'videos'
  inp.mkdir()
  # A full video (trimmed here) and a Kinetics-named pre-trimmed clip.
  shutil.copy(samples['vtest'], inp / 'walkAAAAAAA.avi')
  shutil.copy(samples['tree'], inp / 'treeBBBBBBB_000002_000031.avi')
  csv_path = tmp_path / 'train.csv'
  _write_csv(csv_path, [
      ['walking', 'walkAAAAAAA', 10, 14, 'train'],
      ['swaying', 'treeBBBBBBB', 2, 31, 'train'],
      ['zebra', 'missingCCCC', 0, 10, 'train'],
      ['walking', 'valDDDDDDDD', 0, 10, 'val'],
  ])
  summary = videos.convert_videos(
      str(inp), str(tmp_path / 'out'), csv_path=str(csv_path), split='train',
      options=videos.ConvertOptions(fps=FPS, short_side=SHORT),
      num_shards=2, num_workers=1, progress=False)
  assert summary['num_failed'] == 0 and summary['num_converted'] == 2
  assert [s['video_id'] for s in summary['skipped']] == [
      'missingCCCC_000000_000010']
  assert 'csv line 4' in summary['skipped'][0]['reason']
  # Labels of all rows (all splits), sorted: swaying, walking, zebra.
  with open(tmp_path / 'out' / 'label_map.txt') as f:
    assert f.read().split() == ['swaying', 'walking', 'zebra']
  recs = {r['video_id']: r for r in video_records.read_records(
      str(tmp_path / 'out' / 'train-*'))}
  walk = recs['walkAAAAAAA_000010_000014']
  # t_k = 10 + 0.2 k < 14 -> k = 0..19 -> 20 frames; frame 0 = source 100.
  assert len(walk['frames']) == 20
  assert walk['label'] == [1] and walk['label_text'] == 'walking'
  cap = cv2.VideoCapture(samples['vtest'])
  for _ in range(101):
    frame = cap.read()[1]
  assert walk['frames'][0] == reference_jpeg(frame)
  # The pre-trimmed file is used whole.
  tree = recs['treeBBBBBBB_000002_000031']
  assert len(tree['frames']) == TREE_FRAMES and tree['label'] == [0]


def test_csv_malformed_row_names_the_line(tmp_path):
  csv_path = tmp_path / 'bad.csv'
  with open(csv_path, 'w') as f:
    f.write('label,youtube_id,time_start,time_end,split\n'
            'a,xyz,0,10,train\n'
            'b,abc,ten,20,train\n')
  with pytest.raises(ValueError, match=r'bad\.csv:3: time_start/time_end'):
    videos.read_kinetics_csv(str(csv_path))
  with open(csv_path, 'w') as f:
    f.write('label,youtube_id,time_start,time_end,split\n'
            'a,xyz,0,10\n')
  with pytest.raises(ValueError, match=r'bad\.csv:2: expected 5 fields'):
    videos.read_kinetics_csv(str(csv_path))
  with open(csv_path, 'w') as f:
    f.write('label,youtube_id,time_start,time_end,split\n'
            'a,xyz,10,5,train\n')
  with pytest.raises(ValueError, match=r'bad\.csv:2: need 0 <= time_start'):
    videos.read_kinetics_csv(str(csv_path))


def test_iter_output_times_by_hand():
  # 2 s window from 1 s at 4 fps of a 25 fps source: t = 1, 1.25, .., 2.75;
  # source indices round(25 t) = 25, 31.25->31, 37.5->38, 43.75->44, 50, ...
  got = list(videos.iter_output_times(1.0, 3.0, 25.0, 4.0, 1000))
  assert [t for t, _ in got] == [1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]
  assert [n for _, n in got] == [25, 31, 38, 44, 50, 56, 63, 69]
  # The source ends at frame 60: indices must stay below it.
  assert len(list(videos.iter_output_times(1.0, 3.0, 25.0, 4.0, 60))) == 6


def test_detections_attach_to_nearest_output_frames(samples, tmp_path):
  frames_csv = tmp_path / 'det_frames.csv'
  frames_csv.write_text(
      'treeid,0,0.1,0.2,0.5,0.6,0.9\n'
      'treeid,0,0.0,0.0,1.0,1.0,0.3\n'
      # Source frame 3 is at 0.2 s -> output frame 1 (t = 0.2 s).
      'treeid,3,0.2,0.2,0.4,0.4\n'
      # Source frame 16 is at 1.067 s: 0.067 s from output frame 5 (1.0 s),
      # within half an output period (0.1 s).
      'treeid,16,0.3,0.3,0.6,0.6,0.8\n'
      'other,0,0.1,0.1,0.2,0.2,0.9\n')
  dets = videos.read_detections(str(frames_csv), min_score=0.5)
  job = videos.VideoJob('a/treeid', samples['tree'], aliases=('treeid',))
  res = videos.decode_video(
      job, videos.ConvertOptions(fps=FPS, short_side=SHORT),
      videos._detections_for(job, dets))
  boxes = res['boxes']
  assert len(boxes) == TREE_FRAMES
  np.testing.assert_allclose(boxes[0], [[0.1, 0.2, 0.5, 0.6]])  # 0.3 < 0.5.
  np.testing.assert_allclose(boxes[1], [[0.2, 0.2, 0.4, 0.4]])
  np.testing.assert_allclose(boxes[5], [[0.3, 0.3, 0.6, 0.6]])
  assert [t for t, b in enumerate(boxes) if len(b)] == [0, 1, 5]
  # Timestamp header: 0.45 s is nearest to output frame 2 (0.4 s).
  times_csv = tmp_path / 'det_times.csv'
  times_csv.write_text('video_id,timestamp,ymin,xmin,ymax,xmax,score\n'
                       'treeid,0.45,0.1,0.1,0.9,0.9,1.0\n')
  dets = videos.read_detections(str(times_csv))
  res = videos.decode_video(
      job, videos.ConvertOptions(fps=FPS, short_side=SHORT),
      videos._detections_for(job, dets))
  assert [t for t, b in enumerate(res['boxes']) if len(b)] == [2]
  bad_csv = tmp_path / 'det_bad.csv'
  bad_csv.write_text('treeid,0,0.1,0.2,0.5,0.6\ntreeid,1,0.5,0.2,0.1,0.6\n')
  with pytest.raises(ValueError, match=r'det_bad\.csv:2: box'):
    videos.read_detections(str(bad_csv))


def test_detections_written_as_region_boxes(samples, tmp_path):
  inp = tmp_path / 'in'
  (inp / 'a').mkdir(parents=True)
  shutil.copy(samples['tree'], inp / 'a' / 'treeid.avi')
  det = tmp_path / 'det.csv'
  det.write_text('a/treeid,0,0.1,0.2,0.5,0.6\na/treeid,0,0.2,0.3,0.4,0.5\n')
  videos.convert_videos(
      str(inp), str(tmp_path / 'out'), detections_csv=str(det),
      options=videos.ConvertOptions(fps=1.0, short_side=32), num_shards=1,
      num_workers=1, progress=False)
  rec = video_records.read_records(str(tmp_path / 'out' / 'train-*'))[0]
  assert len(rec['boxes']) == len(rec['frames']) == 30
  np.testing.assert_allclose(rec['boxes'][0],
                             [[0.1, 0.2, 0.5, 0.6], [0.2, 0.3, 0.4, 0.5]])
  assert all(len(b) == 0 for b in rec['boxes'][1:])


def test_csv_with_given_label_map(samples, tmp_path):
  """A val CSV converted with the train label map keeps the train indices."""
  inp = tmp_path / 'videos'
  inp.mkdir()
  shutil.copy(samples['tree'], inp / 'treeBBBBBBB.avi')
  csv_path = tmp_path / 'val.csv'
  _write_csv(csv_path, [['swaying', 'treeBBBBBBB', 0, 1, 'val']])
  label_map = tmp_path / 'label_map.txt'
  label_map.write_text('abseiling\nswaying\nzumba\n')
  videos.convert_videos(
      str(inp), str(tmp_path / 'out'), csv_path=str(csv_path), split='val',
      label_map=str(label_map),
      options=videos.ConvertOptions(fps=FPS, short_side=SHORT), num_shards=1,
      num_workers=1, progress=False)
  rec = video_records.read_records(str(tmp_path / 'out' / 'val-*'))[0]
  # 0..1 s at 5 fps -> t = 0, 0.2, .., 0.8 -> 5 frames.
  assert rec['label'] == [1] and len(rec['frames']) == 5
  assert (tmp_path / 'out' / 'label_map.txt').read_text() == (
      'abseiling\nswaying\nzumba\n')
  _write_csv(csv_path, [['swaying', 'treeBBBBBBB', 0, 1, 'val'],
                        ['yodelling', 'treeBBBBBBB', 2, 3, 'val']])
  with pytest.raises(ValueError, match=r"val\.csv:3: label 'yodelling' is "
                     'not in the label map'):
    videos.csv_jobs(str(csv_path), str(inp), 'val',
                    videos.read_label_map(str(label_map)))


def test_converted_real_videos_read_through_the_pretraining_pipeline(
    converted):
  """The SSL input pipeline reads the converted opencv-doc videos."""
  from dataloaders import ssl_parser  # pylint: disable=g-import-not-at-top
  parser = ssl_parser.Parser(num_frames=4, stride=2, crop_size=32,
                             num_boxes=3)
  ds = ssl_parser.build_ssl_dataset(
      os.path.join(converted['out'], 'train-*-of-00003.tfrecord'), parser,
      global_batch_size=2, is_training=False, seed=0)
  batches = list(ds.take(1).as_numpy_iterator())
  assert len(batches) == 1
  batch = batches[0]
  assert batch['image'].shape == (2, 2, 4, 32, 32, 3)
  assert batch['image'].dtype == np.float32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['boxes'].shape == (2, 2, 4, 3, 4)
  # Two videos, labels from the class folders (people 0, trees 1).
  assert sorted(batch['label'].tolist()) == [0, 1]
  # Each view's frames are start + 2 i of the converted video (no video is
  # shorter than 4 * 2 frames, so no index wraps).
  for video in range(2):
    for view in range(2):
      idx = batch['frame_index'][video, view]
      assert np.all(np.diff(idx) == 2), idx
      limit = VTEST_FRAMES if batch['label'][video] == 0 else TREE_FRAMES
      assert 0 <= idx.min() and idx.max() < limit
  # The pixels are the video's, not padding: real content varies.
  assert batch['image'].std() > 0.02
