"""Tests for the R3D "Y" backbone configs (no model is built here)."""
import pytest
import yaml

from configs import backbones


def test_defaults_are_the_released_r3d50_y():
  cfg = backbones.ResNet3DY()
  assert cfg.model_id == 50
  assert cfg.block_repeats == (3, 4, 6, 3)
  assert cfg.base_filters == 64
  assert cfg.stem_conv_temporal_kernel_size == 5
  assert cfg.stem_conv_temporal_stride == 2
  assert cfg.stem_pool_temporal_stride == 1
  assert cfg.duplicate_res5 and not cfg.dilate_res4_res5
  assert backbones.stage_temporal_kernel_sizes(cfg) == (
      (1, 1, 1), (1, 1, 1, 1), (3, 3, 3, 3, 3, 3), (3, 3, 3))
  cfg.validate()


def test_tiny_variant():
  cfg = backbones.resnet_3d_y_tiny()
  assert cfg.model_id == 2 + 3 * 4
  assert cfg.block_repeats == (1, 1, 1, 1)
  assert cfg.base_filters == 8
  assert backbones.stage_temporal_kernel_sizes(cfg) == (
      (1,), (1,), (3,), (3,))
  # Everything else is inherited from the R3D-50 defaults.
  assert cfg.stem_conv_temporal_kernel_size == 5
  assert cfg.duplicate_res5
  cfg.validate()


def test_backbone3d_one_of_defaults_to_resnet_3d_y():
  cfg = backbones.Backbone3D()
  assert cfg.type == 'resnet_3d_y'
  assert isinstance(cfg.get(), backbones.ResNet3DY)
  # Model Garden's options are still there.
  assert cfg.resnet_3d.model_id == 50
  cfg.type = 'resnet_3d'
  assert cfg.get() is cfg.resnet_3d


def _as_tuples(d):
  return {k: tuple(v) if isinstance(v, (list, tuple)) else v
          for k, v in d.items()}


def test_yaml_override_round_trip():
  cfg = backbones.Backbone3D()
  cfg.override(yaml.safe_load("""
      resnet_3d_y:
        model_id: 14
        block_repeats: [1, 1, 1, 1]
        base_filters: 8
        temporal_kernel_sizes: [1, 1, 3, 3]
        dilate_res4_res5: true
  """), is_strict=True)
  y = cfg.resnet_3d_y
  assert backbones.stage_temporal_kernel_sizes(y) == ((1,), (1,), (3,), (3,))
  assert y.dilate_res4_res5
  # YAML gives lists where the defaults are tuples; the values must agree.
  assert _as_tuples(y.as_dict()) == _as_tuples(backbones.ResNet3DY(
      model_id=14, block_repeats=(1, 1, 1, 1), base_filters=8,
      temporal_kernel_sizes=(1, 1, 3, 3), dilate_res4_res5=True).as_dict())
  assert _as_tuples(y.as_dict()) != _as_tuples(
      backbones.resnet_3d_y_tiny().as_dict())  # dilate_res4_res5 differs
  # A typo is an error, never a new field.
  with pytest.raises(KeyError):
    cfg.override({'resnet_3d_y': {'duplicate_res_5': False}}, is_strict=True)


@pytest.mark.parametrize('overrides, message', [
    ({'block_repeats': (3, 4, 6)}, 'block_repeats must have 4 entries'),
    ({'block_repeats': (3, 4, 0, 3), 'model_id': 32},
     'every block_repeats entry must be >= 1'),
    ({'model_id': 101}, r'model_id \(101\) must equal .* = 50'),
    ({'base_filters': 0}, 'base_filters must be >= 1, got 0'),
    ({'temporal_kernel_sizes': (1, 3)},
     r'temporal_kernel_sizes has 2 entries but block_repeats \(3, 4, 6, 3\) '
     'has 16 blocks'),
    ({'temporal_kernel_sizes': (1,) * 15 + (0,)},
     'every temporal_kernel_sizes entry must be >= 1'),
    ({'stem_conv_temporal_kernel_size': 0},
     'stem_conv_temporal_kernel_size must be >= 1, got 0'),
    ({'stem_conv_temporal_stride': 0},
     'stem_conv_temporal_stride must be >= 1, got 0'),
    ({'stem_pool_temporal_stride': -1},
     'stem_pool_temporal_stride must be >= 1, got -1'),
])
def test_check_rejects_inconsistent_configs(overrides, message):
  cfg = backbones.ResNet3DY()
  cfg.override(overrides)
  with pytest.raises(ValueError, match=message):
    backbones.check_resnet_3d_y(cfg)
  with pytest.raises(ValueError, match=message):
    cfg.validate()
  with pytest.raises(ValueError, match='configs/backbones.py ResNet3DY'):
    backbones.stage_temporal_kernel_sizes(cfg)


def test_r3d101_style_config_is_accepted():
  # Depth follows block_repeats: 2 + 3 * (3 + 4 + 23 + 3) = 101.
  cfg = backbones.ResNet3DY(
      model_id=101, block_repeats=(3, 4, 23, 3),
      temporal_kernel_sizes=(1,) * 7 + (3,) * 26)
  stages = backbones.stage_temporal_kernel_sizes(cfg)
  assert [len(s) for s in stages] == [3, 4, 23, 3]
  assert stages[2] == (3,) * 23 and stages[1] == (1,) * 4
