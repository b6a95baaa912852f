"""Clip- and video-level top-k accuracy for multi-view action recognition.

Evaluation feeds every video as `num_views = num_test_clips * num_test_crops`
views stacked on the batch axis, the views of one video contiguous
(`[video 0 view 0, video 0 view 1, ..., video 1 view 0, ...]`, as Model
Garden's video parser lays them out). Clip-level accuracy scores each view on
its own; video-level accuracy scores the per-video MEAN of the views' softmax
probabilities (SPEC section 2: "scores averaged per video").

Top-k rule: a prediction is correct when fewer than k classes score strictly
higher than the true class (ties count in the true class's favour, as
`tf.math.in_top_k`).

The functions take numpy arrays or tensors and run in graph mode inside a
validation step; their tests use hand-computed numpy examples.
"""
from typing import Dict, Sequence

import tensorflow as tf


def video_scores(clip_probabilities: tf.Tensor, num_views: int) -> tf.Tensor:
  """Averages the probabilities of each video's views.

  Args:
    clip_probabilities: [num_videos * num_views, num_classes] probabilities,
      the views of one video contiguous.
    num_views: views per video (num_test_clips * num_test_crops).

  Returns:
    [num_videos, num_classes] mean probabilities.
  """
  clip_probabilities = tf.convert_to_tensor(clip_probabilities)
  num_classes = clip_probabilities.shape[-1]
  grouped = tf.reshape(clip_probabilities, [-1, num_views, num_classes])
  return tf.reduce_mean(grouped, axis=1)


def top_k_correct(scores: tf.Tensor, labels: tf.Tensor, k: int) -> tf.Tensor:
  """1.0 where the true class is within the top k, else 0.0.

  Args:
    scores: [N, num_classes] scores (logits or probabilities).
    labels: [N] integer class indices.
    k: the k of top-k (>= 1).

  Returns:
    [N] float32.
  """
  scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
  labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
  true_score = tf.gather(scores, labels, axis=1, batch_dims=1)
  num_higher = tf.reduce_sum(
      tf.cast(scores > true_score[:, None], tf.int32), axis=1)
  return tf.cast(num_higher < k, tf.float32)


def multi_view_correct(clip_probabilities: tf.Tensor,
                       video_labels: tf.Tensor,
                       num_views: int,
                       ks: Sequence[int] = (1, 5)) -> Dict[str, tf.Tensor]:
  """Per-clip and per-video top-k correctness.

  Args:
    clip_probabilities: [num_videos * num_views, num_classes] softmax
      probabilities, the views of one video contiguous.
    video_labels: [num_videos] integer class of each video.
    num_views: views per video.
    ks: the k values.

  Returns:
    {'clip_top_{k}_accuracy': [num_videos * num_views] float32,
     'video_top_{k}_accuracy': [num_videos] float32} for every k; the mean
    of each is the accuracy.
  """
  video_labels = tf.cast(tf.convert_to_tensor(video_labels), tf.int32)
  clip_labels = tf.repeat(video_labels, num_views)
  videos = video_scores(clip_probabilities, num_views)
  out = {}
  for k in ks:
    out[f'clip_top_{k}_accuracy'] = top_k_correct(
        clip_probabilities, clip_labels, k)
    out[f'video_top_{k}_accuracy'] = top_k_correct(videos, video_labels, k)
  return out
