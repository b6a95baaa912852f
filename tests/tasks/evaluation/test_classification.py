"""Clip/video top-k aggregation against a hand-computed example."""
import numpy as np

from tasks.evaluation import classification as cls_eval

# 2 videos x 3 views, 6 classes; video 0 is class 2, video 1 is class 5.
PROBS = np.array([
    [0.3, 0.3, 0.0, 0.2, 0.1, 0.1],     # v0 view 0: 5 classes above -> top-5 miss
    [0.1, 0.1, 0.6, 0.1, 0.05, 0.05],   # v0 view 1: top-1 hit
    [0.0, 0.7, 0.1, 0.1, 0.05, 0.05],   # v0 view 2: 1 class above -> top-5 hit
    [0.3, 0.2, 0.2, 0.1, 0.1, 0.1],     # v1 view 0: 3 above -> top-1 miss
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],     # v1 view 1: top-1 hit
    [0.05, 0.05, 0.05, 0.05, 0.3, 0.5],  # v1 view 2: top-1 hit
], np.float32)
LABELS = np.array([2, 5])


def test_video_scores_average_contiguous_views():
  got = cls_eval.video_scores(PROBS, num_views=3).numpy()
  # By hand: video 0 = (view0 + view1 + view2) / 3.
  np.testing.assert_allclose(
      got[0], [0.4 / 3, 1.1 / 3, 0.7 / 3, 0.4 / 3, 0.2 / 3, 0.2 / 3],
      rtol=1e-6)
  np.testing.assert_allclose(
      got[1], [0.45 / 3, 0.35 / 3, 0.35 / 3, 0.25 / 3, 0.5 / 3, 1.1 / 3],
      rtol=1e-6)


def test_multi_view_accuracy_equals_hand_computed():
  out = {k: v.numpy() for k, v in
         cls_eval.multi_view_correct(PROBS, LABELS, num_views=3).items()}
  np.testing.assert_array_equal(out['clip_top_1_accuracy'], [0, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(out['clip_top_5_accuracy'], [0, 1, 1, 1, 1, 1])
  # Video 0 averages to class 1 (1.1/3) over its label 2 (0.7/3): miss;
  # video 1 averages to class 5: hit.
  np.testing.assert_array_equal(out['video_top_1_accuracy'], [0, 1])
  np.testing.assert_array_equal(out['video_top_5_accuracy'], [1, 1])
  assert out['clip_top_1_accuracy'].mean() == 0.5
  assert np.isclose(out['clip_top_5_accuracy'].mean(), 5 / 6)


def test_ties_count_for_the_true_class():
  scores = np.array([[0.5, 0.5, 0.0]])
  assert cls_eval.top_k_correct(scores, [1], 1).numpy()[0] == 1.0
  assert cls_eval.top_k_correct(scores, [2], 2).numpy()[0] == 0.0
  assert cls_eval.top_k_correct(scores, [2], 3).numpy()[0] == 1.0


def test_single_view_video_equals_clip():
  out = cls_eval.multi_view_correct(PROBS, np.array([2, 2, 2, 5, 5, 5]),
                                    num_views=1)
  np.testing.assert_array_equal(out['video_top_1_accuracy'].numpy(),
                                out['clip_top_1_accuracy'].numpy())
