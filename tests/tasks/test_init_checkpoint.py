"""`task.init_checkpoint` of the pretraining, AVA and tracking tasks."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory

from tasks import registry_imports  # pylint: disable=unused-import
from tasks import tracking

EXPERIMENTS = ('const_cl_pretrain_toy', 'const_cl_ava_toy',
               'const_cl_tracking_toy')


def _task_and_model(name, init_checkpoint=''):
  params = exp_factory.get_exp_config(name)
  params.task.init_checkpoint = init_checkpoint
  task = task_factory.get_task(params.task)
  return task, task.build_model()


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_missing_init_checkpoint_names_the_field(name, tmp_path):
  missing = str(tmp_path / 'nope' / 'ckpt-3')
  task, model = _task_and_model(name, missing)
  with pytest.raises(ValueError, match=(
      f"task.init_checkpoint='{missing}' does not exist")):
    task.initialize(model)
  task, model = _task_and_model(name, str(tmp_path))
  with pytest.raises(ValueError, match=(
      f"task.init_checkpoint='{tmp_path}' is a directory without a "
      'checkpoint')):
    task.initialize(model)


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_init_checkpoint_dir_loads_its_latest_backbone(name, tmp_path):
  _, source = _task_and_model(name)
  tf_keras.utils.set_random_seed(3)
  for v in source.backbone.trainable_variables:
    v.assign(tf.random.normal(v.shape))
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(backbone=source.backbone), str(tmp_path),
      max_to_keep=2)
  for step in (1, 2):  # the latest (2) is the one loaded
    for v in source.backbone.trainable_variables:
      v.assign_add(tf.ones_like(v))
    manager.save(checkpoint_number=step)
  task, model = _task_and_model(name, str(tmp_path))
  task.initialize(model)
  for a, b in zip(source.backbone.trainable_variables,
                  model.backbone.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tracking_checkpoint_flag_is_named(tmp_path):
  params = exp_factory.get_exp_config('const_cl_tracking_toy')
  with pytest.raises(ValueError, match=(
      f"--checkpoint='{tmp_path}' is a directory without a checkpoint")):
    tracking.build_model_from_config(params.task, str(tmp_path),
                                     '--checkpoint')



def test_checkpoint_prefix_loads_that_checkpoint(tmp_path):
  _, source = _task_and_model('const_cl_ava_toy')
  ckpt = tf.train.Checkpoint(backbone=source.backbone)
  values = []
  for step in (1, 2):
    for v in source.backbone.trainable_variables:
      v.assign(tf.fill(v.shape, float(step)))
    values.append(ckpt.save(str(tmp_path / 'ckpt')))
  task, model = _task_and_model('const_cl_ava_toy', values[0])  # not latest
  task.initialize(model)
  assert all(np.all(v.numpy() == 1.0)
             for v in model.backbone.trainable_variables)


def test_cvrl_checkpoint_into_the_y_backbone_names_the_mismatch(tmp_path):
  _, cvrl = _task_and_model('const_cl_ablation_baseline_cvrl_toy')
  tf.train.CheckpointManager(
      tf.train.Checkpoint(backbone=cvrl.backbone), str(tmp_path),
      max_to_keep=1).save(checkpoint_number=1)
  task, model = _task_and_model('const_cl_pretrain_toy', str(tmp_path))
  with pytest.raises(ValueError, match=(
      r"task.init_checkpoint='.*ckpt-1': restoring it as a backbone left "
      r'20 variables unrestored, e\.g\. [^ ,]+/[^ ,]+:0, .*'
      r'duplicate_res5 must match it\)$')) as raised:
    task.initialize(model)
  # Not TF's message, whose variable reprs (values included) run to
  # hundreds of lines, neither in the text nor chained as its cause.
  assert 'numpy=' not in str(raised.value)
  assert raised.value.__cause__ is None and raised.value.__suppress_context__
  assert len(str(raised.value)) < 600
