"""Every ablation row of Tables 3-7 is a registered, valid experiment."""
import pytest

from official.core import exp_factory

from configs import ablations
from configs import const_cl

NAMES = ablations.ablation_experiments()


def test_every_table_row_is_registered():
  assert ablations.ABLATION_TABLES == {
      'Table 3': ['const_cl_ablation_baseline_cvrl',
                  'const_cl_ablation_baseline_dense'],
      'Table 4': ['const_cl_ablation_region_frame_center',
                  'const_cl_ablation_region_frame_random',
                  'const_cl_ablation_region_frame_nearest'],
      'Table 5': ['const_cl_ablation_loss_endpoints_c5',
                  'const_cl_ablation_loss_endpoints_c4p',
                  'const_cl_ablation_loss_endpoints_y'],
      'Table 6': ['const_cl_ablation_context_length_0',
                  'const_cl_ablation_context_length_1',
                  'const_cl_ablation_context_length_3',
                  'const_cl_ablation_context_length_5'],
      'Table 7': ['const_cl_ablation_boxes_random',
                  'const_cl_ablation_boxes_slic',
                  'const_cl_ablation_boxes_felzenszwalb',
                  'const_cl_ablation_boxes_person_detector',
                  'const_cl_ablation_boxes_object_detector'],
  }


@pytest.mark.parametrize('name', NAMES + [n + '_toy' for n in NAMES])
def test_builds_and_validates(name):
  config = exp_factory.get_exp_config(name)
  config.validate()
  config.lock()


def _switches(config):
  m = config.task.model
  return (m.local_loss, m.loss_endpoints,
          m.backbone.resnet_3d_y.duplicate_res5, m.region_frame,
          m.local_head.context_length, config.task.train_data.region_source)


# (local_loss, loss_endpoints, duplicate_res5, region_frame, context, boxes);
# everything not listed is the main model's.
MAIN = ('const_cl', 'y', True, 'center', 5, 'random')
EXPECTED = {
    'baseline_cvrl': ('none', 'y', False, 'center', 5, 'random'),
    'baseline_dense': ('dense', 'y', True, 'center', 5, 'random'),
    'region_frame_center': MAIN,
    'region_frame_random': ('const_cl', 'y', True, 'random', 5, 'random'),
    'region_frame_nearest': ('const_cl', 'y', True, 'nearest', 5, 'random'),
    'loss_endpoints_c5': ('const_cl', 'c5', False, 'center', 5, 'random'),
    'loss_endpoints_c4p': ('const_cl', 'c4p', False, 'center', 5, 'random'),
    'loss_endpoints_y': MAIN,
    'context_length_0': ('region', 'y', True, 'center', 0, 'random'),
    'context_length_1': ('const_cl', 'y', True, 'center', 1, 'random'),
    'context_length_3': ('const_cl', 'y', True, 'center', 3, 'random'),
    'context_length_5': MAIN,
    'boxes_random': MAIN,
    'boxes_slic': ('const_cl', 'y', True, 'center', 5, 'slic'),
    'boxes_felzenszwalb': ('const_cl', 'y', True, 'center', 5,
                           'felzenszwalb'),
    'boxes_person_detector': ('const_cl', 'y', True, 'center', 5,
                              'detector'),
    'boxes_object_detector': ('const_cl', 'y', True, 'center', 5,
                              'detector'),
}


@pytest.mark.parametrize('row', sorted(EXPECTED))
def test_each_row_changes_only_its_switch_at_the_100k_schedule(row):
  config = exp_factory.get_exp_config(f'const_cl_ablation_{row}')
  assert _switches(config) == EXPECTED[row]
  assert config.task.validation_data.region_source == EXPECTED[row][5]
  assert config.trainer.train_steps == 100000
  opt = config.trainer.optimizer_config
  assert opt.learning_rate.cosine.decay_steps == 100000
  # The rest is the released recipe of the parent.
  parent = const_cl.const_cl_pretrain_kinetics400()
  assert opt.learning_rate.cosine.initial_learning_rate == 40.96
  assert opt.warmup.linear.warmup_steps == 2500
  assert config.task.losses.as_dict() == parent.task.losses.as_dict()
  assert config.task.train_data.feature_shape == (16, 224, 224, 3)
  assert config.task.train_data.global_batch_size == 1024
  assert config.runtime.mixed_precision_dtype == 'bfloat16'


@pytest.mark.parametrize('row', sorted(EXPECTED))
def test_toy_variant_keeps_the_switch(row):
  config = exp_factory.get_exp_config(f'const_cl_ablation_{row}_toy')
  local, endpoints, duplicate, frame, context, boxes = EXPECTED[row]
  got = _switches(config)
  assert got[:4] == (local, endpoints, duplicate, frame)
  assert got[5] == boxes
  data = config.task.train_data
  assert data.toy_world_split == 'train' and data.input_path == ''
  assert config.task.model.backbone.resnet_3d_y.block_repeats == (1, 1, 1, 1)
  assert config.runtime.mixed_precision_dtype == 'float32'
  assert config.trainer.train_steps == 300
  if row.startswith('context_length'):
    # 16 frames / stride 2 = 8 feature frames: every Table 6 length fits.
    assert data.feature_shape == (16, 64, 64, 3)
    assert config.task.validation_data.feature_shape == (16, 64, 64, 3)
    assert got[4] == context
  else:
    assert data.feature_shape == (8, 64, 64, 3)
    # toy_task caps the context at the 4 feature frames of 8 frames.
    assert got[4] == min(context, 3)


def test_context_5_does_not_fit_the_8_frame_toy():
  config = exp_factory.get_exp_config('const_cl_ablation_context_length_5_toy')
  config.task.train_data.feature_shape = (8, 64, 64, 3)
  with pytest.raises(ValueError, match=r'context_length \(5\).*4 feature'):
    config.validate()


def test_c5_with_a_duplicated_res5_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_ablation_loss_endpoints_c5')
  config.task.model.backbone.resnet_3d_y.duplicate_res5 = True
  with pytest.raises(ValueError, match='duplicate_res5=False'):
    config.validate()
