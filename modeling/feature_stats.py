"""How many directions a backbone's features use, and how much they move.

Contrastive pretraining can squeeze a stage's channels into a few
directions (dimensional collapse): the features still tell the training
instances apart, but most channels repeat each other. Two numbers per
feature map [B, T, H, W, C], taken over all its positions:

  * `effective_rank`: exp of the entropy of the normalized singular values
    of the centred [positions, C] matrix (Roy & Vetterli 2007; RankMe,
    Garrido et al. 2023, on a backbone's features). k equal non-zero
    singular values give exactly k; 1 means every channel is a multiple of
    one direction; at most C (and N - 1, as the rows are centred).
  * `temporal_variance_share`: the share of the map's variance that lies
    between the frames of one (clip, y, x) position, i.e. what changes over
    time there: 0 for features that are the same on every frame.

docs/toy_benchmark_findings.md uses them on pretrained toy backbones
(`tools/feature_rank.py`).
"""
from typing import Dict, Mapping, Optional

import numpy as np


def effective_rank(matrix) -> float:
  """exp(entropy of the singular values / their sum) of the centred matrix.

  Args:
    matrix: [N, C], one row per sample (position), one column per channel.

  Returns:
    A float in [1, min(N - 1, C)] (the rows are centred), or 0.0 when the
    centred matrix is zero (no channel varies).

  Raises:
    ValueError: if `matrix` is not 2-D or holds a NaN or an infinity.
  """
  matrix = np.asarray(matrix, np.float64)
  if matrix.ndim != 2:
    raise ValueError(f'effective_rank needs a [samples, channels] matrix, '
                     f'got shape {matrix.shape}')
  if not np.all(np.isfinite(matrix)):
    raise ValueError('effective_rank: the features hold a NaN or an '
                     'infinity')
  centred = matrix - matrix.mean(axis=0, keepdims=True)
  singular = np.linalg.svd(centred, compute_uv=False)
  total = singular.sum()
  if total <= 1e-12 * max(1.0, np.abs(matrix).max()):
    return 0.0
  p = singular[singular > 0] / total
  return float(np.exp(-np.sum(p * np.log(p))))


def temporal_variance_share(features) -> float:
  """Share of a [B, T, H, W, C] map's variance between frames of a position.

  sum((x - mean over T of x)^2) / sum((x - mean over B, T, H, W of x)^2).

  Raises:
    ValueError: if `features` is not 5-D or has a single frame.
  """
  x = np.asarray(features, np.float64)
  if x.ndim != 5:
    raise ValueError(f'temporal_variance_share needs [B, T, H, W, C] '
                     f'features, got shape {x.shape}')
  if x.shape[1] < 2:
    raise ValueError(f'features of shape {x.shape} have a single frame: '
                     'nothing varies over time')
  total = np.sum((x - x.mean(axis=(0, 1, 2, 3), keepdims=True))**2)
  if total == 0:
    return 0.0
  return float(np.sum((x - x.mean(axis=1, keepdims=True))**2) / total)


def feature_map_stats(feature_maps: Mapping[str, np.ndarray],
                      max_rows: int = 20000,
                      seed: int = 0) -> Dict[str, Dict[str, float]]:
  """Both numbers for every [B, T, H, W, C] map of `feature_maps`.

  Args:
    feature_maps: name -> features (e.g. a backbone's endpoints).
    max_rows: the effective rank reads at most this many positions, drawn
      without replacement with `seed` (an SVD of every position of an
      early stage is slow and changes the number little).
    seed: the draw's seed.

  Returns:
    name -> {'effective_rank', 'channels', 'temporal_variance_share'}.
  """
  rng = np.random.default_rng(seed)
  stats = {}
  for name, features in feature_maps.items():
    x = np.asarray(features)
    rows = x.reshape(-1, x.shape[-1])
    rows = _subsample(rows, max_rows, rng)
    stats[name] = {
        'effective_rank': effective_rank(rows),
        'channels': int(x.shape[-1]),
        'temporal_variance_share': temporal_variance_share(x),
    }
  return stats


def _subsample(rows: np.ndarray, max_rows: Optional[int],
               rng: np.random.Generator) -> np.ndarray:
  if not max_rows or rows.shape[0] <= max_rows:
    return rows
  return rows[np.sort(rng.choice(rows.shape[0], max_rows, replace=False))]
