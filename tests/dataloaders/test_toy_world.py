"""Tests for dataloaders/toy_world.py."""
import csv
import collections
import os
import re

import cv2
import numpy as np
import pytest

from dataloaders import toy_world as tw
from dataloaders import video_records

_SPEC = tw.ToyWorldSpec(num_frames=12)
_FLAT = tw.ToyWorldSpec(num_frames=12, background='flat', pixel_noise=0.0)


def _changed_pixel_box(frames, background=128):
  """Per-frame [ymin, xmin, ymax, xmax] pixel-edge box of non-grey pixels."""
  changed = np.any(frames != background, axis=-1)
  out = []
  for m in changed:
    rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
    out.append([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])
  return np.asarray(out, np.float64)


def test_constants():
  assert tw.NUM_CLASSES == 10 == len(tw.CLASS_NAMES) == len(set(tw.CLASS_NAMES))
  assert tw.NUM_ACTIONS == 8 == len(tw.ACTION_NAMES)
  # 5 shapes x 6 motions = 30 combos, 5 of them key actors.
  assert len(tw._FILLER_COMBOS) == 25


def test_determinism():
  a = tw.render_video(7, _SPEC)
  b = tw.render_video(7, _SPEC)
  c = tw.render_video(8, _SPEC)
  assert a.frames.shape == (12, 64, 64, 3) and a.frames.dtype == np.uint8
  np.testing.assert_array_equal(a.frames, b.frames)
  assert a.label == b.label
  for oa, ob in zip(a.objects, b.objects):
    np.testing.assert_array_equal(oa.boxes, ob.boxes)
    assert oa.actions == ob.actions
  assert np.mean(a.frames != c.frames) > 0.5
  ta = tw.render_tracking_video(3, _SPEC)
  tb = tw.render_tracking_video(3, _SPEC)
  np.testing.assert_array_equal(ta.frames, tb.frames)
  assert ta.target == tb.target
  # Seeds differ across splits and indices.
  seeds = {tw.derive_seed(0, s, i) for s in ('train', 'validation')
           for i in range(50)}
  assert len(seeds) == 100


def test_square_box_by_hand():
  # Square of half-side 0.85 * 10 = 8.5 around (32, 20): pixel centres
  # r + 0.5 in [23.5, 40.5] -> rows 23..40, columns 11..28.
  t_len = _FLAT.num_frames
  prog = tw.ObjectProgram(
      shape='square', color=(255, 0, 0), actions=[1],
      cy=np.full(t_len, 32.0, np.float32), cx=np.full(t_len, 20.0, np.float32),
      radius=np.full(t_len, 10.0, np.float32),
      angle=np.zeros(t_len, np.float32))
  frames, (obj,) = tw.render_scene([prog], _FLAT)
  np.testing.assert_allclose(obj.boxes[0], [23 / 64, 11 / 64, 41 / 64,
                                            29 / 64], atol=1e-6)
  assert int(np.any(frames[0] != 128, -1).sum()) == 18 * 18
  np.testing.assert_array_equal(frames[0, 23, 11], [255, 0, 0])
  np.testing.assert_array_equal(frames[0, 22, 11], [128, 128, 128])
  assert obj.visible.all()


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_boxes_tight_around_each_object_alone(seed):
  video = tw.render_video(seed, _SPEC)
  for obj in video.objects:
    frames, (alone,) = tw.render_scene([obj.program], _FLAT)
    want = _changed_pixel_box(frames)
    got = obj.boxes.astype(np.float64) * 64
    assert np.abs(got - want).max() <= 1.0, (seed, obj.shape)
    np.testing.assert_array_equal(alone.boxes, obj.boxes)
  # Objects always stay fully inside the frame.
  for obj in video.objects:
    assert obj.boxes.min() >= 0 and obj.boxes.max() <= 1
    assert (obj.boxes[:, 2] > obj.boxes[:, 0]).all()


def test_occlusion_visibility():
  t_len = _FLAT.num_frames
  full = lambda v: np.full(t_len, v, np.float32)
  back = tw.ObjectProgram('square', (255, 0, 0), [1], full(32), full(32),
                          full(10), full(0))
  front = tw.ObjectProgram('square', (0, 0, 255), [1], full(32), full(32),
                           full(12), full(0))
  _, (b, f) = tw.render_scene([back, front], _FLAT)
  np.testing.assert_allclose(b.visible_fraction, 0.0)
  assert not b.visible.any() and f.visible.all()
  # The amodal box of the hidden object is still its own.
  np.testing.assert_allclose(b.boxes[0], [23 / 64, 23 / 64, 41 / 64, 41 / 64],
                             atol=1e-6)


@pytest.mark.parametrize('fillers', ['still', 'non_key'])
def test_class_scripts_and_actions(fillers):
  spec = tw.ToyWorldSpec(num_frames=12, fillers=fillers)
  motion_of = dict(zip(range(1, 7), tw._MOTIONS))
  for seed in range(20):
    video = tw.render_video(seed, spec, label=seed % tw.NUM_CLASSES)
    assert 3 <= len(video.objects) <= 4
    combos = []
    for obj in video.objects:
      traj = [a for a in obj.actions if a <= 6]
      assert len(traj) == 1
      assert set(obj.actions) - set(traj) <= {tw.PULSE_ID, tw.SPIN_ID}
      if tw.SPIN_ID in obj.actions:
        assert obj.shape in ('square', 'triangle', 'cross')
      combos.append((obj.shape, motion_of[traj[0]]))
    keys = sorted(c for c in combos if c in tw.KEY_ACTORS)
    assert len(keys) == 2
    name = '+'.join(f'{s}_{m}' for s, m in sorted(
        keys, key=tw.KEY_ACTORS.index))
    assert name == video.label_text == tw.CLASS_NAMES[video.label]
    fill = [c for c in combos if c not in tw.KEY_ACTORS]
    if fillers == 'still':
      # Fillers stand still and never share a key actor's shape.
      assert all(m == 'still' for _, m in fill)
      assert not {s for s, _ in fill} & {s for s, _ in keys}


def test_fillers_non_key_gives_every_shape_several_motions():
  spec = tw.ToyWorldSpec(num_frames=4, fillers='non_key')
  seen = collections.defaultdict(set)
  for seed in range(60):
    for obj in tw.render_video(seed, spec).objects:
      seen[obj.shape].add(min(obj.actions))
  assert all(len(seen[s]) >= 3 for s in tw.SHAPES), dict(seen)


def test_moving_objects_move_and_still_objects_do_not():
  for seed in range(10):
    for obj in tw.render_video(seed, tw.ToyWorldSpec()).objects:
      centre = np.stack([obj.program.cy, obj.program.cx], 1)
      travel = np.linalg.norm(np.diff(centre, axis=0), axis=1).sum()
      if 1 in obj.actions:
        assert travel == 0.0
      else:
        assert travel > 10.0, (seed, obj.actions)
      radius = obj.program.radius
      if tw.PULSE_ID in obj.actions:
        assert radius.max() > 1.2 * radius.min()
      else:
        assert radius.max() == radius.min()


def test_tracking_distractors_are_similar_and_close():
  spec = tw.ToyWorldSpec(num_frames=32)
  for seed in range(5):
    video = tw.render_tracking_video(seed, spec)
    target = video.objects[video.target]
    distractors = [o for k, o in enumerate(video.objects)
                   if k != video.target and o.shape == target.shape]
    assert len(distractors) >= spec.num_distractors
    tc = (target.boxes[:, :2] + target.boxes[:, 2:]) / 2 * 64
    for d in distractors:
      assert np.abs(np.subtract(d.color, target.color)).max() <= 30
      dc = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2 * 64
      # Passes within a few pixels (offset <= 3 px per axis plus rounding).
      assert np.linalg.norm(tc - dc, axis=1).min() < 6.0


def test_write_video_split_reads_back(tmp_path):
  pattern = tw.write_video_split(str(tmp_path), 'train', 20, seed=5,
                                 spec=_SPEC, num_shards=2)
  assert len(list(tmp_path.glob('train-*-of-00002.tfrecord'))) == 2
  records = video_records.read_records(pattern)
  assert len(records) == 20
  counts = collections.Counter(r['label'][0] for r in records)
  assert counts == {c: 2 for c in range(tw.NUM_CLASSES)}
  for r in records:
    i = int(r['video_id'].split('_')[-1])
    video = tw.render_video(tw.derive_seed(5, 'train', i), _SPEC,
                            label=i % tw.NUM_CLASSES)
    assert len(r['frames']) == 12
    assert r['label'] == [video.label] and r['label_text'] == video.label_text
    want = tw.frame_boxes(video)
    assert len(r['boxes']) == 12
    for got_t, want_t in zip(r['boxes'], want):
      np.testing.assert_allclose(got_t, want_t, atol=1e-6)
    decoded = cv2.imdecode(np.frombuffer(r['frames'][0], np.uint8),
                           cv2.IMREAD_COLOR)[..., ::-1]
    assert decoded.shape == (64, 64, 3)
    assert np.abs(decoded.astype(int) - video.frames[0]).mean() < 8


def test_got10k_layout(tmp_path):
  spec = tw.ToyWorldSpec(num_frames=10)
  names = tw.write_tracking_sequences(str(tmp_path), 2, seed=1, spec=spec,
                                      layout='got10k')
  assert (tmp_path / 'list.txt').read_text().split() == names
  for i, name in enumerate(names):
    seq = tmp_path / name
    assert sorted(p.name for p in seq.glob('*.jpg')) == [
        f'{t:08d}.jpg' for t in range(1, 11)]
    lines = (seq / 'groundtruth.txt').read_text().splitlines()
    assert len(lines) == 10
    assert len((seq / 'absence.label').read_text().splitlines()) == 10
    gt = np.array([[float(v) for v in l.split(',')] for l in lines])
    video = tw.render_tracking_video(tw.derive_seed(1, 'got10k', i), spec)
    b = video.objects[video.target].boxes.astype(np.float64) * 64
    # 0-based x, y, w, h.
    np.testing.assert_allclose(
        gt, np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]],
                     1), atol=1e-3)


def test_otb_layout(tmp_path):
  spec = tw.ToyWorldSpec(num_frames=8)
  names = tw.write_tracking_sequences(str(tmp_path), 3, seed=2, spec=spec,
                                      layout='otb')
  assert names == ['Toy001', 'Toy002', 'Toy003']
  for i, (name, sep) in enumerate(zip(names, (',', '\t', ' '))):
    lines = (tmp_path / name / 'groundtruth_rect.txt').read_text().splitlines()
    assert len(lines) == 8
    assert len(list((tmp_path / name / 'img').glob('*.jpg'))) == 8
    assert (tmp_path / name / 'img' / '0008.jpg').exists()
    gt = np.array([[int(v) for v in l.split(sep)] for l in lines])
    assert gt.shape == (8, 4)
    video = tw.render_tracking_video(tw.derive_seed(2, 'otb', i), spec)
    b = np.round(video.objects[video.target].boxes.astype(np.float64) * 64)
    np.testing.assert_array_equal(gt[:, 0] - 1, b[:, 1])  # 1-based x
    np.testing.assert_array_equal(gt[:, 1] - 1, b[:, 0])
    np.testing.assert_array_equal(gt[:, 2], b[:, 3] - b[:, 1])


def test_ava_dataset(tmp_path):
  spec = tw.ToyWorldSpec(num_frames=40, fillers='non_key')  # 5 s at 8 fps
  assert tw.ava_key_frames(spec) == [1, 2, 3, 4]
  paths = tw.write_ava_dataset(str(tmp_path), 3, seed=4, spec=spec,
                               split='val')
  assert os.path.basename(paths['annotations']) == 'ava_val_v2.2.csv'
  with open(paths['excluded']) as f:
    excluded = {(r[0], int(r[1])) for r in csv.reader(f)}
  assert len(excluded) == 1  # videos 0 (and 3, 6, ...) get one
  rows = list(csv.reader(open(paths['annotations'])))
  assert rows and all(len(r) == 8 for r in rows)
  per_box = collections.defaultdict(list)
  for vid, ts, x1, y1, x2, y2, action, pid in rows:
    c = np.array([x1, y1, x2, y2], float)
    assert (c >= 0).all() and (c <= 1).all() and c[2] > c[0] and c[3] > c[1]
    assert (vid, int(ts)) not in excluded
    per_box[(vid, int(ts), int(pid))].append((int(action), tuple(c)))
  for i in range(3):
    vid = f'toy_val_{i:06d}'
    video = tw.render_video(tw.derive_seed(4, 'ava_val', i), spec,
                            label=i % tw.NUM_CLASSES)
    for ts in (1, 2, 3, 4):
      for obj in video.objects:
        key = (vid, ts, obj.track_id)
        if (vid, ts) in excluded or not obj.visible[ts * 8]:
          assert key not in per_box
          continue
        # One row per (box, action), all with the same box.
        assert sorted(a for a, _ in per_box[key]) == obj.actions
        ymin, xmin, ymax, xmax = obj.boxes[ts * 8]
        for _, c in per_box[key]:
          np.testing.assert_allclose(c, [xmin, ymin, xmax, ymax], atol=6e-4)
    cap = cv2.VideoCapture(os.path.join(paths['videos_dir'], vid + '.mp4'))
    decoded = []
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      decoded.append(frame[..., ::-1])
    assert len(decoded) == 40
    assert np.abs(np.asarray(decoded, int) - video.frames).mean() < 12
  dets = list(csv.reader(open(paths['detections'])))
  assert dets and all(len(r) == 8 and r[6] == '' for r in dets)
  scores = np.array([float(r[7]) for r in dets])
  assert (scores > 0).all() and (scores <= 1).all()
  coords = np.array([[float(v) for v in r[2:6]] for r in dets])
  assert (coords >= 0).all() and (coords <= 1).all()
  text = open(paths['label_map']).read()
  ids = [int(v) for v in re.findall(r'label_id: (\d+)', text)]
  names = re.findall(r'name: "([^"]+)"', text)
  assert ids == list(range(1, 9)) and names == list(tw.ACTION_NAMES)
  assert text.count('label_type: PERSON_MOVEMENT') == 8


def test_ensure_toy_dataset_creates_once(tmp_path, monkeypatch):
  monkeypatch.setenv('CONST_CL_CACHE', str(tmp_path))
  assert tw.default_cache_root() == str(tmp_path / 'toy_world')
  calls = []
  real_write = tw.write_video_split

  def counting_write(*args, **kwargs):
    calls.append(args[1])
    return real_write(*args, **kwargs)

  monkeypatch.setattr(tw, 'write_video_split', counting_write)
  spec = tw.ToyWorldSpec(num_frames=4)
  first = tw.ensure_toy_dataset(spec=spec, num_train=10, num_val=5)
  assert calls == ['train', 'validation']
  assert first['dir'].startswith(str(tmp_path / 'toy_world'))
  assert len(video_records.read_records(first['train'])) == 10
  assert len(video_records.read_records(first['validation'])) == 5
  with open(first['label_map']) as f:
    assert f.read().splitlines() == list(tw.CLASS_NAMES)
  mtimes = {p: os.stat(os.path.join(first['dir'], p)).st_mtime_ns
            for p in os.listdir(first['dir'])}
  second = tw.ensure_toy_dataset(spec=spec, num_train=10, num_val=5)
  assert second == first and calls == ['train', 'validation']
  assert mtimes == {p: os.stat(os.path.join(first['dir'], p)).st_mtime_ns
                    for p in os.listdir(first['dir'])}
  # Another size is another folder; no temporary folders are left behind.
  third = tw.ensure_toy_dataset(spec=spec, num_train=10, num_val=3)
  assert third['dir'] != first['dir']
  assert not [p for p in os.listdir(tmp_path / 'toy_world')
              if p.startswith('.tmp')]


def test_ensure_toy_dataset_loses_race(tmp_path, monkeypatch):
  spec = tw.ToyWorldSpec(num_frames=4)
  real_label_map = tw.write_label_map
  state = {}

  def racing_label_map(path, spec):
    # Simulate another process renaming its complete copy into place first.
    final = state['final']
    os.makedirs(final)
    open(os.path.join(final, '_COMPLETE'), 'w').close()
    return real_label_map(path, spec)

  key = tw._cache_key(spec, 2, 2, 0, 2)
  state['final'] = str(tmp_path / key)
  monkeypatch.setattr(tw, 'write_label_map', racing_label_map)
  paths = tw.ensure_toy_dataset(str(tmp_path), spec, num_train=2, num_val=2)
  assert paths['dir'] == state['final']
  assert os.listdir(tmp_path) == [key]  # our temporary copy was removed


def test_spec_validation():
  with pytest.raises(ValueError, match='min_objects'):
    tw.render_video(0, tw.ToyWorldSpec(min_objects=1))
  with pytest.raises(ValueError, match='fillers'):
    tw.render_video(0, tw.ToyWorldSpec(fillers='some'))
  with pytest.raises(ValueError, match='background'):
    tw.render_video(0, tw.ToyWorldSpec(background='plaid'))
  with pytest.raises(ValueError, match='label 10'):
    tw.render_video(0, _SPEC, label=10)
  with pytest.raises(ValueError, match='layout'):
    tw.write_tracking_sequences('/tmp/unused', 1, layout='vot')


def test_shapes_world_scene():
  """The transfer world: flat grey, white objects, all of the label's shape."""
  world = tw.named_world('shapes')
  assert (world.num_train, world.num_val) == (500, 300)
  spec = tw.dataclasses.replace(world.spec, num_frames=12, pixel_noise=0.0)
  assert tw.class_names(spec) == tw.SHAPES and tw.num_classes(spec) == 5
  key_motions = {tw._MOTION_ID[m] for _, m in tw.KEY_ACTORS}
  motions = set()
  for seed in range(10):
    label = seed % 5
    video = tw.render_video(seed, spec, label=label)
    assert video.label == label and video.label_text == tw.SHAPES[label]
    assert 3 <= len(video.objects) <= 4
    for obj in video.objects:
      assert obj.shape == tw.SHAPES[label]
      assert obj.color == (230, 230, 230)
      assert obj.actions[0] in key_motions
      motions.add(obj.actions[0])
    # Every pixel is the grey background or an object pixel (white, or a
    # mix of the two on anti-aliased edges): no texture, no colour.
    f = video.frames.astype(int)
    assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()
    assert f.min() >= 128 and f.max() <= 230
    assert (f == 128).mean() > 0.6 and (f == 230).any()
  # The class says nothing about motion: the 10 scenes use several motions.
  assert len(motions) >= 4
  with pytest.raises(ValueError, match=r'label 5 outside \[0, 5\) '
                     r"\(clip_class='shape'\)"):
    tw.render_video(0, spec, label=5)


def test_shapes_world_split_and_label_map(tmp_path):
  spec = tw.dataclasses.replace(tw.named_world('shapes').spec, num_frames=4)
  pattern = tw.write_video_split(str(tmp_path), 'train', 10, seed=1,
                                 spec=spec, num_shards=1)
  records = video_records.read_records(pattern)
  assert sorted(r['label'][0] for r in records) == [0, 0, 1, 1, 2, 2, 3, 3,
                                                    4, 4]
  assert {r['label_text'] for r in records} == set(tw.SHAPES)
  path = tw.write_label_map(str(tmp_path / 'labels.txt'), spec)
  assert open(path).read().splitlines() == list(tw.SHAPES)


def test_white_objects_in_tracking_and_ava_worlds():
  spec = tw.ToyWorldSpec(num_frames=8, object_colors='white')
  video = tw.render_tracking_video(4, spec)
  target = video.objects[video.target]
  assert target.color == (230, 230, 230)
  # Distractors stay within +-30 of the target's colour (clipped at 255).
  for k, obj in enumerate(video.objects):
    if k != video.target and obj.shape == target.shape:
      assert all(200 <= c <= 255 for c in obj.color)
  # The default world keeps its random colours: the pair world is unchanged.
  assert tw.render_video(3, tw.ToyWorldSpec(num_frames=8)).objects[0].color != (
      230, 230, 230)


@pytest.mark.parametrize('field, value, message', [
    ('fillers', 'x', "fillers must be still or non_key, got 'x'"),
    ('background', 'x', "background must be random or flat, got 'x'"),
    ('object_colors', 'grey', "object_colors must be random or white, got "
     "'grey'"),
    ('clip_class', 'motion', "clip_class must be pairs or shape, got "
     "'motion'"),
])
def test_world_choice_fields_are_validated(field, value, message):
  with pytest.raises(ValueError, match=message):
    tw.ToyWorldSpec(**{field: value}).validate()


def test_unknown_world_name_is_rejected():
  with pytest.raises(ValueError, match=r"unknown toy world 'k400'; known: "
                     r"\['pairs', 'plain', 'shapes'\]"):
    tw.named_world('k400')
  assert tw.named_world('pairs').spec == tw.ToyWorldSpec()
  # The plain world is the pairs world without colour.
  assert tw.named_world('plain').spec == tw.ToyWorldSpec(
      background='flat', object_colors='white')
