"""Which frame of each view the regions come from (paper Table 4).

All functions work on feature-frame source indices: `frames_a[b, t]` is the
source-video frame index of feature frame `t` of view a of video `b`.
"""
import tensorflow as tf

STRATEGIES = ('center', 'random', 'nearest')


def select_region_frames(frames_a: tf.Tensor, frames_b: tf.Tensor,
                         strategy: str = 'center', training: bool = True):
  """Picks one feature frame per view for the region losses.

  Args:
    frames_a: [B, T] int source frame index of each feature frame of view a.
    frames_b: [B, T] same for view b.
    strategy: `center` (both views' centre frame), `random` (an independent
      uniform frame per view while training, centre at evaluation) or
      `nearest` (the pair of frames closest in source time; when the views
      overlap the pair is inside the overlap, and among equally close pairs
      the one nearest the middle of the overlap, or of the gap between
      disjoint views, is taken).
    training: whether the model is training.

  Returns:
    (t_a, t_b): int32 [B] feature-frame indices.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f'region frame strategy must be one of {STRATEGIES}, '
                     f'got {strategy!r}')
  num_frames = frames_a.shape[1]
  batch = tf.shape(frames_a)[0]
  center = tf.fill([batch], tf.constant(num_frames // 2, tf.int32))
  if strategy == 'center' or (strategy == 'random' and not training):
    return center, center
  if strategy == 'random':
    t_a = tf.random.uniform([batch], 0, num_frames, dtype=tf.int32)
    t_b = tf.random.uniform([batch], 0, num_frames, dtype=tf.int32)
    return t_a, t_b
  fa = tf.cast(frames_a, tf.float32)
  fb = tf.cast(frames_b, tf.float32)
  dist = tf.abs(fa[:, :, None] - fb[:, None, :])  # [B, T, T]
  # Middle of the overlap [max start, min end]; for disjoint views the same
  # formula gives the middle of the gap between them.
  start = tf.maximum(tf.reduce_min(fa, 1), tf.reduce_min(fb, 1))
  end = tf.minimum(tf.reduce_max(fa, 1), tf.reduce_max(fb, 1))
  mid = (start + end) / 2.0
  pair_mid = (fa[:, :, None] + fb[:, None, :]) / 2.0
  # Distance dominates; the tie-break term is < 1e4 for any real video.
  cost = dist * 1e4 + tf.abs(pair_mid - mid[:, None, None])
  flat = tf.argmin(tf.reshape(cost, [batch, num_frames * num_frames]),
                   axis=1, output_type=tf.int32)
  return flat // num_frames, flat % num_frames


def context_spacing(num_frames: int, context_length: int) -> int:
  """Frames between neighbouring frames of `context_frame_indices`.

  `max(1, T // L)`, reduced until the L frames fit in the T feature frames.

  Raises:
    ValueError: unless 1 <= context_length <= num_frames.
  """
  if not 1 <= context_length <= num_frames:
    raise ValueError(f'context_length ({context_length}) must be in '
                     f'[1, {num_frames}] (the number of feature frames)')
  spacing = max(1, num_frames // context_length)
  while (context_length - 1) * spacing > num_frames - 1:
    spacing -= 1
  return spacing


def max_context_offset(num_frames: int, context_length: int) -> int:
  """Bound on |context frame - region frame| over every region frame.

  The range [start, start + span] of the window `context_frame_indices`
  returns always contains its region frame t: it starts at
  t - (L // 2) * spacing, moved right only when that is below 0 (so to at
  most t) and left only when its end would pass T - 1 (so to an end at
  T - 1 >= t). Every offset is thus within span = (L - 1) * spacing: up to
  L - 1 frames for a window shifted to the clip's start, twice the centred
  window's (L // 2) * spacing. (With spacing > 1 the region frame itself
  can fall between two context frames: T=8, L=3, t=1 gives [0, 2, 4].)
  A table of temporal position encodings must cover this range when the
  region frame is not always the centre one.
  """
  return (context_length - 1) * context_spacing(num_frames, context_length)


def context_frame_indices(center: tf.Tensor, num_frames: int,
                          context_length: int) -> tf.Tensor:
  """`context_length` frames uniformly spaced around `center`.

  Spacing is `context_spacing(num_frames, context_length)`; the window is
  shifted (not clipped) to stay inside [0, num_frames), so it always holds
  `context_length` distinct frames. Shifted, the region frame `center` is
  not the window's middle frame: position encodings must use the offsets
  `frames - center`, not the position in the window.

  Args:
    center: int32 [B] centre feature frame (the target view's region frame).
    num_frames: number of feature frames T.
    context_length: L, odd, 1 <= L <= T.

  Returns:
    int32 [B, L] frame indices.
  """
  spacing = context_spacing(num_frames, context_length)
  span = (context_length - 1) * spacing
  start = tf.clip_by_value(center - (context_length // 2) * spacing, 0,
                           num_frames - 1 - span)
  return start[:, None] + tf.range(context_length, dtype=tf.int32)[None] * (
      spacing)
