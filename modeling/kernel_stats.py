"""How much of a 3D conv kernel varies over time (motion vs appearance).

A Conv3D kernel W[t, y, x, c_in, c_out] splits into its temporal mean
(the same 2D filter on every frame: it sees appearance, and averages motion
away) and the rest (what differs between frames: it responds to change over
time). `temporal_variation` is the share of the kernel's energy in the rest:

    sum((W - mean_t W)^2) / sum(W^2)

0 for a kernel that is the same on every frame, 1 for one whose temporal
mean is zero (a pure temporal derivative). For an i.i.d. zero-mean kernel
of T taps (a fresh initialization) its expectation is about 1 - 1/T (0.8
for the stem's 5 taps). docs/toy_benchmark_findings.md ("Why pretraining
does not help the toy AVA task") uses it on pretrained stems.
"""
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf

# Checkpoint keys of optimizer slots contain this; they are not weights.
_OPTIMIZER_MARK = 'OPTIMIZER_SLOT'
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def _channel_energies(kernel) -> Tuple[np.ndarray, np.ndarray]:
  """Per output channel: energy that varies over time, and total energy."""
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 5:
    raise ValueError(f'expected a Conv3D kernel [T, H, W, C_in, C_out], got '
                     f'shape {kernel.shape}')
  if kernel.shape[0] < 2:
    raise ValueError(f'kernel of shape {kernel.shape} has a single temporal '
                     'tap: nothing varies over time')
  rest = kernel - kernel.mean(axis=0, keepdims=True)
  axes = (0, 1, 2, 3)
  return np.sum(rest**2, axis=axes), np.sum(kernel**2, axis=axes)


def _shares(rest: np.ndarray, total: np.ndarray, shape,
            per_output_channel: bool):
  if not per_output_channel:
    rest, total = rest.sum(), total.sum()
  if np.any(total == 0):
    raise ValueError(f'kernel of shape {shape} is all zeros (for some '
                     'output channel): temporal variation is undefined')
  share = rest / total
  return share if per_output_channel else float(share)


def temporal_variation(kernel: np.ndarray, per_output_channel: bool = False):
  """Share of `kernel`'s energy that varies over its first (time) axis.

  Args:
    kernel: A Conv3D kernel [T, H, W, C_in, C_out] with T >= 2.
    per_output_channel: Return one value per output channel (shape [C_out])
      instead of one for the whole kernel.

  Returns:
    A float in [0, 1] (or an array of them).

  Raises:
    ValueError: for a kernel that is not rank 5, has one tap in time, or is
      all zeros (where the share is undefined).
  """
  rest, total = _channel_energies(kernel)
  return _shares(rest, total, np.shape(kernel), per_output_channel)


def checkpoint_temporal_variation(prefix: str, scope: str = 'backbone/'
                                  ) -> List[Dict[str, Any]]:
  """`temporal_variation` of every temporal conv kernel in a checkpoint.

  Args:
    prefix: A checkpoint prefix (e.g. from
      `branch_loading.resolve_checkpoint_path`).
    scope: Only keys starting with it (pretraining checkpoints and the
      output of tools/reset_backbone_stages.py keep the backbone under
      'backbone/').

  Returns:
    One dict per rank-5 kernel with more than one temporal tap, in key order:
    `name` (checkpoint key without the value suffix), `shape`, `variation`
    (whole kernel) and `per_channel` (list, one per output channel).

  Raises:
    ValueError: naming the prefix when it has no such kernel under `scope`.
  """
  reader = tf.train.load_checkpoint(prefix)
  out = []
  for key, shape in sorted(reader.get_variable_to_shape_map().items()):
    if (not key.startswith(scope) or _OPTIMIZER_MARK in key or
        len(shape) != 5 or shape[0] < 2):
      continue
    # One pass over the kernel for both numbers.
    rest, total = _channel_energies(reader.get_tensor(key))
    out.append({'name': key[:-len(_VALUE_SUFFIX)]
                        if key.endswith(_VALUE_SUFFIX) else key,
                'shape': list(shape),
                'variation': _shares(rest, total, shape, False),
                'per_channel': [float(v) for v in _shares(rest, total, shape,
                                                          True)]})
  if not out:
    raise ValueError(f'checkpoint {prefix} has no Conv3D kernel with more '
                     f'than one temporal tap under {scope!r}')
  return out
