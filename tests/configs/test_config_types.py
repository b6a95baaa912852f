"""Config leaves of the wrong type are errors naming the field."""
import dataclasses
import glob
import os
import re
from typing import Any, Optional, Tuple

import pytest

from official.core import exp_factory
from official.modeling import hyperparams

from configs import config_types
from tasks import features as features_lib
from tasks import registry_imports  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
YAMLS = sorted(glob.glob(os.path.join(REPO, 'configs', 'yaml', '*.yaml')))


def _our_experiments():
  # pylint: disable=protected-access
  return sorted(k for k in exp_factory._REGISTERED_CONFIGS
                if k.startswith('const_cl_'))


def _header_experiment(path):
  with open(path) as f:
    return re.match(r'#\s*--experiment=(\S+)', f.readline()).group(1)


@pytest.mark.parametrize('name', _our_experiments())
def test_every_registered_experiment_passes_the_type_check(name):
  config_types.check_config_types(exp_factory.get_exp_config(name))


@pytest.mark.parametrize('path', YAMLS, ids=os.path.basename)
def test_every_yaml_passes_the_type_check(path):
  config = exp_factory.get_exp_config(_header_experiment(path))
  config = hyperparams.override_params_dict(config, path, is_strict=True)
  config_types.check_config_types(config)


BAD_OVERRIDES = [
    ('const_cl_pretrain_toy', 'trainer.train_steps=1.5',
     'trainer.train_steps must be int, got 1.5 (float)'),
    ('const_cl_pretrain_toy', 'trainer.train_steps=abc',
     "trainer.train_steps must be int, got 'abc' (str)"),
    ('const_cl_pretrain_toy', 'trainer.train_steps=true',
     'trainer.train_steps must be int, got True (bool)'),
    ('const_cl_pretrain_toy',
     'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=nan',
     'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate '
     "must be Optional[float], got 'nan' (str)"),
    ('const_cl_pretrain_toy', 'task.losses.local_weight=.inf',
     'task.losses.local_weight must be a finite float, got inf (float)'),
    # An int beyond the float range: math.isfinite raised OverflowError.
    ('const_cl_pretrain_toy', 'task.losses.local_weight=1' + '0' * 400,
     'task.losses.local_weight must be a finite float, got 1' + '0' * 400 +
     ' (int)'),
    ('const_cl_pretrain_toy', 'task.model.local_head.context_length=three',
     "task.model.local_head.context_length must be int, got 'three' (str)"),
    ('const_cl_pretrain_toy', 'task.train_data.feature_shape=8',
     'task.train_data.feature_shape must be Tuple[int, int, int, int], got '
     '8 (int)'),
    ('const_cl_pretrain_toy', 'task.train_data.feature_shape=[8,64,64]',
     'task.train_data.feature_shape must be Tuple[int, int, int, int], got '
     '[8, 64, 64] (list)'),
    ('const_cl_pretrain_toy', 'task.train_data.global_batch_size=2.5',
     'task.train_data.global_batch_size must be int, got 2.5 (float)'),
    ('const_cl_pretrain_toy', 'task.train_data.is_training=1',
     'task.train_data.is_training must be bool, got 1 (int)'),
    ('const_cl_ava_toy', 'trainer.validation_steps=x',
     "trainer.validation_steps must be int, got 'x' (str)"),
    ('const_cl_linear_eval_ucf101_toy', 'task.train_data.global_batch_size=a',
     "task.train_data.global_batch_size must be int, got 'a' (str)"),
    ('const_cl_tracking_toy', 'trainer.train_steps=2.5',
     'trainer.train_steps must be int, got 2.5 (float)'),
]


@pytest.mark.parametrize('name,override,message', BAD_OVERRIDES)
def test_bad_override_names_the_field_type_and_value(name, override, message):
  config = exp_factory.get_exp_config(name)
  config = hyperparams.override_params_dict(config, override, is_strict=True)
  with pytest.raises(ValueError, match=re.escape(message)):
    config.validate()
  with pytest.raises(TypeError, match=re.escape(message)):
    config.validate()


@pytest.mark.parametrize('text,message', [
    ('task: {train_data: {global_batch_size: sixteen}}',
     "task.train_data.global_batch_size must be int, got 'sixteen' (str)"),
    ('task: {model: {local_head: 3}}',
     'task.model.local_head must be LocalHead, got 3 (int)'),
])
def test_bad_yaml_names_the_field_before_the_model_is_built(tmp_path, text,
                                                            message):
  path = tmp_path / 'bad.yaml'
  path.write_text(text + '\n')
  # The shared loader of tools/ (export, extract_features, ...).
  with pytest.raises(ValueError, match=re.escape(message)):
    features_lib.load_experiment_config('const_cl_pretrain_toy', [str(path)])


# (experiment, override, dotted field, value after validate()).
NORMALIZED_OVERRIDES = [
    ('const_cl_ava_toy', 'task.model.feature_endpoint=4',
     'task.model.feature_endpoint', '4'),
    ('const_cl_pretrain_toy', 'task.model.freeze_until=2',
     'task.model.freeze_until', '2'),
    ('const_cl_tracking_toy', 'task.model.freeze_until=3',
     'task.model.freeze_until', '3'),
    # `x=` parses to None; in a `str` field it is ''.
    ('const_cl_pretrain_toy', 'task.train_data.toy_world_split=',
     'task.train_data.toy_world_split', ''),
    ('const_cl_linear_eval_ucf101_toy', 'task.validation_data.toy_world_split=',
     'task.validation_data.toy_world_split', ''),
    ('const_cl_ava_toy', 'task.train_data.toy_world_split=',
     'task.train_data.toy_world_split', ''),
    ('const_cl_linear_eval_ucf101_toy',
     'task.init_checkpoint=,task.allow_random_init=true',
     'task.init_checkpoint', ''),
]


def _leaf(config, dotted):
  for name in dotted.split('.'):
    config = getattr(config, name)
  return config


@pytest.mark.parametrize('name,override,field,value', NORMALIZED_OVERRIDES)
def test_override_text_is_normalized_to_the_field_type(name, override, field,
                                                       value):
  config = exp_factory.get_exp_config(name)
  config = hyperparams.override_params_dict(config, override, is_strict=True)
  assert _leaf(config, field) != value  # as parsed: an int or None
  config.validate()
  leaf = _leaf(config, field)
  assert leaf == value and isinstance(leaf, str)


def test_int_override_dict_is_the_decimal_string():
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config.override({'task': {'model': {'feature_endpoint': 4}}})
  config.validate()
  assert config.task.model.feature_endpoint == '4'
  assert isinstance(config.task.model.feature_endpoint, str)


@pytest.mark.parametrize('override,field,value', [
    ('trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1',
     'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate',
     1),
    ('task.train_data.cycle_length=', 'task.train_data.cycle_length', None),
])
def test_values_that_fit_as_they_are_stay_unchanged(override, field, value):
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config = hyperparams.override_params_dict(config, override, is_strict=True)
  config.validate()
  leaf = _leaf(config, field)
  assert (leaf, type(leaf)) == (value, type(value))


@pytest.mark.parametrize('override,message', [
    ('task.model.feature_endpoint=true',
     'task.model.feature_endpoint must be str, got True (bool)'),
    ('task.train_data.toy_world_split=1.5',
     'task.train_data.toy_world_split must be str, got 1.5 (float)'),
])
def test_a_bool_or_float_in_a_str_field_is_still_an_error(override, message):
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config = hyperparams.override_params_dict(config, override, is_strict=True)
  with pytest.raises(ValueError, match=re.escape(message)):
    config.validate()


def test_a_validated_locked_config_validates_again():
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config = hyperparams.override_params_dict(
      config, 'task.model.feature_endpoint=4', is_strict=True)
  config.validate()
  config.lock()
  config.validate()  # nothing left to normalize: nothing is assigned
  assert config.task.model.feature_endpoint == '4'


def test_a_locked_config_is_not_normalized_behind_its_lock():
  config = exp_factory.get_exp_config('const_cl_ava_toy')
  config = hyperparams.override_params_dict(
      config, 'task.model.feature_endpoint=4', is_strict=True)
  # Model Garden's lock() flags the experiment config only; its
  # sub-configs would still take an assignment.
  config.lock()
  with pytest.raises(ValueError, match=re.escape(
      "task.model.feature_endpoint must be str, got 4 (int): it would be "
      "stored as '4', but the config is locked; call validate() before "
      "lock()")):
    config.validate()
  assert config.task.model.feature_endpoint == 4


@dataclasses.dataclass
class _Leaf(hyperparams.Config):
  size: Optional[int] = None
  anything: Any = None
  shape: Tuple[int, ...] = (1, 2)
  name: str = 'a'
  maybe_name: Optional[str] = None
  names: Tuple[str, ...] = ('a', 'b')


@dataclasses.dataclass
class _Root(hyperparams.Config):
  leaf: _Leaf = dataclasses.field(default_factory=_Leaf)


def test_optional_none_any_and_variadic_tuples():
  root = _Root()
  config_types.check_config_types(root)
  root.leaf.anything = {'a': 1}
  root.leaf.size = 3
  root.leaf.shape = [1, 2, 3]
  config_types.check_config_types(root)
  root.leaf.shape = [1, 'b']
  with pytest.raises(TypeError, match=re.escape(
      "leaf.shape must be Tuple[int, ...], got [1, 'b'] (list)")):
    config_types.check_config_types(root)
  root.leaf.shape = (1,)
  root.leaf.size = 2.0
  with pytest.raises(TypeError, match=re.escape(
      'leaf.size must be Optional[int], got 2.0 (float)')):
    config_types.check_config_types(root)


def test_fixed_length_tuple_items_are_checked_one_by_one():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config = hyperparams.override_params_dict(
      config, 'task.validation_data.feature_shape=[8,null,64,3]',
      is_strict=True)
  with pytest.raises(ValueError, match=re.escape(
      'task.validation_data.feature_shape must be Tuple[int, int, int, int], '
      'got [8, None, 64, 3] (list)')):
    config.validate()


@pytest.mark.parametrize('name', ['const_cl_pretrain_toy', 'const_cl_ava_toy'])
def test_a_list_of_input_patterns_passes(name):
  # The tasks join a list of patterns with commas (tasks/pretrain.py,
  # tasks/action_localization.py); a YAML may give one.
  config = exp_factory.get_exp_config(name)
  config = hyperparams.override_params_dict(
      config, {'task': {'train_data': {'input_path': ['/d/a-*', '/d/b-*']}}},
      is_strict=True)
  config_types.check_config_types(config)
  config.task.train_data.input_path = ['/d/a-*', 2.5]
  with pytest.raises(TypeError, match=re.escape(
      "task.train_data.input_path must be Union[str, List[str]], got "
      "['/d/a-*', 2.5] (list)")):
    config_types.check_config_types(config)


def test_none_inside_a_variable_length_list_is_refused():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config = hyperparams.override_params_dict(
      config, 'task.model.backbone.resnet_3d_y.block_repeats=[3,null,6,3]',
      is_strict=True)
  with pytest.raises(ValueError, match=re.escape(
      'task.model.backbone.resnet_3d_y.block_repeats must be '
      'Tuple[int, ...], got [3, None, 6, 3] (list)')):
    config.validate()


def test_str_leaves_normalize_optional_str_keeps_none_lists_item_by_item():
  root = _Root()
  root.leaf.name = 7
  root.leaf.maybe_name = 8
  root.leaf.names = ('a', 9, None)
  config_types.check_config_types(root)
  assert root.leaf.name == '7'
  assert root.leaf.maybe_name == '8'
  assert root.leaf.names == ('a', '9', '')
  root.leaf.name = None
  root.leaf.maybe_name = None  # None means something else than '' here
  config_types.check_config_types(root)
  assert root.leaf.name == ''
  assert root.leaf.maybe_name is None
  root.leaf.names = ('a', False)
  with pytest.raises(TypeError, match=re.escape(
      "leaf.names must be Tuple[str, ...], got ('a', False) (tuple)")):
    config_types.check_config_types(root)


def test_a_locked_sub_config_is_not_normalized_either():
  root = _Root()
  root.leaf.name = 7
  root.leaf.lock()
  with pytest.raises(TypeError, match='but the config is locked'):
    config_types.check_config_types(root)
  assert root.leaf.name == 7
