"""Checks the leaves of an assembled config against their field annotations.

Model Garden's `hyperparams.Config` stores whatever `--params_override` or a
`--config_file` YAML gives it: `trainer.train_steps=abc` is kept as the string
'abc', `...learning_rate=nan` as the string 'nan' (YAML reads only `.nan` as a
float) and `feature_shape=8` as an int. Such values then fail deep inside
TensorFlow or Orbit, or, like a fractional `trainer.train_steps`, make the
training loop run forever. `check_config_types` raises instead, naming the
dotted field, the expected type and the value; the experiment configs'
`validate()` call it first, so every entry point that assembles a config
(train.py, tools/) checks it before any model or dataset is built.

Leniencies, as the override parser reads text:
  * a `str` field also takes an int (`feature_endpoint=4`,
    `freeze_until=2` mean '4' and '2') and None (an empty value, `x=`, means
    '');
  * a `float` field takes an int (`learning_rate=1`), but not a NaN or an
    infinity;
  * as Model Garden's own AdamW config does, a list of str may be a
    single str;
  * `Any`, `Dict`, `Sequence`, ... are not checked.

Fixed-length tuples (`feature_shape: Tuple[int, int, int, int]`) are checked
item by item, length included.
"""
import math
import types
import typing
from typing import Any

from official.modeling import hyperparams


def _describe(value) -> str:
  return f'{value!r} ({type(value).__name__})'


def _is_union(origin) -> bool:
  return origin is typing.Union or origin is types.UnionType


class ConfigTypeError(TypeError, ValueError):
  """A config leaf of the wrong type (both a TypeError and a ValueError)."""


def _matches(value, annotation) -> bool:
  """Whether `value` fits `annotation` (unknown annotations always fit)."""
  if annotation is Any or annotation is typing.Any:
    return True
  origin = typing.get_origin(annotation)
  args = typing.get_args(annotation)
  if _is_union(origin):
    return any(_matches(value, a) for a in args)
  if annotation is type(None):
    return value is None
  if annotation is bool:
    return isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if annotation is float:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
  if annotation is str:
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool))
  if origin in (tuple, list):
    if isinstance(value, str) and args and args[0] is str:
      return True  # Model Garden's own AdamW default: one regex for a list.
    if not isinstance(value, (tuple, list)):
      return False
    if not args:
      return True
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
      return len(value) == len(args) and all(
          _matches(v, a) for v, a in zip(value, args))
    return all(_matches(v, args[0]) for v in value)
  if origin is not None:
    # Dict, Sequence, Callable, ...: not checked.
    return True
  if isinstance(annotation, type):  # A Config subclass, among others.
    return isinstance(value, annotation)
  # A string or other forward reference: not checked.
  return True


def _type_name(annotation) -> str:
  if annotation is float:
    return 'a finite float'
  if isinstance(annotation, type):
    return annotation.__name__
  return str(annotation).replace('typing.', '')


def check_config_types(config: hyperparams.Config, prefix: str = '') -> None:
  """Raises if a leaf of `config` does not fit its field annotation.

  Args:
    config: an assembled (overridden) config.
    prefix: dotted path of `config` ('' for the experiment config).

  Raises:
    ConfigTypeError: naming the dotted field, the expected type and the value.
  """
  try:
    # pylint: disable-next=protected-access
    annotations = type(config)._get_annotations()
  except (NameError, TypeError):
    return
  for name, annotation in annotations.items():
    if name.startswith('_') or not hasattr(config, name):
      continue
    value = getattr(config, name)
    path = f'{prefix}{name}'
    if not _matches(value, annotation):
      raise ConfigTypeError(f'{path} must be {_type_name(annotation)}, '
                            f'got {_describe(value)}')
    if isinstance(value, hyperparams.Config):
      check_config_types(value, f'{path}.')
    elif isinstance(value, (list, tuple)):
      for i, item in enumerate(value):
        if isinstance(item, hyperparams.Config):
          check_config_types(item, f'{path}[{i}].')
