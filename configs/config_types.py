"""Normalizes and checks the leaves of a config against their annotations.

Model Garden's `hyperparams.Config` stores whatever `--params_override` or a
`--config_file` YAML gives it: `trainer.train_steps=abc` is kept as the string
'abc', `...learning_rate=nan` as the string 'nan' (YAML reads only `.nan` as a
float) and `feature_shape=8` as an int. Such values then fail deep inside
TensorFlow or Orbit, or, like a fractional `trainer.train_steps`, make the
training loop run forever. `check_config_types` raises instead, naming the
dotted field, the expected type and the value; the experiment configs'
`validate()` call it first, so every entry point that assembles a config
(train.py, tools/) checks it before any model or dataset is built.

Normalization, as the override parser reads text: before a leaf is
checked, in a `str` field (alone, in an Optional or in a list or tuple of
str) an int (not a bool) becomes its decimal string: `feature_endpoint=4`
and `freeze_until=2` are stored as '4' and '2'. A plain `str` field's None
(an empty value, `x=`) becomes ''; an `Optional[str]` field keeps None, as
a field is Optional[str] only where None means something else than ''.
Code reading a validated config therefore gets real strings. Only a leaf
that changes is assigned, so validating again is a no-op; a locked config
(`lock()` on it or on a config holding it) is never changed: a leaf it
would need to normalize is an error (`validate()` before `lock()`).

Accepted as they are:
  * an int in a `float` field (`learning_rate=1`), but not a NaN or an
    infinity;
  * as Model Garden's own AdamW config does, a single str for a list of
    str;
  * anything in `Any`, `Dict`, `Sequence`, ... fields (not checked).
Fixed-length tuples (`feature_shape: Tuple[int, int, int, int]`) are
checked item by item, length included.
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


# `_normalized`'s answer for a value that does not fit the annotation.
_MISFIT = object()


def _normalized(value, annotation):
  """`value` as stored for `annotation`, or `_MISFIT` if it does not fit.

  Returns `value` itself when it fits as it is (unknown annotations always
  fit), else a new normalized value (see the module docstring).
  """
  if annotation is Any or annotation is typing.Any:
    return value
  origin = typing.get_origin(annotation)
  args = typing.get_args(annotation)
  if _is_union(origin):
    # A member the value fits unchanged wins (None stays None in an
    # Optional[str], an int stays an int in an Optional[float]); else the
    # first member it normalizes to.
    results = [_normalized(value, a) for a in args]
    if any(r is value for r in results):
      return value
    return next((r for r in results if r is not _MISFIT), _MISFIT)
  if annotation is type(None):
    return value if value is None else _MISFIT
  if annotation is bool:
    return value if isinstance(value, bool) else _MISFIT
  if annotation is int:
    return value if _is_int(value) else _MISFIT
  if annotation is float:
    return value if _is_finite_number(value) else _MISFIT
  if annotation is str:
    if isinstance(value, str):
      return value
    if value is None:
      return ''
    return str(value) if _is_int(value) else _MISFIT
  if origin in (tuple, list):
    if isinstance(value, str) and args and args[0] is str:
      return value  # Model Garden's own AdamW default: one regex for a list.
    if not isinstance(value, (tuple, list)):
      return _MISFIT
    if not args:
      return value
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
      if len(value) != len(args):
        return _MISFIT
      items = [_normalized(v, a) for v, a in zip(value, args)]
    else:
      items = [_normalized(v, args[0]) for v in value]
    if any(i is _MISFIT for i in items):
      return _MISFIT
    if all(i is v for i, v in zip(items, value)):
      return value
    return type(value)(items)
  if origin is not None:
    # Dict, Sequence, Callable, ...: not checked.
    return value
  if isinstance(annotation, type):  # A Config subclass, among others.
    return value if isinstance(value, annotation) else _MISFIT
  # A string or other forward reference: not checked.
  return value


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
  """An int or a float that is a finite float (not NaN, inf or 1e400)."""
  if not (_is_int(value) or isinstance(value, float)):
    return False
  try:
    return math.isfinite(value)
  except OverflowError:  # An int beyond the float range.
    return False


def _type_name(annotation) -> str:
  if annotation is float:
    return 'a finite float'
  if isinstance(annotation, type):
    return annotation.__name__
  return str(annotation).replace('typing.', '')


def check_config_types(config: hyperparams.Config, prefix: str = '') -> None:
  """Normalizes the leaves of `config`, then checks them (module docstring).

  Args:
    config: an assembled (overridden) config; normalized in place.
    prefix: dotted path of `config` ('' for the experiment config).

  Raises:
    ConfigTypeError: naming the dotted field, the expected type and the
      value; also when a leaf would need normalizing in a locked config.
  """
  _check(config, prefix, locked=False)


def _check(config: hyperparams.Config, prefix: str, locked: bool) -> None:
  """`check_config_types` of `config`, inside a locked config if `locked`."""
  # Model Garden's lock() sets the flag of the config it is called on only,
  # its sub-configs stay assignable; lock() means the whole tree is final.
  locked = locked or getattr(config, '_locked', False)
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
    normalized = _normalized(value, annotation)
    if normalized is _MISFIT:
      raise ConfigTypeError(f'{path} must be {_type_name(annotation)}, '
                            f'got {_describe(value)}')
    if normalized is not value:
      if locked:
        # Writing around the lock would change a config its owner froze
        # (after writing params.yaml, say); leaving the value would hand
        # an int or None to code that relies on a str. Every entry point
        # here validates before it locks (Model Garden's
        # train_utils.parse_configuration, tasks/features.py,
        # tools/track.py), so a validated, locked config has nothing left
        # to normalize and validates again unchanged.
        raise ConfigTypeError(
            f'{path} must be {_type_name(annotation)}, got '
            f'{_describe(value)}: it would be stored as {normalized!r}, '
            'but the config is locked; call validate() before lock()')
      setattr(config, name, normalized)
      value = getattr(config, name)
    if isinstance(value, hyperparams.Config):
      _check(value, f'{path}.', locked)
    elif isinstance(value, (list, tuple)):
      for i, item in enumerate(value):
        if isinstance(item, hyperparams.Config):
          _check(item, f'{path}[{i}].', locked)
