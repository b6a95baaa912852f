"""Video classification task: checkpoint loading, frozen linear evaluation,
multi-view evaluation inputs, input checks naming the record."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.modeling import factory_3d

from configs import video_classification as vc_cfg
from dataloaders import toy_world
from dataloaders import video_records
from modeling import const_cl_model  # pylint: disable=unused-import
from modeling.backbones import branch_loading
from tasks import pretrain
from tasks import video_classification as vc_task

NUM_CLASSES = vc_cfg.TOY_NUM_CLASSES


def _write_videos(path, labels, ids, num_frames=12, size=40):
  rng = np.random.default_rng(0)
  examples = [video_records.make_sequence_example(
      rng.integers(0, 255, [num_frames, size, size + 8, 3], dtype=np.uint8),
      label=label, video_id=vid) for label, vid in zip(labels, ids)]
  video_records.write_records(str(path), examples)
  return str(path)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  d = tmp_path_factory.mktemp('videos')
  return _write_videos(d / 'ok.tfrecord', [0, 3, 9, 4], ['a', 'b', 'c', 'd'])


@pytest.fixture(scope='module')
def pretrain_checkpoint(tmp_path_factory):
  """A toy ConST-CL pretraining checkpoint, saved as the trainer saves it."""
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  data = config.task.train_data
  model = factory_3d.build_model(
      'const_cl', tf_keras.layers.InputSpec(
          shape=[None] + list(data.feature_shape)),
      config.task.model, num_classes=0)
  model(pretrain.ConstCLPretrainTask.dummy_inputs(data, 2), training=False)
  rng = np.random.default_rng(0)
  for v in model.backbone.weights:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
  d = tmp_path_factory.mktemp('pretrain')
  ckpt = tf.train.Checkpoint(
      global_step=tf.Variable(2, dtype=tf.int64), model=model,
      optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
      **model.checkpoint_items)
  ckpt.save(str(d / 'ckpt'))
  parts = branch_loading.weights_by_part(model.backbone, ['5g', '5r'])
  return str(d), {k: [v.numpy() for v in vs] for k, vs in parts.items()}


def _config(name, records, **task_overrides):
  config = exp_factory.get_exp_config(name)
  for data in (config.task.train_data, config.task.validation_data):
    data.toy_world_split = ''
    data.input_path = records
    data.num_classes = NUM_CLASSES  # the records' labels go up to 9
    data.global_batch_size = 2
    data.feature_shape = (4, 32, 32, 3)
  config.task.validation_data.min_image_size = 36
  config.task.override(task_overrides)
  config.validate()
  return config.task


def test_toy_class_count_matches_the_toy_world():
  assert vc_cfg.TOY_NUM_CLASSES == toy_world.NUM_CLASSES
  assert sorted(vc_cfg.TOY_WORLDS) == sorted(toy_world.WORLD_NAMES)
  for name, sizes in vc_cfg.TOY_WORLDS.items():
    world = toy_world.named_world(name)
    assert sizes == {'num_classes': toy_world.num_classes(world.spec),
                     'train': world.num_train,
                     'validation': world.num_val}, name
  assert vc_cfg.TOY_WORLDS['shapes']['num_classes'] == 5


def test_toy_world_class_count_is_checked():
  config = exp_factory.get_exp_config('const_cl_linear_eval_ucf101_toy')
  config.task.allow_random_init = True
  config.task.validation_data.num_classes = 10
  config.task.train_data.num_classes = 10
  with pytest.raises(ValueError, match="train_data.num_classes \\(10\\) != 5, "
                     "the class count of toy world 'shapes'"):
    vc_task.VideoClassificationTask(config.task)


def test_unknown_toy_world_is_rejected():
  config = exp_factory.get_exp_config('const_cl_linear_eval_ucf101_toy')
  config.task.validation_data.toy_world = 'kinetics'
  with pytest.raises(ValueError, match="validation_data.toy_world must be one "
                     "of \\['pairs', 'plain', 'shapes'\\], got 'kinetics'"):
    config.validate()


@pytest.mark.parametrize('branch', ['res5g', 'res5r'])
def test_initialize_restores_the_branch_and_only_the_classifier_stays(
    records, pretrain_checkpoint, branch):
  directory, source = pretrain_checkpoint
  params = _config('const_cl_linear_eval_ucf101_toy', records,
                   init_checkpoint=directory, model={'branch': branch})
  task = vc_task.VideoClassificationTask(params)
  model = task.build_model()
  classifier_before = [w.numpy() for w in model.classifier.weights]
  task.initialize(model)
  got = branch_loading.weights_by_part(model.backbone, ['5g'])
  endpoint = branch[3:]
  for a, b in zip(source['trunk'] + source[endpoint],
                  [v.numpy() for v in got['trunk'] + got['5g']]):
    np.testing.assert_array_equal(a, b)
  # Every backbone variable is one of the restored ones; the classifier is
  # what is left at its initialization.
  assert len(got['trunk']) + len(got['5g']) == len(model.backbone.weights)
  restored = {v.ref() for v in got['trunk'] + got['5g']}
  left = [v for v in model.weights if v.ref() not in restored]
  assert {v.ref() for v in left} == {
      v.ref() for v in model.classifier.weights}
  for a, b in zip(classifier_before, model.classifier.weights):
    np.testing.assert_array_equal(a, b.numpy())


def test_linear_eval_steps_leave_the_backbone_untouched(records):
  params = _config('const_cl_linear_eval_hmdb51_toy', records,
                   allow_random_init=True)
  task = vc_task.VideoClassificationTask(params)
  model = task.build_model()
  frozen = [v.numpy().copy() for v in model.backbone.weights]
  assert any('moving_mean' in v.name for v in model.backbone.weights)
  classifier = [v.numpy().copy() for v in model.classifier.weights]
  optimizer = tf_keras.optimizers.SGD(1.0, momentum=0.9)
  metrics = task.build_metrics(training=True)
  batch = next(iter(task.build_inputs(params.train_data)))
  for _ in range(2):
    logs = task.train_step(batch, model, optimizer, metrics)
  assert np.isfinite(logs['loss'].numpy())
  for a, v in zip(frozen, model.backbone.weights):
    np.testing.assert_array_equal(a, v.numpy())  # incl. BN moving stats
  assert not np.array_equal(classifier[0], model.classifier.weights[0].numpy())
  assert {m.name for m in metrics} == {'clip_top_1_accuracy',
                                       'clip_top_5_accuracy'}


def test_training_batches_are_reproducible_per_data_seed(records):
  # Clip offsets, crops and flips come from per-example stateless seeds
  # (dataloaders.video_parser), so the parallel parse repeats exactly.
  params = _config('const_cl_linear_eval_ucf101_toy', records,
                   allow_random_init=True)
  task = vc_task.VideoClassificationTask(params)

  def batches(seed):
    it = iter(task.build_inputs(params.train_data.replace(seed=seed)))
    return [np.concatenate([f['image'].numpy().ravel(), y.numpy().ravel()])
            for f, y in (next(it), next(it), next(it))]

  first = batches(3)
  for again, want in zip(batches(3), first):
    np.testing.assert_array_equal(again, want)
  assert any(a.shape != b.shape or np.abs(a - b).max() > 1e-3
             for a, b in zip(batches(4), first))


def test_validation_feeds_every_view_and_reports_video_metrics(records):
  params = _config('const_cl_finetune_ucf101_toy', records,
                   allow_random_init=True)
  task = vc_task.VideoClassificationTask(params)
  features, labels = next(iter(task.build_inputs(params.validation_data)))
  # 2 videos x (2 clips x 3 crops), each [T, H, W, 3].
  assert features['image'].shape == (12, 4, 32, 32, 3)
  np.testing.assert_array_equal(np.argmax(labels, -1), [0, 3])
  model = task.build_model()
  metrics = task.build_metrics(training=False)
  task.validation_step((features, labels), model, metrics)
  names = {m.name for m in metrics}
  assert names == {'clip_top_1_accuracy', 'clip_top_5_accuracy',
                   'video_top_1_accuracy', 'video_top_5_accuracy'}
  counts = {m.name: m.count.numpy() for m in metrics}
  assert counts['clip_top_1_accuracy'] == 12
  assert counts['video_top_1_accuracy'] == 2
  assert task.inference_step(features, model).shape == (2, NUM_CLASSES)


def test_out_of_range_label_names_the_record(tmp_path):
  bad = _write_videos(tmp_path / 'bad.tfrecord', [2, 12], ['fine', 'vid_x'])
  params = _config('const_cl_linear_eval_ucf101_toy', bad,
                   allow_random_init=True)
  task = vc_task.VideoClassificationTask(params)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'(?s)outside \[0, num_classes=10\).*'
                     r'bad.tfrecord:vid_x.*12'):
    for _ in task.build_inputs(params.validation_data):
      pass
  # Without clip/id the file names the record.
  rng = np.random.default_rng(0)
  path = tmp_path / 'noid.tfrecord'
  video_records.write_records(str(path), [video_records.make_sequence_example(
      rng.integers(0, 255, [6, 32, 32, 3], dtype=np.uint8), label=-1)])
  params = _config('const_cl_linear_eval_ucf101_toy', str(path),
                   allow_random_init=True)
  task = vc_task.VideoClassificationTask(params)
  with pytest.raises(tf.errors.InvalidArgumentError, match='noid.tfrecord'):
    next(iter(task.build_inputs(params.validation_data)))


def test_tfds_source_selects_the_tfds_decoder():
  config = exp_factory.get_exp_config('const_cl_linear_eval_ucf101')
  data = config.task.validation_data
  data.tfds_name = 'ucf101/ucf101_1_256'
  config.validate()
  task = vc_task.VideoClassificationTask.__new__(
      vc_task.VideoClassificationTask)
  decoder = task.build_decoder(data)
  assert isinstance(decoder, vc_task.CheckedTfdsDecoder)
  video = tf.constant(np.full([5, 8, 8, 3], 7, np.uint8))
  out = decoder.decode({'video': video, 'label': tf.constant(100, tf.int64)})
  np.testing.assert_array_equal(out['image/encoded'].numpy(), video.numpy())
  assert out['clip/label/index'].numpy().tolist() == [100]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='ucf101/ucf101_1_256/test'):
    decoder.decode({'video': video, 'label': tf.constant(101, tf.int64)})
  data.tfds_name = ''
  assert isinstance(task.build_decoder(data), vc_task.CheckedDecoder)


def test_missing_or_empty_init_checkpoint_is_an_error(records, tmp_path):
  missing = str(tmp_path / 'no_such_run')
  params = _config('const_cl_linear_eval_kinetics400_toy', records,
                   init_checkpoint=missing)
  with pytest.raises(ValueError, match=f'init_checkpoint={missing!r}'):
    vc_task.VideoClassificationTask(params)
  params = _config('const_cl_linear_eval_kinetics400_toy', records)
  with pytest.raises(ValueError, match='allow_random_init'):
    vc_task.VideoClassificationTask(params)


def test_linear_eval_config_forbids_dropout_and_weight_decay():
  config = exp_factory.get_exp_config('const_cl_linear_eval_kinetics400')
  config.task.model.dropout_rate = 0.5
  with pytest.raises(ValueError, match='no dropout'):
    config.validate()
  config = exp_factory.get_exp_config('const_cl_linear_eval_kinetics400')
  config.task.model.branch = 'res5x'
  with pytest.raises(ValueError, match='res5x'):
    config.validate()
  config = exp_factory.get_exp_config('const_cl_linear_eval_kinetics400')
  config.task.model.pooled_norm = 'layer_norm'
  with pytest.raises(ValueError,
                     match="task.model.pooled_norm .*'layer_norm'"):
    config.validate()


def test_experiments_hold_the_spec_settings():
  for name, classes in (('const_cl_linear_eval_kinetics400', 400),
                        ('const_cl_linear_eval_ucf101', 101),
                        ('const_cl_linear_eval_hmdb51', 51),
                        ('const_cl_finetune_ucf101', 101),
                        ('const_cl_finetune_hmdb51', 51)):
    c = exp_factory.get_exp_config(name)
    t = c.task
    assert t.train_data.num_classes == t.validation_data.num_classes == classes
    assert t.train_data.feature_shape == (32, 224, 224, 3)
    assert t.validation_data.feature_shape == (32, 256, 256, 3)
    assert t.train_data.temporal_stride == t.validation_data.temporal_stride == 2
    assert (t.validation_data.num_test_clips,
            t.validation_data.num_test_crops) == (10, 3)
    assert t.model.branch == 'res5g'
    assert t.init_checkpoint_modules == 'backbone'
    assert c.trainer.optimizer_config.optimizer.sgd.momentum == 0.9
    linear = name.startswith('const_cl_linear_eval')
    assert t.linear_eval == linear
    if linear:
      assert t.model.dropout_rate == 0 and t.losses.l2_weight_decay == 0
    else:
      assert t.model.dropout_rate > 0
    toy = exp_factory.get_exp_config(name + '_toy')
    assert toy.task.linear_eval == linear
    assert toy.task.model.backbone.resnet_3d_y.block_repeats == (1, 1, 1, 1)
    assert toy.task.train_data.feature_shape == (8, 64, 64, 3)
    assert (toy.task.validation_data.num_test_clips,
            toy.task.validation_data.num_test_crops) == (2, 3)
    assert toy.trainer.train_steps <= 500


def test_classification_yamls_load_strictly_into_their_experiments():
  import glob  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  from official.modeling import hyperparams  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  paths = sorted(
      glob.glob(os.path.join(repo, 'configs/yaml/const_cl_linear_eval_*.yaml'))
      + glob.glob(os.path.join(repo, 'configs/yaml/const_cl_finetune_*.yaml')))
  assert len(paths) == 5
  for path in paths:
    with open(path) as f:
      name = re.match(r'#\s*--experiment=(\S+)', f.readline()).group(1)
      assert f.readline().startswith('# ')
    config = exp_factory.get_exp_config(name)
    config = hyperparams.override_params_dict(config, path, is_strict=True)
    config.validate()


def test_input_file_that_is_not_a_tfrecord_is_named(tmp_path):
  config = exp_factory.get_exp_config('const_cl_linear_eval_ucf101_toy')
  data = config.task.validation_data
  data.toy_world_split = ''
  (tmp_path / 'ucf-0.tfrecord').write_bytes(b'\x00' * 40)
  data.input_path = str(tmp_path / 'ucf-*.tfrecord')
  with pytest.raises(ValueError, match=(
      r"task.validation_data.input_path='.*ucf-\*.tfrecord': 1 of 1 files "
      'are not TFRecord files')):
    vc_task.resolve_input_pattern(data, 'validation_data')
