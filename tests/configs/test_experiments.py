"""Every registered experiment builds and validates; every YAML loads strictly.
"""
import glob
import os
import re

import pytest

from official.core import exp_factory
from official.modeling import hyperparams

from configs import const_cl as const_cl_cfg
from dataloaders import toy_world
from tasks import pretrain
from tasks import registry_imports

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


def test_toy_world_names_match_the_toy_world():
  # Configs restate the names (they import no data code).
  assert sorted(const_cl_cfg.TOY_WORLDS) == sorted(toy_world.WORLD_NAMES)


def test_unknown_toy_world_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  assert config.task.train_data.toy_world == 'pairs'
  config.override({'task': {'validation_data': {'toy_world': 'colours'}}})
  with pytest.raises(ValueError, match=r"validation_data.toy_world must be "
                     r"one of \['pairs', 'plain', 'shapes'\], got 'colours'"):
    config.validate()


def test_toy_world_setting_picks_the_named_world(monkeypatch):
  calls = []

  def fake_ensure(**kwargs):
    calls.append(kwargs)
    return {'train': 'TRAIN', 'validation': 'VAL'}

  monkeypatch.setattr(toy_world, 'ensure_toy_dataset', fake_ensure)
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  data = config.task.validation_data
  assert pretrain.resolve_input_pattern(data, 'validation_data') == 'VAL'
  data.toy_world = 'plain'
  assert pretrain.resolve_input_pattern(data, 'validation_data') == 'VAL'
  pairs, plain = calls
  # 'pairs' is what the pretraining has always read: the default world.
  assert pairs == {'spec': toy_world.ToyWorldSpec(), 'num_train': 500,
                   'num_val': 100}
  assert plain['spec'] == toy_world.ToyWorldSpec(background='flat',
                                                 object_colors='white')
  assert plain['spec'].clip_class == 'pairs'
  assert (plain['num_train'], plain['num_val']) == (500, 100)


@pytest.mark.parametrize('name', ['const_cl_pretrain_toy',
                                  'const_cl_linear_eval_ucf101_toy',
                                  'const_cl_ava_toy'])
def test_empty_toy_world_split_override_means_no_toy_world(name):
  # `--params_override=task.train_data.toy_world_split=` parses to None.
  config = exp_factory.get_exp_config(name)
  config = hyperparams.override_params_dict(
      config, 'task.train_data.toy_world_split=', is_strict=True)
  assert config.task.train_data.toy_world_split is None
  config.validate()
  assert config.task.train_data.toy_world_split == ''
  config.task.train_data.toy_world_split = 'test'
  with pytest.raises(ValueError, match='train_data.toy_world_split must be'):
    config.validate()


def test_check_experiment_names_unknown_ones_and_close_names():
  registry_imports.check_experiment('const_cl_pretrain_toy')  # no error
  with pytest.raises(ValueError, match=(
      r"^unknown experiment 'const_cl_pretrain_tyo' \(\d+ are registered, "
      r'e\.g\. const_cl_pretrain_toy; did you mean const_cl_pretrain_toy')):
    registry_imports.check_experiment('const_cl_pretrain_tyo')
  with pytest.raises(ValueError, match=r"^unknown experiment 'zzz' \(\d+ "
                     r'are registered, e\.g\. const_cl_pretrain_toy\)$'):
    registry_imports.check_experiment('zzz')
