"""Every registered experiment builds and validates; every YAML loads strictly.
"""
import glob
import os
import re

import pytest

from official.core import exp_factory
from official.modeling import hyperparams

from tasks import registry_imports  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
YAMLS = sorted(glob.glob(os.path.join(REPO, 'configs', 'yaml', '*.yaml')))


def _our_experiments():
  # pylint: disable=protected-access
  return sorted(k for k in exp_factory._REGISTERED_CONFIGS
                if k.startswith('const_cl_'))


def test_the_main_experiments_are_registered():
  names = _our_experiments()
  assert 'const_cl_pretrain_kinetics400' in names
  assert 'const_cl_pretrain_toy' in names


@pytest.mark.parametrize('name', _our_experiments())
def test_experiment_builds_and_validates(name):
  config = exp_factory.get_exp_config(name)
  config.validate()
  config.lock()


def test_yamls_exist():
  names = {os.path.basename(p) for p in YAMLS}
  assert {'const_cl_pretrain_k400_100k.yaml',
          'const_cl_pretrain_k400_200k.yaml'} <= names


def _header_experiment(path):
  with open(path) as f:
    first = f.readline()
  match = re.match(r'#\s*--experiment=(\S+)', first)
  assert match, f'{path}: first line must be "# --experiment=NAME"'
  return match.group(1)


@pytest.mark.parametrize('path', YAMLS, ids=os.path.basename)
def test_yaml_loads_strictly_into_its_experiment(path):
  config = exp_factory.get_exp_config(_header_experiment(path))
  config = hyperparams.override_params_dict(config, path, is_strict=True)
  config.validate()


def test_k400_200k_yaml_holds_the_released_schedule():
  path = os.path.join(REPO, 'configs', 'yaml',
                      'const_cl_pretrain_k400_200k.yaml')
  config = exp_factory.get_exp_config('const_cl_pretrain_kinetics400')
  config = hyperparams.override_params_dict(config, path, is_strict=True)
  opt = config.trainer.optimizer_config
  assert config.trainer.train_steps == 200000
  assert opt.learning_rate.cosine.initial_learning_rate == 40.96
  assert opt.learning_rate.cosine.decay_steps == 200000
  assert opt.warmup.linear.warmup_steps == 2500
  assert config.task.train_data.global_batch_size == 1024
  assert config.task.losses.local_weight == 0.001
  assert config.task.losses.l2_weight_decay == 1e-6
  assert config.task.model.norm_activation.use_sync_bn
  assert config.runtime.mixed_precision_dtype == 'bfloat16'


def test_unknown_key_is_an_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  with pytest.raises(KeyError):
    config.override({'task': {'losses': {'local_wieght': 0.1}}},
                    is_strict=True)


def test_context_length_longer_than_feature_frames_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  # 8 frames / temporal stride 2 = 4 feature frames.
  config.override({'task': {'model': {'local_head': {'context_length': 5}}}})
  with pytest.raises(ValueError, match=r'context_length \(5\).*4 feature'):
    config.validate()


def test_even_context_length_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.override({'task': {'model': {'local_head': {'context_length': 2}}}})
  with pytest.raises(ValueError, match='must be odd'):
    config.validate()


def test_unknown_region_source_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.override({'task': {'train_data': {'region_source': 'sift'}}})
  with pytest.raises(ValueError, match='region_source'):
    config.validate()


def test_toy_experiment_derives_from_the_kinetics_one():
  real = exp_factory.get_exp_config('const_cl_pretrain_kinetics400')
  toy = exp_factory.get_exp_config('const_cl_pretrain_toy')
  # What the toy variant keeps from its parent.
  assert toy.task.losses.global_temperature == real.task.losses.global_temperature == 0.1
  assert toy.task.losses.local_temperature == real.task.losses.local_temperature == 0.2
  assert toy.task.model.region_frame == real.task.model.region_frame == 'center'
  assert toy.task.model.loss_endpoints == 'y'
  # What it changes.
  assert toy.task.train_data.feature_shape == (8, 64, 64, 3)
  assert toy.task.train_data.toy_world_split == 'train'
  assert toy.task.model.backbone.resnet_3d_y.block_repeats == (1, 1, 1, 1)
  # Milder views (the released ones collapse the toy global branch).
  assert (real.task.train_data.color_jitter_strength,
          real.task.train_data.min_crop_area) == (1.0, 0.3)
  for data in (toy.task.train_data, toy.task.validation_data):
    assert (data.color_jitter_strength, data.min_crop_area) == (0.5, 0.6)
