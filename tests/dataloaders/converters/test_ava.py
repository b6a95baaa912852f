"""Round trip of the AVA converter on a tiny synthetic AVA set made here."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from dataloaders.converters import ava

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LABELMAP = ('label { name: "bend" label_id: 1 label_type: PERSON_MOVEMENT }\n'
            'label { name: "sit" label_id: 11 label_type: PERSON_POSE }\n'
            'label { name: "talk" label_id: 79 label_type: PERSON_INTERACTION }'
            '\n')


def _gray(i):
  return 30 + 5 * i  # frames 0..39 stay distinct, away from 0 and 255


def _write_video(path, num_frames, fps=10):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                           (64, 48))
  for i in range(num_frames):
    writer.write(np.full((48, 64, 3), _gray(i), np.uint8))
  writer.release()


@pytest.fixture(name='ava_set')
def _ava_set(tmp_path):
  videos = tmp_path / 'videos'
  videos.mkdir()
  _write_video(videos / 'vidA.mp4', 40)
  _write_video(videos / 'vidB.mp4', 30)
  (videos / 'vidD.mkv').write_bytes(b'not a video at all' * 10)
  (tmp_path / 'labels.pbtxt').write_text(LABELMAP)
  (tmp_path / 'ann.csv').write_text(
      'vidA,0001,0.100,0.200,0.500,0.800,1,0\n'
      'vidA,0001,0.100,0.200,0.500,0.800,11,0\n'   # same person, 2nd label
      'vidA,0001,0.600,0.100,0.900,0.700,79,1\n'
      'vidA,0003,0.200,0.300,0.400,0.500,11,0\n'
      'vidA,0002,0.000,0.000,1.000,1.000,1,2\n'
      'vidA,0002,0.000,0.000,1.000,1.200,1,2\n'    # bad: out of range
      'vidA,0002,0.000,0.000,1.000,1.000,42,2\n'   # bad: not in label map
      'vidA,0002,0.000,0.000,1.000\n'              # bad: malformed
      'vidB,0000,0.100,0.100,0.300,0.300,79,5\n'
      'vidC,0001,0.100,0.100,0.300,0.300,1,0\n'    # missing video
      'vidD,0001,0.100,0.100,0.300,0.300,1,0\n')   # unreadable video
  (tmp_path / 'exc.csv').write_text('vidA,0002\n')
  (tmp_path / 'det.csv').write_text(
      'vidA,1,0.100,0.200,0.500,0.800,1,0.9\n'
      'vidA,1,0.100,0.200,0.500,0.800,2,0.95\n'  # same box, other class
      'vidA,1,0.600,0.100,0.900,0.700,1,0.4\n'
      'vidB,0,0.2,0.2,0.4,0.4,1,0.7\n'
      'vidB,2,0.5,0.2,0.7,0.4,1,0.3\n'           # frame not annotated
      'vidA,2,0.5,0.2,0.7,0.4,1,0.8\n')          # excluded frame
  return tmp_path


def _source_means(path):
  """Mean gray level of every decoded frame (the codec shifts levels a bit)."""
  cap = cv2.VideoCapture(str(path))
  means = []
  while True:
    ok, frame = cap.read()
    if not ok:
      break
    means.append(frame.mean())
  cap.release()
  return np.array(means)


def _assert_frames_are(frames, source_means, indices):
  """The clip's frames are the source frames `indices` (JPEG shifts levels by
  a constant ~2, so the steps between frames are compared tightly)."""
  got = frames.mean(axis=(1, 2, 3))
  want = source_means[list(indices)]
  np.testing.assert_allclose(got, want, atol=3)
  np.testing.assert_allclose(np.diff(got), np.diff(want), atol=1)


def _read(pattern):
  out = {}
  for path in sorted(tf.io.gfile.glob(pattern)):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      seq = tf.train.SequenceExample.FromString(raw)
      ctx = seq.context.feature
      f = lambda k: list(ctx[k].float_list.value)
      i = lambda k: list(ctx[k].int64_list.value)
      vid = ctx['clip/id'].bytes_list.value[0].decode()
      ts = f(ava.KEY_FRAME_TIMESTAMP_KEY)[0]
      frames = [tf.io.decode_jpeg(x.bytes_list.value[0]).numpy() for x in
                seq.feature_lists.feature_list['image/encoded'].feature]
      out[(vid, ts)] = {
          'boxes': np.stack([f(k) for k in ava.BOX_KEYS], -1),
          'label_index': i(ava.LABEL_INDEX_KEY),
          'label_count': i(ava.LABEL_COUNT_KEY),
          'person_id': i(ava.PERSON_ID_KEY),
          'key_index': i(ava.KEY_FRAME_INDEX_KEY)[0],
          'frames': np.stack(frames),
          'det_boxes': np.stack([f(k) for k in ava.DETECTION_BOX_KEYS], -1)
                       .reshape(-1, 4),
          'det_scores': f(ava.DETECTION_SCORE_KEY),
      }
  return out


def test_round_trip_missing_video_bad_rows_and_resume(ava_set):
  out_dir = ava_set / 'out'
  opts = ava.ClipOptions(num_frames=4, stride=1, fps=10, short_side=24)
  summary = ava.convert(str(ava_set / 'ann.csv'),
                        str(ava_set / 'labels.pbtxt'),
                        str(ava_set / 'videos'), str(out_dir),
                        detections_csv=str(ava_set / 'det.csv'),
                        exclusions_csv=str(ava_set / 'exc.csv'),
                        opts=opts, num_shards=2)
  # Both shards hold a missing (vidC) or unreadable (vidD) video: written,
  # but not marked done, so that a rerun converts those videos.
  assert sorted(os.listdir(out_dir)) == [
      'ava-00000-of-00002.tfrecord', 'ava-00001-of-00002.tfrecord',
      'ava-summary.json']
  assert summary['shards_not_marked_done'] == {
      'ava-00000-of-00002.tfrecord': '1 video(s) missing',
      'ava-00001-of-00002.tfrecord': '1 video(s) unreadable'}
  records = _read(str(out_dir / 'ava-*.tfrecord'))
  assert sorted(records) == [('vidA', 1.0), ('vidA', 3.0), ('vidB', 0.0),
                             ('vidB', 2.0)]
  a1 = records[('vidA', 1.0)]
  # CSV x1,y1,x2,y2 -> ymin,xmin,ymax,xmax; one box per person id.
  np.testing.assert_allclose(a1['boxes'], [[.2, .1, .8, .5], [.1, .6, .7, .9]],
                             atol=1e-6)
  assert a1['label_index'] == [1, 11, 79]
  assert a1['label_count'] == [2, 1]
  assert a1['person_id'] == [0, 1]
  # Detections: one box per distinct box with its best score, best first.
  np.testing.assert_allclose(a1['det_boxes'], [[.2, .1, .8, .5],
                                               [.1, .6, .7, .9]], atol=1e-6)
  np.testing.assert_allclose(a1['det_scores'], [.95, .4], atol=1e-6)
  b0 = records[('vidB', 0.0)]
  np.testing.assert_allclose(b0['boxes'], [[.1, .1, .3, .3]], atol=1e-6)
  assert b0['label_index'] == [79] and b0['person_id'] == [5]
  # Frames: short side 48 -> 24 (64x48 -> 32x24); key frame at index 2.
  # vidA t=1 s at 10 fps: source frames 8, 9, 10, 11.
  assert a1['frames'].shape == (4, 24, 32, 3)
  assert a1['key_index'] == 2
  src_a = _source_means(ava_set / 'videos' / 'vidA.mp4')
  src_b = _source_means(ava_set / 'videos' / 'vidB.mp4')
  assert np.all(np.diff(src_a) > 3)  # frames are distinguishable.
  _assert_frames_are(a1['frames'], src_a, [8, 9, 10, 11])
  # vidB t=0: frames -2, -1 repeat frame 0. vidA t=3 (frames 28..31 of 40).
  _assert_frames_are(b0['frames'], src_b, [0, 0, 0, 1])
  _assert_frames_are(records[('vidA', 3.0)]['frames'], src_a, [28, 29, 30, 31])

  assert summary['missing_videos'] == {'vidC': 1}
  assert list(summary['unreadable_videos']) == ['vidD']
  assert 'vidD.mkv' in summary['unreadable_videos']['vidD']
  assert summary['bad_rows']['annotations'] == {
      'coordinates_out_of_range': 1, 'action_id_not_in_labelmap': 1,
      'malformed': 1}
  # The detections of the excluded frame are dropped; the one on the frame
  # without annotation is a key frame of its own (no ground-truth box).
  assert summary['dropped_rows'] == {
      'annotation_rows_in_excluded_frames': 1,
      'detection_rows_in_excluded_frames': 1}
  b2 = records[('vidB', 2.0)]
  assert b2['boxes'].size == 0 and b2['label_count'] == []
  np.testing.assert_allclose(b2['det_boxes'], [[.2, .5, .4, .7]], atol=1e-6)
  np.testing.assert_allclose(b2['det_scores'], [.3], atol=1e-6)
  assert summary['detection_only_key_frames'] == 1
  assert summary['key_frames_written'] == 4
  assert summary['key_frames_in_csv'] == 6
  assert summary['boxes_written'] == 4
  with open(out_dir / 'ava-summary.json', encoding='utf-8') as f:
    assert json.load(f)['missing_videos'] == {'vidC': 1}
  text = ava.format_summary(summary)
  assert 'missing videos (1, 1 key frames): vidC' in text
  assert ('ava-00000-of-00002.tfrecord: 1 video(s) missing; not marked done, '
          'a rerun with them in place converts it') in text

  # With the videos in place, the rerun converts them.
  _write_video(ava_set / 'videos' / 'vidC.mp4', 20)
  os.remove(ava_set / 'videos' / 'vidD.mkv')
  _write_video(ava_set / 'videos' / 'vidD.mp4', 20)
  again = ava.convert(str(ava_set / 'ann.csv'), str(ava_set / 'labels.pbtxt'),
                      str(ava_set / 'videos'), str(out_dir),
                      detections_csv=str(ava_set / 'det.csv'),
                      exclusions_csv=str(ava_set / 'exc.csv'),
                      opts=opts, num_shards=2)
  assert again['shards_resumed'] == 0
  assert again['key_frames_written'] == 6
  assert again['missing_videos'] == {} and again['unreadable_videos'] == {}
  assert again['shards_not_marked_done'] == {}
  assert sorted(_read(str(out_dir / 'ava-*.tfrecord'))) == [
      ('vidA', 1.0), ('vidA', 3.0), ('vidB', 0.0), ('vidB', 2.0),
      ('vidC', 1.0), ('vidD', 1.0)]

  # Resume: finished shards are skipped and left untouched.
  mtimes = {p: os.path.getmtime(out_dir / p) for p in os.listdir(out_dir)
            if p.endswith('.tfrecord')}
  again = ava.convert(str(ava_set / 'ann.csv'), str(ava_set / 'labels.pbtxt'),
                      str(ava_set / 'videos'), str(out_dir),
                      detections_csv=str(ava_set / 'det.csv'),
                      exclusions_csv=str(ava_set / 'exc.csv'),
                      opts=opts, num_shards=2)
  assert again['shards_resumed'] == 2
  assert again['key_frames_written'] == 6
  for p, t in mtimes.items():
    assert os.path.getmtime(out_dir / p) == t
  # A shard without its marker (interrupted run) is redone.
  os.remove(out_dir / 'ava-00001-of-00002.tfrecord.done')
  again = ava.convert(str(ava_set / 'ann.csv'), str(ava_set / 'labels.pbtxt'),
                      str(ava_set / 'videos'), str(out_dir),
                      detections_csv=str(ava_set / 'det.csv'),
                      exclusions_csv=str(ava_set / 'exc.csv'),
                      opts=opts, num_shards=2)
  assert again['shards_resumed'] == 1
  assert len(_read(str(out_dir / 'ava-*.tfrecord'))) == 6


def test_rerun_converts_a_video_added_after_the_first_run(ava_set):
  # One shard, vidA present, vidB missing on the first run: the shard used
  # to be marked done and the rerun skipped it, never converting vidB.
  os.rename(ava_set / 'videos' / 'vidB.mp4', ava_set / 'vidB.mp4')
  (ava_set / 'ab.csv').write_text('vidA,1,0.1,0.1,0.5,0.5,1,0\n'
                                  'vidB,1,0.1,0.1,0.5,0.5,1,0\n')
  out_dir = ava_set / 'out'
  def run():
    return ava.convert(str(ava_set / 'ab.csv'),
                       str(ava_set / 'labels.pbtxt'),
                       str(ava_set / 'videos'), str(out_dir),
                       opts=ava.ClipOptions(num_frames=2, stride=1, fps=10,
                                            short_side=0), num_shards=1)
  first = run()
  assert first['key_frames_written'] == 1
  assert first['missing_videos'] == {'vidB': 1}
  assert not os.path.exists(out_dir / 'ava-00000-of-00001.tfrecord.done')
  with open(out_dir / 'ava-summary.json', encoding='utf-8') as f:
    assert json.load(f)['shards_not_marked_done'] == {
        'ava-00000-of-00001.tfrecord': '1 video(s) missing'}
  os.rename(ava_set / 'vidB.mp4', ava_set / 'videos' / 'vidB.mp4')
  second = run()
  assert second['shards_resumed'] == 0
  assert second['key_frames_written'] == 2
  assert second['missing_videos'] == {}
  assert sorted(_read(str(out_dir / 'ava-*.tfrecord'))) == [
      ('vidA', 1.0), ('vidB', 1.0)]
  assert run()['shards_resumed'] == 1
  # A marker of an older version, written despite a missing video, is not
  # trusted either.
  marker = out_dir / 'ava-00000-of-00001.tfrecord.done'
  with open(marker, encoding='utf-8') as f:
    done = json.load(f)
  done['stats']['missing_videos'] = {'vidB': 1}
  with open(marker, 'w', encoding='utf-8') as f:
    json.dump(done, f)
  third = run()
  assert third['shards_resumed'] == 0 and third['missing_videos'] == {}
  assert third['key_frames_written'] == 2


def test_detection_only_key_frame_is_written_and_parses(ava_set):
  # mAP(Det) counts detections on frames without ground truth as false
  # positives: such a frame needs a record for the model to score it.
  from dataloaders import ava_parser  # pylint: disable=g-import-not-at-top
  (ava_set / 'gt.csv').write_text('vidA,1,0.1,0.1,0.5,0.5,1,0\n')
  # vidZ has no annotation at all: not part of this evaluation.
  (ava_set / 'd.csv').write_text('vidA,1,0.1,0.1,0.5,0.5,,0.95\n'
                                 'vidA,2,0.5,0.5,0.9,0.9,,0.99\n'
                                 'vidA,3,0.5,0.5,0.9,0.9,,0.99\n'
                                 'vidZ,2,0.5,0.5,0.9,0.9,,0.99\n')
  (ava_set / 'x.csv').write_text('vidA,3\n')
  opts = ava.ClipOptions(num_frames=2, stride=1, fps=10, short_side=0)
  def run(out, **kwargs):
    return ava.convert(str(ava_set / 'gt.csv'), str(ava_set / 'labels.pbtxt'),
                       str(ava_set / 'videos'), str(ava_set / out),
                       detections_csv=str(ava_set / 'd.csv'),
                       exclusions_csv=str(ava_set / 'x.csv'), opts=opts,
                       **kwargs)
  summary = run('out')
  assert summary['key_frames_written'] == 2
  assert summary['detection_only_key_frames'] == 1
  assert summary['dropped_rows'] == {
      'detection_rows_in_excluded_frames': 1,
      'detection_rows_of_unannotated_videos': 1}
  assert summary['missing_videos'] == {}  # vidZ is not looked for
  assert ('1 of them have detections but no annotation'
          in ava.format_summary(summary))
  pattern = str(ava_set / 'out' / 'ava-*.tfrecord')
  records = _read(pattern)
  assert sorted(records) == [('vidA', 1.0), ('vidA', 2.0)]
  rec = records[('vidA', 2.0)]
  assert rec['boxes'].size == 0 and rec['label_index'] == []
  np.testing.assert_allclose(rec['det_boxes'], [[.5, .5, .9, .9]], atol=1e-6)
  # The parser takes it: one detector box for mAP(Det), none for mAP(GT).
  raw = {}
  for path in tf.io.gfile.glob(pattern):
    for r in tf.data.TFRecordDataset(path).as_numpy_iterator():
      seq = tf.train.SequenceExample.FromString(r)
      raw[seq.context.feature[ava.KEY_FRAME_TIMESTAMP_KEY].float_list
          .value[0]] = r
  decoded = ava_parser.Decoder().decode(tf.constant(raw[2.0]))
  for use_dets, mask in ((True, [1, 0, 0]), (False, [0, 0, 0])):
    out = ava_parser.Parser(2, 16, 3, 80, is_training=False,
                            use_detections=use_dets).parse(decoded)
    np.testing.assert_array_equal(out['box_mask'].numpy(), mask)
    assert out['labels'].numpy().sum() == 0
  # Training data: the option off drops and counts the rows as before.
  summary = run('tout', detection_only_key_frames=False)
  assert summary['key_frames_written'] == 1
  assert summary['detection_only_key_frames'] == 0
  assert summary['dropped_rows'] == {
      'detection_rows_in_excluded_frames': 1,
      'detection_rows_of_unannotated_videos': 1,
      'detection_rows_without_annotated_key_frame': 1}


def test_rescored_detections_redo_the_shard(ava_set):
  # Same boxes, new scores: the records hold the scores, so the old shard
  # must not be resumed.
  (ava_set / 'gt.csv').write_text('vidA,1,0.1,0.1,0.5,0.5,1,0\n')
  opts = ava.ClipOptions(num_frames=2, stride=1, fps=10, short_side=0)
  def run(score):
    (ava_set / 'd.csv').write_text(f'vidA,1,0.1,0.1,0.5,0.5,,{score}\n')
    return ava.convert(str(ava_set / 'gt.csv'), str(ava_set / 'labels.pbtxt'),
                       str(ava_set / 'videos'), str(ava_set / 'out'),
                       detections_csv=str(ava_set / 'd.csv'), opts=opts)
  assert run(0.9)['shards_resumed'] == 0
  assert run(0.9)['shards_resumed'] == 1
  assert run(0.1)['shards_resumed'] == 0
  rec = _read(str(ava_set / 'out' / 'ava-*.tfrecord'))[('vidA', 1.0)]
  np.testing.assert_allclose(rec['det_scores'], [0.1], atol=1e-6)


def test_kinetics_clip_names_and_tool(ava_set):
  # AVA-Kinetics: YouTube id 'yt_x-1' stored as a cut from second 100 to 104;
  # the CSV timestamp 102 is 2 s into the cut (frame 20 at 10 fps).
  os.rename(ava_set / 'videos' / 'vidA.mp4',
            ava_set / 'videos' / 'yt_x-1_000100_000104.mp4')
  (ava_set / 'kin.csv').write_text('yt_x-1,102,0.1,0.2,0.5,0.8,11,0\n'
                                   'yt_x-1,130,0.1,0.2,0.5,0.8,11,0\n')
  out_dir = ava_set / 'kout'
  proc = subprocess.run(
      [sys.executable, 'tools/ava_to_tfrecords.py',
       f'--annotations={ava_set / "kin.csv"}',
       f'--labelmap={ava_set / "labels.pbtxt"}',
       f'--video_dir={ava_set / "videos"}', f'--output_dir={out_dir}',
       '--num_frames=2', '--stride=1', '--fps=10', '--short_side=0',
       '--num_shards=1', '--timestamp_offset_from_filename', '--prefix=kin'],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert 'wrote 1 of 2 key frames' in proc.stdout
  assert 'skipped 1 key frame(s): timestamp_outside_video_clips' in proc.stdout
  # The cut that holds t=130 may still come: the shard is redone on rerun.
  assert ('kin-00000-of-00001.tfrecord: 1 key frame(s) outside every clip of '
          'their video; not marked done') in proc.stdout
  assert not os.path.exists(out_dir / 'kin-00000-of-00001.tfrecord.done')
  records = _read(str(out_dir / 'kin-*.tfrecord'))
  rec = records[('yt_x-1', 102.0)]
  assert rec['frames'].shape == (2, 48, 64, 3)
  assert rec['key_index'] == 1
  src = _source_means(ava_set / 'videos' / 'yt_x-1_000100_000104.mp4')
  _assert_frames_are(rec['frames'], src, [19, 20])


def test_clip_frame_indices():
  idx, key = ava.clip_frame_indices(
      2.0, 25.0, ava.ClipOptions(num_frames=4, stride=2, fps=30))
  # Times 2 + (-2, -1, 0, 1) * 2/30 s at 25 fps.
  np.testing.assert_array_equal(idx, np.round(
      (2.0 + np.array([-2, -1, 0, 1]) * 2 / 30) * 25))
  assert key == 2


def test_key_frame_past_end_of_video_is_skipped(ava_set):
  # vidA has 40 frames at 10 fps (4 s) and its container reports the count:
  # key frames at 5 s and 9999 s are past the end, not clips of the frozen
  # last frame; 3 s (frames 28..31) is a normal clip.
  (ava_set / 'late.csv').write_text(
      'vidA,0003,0.1,0.2,0.5,0.8,1,0\n'
      'vidA,0005,0.1,0.2,0.5,0.8,1,0\n'
      'vidA,9999,0.1,0.2,0.5,0.8,1,0\n')
  summary = ava.convert(str(ava_set / 'late.csv'),
                        str(ava_set / 'labels.pbtxt'),
                        str(ava_set / 'videos'), str(ava_set / 'out'),
                        opts=ava.ClipOptions(num_frames=4, stride=1, fps=10,
                                             short_side=24))
  assert summary['key_frames_written'] == 1
  assert summary['skipped_key_frames'] == {'key_frame_past_end_of_video': 2}
  records = _read(str(ava_set / 'out' / 'ava-*.tfrecord'))
  assert sorted(records) == [('vidA', 3.0)]
  src = _source_means(ava_set / 'videos' / 'vidA.mp4')
  _assert_frames_are(records[('vidA', 3.0)]['frames'], src, [28, 29, 30, 31])


def test_zero_area_boxes_are_skipped_and_counted(ava_set):
  (ava_set / 'flat.csv').write_text(
      'vidA,0001,0.1,0.2,0.5,0.8,1,0\n'
      'vidA,0001,0.6,0.2,0.6,0.8,1,1\n'    # xmax == xmin
      'vidA,0003,0.1,0.5,0.5,0.5,1,0\n')   # ymax == ymin: no key frame left
  summary = ava.convert(str(ava_set / 'flat.csv'),
                        str(ava_set / 'labels.pbtxt'),
                        str(ava_set / 'videos'), str(ava_set / 'out'),
                        opts=ava.ClipOptions(num_frames=2, stride=1, fps=10,
                                             short_side=24))
  assert summary['bad_rows']['annotations'] == {'zero_area_box': 2}
  assert summary['key_frames_in_csv'] == 1
  assert summary['key_frames_written'] == 1
  assert summary['boxes_written'] == 1
  assert 'skipped 2 annotations row(s): zero_area_box' in ava.format_summary(
      summary)


def test_missing_video_dir_and_empty_annotations_fail_before_writing(
    ava_set):
  out_dir = ava_set / 'out'
  with pytest.raises(ValueError, match=r'video_dir .*novids is not a folder'):
    ava.convert(str(ava_set / 'ann.csv'), str(ava_set / 'labels.pbtxt'),
                str(ava_set / 'novids'), str(out_dir))
  (ava_set / 'empty.csv').write_text('')
  with pytest.raises(ValueError, match=(
      r'empty\.csv: no usable annotated key frame \(no rows\)')):
    ava.convert(str(ava_set / 'empty.csv'), str(ava_set / 'labels.pbtxt'),
                str(ava_set / 'videos'), str(out_dir))
  (ava_set / 'bad.csv').write_text('vidA,0001,0.1,0.2,0.5,1.8,1,0\n')
  with pytest.raises(ValueError, match=(
      r'bad\.csv: no usable annotated key frame \(1 '
      r'coordinates_out_of_range\)')):
    ava.convert(str(ava_set / 'bad.csv'), str(ava_set / 'labels.pbtxt'),
                str(ava_set / 'videos'), str(out_dir))
  assert not out_dir.exists()


def test_tool_exits_1_when_nothing_written_and_rerun_redoes(ava_set):
  # Every video of the CSV is missing: no shard, no marker, exit 1; with the
  # videos in place the rerun converts instead of resuming an empty shard.
  (ava_set / 'c.csv').write_text('vidX,0001,0.1,0.2,0.5,0.8,1,0\n')
  out_dir = ava_set / 'xout'
  cmd = [sys.executable, 'tools/ava_to_tfrecords.py',
         f'--annotations={ava_set / "c.csv"}',
         f'--labelmap={ava_set / "labels.pbtxt"}',
         f'--video_dir={ava_set / "videos"}', f'--output_dir={out_dir}',
         '--num_frames=2', '--stride=1', '--fps=10', '--short_side=0']
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 1, proc.stderr
  assert 'missing videos (1, 1 key frames): vidX' in proc.stdout
  assert (f'error: nothing was written to {out_dir}: all 1 key frames were '
          'skipped') in proc.stderr
  assert sorted(os.listdir(out_dir)) == ['ava-summary.json']
  os.rename(ava_set / 'videos' / 'vidA.mp4', ava_set / 'videos' / 'vidX.mp4')
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert 'wrote 1 of 1 key frames (1 boxes) in 1 shards (0 resumed)' in (
      proc.stdout)
  proc = subprocess.run(cmd[:4] + [f'--video_dir={ava_set / "novids"}'] +
                        cmd[5:], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 2
  assert f'error: video_dir {ava_set / "novids"} is not a folder' in (
      proc.stderr)
