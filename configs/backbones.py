"""Backbone configs: the R3D "Y" backbone of ConST-CL (SPEC section 1).

`ResNet3DY` configures `modeling.backbones.resnet_3d_y.ResNet3DY`; `Backbone3D`
is Model Garden's 3D backbone one-of config with the `resnet_3d_y` option
added and selected by default.

`temporal_kernel_sizes` is stored FLAT (one entry per block, res2 first, split
by `block_repeats`): Model Garden's `hyperparams.Config` only accepts one level
of sequence, so a tuple of tuples cannot be a config field (nor a YAML override).
`stage_temporal_kernel_sizes(cfg)` gives the per-stage tuples the model takes.
"""
import dataclasses
from typing import Optional, Tuple

from official.modeling import hyperparams
from official.vision.configs import backbones_3d

# The block specs of the released ConST-CL R3D-50: temporal kernel 1 in res2
# and res3, 3 in res4 and res5 (flattened; 3 + 4 + 6 + 3 blocks).
R3D50_TEMPORAL_KERNEL_SIZES = (1, 1, 1) + (1, 1, 1, 1) + (3,) * 6 + (3, 3, 3)


# `freeze_until` of the pretraining and tracking models: the backbone stages
# their train steps keep fixed, from the input side. '' none, 'stem' the
# stem, '2' stem + res2, '3' stem + res2 + res3.
FREEZE_UNTIL = ('', 'stem', '2', '3')


def check_freeze_until(value: str) -> None:
  """Raises a ValueError naming `task.model.freeze_until` if `value` is bad.

  An override `freeze_until=2` (the int 2) or `freeze_until=` (None) is the
  str '2' or '' by the time `validate()` gets here (configs/config_types.py).
  """
  if value not in FREEZE_UNTIL:
    raise ValueError(f'task.model.freeze_until must be one of '
                     f'{FREEZE_UNTIL}, got {value!r}')


@dataclasses.dataclass
class ResNet3DY(hyperparams.Config):
  """Config of the R3D "Y" backbone (res5 duplicated into res5g and res5r).

  Depth convention: `model_id = 2 + 3 * sum(block_repeats)` (stem conv, three
  convs per bottleneck block, classifier), so 50 for (3, 4, 6, 3); it is
  checked so that a YAML changing one of the two cannot silently disagree.
  """
  model_id: int = 50  # 2 + 3 * sum(block_repeats): 50 (R3D-50) | 14 (tiny)
  block_repeats: Tuple[int, ...] = (3, 4, 6, 3)  # 4 ints >= 1 (res2..res5)
  # Bottleneck width of res2 (and the stem width); doubled per stage, each
  # block outputs 4x its width.
  base_filters: int = 64  # int >= 1; 64 for R3D-50
  # Flat, one per block (res2 first); len == sum(block_repeats).
  temporal_kernel_sizes: Tuple[int, ...] = R3D50_TEMPORAL_KERNEL_SIZES  # >= 1
  stem_conv_temporal_kernel_size: int = 5  # int >= 1
  # Width of the stem conv; 0 = base_filters (R3D-50: 64).
  stem_filters: int = 0  # int >= 0
  stem_conv_temporal_stride: int = 2  # int >= 1
  stem_pool_temporal_stride: int = 1  # int >= 1 (kernel 1 if 1, else 3)
  duplicate_res5: bool = True  # True (Y: res5g + res5r) | False (c5/c4p)
  # Tracking: res4/res5 get spatial stride 1 and dilation 2 (feature stride 8);
  # variable shapes are unchanged so a pretraining checkpoint loads as is.
  dilate_res4_res5: bool = False  # False | True

  def validate(self):
    super().validate()
    check_resnet_3d_y(self)


def check_resnet_3d_y(cfg: ResNet3DY) -> None:
  """Checks the cross-field constraints of a `ResNet3DY` config.

  Args:
    cfg: The config to check.

  Raises:
    ValueError: naming the offending field and its value.
  """
  where = 'configs/backbones.py ResNet3DY'
  block_repeats = tuple(cfg.block_repeats)
  if len(block_repeats) != 4:
    raise ValueError(
        f'{where}: block_repeats must have 4 entries (res2..res5), got '
        f'{block_repeats}')
  if any(int(r) < 1 for r in block_repeats):
    raise ValueError(
        f'{where}: every block_repeats entry must be >= 1, got '
        f'{block_repeats}')
  expected_depth = 2 + 3 * sum(block_repeats)
  if cfg.model_id != expected_depth:
    raise ValueError(
        f'{where}: model_id ({cfg.model_id}) must equal 2 + 3 * '
        f'sum(block_repeats) = {expected_depth} for block_repeats '
        f'{block_repeats}')
  if cfg.base_filters < 1:
    raise ValueError(
        f'{where}: base_filters must be >= 1, got {cfg.base_filters}')
  kernels = tuple(cfg.temporal_kernel_sizes)
  if len(kernels) != sum(block_repeats):
    raise ValueError(
        f'{where}: temporal_kernel_sizes has {len(kernels)} entries but '
        f'block_repeats {block_repeats} has {sum(block_repeats)} blocks '
        f'(one temporal kernel size per block, res2 first): {kernels}')
  if any(int(k) < 1 for k in kernels):
    raise ValueError(
        f'{where}: every temporal_kernel_sizes entry must be >= 1, got '
        f'{kernels}')
  for name in ('stem_conv_temporal_kernel_size', 'stem_conv_temporal_stride',
               'stem_pool_temporal_stride'):
    value = getattr(cfg, name)
    if value < 1:
      raise ValueError(f'{where}: {name} must be >= 1, got {value}')


def stage_temporal_kernel_sizes(
    cfg: ResNet3DY) -> Tuple[Tuple[int, ...], ...]:
  """Splits the flat `temporal_kernel_sizes` into one tuple per stage.

  Args:
    cfg: A `ResNet3DY` config (checked first).

  Returns:
    A tuple of 4 tuples (res2..res5), the i-th of length `block_repeats[i]`.
  """
  check_resnet_3d_y(cfg)
  kernels = tuple(int(k) for k in cfg.temporal_kernel_sizes)
  stages = []
  start = 0
  for repeats in cfg.block_repeats:
    stages.append(kernels[start:start + repeats])
    start += repeats
  return tuple(stages)


def resnet_3d_y_tiny() -> ResNet3DY:
  """The tiny R3D "Y" used by tests and the toy world (same code path)."""
  return ResNet3DY(
      model_id=14,
      block_repeats=(1, 1, 1, 1),
      base_filters=8,
      temporal_kernel_sizes=(1, 1, 3, 3))


@dataclasses.dataclass
class Backbone3D(backbones_3d.Backbone3D):
  """Model Garden's 3D backbone one-of config plus the R3D "Y" option.

  Attributes:
    type: Which backbone field is used: 'resnet_3d_y' (default) | 'resnet_3d'
      | 'resnet_3d_rs'.
    resnet_3d_y: The R3D "Y" backbone config.
  """
  type: Optional[str] = 'resnet_3d_y'
  resnet_3d_y: ResNet3DY = dataclasses.field(default_factory=ResNet3DY)
