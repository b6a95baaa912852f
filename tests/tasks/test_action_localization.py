"""AVA task: experiments, YAMLs, and host-side aggregation to CSV + mAP."""
import csv
import glob
import json
import os
import re
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.modeling import hyperparams

from configs import action_localization as al_cfg
from dataloaders import toy_world
from tasks import action_localization
from tasks.evaluation import ava as ava_eval

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
AVA_YAMLS = sorted(glob.glob(os.path.join(REPO, 'configs', 'yaml',
                                          'const_cl_ava_*.yaml')))


@pytest.mark.parametrize('name', ['const_cl_ava_v22', 'const_cl_ava_kinetics',
                                  'const_cl_ava_toy'])
def test_experiments_build_and_validate(name):
  config = exp_factory.get_exp_config(name)
  config.validate()
  config.lock()
  assert config.task.model.feature_endpoint == '5r'
  assert config.task.init_checkpoint_modules == 'backbone'


def test_real_experiments_hold_the_spec_settings():
  config = exp_factory.get_exp_config('const_cl_ava_v22')
  assert config.task.num_classes == 80
  assert tuple(config.task.train_data.feature_shape) == (32, 224, 224, 3)
  assert config.task.train_data.box_jitter > 0
  assert config.task.model.backbone.resnet_3d_y.model_id == 50
  toy = exp_factory.get_exp_config('const_cl_ava_toy')
  assert toy.task.num_classes == 8
  assert tuple(toy.task.train_data.feature_shape) == (8, 64, 64, 3)
  assert toy.trainer.train_steps <= 500


def test_yamls_load_strictly():
  assert len(AVA_YAMLS) >= 3
  for path in AVA_YAMLS:
    with open(path) as f:
      first, second = f.readline(), f.readline()
    match = re.match(r'#\s*--experiment=(\S+)', first)
    assert match, path
    assert second.startswith('# ') and len(second) > 10, path
    config = exp_factory.get_exp_config(match.group(1))
    config = hyperparams.override_params_dict(config, path, is_strict=True)
    config.validate()


def test_validate_names_the_bad_field():
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.task.validation_data.feature_shape = (8, 96, 96, 3)
  with pytest.raises(ValueError, match='feature_shape'):
    config.validate()
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.task.model.backbone.resnet_3d_y.duplicate_res5 = False
  with pytest.raises(ValueError, match='duplicate_res5'):
    config.validate()
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.task.train_data.use_detections = True
  with pytest.raises(ValueError, match='use_detections'):
    config.validate()
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.task.toy_world.fillers = 'moving'
  with pytest.raises(ValueError, match=r'toy_world\.fillers'):
    config.validate()


def test_feature_endpoint_override_as_a_number_reads_res4():
  # `--params_override=task.model.feature_endpoint=4` parses to the int 4.
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config = hyperparams.override_params_dict(
      config, 'task.model.feature_endpoint=4', is_strict=True)
  assert config.task.model.feature_endpoint == 4
  config.validate()
  # validate() stores it as the str the model and its builder take.
  assert config.task.model.feature_endpoint == '4'
  model = action_localization.ActionLocalizationTask(config.task).build_model()
  frames = tf.zeros([1] + list(config.task.train_data.feature_shape))
  res4 = model.backbone(frames, training=False)['4']
  out = model({'image': frames, 'boxes': tf.constant([[[0.1, 0.1, 0.6, 0.6]]])})
  assert out['logits'].shape == (1, 1, al_cfg.TOY_NUM_CLASSES)
  # The head's query projection reads res4's channels, not res5r's.
  head = model.checkpoint_items['head']
  assert head._query_projection.kernel.shape[0] == res4.shape[-1]
  assert res4.shape[-1] != model.backbone(frames)['5r'].shape[-1]


def test_detection_rows_map_boxes_back_to_original_xy_order():
  rows = action_localization.detection_rows(
      video_ids=[b'v1', 'v2'], timestamps=np.array([902.0, 903.0]),
      original_boxes=np.array([[[0.1, 0.2, 0.5, 0.6], [0, 0, 0, 0]],
                               [[0.3, 0.0, 0.9, 0.4], [0, 0, 1, 1]]]),
      box_mask=np.array([[1, 0], [1, 1]]),
      scores=np.array([[[0.9, 0.2, 0.7], [1, 1, 1]],
                       [[0.3, 0.8, 0.1], [0.5, 0.6, 0.4]]]),
      action_ids=[1, 3])
  got = [(r.video_id, r.timestamp, tuple(round(c, 6) for c in r.box),
          r.action_id, round(r.score, 6)) for r in rows]
  assert got == [
      ('v1', 902.0, (0.2, 0.1, 0.6, 0.5), 1, 0.9),
      ('v1', 902.0, (0.2, 0.1, 0.6, 0.5), 3, 0.7),
      ('v2', 903.0, (0.0, 0.3, 0.4, 0.9), 1, 0.3),
      ('v2', 903.0, (0.0, 0.3, 0.4, 0.9), 3, 0.1),
      ('v2', 903.0, (0.0, 0.0, 1.0, 1.0), 1, 0.5),
      ('v2', 903.0, (0.0, 0.0, 1.0, 1.0), 3, 0.4),
  ]
  with pytest.raises(ValueError, match='action ids'):
    action_localization.detection_rows(['v'], [1.0], np.zeros([1, 1, 4]),
                                       np.ones([1, 1]), np.zeros([1, 1, 2]),
                                       action_ids=[3])


def _write(path, text):
  with open(path, 'w') as f:
    f.write(text)
  return path


def test_aggregate_and_reduce_write_the_csv_and_compute_map(tmp_path):
  # Ground truth: v1@902 one box of action 1; v2@903 one box of action 2.
  gt = _write(tmp_path / 'gt.csv', 'v1,0902,0.2,0.1,0.6,0.5,1,0\n'
                                   'v2,0903,0.0,0.3,0.4,0.9,2,0\n'
                                   'v3,0904,0.0,0.0,0.5,0.5,1,0\n')
  labelmap = _write(tmp_path / 'labels.pbtxt',
                    'label { name: "a" label_id: 1 label_type: X }\n'
                    'label { name: "b" label_id: 2 label_type: X }\n')
  excl = _write(tmp_path / 'excl.csv', 'v3,0904\n')
  config = exp_factory.get_exp_config('const_cl_ava_v22').task
  config.num_classes = 3
  config.evaluation.groundtruth_csv = str(gt)
  config.evaluation.labelmap = str(labelmap)
  config.evaluation.exclusions_csv = str(excl)
  task = action_localization.ActionLocalizationTask(
      config, logging_dir=str(tmp_path / 'model'))

  def example(vid, ts, box, scores):
    # Model boxes are padded to 2; the second is padding (mask 0).
    return {'video_id': tf.constant([vid]), 'timestamp': tf.constant([ts]),
            'original_boxes': tf.constant([[box, [0.0, 0.0, 1.0, 1.0]]]),
            'box_mask': tf.constant([[1.0, 0.0]]),
            'scores': tf.constant([[scores, [1.0, 1.0, 1.0]]])}

  a = example('v1', 902.0, [0.1, 0.2, 0.5, 0.6], [0.9, 0.85, 0.7])
  b = example('v2', 903.0, [0.3, 0.0, 0.9, 0.4], [0.3, 0.8, 0.1])
  # Step 1 as two replicas (tuples), step 2 as one tensor per key.
  state = task.aggregate_logs(None, {k: (a[k], b[k]) for k in a})
  state = task.aggregate_logs(state, {k: b[k] for k in b})
  result = task.reduce_aggregated_logs(state, tf.constant(7))

  # Class 1: v1 0.9 TP, v2 0.3 FP, v2 0.3 FP -> AP 1. Class 2 (one gt at v2):
  # v1 0.85 FP ranks above v2 0.8 TP (the duplicate v2 0.8 is FP) -> AP 0.5.
  assert result['mAP'] == pytest.approx(0.75)
  assert result['num_detection_rows'] == 3 * 2  # 3 boxes x 2 label-map ids
  with open(tmp_path / 'model' / 'ava_detections.csv') as f:
    lines = list(csv.reader(f))
  assert lines[0] == ['v1', '0902', '0.200', '0.100', '0.600', '0.500', '1',
                      '0.900000']
  assert lines[1][-2:] == ['2', '0.850000']
  # The written file gives the same mAP through the official-format reader.
  again = ava_eval.evaluate_files(str(labelmap), str(gt),
                                  str(tmp_path / 'model' /
                                      'ava_detections.csv'), str(excl))
  assert again['mAP'] == pytest.approx(0.75)
  with open(tmp_path / 'model' / 'ava_eval_results.json') as f:
    saved = json.load(f)
  assert saved['global_step'] == 7 and saved['mAP'] == pytest.approx(0.75)


def test_unscored_box_counts_are_summed_and_reported(tmp_path):
  """The parser's per-clip counts reach the results, with a warning."""
  config = exp_factory.get_exp_config('const_cl_ava_v22').task
  task = action_localization.ActionLocalizationTask(
      config, logging_dir=str(tmp_path / 'model'))
  step = {'video_id': tf.constant(['v1', 'v2']),
          'timestamp': tf.constant([902.0, 903.0]),
          'original_boxes': tf.zeros([2, 1, 4]),
          'box_mask': tf.zeros([2, 1]), 'scores': tf.zeros([2, 1, 80]),
          'num_boxes_dropped': tf.constant([3, 0]),
          'num_boxes_cropped_out': tf.constant([0, 2])}
  state = task.aggregate_logs(None, step)
  state = task.aggregate_logs(state, {
      k: (v[:1], v[1:]) for k, v in step.items()})  # two replicas
  with mock.patch.object(action_localization.logging, 'warning') as warn:
    result = task.reduce_aggregated_logs(state, tf.constant(1))
  assert result['num_boxes_dropped'] == 6.0
  assert result['num_boxes_cropped_out'] == 4.0
  messages = ' '.join(c.args[0] % c.args[1:] for c in warn.call_args_list)
  assert ('6 ground-truth boxes not scored: each counts as missed: beyond '
          'task.validation_data.max_boxes (32)') in messages
  assert ('4 ground-truth boxes not scored: each counts as missed: outside '
          'the centre crop') in messages


def test_missing_input_path_is_a_clear_error():
  config = exp_factory.get_exp_config('const_cl_ava_v22').task
  task = action_localization.ActionLocalizationTask(config)
  with pytest.raises(ValueError, match='train_data.input_path is empty'):
    task.build_inputs(config.train_data)
  config.train_data.input_path = '/nonexistent/ava-*.tfrecord'
  with pytest.raises(ValueError, match='matches no file'):
    task.build_inputs(config.train_data)


def test_evaluation_over_several_workers_is_refused():
  """Each worker would score its shard against the whole ground truth."""
  config = exp_factory.get_exp_config('const_cl_ava_v22').task
  task = action_localization.ActionLocalizationTask(config)
  context = tf.distribute.InputContext(
      num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
  with pytest.raises(ValueError, match=r'AVA evaluation with 2 input '
                     r'pipelines .*single-worker job'):
    task.build_inputs(config.validation_data, context)
  # Training data is sharded as usual (here: the missing path's error).
  with pytest.raises(ValueError, match='train_data.input_path is empty'):
    task.build_inputs(config.train_data, context)


def test_input_file_that_is_not_a_tfrecord_is_named(tmp_path):
  config = exp_factory.get_exp_config('const_cl_ava_v22').task
  task = action_localization.ActionLocalizationTask(config)
  (tmp_path / 'ava-0.tfrecord').write_bytes(b'an mp4, not records' * 4)
  config.train_data.input_path = str(tmp_path / 'ava-*.tfrecord')
  with pytest.raises(ValueError, match=(
      r"task.train_data.input_path='.*ava-\*.tfrecord': 1 of 1 files are "
      'not TFRecord files')):
    task.build_inputs(config.train_data)


def test_toy_dataset_is_converted_once_and_parsed(tmp_path):
  toy = al_cfg.ToyAvaWorld(num_train_videos=1, num_validation_videos=1,
                           cache_dir=str(tmp_path))
  paths = action_localization.ensure_toy_ava_dataset(toy)
  assert os.path.exists(os.path.join(paths['dir'], '_COMPLETE'))
  assert glob.glob(paths['train']) and glob.glob(paths['validation'])
  mtime = os.path.getmtime(paths['validation_groundtruth'])
  assert action_localization.ensure_toy_ava_dataset(toy) == paths
  assert os.path.getmtime(paths['validation_groundtruth']) == mtime
  # Detector rows (empty action id) reached the records.
  with open(os.path.join(paths['dir'], 'validation', 'records',
                         'validation-summary.json')) as f:
    summary = json.load(f)
  assert not summary['bad_rows']['detections']
  config = exp_factory.get_exp_config('const_cl_ava_toy').task
  config.toy_world = toy
  config.validation_data.use_detections = True
  config.validation_data.global_batch_size = 2
  task = action_localization.ActionLocalizationTask(config)
  batch = next(iter(task.build_inputs(config.validation_data)))
  assert batch['image'].shape == (2, 8, 64, 64, 3)
  assert batch['boxes'].shape == (2, 8, 4)
  assert batch['labels'].shape == (2, 8, 8)
  scores = batch['box_scores'].numpy()[batch['box_mask'].numpy() > 0]
  assert scores.min() >= 0.5  # detection_score_threshold


@pytest.mark.parametrize('fillers', ['still', 'non_key'])
def test_toy_dataset_labels_follow_the_fillers_setting(tmp_path, fillers):
  # Every annotated box carries the actions of its object as the toy world
  # renders it with `task.toy_world.fillers`: 'still' fillers are labelled
  # "stand still" and every moving object is a key actor, whose trajectory
  # action is its shape's; 'non_key' fillers move too.
  toy = al_cfg.ToyAvaWorld(num_train_videos=2, num_validation_videos=1,
                           fillers=fillers, cache_dir=str(tmp_path))
  paths = action_localization.ensure_toy_ava_dataset(toy)
  with open(paths['train_groundtruth']) as f:
    rows = list(csv.reader(f))
  got = {}
  for vid, ts, *_, action, pid in rows:
    got.setdefault((vid, int(ts), int(pid)), []).append(int(action))
  spec = toy_world.ToyWorldSpec(num_frames=80, fillers=fillers)
  # The key actors' trajectory action ids: disc orbits (3), square bounces
  # (4), triangle zigzags (5), ring moves straight (2), cross jitters (6).
  key_action = {'disc': 3, 'square': 4, 'triangle': 5, 'ring': 2, 'cross': 6}
  want, moving_fillers = {}, 0
  for i in range(2):
    video = toy_world.render_video(
        toy_world.derive_seed(toy.seed, 'ava_train', i), spec,
        label=i % toy_world.num_classes(spec))
    for obj in video.objects:
      trajectory = min(obj.actions)  # 1-6; the modifiers are 7 and 8
      moving_fillers += int(trajectory not in (1, key_action[obj.shape]))
      for ts in toy_world.ava_key_frames(spec):
        if obj.visible[ts * spec.fps]:
          want[(f'toy_train_{i:06d}', ts, obj.track_id)] = obj.actions
  excluded = {(r[0], int(r[1])) for r in csv.reader(
      open(paths['train_exclusions']))}
  want = {k: v for k, v in want.items() if k[:2] not in excluded}
  assert {k: sorted(v) for k, v in got.items()} == want
  assert (moving_fillers == 0) == (fillers == 'still')


def test_training_batches_are_reproducible_per_data_seed(tmp_path):
  # Crops, jitter and flips are drawn from per-example stateless seeds, so
  # the parallel parse gives the same batches in two pipelines of one seed.
  toy = al_cfg.ToyAvaWorld(num_train_videos=1, num_validation_videos=1,
                           cache_dir=str(tmp_path))
  config = exp_factory.get_exp_config('const_cl_ava_toy').task
  config.toy_world = toy
  config.train_data.global_batch_size = 4
  config.train_data.box_jitter = 0.05
  task = action_localization.ActionLocalizationTask(config)

  def batches(seed):
    data = config.train_data.replace(seed=seed)
    it = iter(task.build_inputs(data))
    return [np.concatenate([b['image'].numpy().ravel(),
                            b['boxes'].numpy().ravel()])
            for b in (next(it), next(it))]

  first = batches(3)
  for again, want in zip(batches(3), first):
    np.testing.assert_array_equal(again, want)
  assert any(np.abs(a - b).max() > 1e-3
             for a, b in zip(batches(4), first))


def _train_step_once(freeze_backbone):
  """One SGD train step of the toy AVA task on a synthetic batch.

  Returns (backbone weights before, after, head weights before, after, the
  model).
  """
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.task.model.freeze_backbone = freeze_backbone
  # A pattern instead of the toy split: the task then renders no data.
  config.task.train_data.input_path = '/nonexistent/train-*'
  config.task.validation_data.input_path = '/nonexistent/val-*'
  tf_keras.utils.set_random_seed(0)
  task = action_localization.ActionLocalizationTask(config.task)
  model = task.build_model()
  t, h, w, _ = config.task.train_data.feature_shape
  m, c = config.task.train_data.max_boxes, config.task.num_classes
  rng = np.random.default_rng(0)
  inputs = {
      'image': tf.constant(rng.uniform(0, 1, (2, t, h, w, 3)), tf.float32),
      'boxes': tf.constant(np.tile([0.2, 0.2, 0.6, 0.6], (2, m, 1)),
                           tf.float32),
      'labels': tf.constant(rng.integers(0, 2, (2, m, c)), tf.float32),
      'box_mask': tf.ones([2, m]),
  }
  snap = lambda vs: [v.numpy().copy() for v in vs]
  backbone_before = snap(model.backbone.weights)
  head_before = snap(model.head.weights)
  optimizer = tf_keras.optimizers.SGD(learning_rate=0.5)
  task.train_step(inputs, model, optimizer)
  return (backbone_before, snap(model.backbone.weights), head_before,
          snap(model.head.weights), model)


def test_frozen_backbone_leaves_every_backbone_variable_as_loaded():
  before, after, head_before, head_after, model = _train_step_once(True)
  # Only the head trains ...
  assert {v.ref() for v in model.trainable_variables} == {
      v.ref() for v in model.head.trainable_variables}
  # ... kernels, BN gamma / beta AND BN moving statistics stay bit for bit.
  assert len(before) == len(model.backbone.weights) > 0
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(head_before, head_after))


def test_fine_tuning_moves_the_backbone_and_its_statistics():
  before, after, _, _, model = _train_step_once(False)
  names = [v.name for v in model.backbone.weights]
  changed = {n for n, a, b in zip(names, before, after)
             if not np.array_equal(a, b)}
  assert any('kernel' in n for n in changed)
  assert any('moving_mean' in n for n in changed)
