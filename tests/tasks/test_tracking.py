"""Tests for the SiamFC tracking task: configs, loss, bad input, OTB eval."""
import glob
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.modeling import hyperparams

from configs import tracking as tracking_cfg
from dataloaders import toy_world
from modeling.heads import siamfc
from tasks import registry_imports  # pylint: disable=unused-import
from tasks import tracking

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_SPEC = toy_world.ToyWorldSpec(num_frames=6)


def _toy_params(tmp_path):
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  params.task.toy_world.cache_dir = str(tmp_path / 'cache')
  params.task.toy_world.num_train_sequences = 2
  params.task.toy_world.num_validation_sequences = 1
  params.task.toy_world.num_eval_sequences = 1
  params.task.train_data.global_batch_size = 2
  return params


def test_experiments_validate_with_spec_settings():
  real = exp_factory.get_exp_config('const_cl_tracking_got10k')
  real.validate()
  crops = real.task.model.crops
  assert (crops.exemplar_size, crops.search_size) == (127, 255)
  assert crops.context_frames == 2
  assert real.task.model.feature_endpoint == '5r'
  assert real.task.model.backbone.resnet_3d_y.dilate_res4_res5
  assert real.task.init_checkpoint_modules == 'backbone'
  assert real.task.losses.l2_weight_decay == 5e-4
  assert real.task.losses.positive_radius == 16.0
  assert real.trainer.optimizer_config.optimizer.sgd.momentum == 0.9
  steps_per_epoch = tracking_cfg.GOT10K_PAIRS_PER_EPOCH // 32
  assert real.trainer.train_steps == 20 * steps_per_epoch
  toy = exp_factory.get_exp_config('const_cl_tracking_toy')
  toy.validate()
  assert toy.trainer.train_steps <= 300
  # The toy backbone must match const_cl_pretrain_toy's so its checkpoints
  # load: same block specs, only the dilation differs.
  pt = exp_factory.get_exp_config('const_cl_pretrain_toy')
  a = toy.task.model.backbone.resnet_3d_y.as_dict()
  b = pt.task.model.backbone.resnet_3d_y.as_dict()
  assert a.pop('dilate_res4_res5') and not b.pop('dilate_res4_res5')
  assert a == b


@pytest.mark.parametrize('override, match', [
    ({'model': {'crops': {'search_size': 131}}}, 'multiple of the feature'),
    ({'model': {'feature_endpoint': '4'}}, 'feature_endpoint'),
    ({'model': {'crops': {'context_frames': 1}}}, 'temporal stride'),
    ({'model': {'backbone': {'resnet_3d_y': {'dilate_res4_res5': False}}}},
     'dilate_res4_res5'),
    ({'tracker': {'scale_penalty': 1.2}}, r'scale_penalty must be in'),
    # No positive cell: a negative radius, or an even response side (the
    # toy's 63 / 127 crops with search 135: 10x10) with a radius below
    # 8 * sqrt(1/2) = 5.66 px.
    ({'losses': {'positive_radius': -1.0}}, r'positive_radius \(-1.0\) '
     r'must be >= 0.00 px so the 9x9'),
    ({'model': {'crops': {'search_size': 135}},
      'losses': {'positive_radius': 5.0}}, r'>= 5.66 px so the 10x10'),
])
def test_bad_configs_are_errors(override, match):
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  params.override({'task': override}, is_strict=True)
  with pytest.raises(ValueError, match=match):
    params.validate()


def test_tracking_yamls_load_strictly():
  paths = sorted(glob.glob(os.path.join(REPO, 'configs', 'yaml',
                                        'const_cl_tracking_*.yaml')))
  assert len(paths) >= 2
  for path in paths:
    with open(path) as f:
      first, second = f.readline(), f.readline()
    name = re.match(r'#\s*--experiment=(\S+)', first).group(1)
    assert second.startswith('#') and len(second) > 10, path
    params = exp_factory.get_exp_config(name)
    params = hyperparams.override_params_dict(params, path, is_strict=True)
    params.validate()


def test_loss_matches_numpy_reference_and_diagnostics():
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  task = tracking.SiamFCTrackingTask(params.task)
  # 63/127 at stride 8: 9x9 response; radius 16 px = 2 cells -> the 13
  # cells within Euclidean distance 2 of the centre are positive.
  labels, weights = siamfc.siamfc_labels(9, 8, 16.0)
  assert labels.sum() == 13
  logits = np.zeros((2, 9, 9, 1), np.float32)
  logits[0, 4, 4, 0] = 5.0  # peak on the centre
  logits[1, 0, 0, 0] = 5.0  # peak in a corner

  class _NoVars:
    trainable_variables = []

  logs = task.build_losses(tf.constant(logits), _NoVars())
  x = logits[..., 0]
  per_cell = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))
  expected = np.mean(np.sum(per_cell * weights, axis=(1, 2)))
  np.testing.assert_allclose(logs['logistic_loss'].numpy(), expected,
                             rtol=1e-6)
  assert logs['center_accuracy'].numpy() == pytest.approx(0.5)
  np.testing.assert_allclose(logs['total_loss'].numpy(), expected, rtol=1e-6)


def test_toy_data_layouts_and_pair_batches(tmp_path):
  params = _toy_params(tmp_path)
  dirs = tracking.ensure_toy_tracking_data(params.task.toy_world, _SPEC)
  assert sorted(os.listdir(dirs['train']))[:2] == [
      'GOT-10k_Toy_000001', 'GOT-10k_Toy_000002']
  assert os.path.isfile(os.path.join(dirs['eval'], 'Toy001',
                                     'groundtruth_rect.txt'))
  # Second call reuses the cache (same folders, nothing rewritten).
  assert tracking.ensure_toy_tracking_data(params.task.toy_world,
                                           _SPEC) == dirs
  task = tracking.SiamFCTrackingTask(params.task)
  task._dirs = dirs  # pylint: disable=protected-access
  batch = next(iter(task.build_inputs(params.task.train_data)))
  assert batch['exemplar'].shape == (2, 5, 63, 63, 3)
  assert batch['search'].shape == (2, 5, 127, 127, 3)


def test_training_pairs_follow_the_run_seed(tmp_path):
  # train.py --seed calls tf_keras.utils.set_random_seed, as here; with the
  # default `seed: None` the training pairs follow it (before, every seed
  # drew the same pairs), an explicit seed fixes them, and validation pairs
  # never depend on it.
  params = _toy_params(tmp_path)
  params.task.toy_world.num_train_sequences = 4
  dirs = tracking.ensure_toy_tracking_data(params.task.toy_world, _SPEC)
  assert params.task.train_data.seed is None
  assert params.task.validation_data.seed == 1

  def first_exemplars(global_seed, data):
    tf_keras.utils.set_random_seed(global_seed)
    task = tracking.SiamFCTrackingTask(params.task)
    task._dirs = dirs  # pylint: disable=protected-access
    return next(iter(task.build_inputs(data)))['exemplar'].numpy()

  train = params.task.train_data
  a = first_exemplars(1, train)
  np.testing.assert_array_equal(a, first_exemplars(1, train))
  assert np.abs(a - first_exemplars(2, train)).max() > 0.1
  fixed = train.replace(seed=7)
  np.testing.assert_array_equal(first_exemplars(1, fixed),
                                first_exemplars(2, fixed))
  for validation in (params.task.validation_data,
                     params.task.validation_data.replace(seed=None)):
    np.testing.assert_array_equal(first_exemplars(1, validation),
                                  first_exemplars(2, validation))


def _write_got10k(root, name, num_frames, num_lines):
  seq = os.path.join(root, name)
  os.makedirs(seq)
  for i in range(num_frames):
    frame = np.full((32, 32, 3), 100, np.uint8)
    import cv2  # pylint: disable=g-import-not-at-top
    cv2.imwrite(os.path.join(seq, f'{i + 1:08d}.jpg'), frame)
  with open(os.path.join(seq, 'groundtruth.txt'), 'w') as f:
    f.write('8,8,10,10\n' * num_lines)
  return seq


def test_too_few_frames_names_the_sequence(tmp_path):
  root = str(tmp_path / 'got')
  _write_got10k(root, 'seq_short', num_frames=3, num_lines=5)
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  params.task.train_dir = root
  task = tracking.SiamFCTrackingTask(params.task)
  with pytest.raises(ValueError, match=r'seq_short.*3 frames but 5'):
    task.build_inputs(params.task.train_data)


def test_unreadable_frame_names_the_file(tmp_path):
  root = str(tmp_path / 'got')
  seq = _write_got10k(root, 'seq_bad', num_frames=3, num_lines=3)
  for i in range(3):
    with open(os.path.join(seq, f'{i + 1:08d}.jpg'), 'wb') as f:
      f.write(b'not an image')
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  params.task.train_dir = root
  params.task.train_data.global_batch_size = 1
  task = tracking.SiamFCTrackingTask(params.task)
  dataset = task.build_inputs(params.task.train_data)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'cannot read frame.*seq_bad/0000000\d\.jpg'):
    next(iter(dataset))


def test_empty_train_dir_names_the_field():
  params = exp_factory.get_exp_config('const_cl_tracking_got10k')
  task = tracking.SiamFCTrackingTask(params.task)
  with pytest.raises(ValueError, match='task.train_dir is empty'):
    task.build_inputs(params.task.train_data)


def test_evaluate_tracker_on_otb_toy(tmp_path):
  params = _toy_params(tmp_path)
  dirs = tracking.ensure_toy_tracking_data(params.task.toy_world, _SPEC)
  model = tracking.build_model_from_config(params.task, checkpoint=None)
  kwargs = tracking.tracker_kwargs_from_config(params.task)
  kwargs['num_scales'] = 1
  result = tracking.evaluate_tracker_on_otb(
      model, dirs['eval'], str(tmp_path / 'results'), kwargs)
  lines = open(tmp_path / 'results' / 'Toy001.txt').read().splitlines()
  assert len(lines) == _SPEC.num_frames
  assert 0.0 <= result['precision'] <= 1.0
  assert 0.0 <= result['success'] <= 1.0
  assert list(result['per_sequence']) == ['Toy001']


def test_track_dataset_reuses_one_tracker_with_equal_boxes(tmp_path,
                                                           monkeypatch):
  params = _toy_params(tmp_path)
  params.task.toy_world.num_eval_sequences = 2
  dirs = tracking.ensure_toy_tracking_data(params.task.toy_world, _SPEC)
  # The second sequence alone, so that it is tracked by a fresh tracker.
  single = tmp_path / 'single'
  shutil.copytree(os.path.join(dirs['eval'], 'Toy002'), single / 'Toy002')
  model = tracking.build_model_from_config(params.task, checkpoint=None)
  traces = []
  embed = model.embed

  def counting_embed(clips, training=False):
    traces.append(tuple(clips.shape))  # Python runs only while tracing.
    return embed(clips, training=training)

  monkeypatch.setattr(model, 'embed', counting_embed)
  kwargs = tracking.tracker_kwargs_from_config(params.task)
  kwargs['num_scales'] = 1
  tracking.track_dataset(model, str(single), str(tmp_path / 'one'), kwargs)
  one_sequence_traces = len(traces)
  assert one_sequence_traces >= 1
  del traces[:]
  assert tracking.track_dataset(model, dirs['eval'], str(tmp_path / 'two'),
                                kwargs) == ['Toy001', 'Toy002']
  # Two sequences trace the embedding as often as one: a tracker per
  # sequence would trace it twice as often.
  assert len(traces) == one_sequence_traces
  # Toy002 tracked after Toy001 by the same tracker == tracked alone.
  assert (open(tmp_path / 'two' / 'Toy002.txt').read() ==
          open(tmp_path / 'one' / 'Toy002.txt').read())
  assert len(open(tmp_path / 'two' / 'Toy002.txt').read().splitlines()) == (
      _SPEC.num_frames)


@pytest.mark.parametrize('backbone', ['const_cl', 'cvrl'])
def test_frozen_feature_tracker_from_a_pretraining_checkpoint(tmp_path,
                                                              backbone):
  """The toy benchmark's `track_frozen` model: the pretrained backbone under
  a SiamFC head at its initial values (CVRL's single res5 read as 5g)."""
  # pylint: disable=g-import-not-at-top
  from tasks import features
  from tasks import toy_benchmark as tb
  tf_keras.utils.set_random_seed(3)
  source = features.build_pretrain_model(exp_factory.get_exp_config(
      tb.EXPERIMENTS[(tb.PRETRAIN, backbone)]))
  tf.train.Checkpoint(**source.checkpoint_items).save(
      str(tmp_path / 'pre' / 'ckpt'))

  run = next(r for r in tb.plan_runs(str(tmp_path), [0], tb.QUICK_BUDGET)
             if r.stage == tb.TRACK_FROZEN and r.backbone == backbone)
  params = hyperparams.override_params_dict(
      exp_factory.get_exp_config(tb.EXPERIMENTS[tb.TRACK_FROZEN]),
      tb.format_overrides(run.overrides), is_strict=True)
  params.validate()
  tf_keras.utils.set_random_seed(4)  # other draws than the source's
  model = tracking.build_model_from_config(params.task,
                                           str(tmp_path / 'pre'))
  assert params.task.model.feature_endpoint == (
      '5g' if backbone == 'cvrl' else '5r')
  want = {v.name: v.numpy() for v in source.backbone.weights}
  got = {v.name: v.numpy() for v in model.backbone.weights}
  # Dilation (the tracker's res4/res5) changes no weight shape.
  assert len(got) == len(want) > 50
  for (name, a), b in zip(got.items(), want.values()):
    np.testing.assert_array_equal(a, b, err_msg=name)
  head = {v.name.split('/')[-1].split(':')[0]: float(v.numpy())
          for v in model.head.weights}
  assert head == {'scale': 10.0, 'bias': -5.0}


def test_diagnostics_without_positive_cells_are_finite():
  """An all-negative label map gives a positive score of 0, not NaN."""
  logits = tf.zeros([2, 3, 3, 1])
  logs = tracking.response_diagnostics(logits, np.zeros((3, 3), np.float32))
  assert float(logs['positive_score']) == 0.0
  assert float(logs['negative_score']) == pytest.approx(0.5)  # sigmoid(0)
