"""The pretraining train step keeps `task.model.freeze_until` stages fixed."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams

from modeling.backbones import branch_loading
from tasks import pretrain
from tasks import registry_imports  # pylint: disable=unused-import


def _config(freeze_until):
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.task.model.freeze_until = freeze_until
  for data in (config.task.train_data, config.task.validation_data):
    data.toy_world_split = ''  # inputs are made here, not read
    data.global_batch_size = 2
    data.feature_shape = (8, 32, 32, 3)
  return config


def _step(freeze_until):
  """(model, variables before, after) around one SGD step on random clips."""
  config = _config(freeze_until)
  task = task_factory.get_task(config.task)
  tf_keras.utils.set_random_seed(0)
  model = task.build_model()
  inputs = pretrain.ConstCLPretrainTask.dummy_inputs(
      config.task.train_data, batch_size=2)
  inputs['image'] = tf.random.stateless_uniform(
      inputs['image'].shape, seed=(1, 2))
  before = {id(v): v.numpy().copy() for v in model.variables}
  task.train_step(inputs, model, tf_keras.optimizers.SGD(learning_rate=0.1))
  after = {id(v): v.numpy() for v in model.variables}
  return model, before, after


def _stem(model):
  stem = branch_loading.stage_layers(model.backbone)['stem']
  conv = next(l for l in stem if isinstance(l, tf_keras.layers.Conv3D))
  bn = next(l for l in stem if hasattr(l, 'moving_mean'))
  return conv, bn


@pytest.fixture(scope='module')
def frozen_step():
  return _step('2')


def test_freeze_until_2_keeps_stem_and_res2_and_trains_the_rest(frozen_step):
  model, before, after = frozen_step
  frozen = branch_loading.frozen_variable_ids(model.backbone, '2')
  # Stem: conv kernel + BN gamma / beta; the one res2 block: 3 convs and the
  # projection shortcut, each kernel + BN gamma / beta: 3 + 12.
  assert len(frozen) == 15
  for i in frozen:
    np.testing.assert_array_equal(after[i], before[i])
  trained = [v for v in model.trainable_variables if id(v) not in frozen]
  changed = [v.name for v in trained
             if not np.array_equal(after[id(v)], before[id(v)])]
  assert len(changed) == len(trained)
  # Batch norm of the frozen stem still runs in training mode.
  _, bn = _stem(model)
  assert not np.array_equal(after[id(bn.moving_mean)],
                            before[id(bn.moving_mean)])
  assert len(pretrain.trainable_variables(model, '2')) == len(trained)
  assert len(pretrain.trainable_variables(model, '')) == len(
      model.trainable_variables)


def test_without_freeze_the_stem_trains():
  model, before, after = _step('')
  conv, _ = _stem(model)
  assert not np.array_equal(after[id(conv.kernel)], before[id(conv.kernel)])


def test_freeze_until_3_adds_res3(frozen_step):
  model = frozen_step[0]
  two = branch_loading.frozen_variable_ids(model.backbone, '2')
  three = branch_loading.frozen_variable_ids(model.backbone, '3')
  # The one res3 block: 3 convs + projection shortcut, kernel + gamma / beta.
  assert two < three and len(three) - len(two) == 12
  assert branch_loading.frozen_variable_ids(model.backbone, '') == set()
  # An override's int 3 or None is the str '3' or '' once the config is
  # validated (configs/config_types.py); here they are errors.
  for value in (3, None):
    with pytest.raises(ValueError, match='freeze_until must be one of'):
      branch_loading.frozen_variable_ids(model.backbone, value)
  with pytest.raises(ValueError, match='freeze_until must be one of'):
    branch_loading.frozen_variable_ids(model.backbone, '4')


def test_freeze_until_stem_keeps_the_stem_only(frozen_step):
  model = frozen_step[0]
  stem = branch_loading.frozen_variable_ids(model.backbone, 'stem')
  conv, bn = _stem(model)
  # The stem conv kernel and its BN gamma / beta, a subset of '2''s.
  assert stem == {id(conv.kernel), id(bn.gamma), id(bn.beta)}
  assert stem < branch_loading.frozen_variable_ids(model.backbone, '2')
  model, before, after = _step('stem')
  conv, _ = _stem(model)
  np.testing.assert_array_equal(after[id(conv.kernel)],
                                before[id(conv.kernel)])
  res2 = branch_loading.stage_layers(model.backbone)['res2']
  assert all(not np.array_equal(after[id(v)], before[id(v)])
             for l in res2 for v in l.trainable_weights)


def test_unknown_freeze_until_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.task.model.freeze_until = 'res2'
  with pytest.raises(ValueError, match=r"task.model.freeze_until must be one "
                     r"of \('', 'stem', '2', '3'\), got 'res2'"):
    config.validate()


@pytest.mark.parametrize('experiment', ['const_cl_pretrain_toy',
                                        'const_cl_tracking_toy'])
def test_freeze_until_from_the_command_line(experiment):
  # `freeze_until=3` parses to the int 3; validate() stores the endpoint '3'.
  config = hyperparams.override_params_dict(
      exp_factory.get_exp_config(experiment), 'task.model.freeze_until=3',
      is_strict=True)
  assert config.task.model.freeze_until == 3
  config.validate()
  assert config.task.model.freeze_until == '3'
  config = hyperparams.override_params_dict(
      config, 'task.model.freeze_until=4', is_strict=True)
  with pytest.raises(ValueError, match="got '4'"):
    config.validate()
