"""Region-frame strategies on constructed index pairs (paper Table 4)."""
import numpy as np
import pytest
import tensorflow as tf

from modeling.layers import region_frames


def _select(fa, fb, strategy, training=True):
  ta, tb = region_frames.select_region_frames(
      tf.constant([fa]), tf.constant([fb]), strategy, training)
  return int(ta[0]), int(tb[0])


def test_center_takes_the_middle_frame_of_both_views():
  assert _select([0, 2, 4, 6], [10, 12, 14, 16], 'center') == (2, 2)


def test_nearest_overlapping_views_pick_a_shared_frame_inside_the_overlap():
  # Source frames of a: 0..14 step 2; of b: 8..22 step 2; overlap [8, 14].
  fa = [0, 2, 4, 6, 8, 10, 12, 14]
  fb = [8, 10, 12, 14, 16, 18, 20, 22]
  ta, tb = _select(fa, fb, 'nearest')
  assert fa[ta] == fb[tb]
  assert 8 <= fa[ta] <= 14
  # Among the 4 shared frames (8, 10, 12, 14) the middle of the overlap is
  # 11: 10 and 12 tie; argmin takes the first, 10.
  assert fa[ta] == 10 and (ta, tb) == (5, 1)


def test_nearest_disjoint_views_pick_the_facing_ends():
  fa = [0, 2, 4, 6]
  fb = [20, 22, 24, 26]
  assert _select(fa, fb, 'nearest') == (3, 0)
  # Order of the views does not matter.
  assert _select(fb, fa, 'nearest') == (0, 3)


def test_nearest_touching_views_pick_the_touching_frames():
  fa = [0, 2, 4, 6]
  fb = [7, 9, 11, 13]
  assert _select(fa, fb, 'nearest') == (3, 0)


def test_nearest_interleaved_views_take_distance_one_pair_near_the_middle():
  fa = [0, 2, 4, 6, 8]
  fb = [1, 3, 5, 7, 9]
  ta, tb = _select(fa, fb, 'nearest')
  assert abs(fa[ta] - fb[tb]) == 1
  # overlap [1, 8], middle 4.5: the pair (4, 5) has mean 4.5.
  assert (fa[ta], fb[tb]) == (4, 5)


def test_random_is_uniform_while_training_and_center_at_eval():
  fa = tf.tile(tf.range(4)[None], [4000, 1])
  ta, tb = region_frames.select_region_frames(fa, fa, 'random', True)
  counts = np.bincount(ta.numpy(), minlength=4)
  assert counts.min() > 850  # 1000 expected per frame
  assert not np.array_equal(ta.numpy(), tb.numpy())  # drawn independently
  ta, tb = region_frames.select_region_frames(fa, fa, 'random', False)
  assert set(ta.numpy()) == {2} and set(tb.numpy()) == {2}


def test_unknown_strategy_is_an_error():
  with pytest.raises(ValueError, match='middle'):
    _select([0, 1], [0, 1], 'middle')


@pytest.mark.parametrize('center,frames,length,expected', [
    (4, 8, 5, [2, 3, 4, 5, 6]),
    (4, 8, 3, [2, 4, 6]),
    (4, 8, 1, [4]),
    (0, 8, 3, [0, 2, 4]),  # shifted inside, not clipped
    (7, 8, 3, [3, 5, 7]),
    (2, 4, 3, [1, 2, 3]),
    (1, 4, 3, [0, 1, 2]),
    (0, 5, 5, [0, 1, 2, 3, 4]),
])
def test_context_frames(center, frames, length, expected):
  got = region_frames.context_frame_indices(tf.constant([center]), frames,
                                            length)
  assert got.numpy().tolist() == [expected]


def test_context_longer_than_the_clip_is_an_error():
  with pytest.raises(ValueError, match=r'context_length \(5\)'):
    region_frames.context_frame_indices(tf.constant([1]), 4, 5)


@pytest.mark.parametrize('frames,length,spacing,bound', [
    (8, 5, 1, 4),  # main setting: region frame 0 -> offsets 0..4
    (8, 3, 2, 4),
    (8, 1, 8, 0),
    (4, 3, 1, 2),
    (16, 5, 3, 12),
])
def test_context_spacing_and_offset_bound(frames, length, spacing, bound):
  assert region_frames.context_spacing(frames, length) == spacing
  assert region_frames.max_context_offset(frames, length) == bound
