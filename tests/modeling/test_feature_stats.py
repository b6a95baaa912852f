"""modeling/feature_stats.py: effective rank and temporal variance share,
against values worked out by hand."""
import math

import numpy as np
import pytest

from modeling import feature_stats


def test_k_equal_singular_values_give_rank_k():
  # Rows +-e_i: zero mean, three singular values of sqrt(2).
  matrix = np.concatenate([np.eye(3), -np.eye(3)])
  assert feature_stats.effective_rank(matrix) == pytest.approx(3.0, abs=1e-9)


def test_one_direction_gives_rank_one():
  u = np.array([1.0, -2.0, 0.5, 0.5])  # any column scale of one direction
  matrix = np.outer(u, [2.0, -1.0, 4.0]) + 7.0  # the offset is centred away
  assert feature_stats.effective_rank(matrix) == pytest.approx(1.0, abs=1e-6)


def test_unequal_singular_values_by_hand():
  # Columns of norm sqrt(18) and sqrt(2): singular values 3 : 1, so
  # p = (0.75, 0.25) and the rank is exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
  matrix = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  want = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
  assert want == pytest.approx(1.75476, abs=1e-5)
  assert feature_stats.effective_rank(matrix) == pytest.approx(want, abs=1e-9)


def test_constant_features_have_rank_zero_and_bad_input_is_named():
  assert feature_stats.effective_rank(np.full((5, 4), 2.5)) == 0.0
  with pytest.raises(ValueError, match='NaN or an infinity'):
    feature_stats.effective_rank(np.array([[1.0, np.nan], [0.0, 1.0]]))
  with pytest.raises(ValueError, match=r'\[samples, channels\]'):
    feature_stats.effective_rank(np.zeros(4))


def test_temporal_variance_share_by_hand():
  # One position over two frames: 0 then 2. Everything varies over time.
  x = np.array([0.0, 2.0]).reshape(1, 2, 1, 1, 1)
  assert feature_stats.temporal_variance_share(x) == pytest.approx(1.0)
  # A second clip at 10, 10: global mean 5.5, total 30.25 + 12.25 + 2 *
  # 20.25 = 83; within the frames of a position 1 + 1 = 2.
  x = np.array([[0.0, 2.0], [10.0, 10.0]]).reshape(2, 2, 1, 1, 1)
  assert feature_stats.temporal_variance_share(x) == pytest.approx(2 / 83)
  # The same on every frame: nothing.
  still = np.repeat(np.arange(6.0).reshape(2, 1, 3, 1, 1), 4, axis=1)
  assert feature_stats.temporal_variance_share(still) == 0.0
  with pytest.raises(ValueError, match='single frame'):
    feature_stats.temporal_variance_share(np.ones((2, 1, 3, 3, 4)))


def test_feature_map_stats_reads_every_map_and_subsamples_rows():
  rng = np.random.default_rng(0)
  # Two channels, the second twice the first: rank one whatever rows remain.
  base = rng.normal(size=(3, 4, 5, 5, 1))
  maps = {'a': np.concatenate([base, 2 * base], -1),
          'b': rng.normal(size=(2, 2, 3, 3, 6))}
  stats = feature_stats.feature_map_stats(maps, max_rows=50, seed=1)
  assert set(stats) == {'a', 'b'}
  assert stats['a']['channels'] == 2 and stats['b']['channels'] == 6
  assert stats['a']['effective_rank'] == pytest.approx(1.0, abs=1e-6)
  assert stats['a']['temporal_variance_share'] == pytest.approx(
      feature_stats.temporal_variance_share(maps['a']))
  # 36 rows of b, fewer than 50: all of them, as without a cap.
  rows = maps['b'].reshape(-1, 6)
  assert stats['b']['effective_rank'] == pytest.approx(
      feature_stats.effective_rank(rows))
  capped = feature_stats.feature_map_stats({'b': maps['b']}, max_rows=10)
  assert capped['b']['effective_rank'] <= 6.0
  assert capped['b']['effective_rank'] != stats['b']['effective_rank']
