"""Contrastive losses of ConST-CL: global (CVRL), local (region) and dense.

Every loss takes plain tensors and returns a dict of float32 scalars: the loss
plus diagnostics to spot collapse (contrastive accuracy, softmax entropy, mean
positive and negative cosine similarity).

Distribution convention (all losses, all `tf.distribute` strategies):
  Negatives come from the GLOBAL batch: embeddings are all-gathered through the
  replica context (`cross_replica_gather`) and labels are offset by this
  replica's first row in the gathered batch, so no TPU-only op is used. Each
  scalar returned on replica r is scaled so that the MEAN over replicas equals
  the value one replica would compute on the whole global batch. Model
  Garden's trainer divides each replica's loss by `num_replicas_in_sync` and
  sums the gradients, which then gives exactly the single-replica gradient,
  because `ReplicaContext.all_gather` back-propagates by summing the upstream
  gradients over replicas and slicing out the local part. Concretely:
    * Every loss returns `num_replicas * local_sum / global_count` on a
      replica, where `global_count` (of rows, valid queries or negative
      pairs) is summed across replicas, and 0 if it is 0. The number of
      queries differs per replica for `region_infonce` (masks), and for all
      losses on the last evaluation batch, which is not dropped and is split
      unevenly (a replica may get no example at all). With equal counts this
      is simply the mean over the local queries.
  Labels are offset by the number of examples on the lower replica ids
  (all-gathered), not by `replica_id * local_batch`, for the same reason.

All arithmetic is in float32 (inputs are cast first): under bfloat16 mixed
precision the softmax would otherwise run in bfloat16. Shapes are static and
no `py_function` is used, so the losses compile with `jit_compile=True`.
"""
from typing import Any, Dict, Tuple

import tensorflow as tf

# Masked logits get a large finite negative rather than -inf: exp() underflows
# to exactly 0 while a fully masked row still has a finite logsumexp (no NaN in
# the loss or its gradient).
_LARGE_NEGATIVE = -1e9


def _replica_context_and_count() -> Tuple[Any, int]:
  """Returns (replica context or None, number of replicas in sync)."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:  # Cross-replica context: treat as one replica.
    return None, 1
  return ctx, ctx.num_replicas_in_sync


def cross_replica_gather(x):
  """Concatenates `x` over all replicas along axis 0.

  Gradients flow back through `ReplicaContext.all_gather`, whose custom
  gradient sum-reduces the upstream gradient over replicas and slices out this
  replica's rows (checked against a single replica in the tests). Works under
  every strategy (TPU, Mirrored, MultiWorkerMirrored): no TPU-only op; the
  replica id comes from the replica context.

  Args:
    x: a tensor [B, ...] or a nested structure of such tensors (all with the
      same leading dimension B, the local batch size).

  Returns:
    (gathered, offset): `gathered` has the structure of `x`, each tensor with
    leading dimension the global batch (the sum of the local batch sizes),
    ordered by replica id; `offset` is the int32 row of this replica's first
    example in `gathered`: the sum of the local batch sizes of the replicas
    with a lower id. The sizes are all-gathered rather than assumed equal,
    because the last batch of an evaluation without `drop_remainder` is split
    unevenly (a replica may even get no example), and `replica_id * B` would
    then point at another video's view. Outside a multi-replica context
    returns `(x, 0)`.
  """
  ctx, num_replicas = _replica_context_and_count()
  if ctx is None or num_replicas <= 1:
    return x, tf.constant(0, tf.int32)
  first = tf.nest.flatten(x)[0]
  # One all_gather per tensor: the gradient of a nested all_gather stacks the
  # upstream gradients of all its tensors, which fails (TF 2.20) when they
  # differ in shape.
  gathered = tf.nest.map_structure(lambda t: ctx.all_gather(t, axis=0), x)
  sizes = _local_sizes(ctx, tf.shape(first)[0])
  # A mask rather than `sizes[:replica_id]`: the replica id is a tensor on
  # TPU, and a static-shaped sum compiles under XLA.
  lower = tf.range(num_replicas, dtype=tf.int32) < tf.cast(
      ctx.replica_id_in_sync_group, tf.int32)
  offset = tf.reduce_sum(tf.where(lower, sizes, 0))
  return gathered, offset


def _local_sizes(ctx, local_size: tf.Tensor) -> tf.Tensor:
  """int32 [num_replicas]: `local_size` of every replica, by replica id."""
  local_size = tf.stop_gradient(tf.cast(local_size, tf.int32))
  return tf.stop_gradient(ctx.all_gather(tf.reshape(local_size, [1]), axis=0))


def _all_reduce_sum(x: tf.Tensor) -> tf.Tensor:
  """Sums a (non-differentiable) tensor over replicas; identity for one."""
  ctx, num_replicas = _replica_context_and_count()
  x = tf.stop_gradient(x)
  if ctx is None or num_replicas <= 1:
    return x
  return tf.stop_gradient(ctx.all_reduce(tf.distribute.ReduceOp.SUM, x))


def _check_temperature(temperature: float, name: str) -> None:
  if not temperature > 0:
    raise ValueError(f'{name}: temperature must be > 0, got {temperature}')


def _check_rank(x: tf.Tensor, rank: int, name: str, fn: str) -> None:
  if x.shape.rank != rank:
    raise ValueError(
        f'{fn}: `{name}` must have rank {rank}, got shape {x.shape}')


def _to_tensors(*xs):
  # Accepts numpy arrays and lists too, so shapes can be checked up front.
  return [tf.convert_to_tensor(x) for x in xs]


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
  return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)


def _row_stats(logits: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Accuracy (positive at column 0 wins) and softmax entropy per row."""
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  # exp() of a masked log-prob is exactly 0 and the product stays finite.
  entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
  # Strictly greater: with argmax a collapsed model (all logits tied) would
  # score accuracy 1, hiding exactly what this diagnostic is meant to show.
  correct = tf.cast(
      logits[..., 0] > tf.reduce_max(logits[..., 1:], axis=-1), tf.float32)
  return correct, entropy


def global_infonce(emb_a: tf.Tensor,
                   emb_b: tf.Tensor,
                   temperature: float = 0.1) -> Dict[str, tf.Tensor]:
  """CVRL / SimCLR NT-Xent over the global batch (the global loss).

  For example i of view a the positive is view b of the same video; the
  negatives are both views of every other video on every replica (view a of
  example i itself is masked out). Same for view b.

  Args:
    emb_a: [B, D] projections of view a (normalized inside).
    emb_b: [B, D] projections of view b.
    temperature: softmax temperature (released config: 0.1).

  Returns:
    Dict of float32 scalars:
      loss: SUM of the two directions (a->b plus b->a), each the mean over the
        batch (the convention lambda=0.001 is calibrated on).
      contrastive_accuracy: fraction of rows whose positive logit is strictly
        the largest.
      entropy: mean entropy of the softmax rows.
      positive_similarity: mean cosine of positive pairs.
      negative_similarity: mean cosine over all negatives of all rows.
    Distribution convention as in `region_infonce`: each value on a replica is
    `num_replicas * local_sum / global_count`, so the mean over replicas is
    the global-batch value even when the replicas hold different numbers of
    examples (the last evaluation batch), and a replica without examples
    returns 0 (not NaN). With equal local batches this is the local mean.
  """
  fn = 'global_infonce'
  emb_a, emb_b = _to_tensors(emb_a, emb_b)
  _check_temperature(temperature, fn)
  _check_rank(emb_a, 2, 'emb_a', fn)
  _check_rank(emb_b, 2, 'emb_b', fn)
  if emb_a.shape != emb_b.shape:
    raise ValueError(f'{fn}: emb_a {emb_a.shape} and emb_b {emb_b.shape} '
                     'must have the same shape')
  a = _l2_normalize(emb_a)
  b = _l2_normalize(emb_b)
  (a_all, b_all), offset = cross_replica_gather((a, b))
  local_batch = tf.shape(a)[0]
  global_batch = a_all.shape[0] if a_all.shape[0] is not None else tf.shape(
      a_all)[0]
  labels = offset + tf.range(local_batch, dtype=tf.int32)
  is_self = tf.cast(tf.one_hot(labels, global_batch), tf.bool)  # [B, GB]

  # Replica weights of the distribution convention: the replica value is the
  # local mean times `num_replicas * local_count / global_count`, i.e.
  # `num_replicas * local_sum / global_count`. The weight is exactly 1 when
  # all replicas hold the same number of rows (the equal-size path is the
  # plain local mean, bit for bit); an empty replica returns 0, not 0/0.
  _, num_replicas = _replica_context_and_count()
  local_rows = tf.cast(local_batch, tf.float32)
  row_weight = tf.math.divide_no_nan(
      num_replicas * local_rows, tf.cast(global_batch, tf.float32))

  def row_mean(x):
    # tf.where, not divide_no_nan: reduce_mean keeps the equal-size values
    # identical to before; the NaN of an empty replica is never selected.
    return row_weight * tf.where(local_batch > 0, tf.reduce_mean(x), 0.)

  # Negative pairs per direction: the same count for both directions.
  not_self = tf.cast(tf.logical_not(is_self), tf.float32)
  neg_count = 2. * tf.reduce_sum(not_self)
  neg_weight = tf.math.divide_no_nan(num_replicas * neg_count,
                                     _all_reduce_sum(neg_count))

  def one_direction(q, k_other_all, k_same_all):
    cos_pos_view = tf.matmul(q, k_other_all, transpose_b=True)  # [B, GB]
    cos_same_view = tf.matmul(q, k_same_all, transpose_b=True)
    positive = tf.reduce_sum(tf.where(is_self, cos_pos_view, 0.), axis=1)
    # Column 0 is the positive so the row statistics are uniform.
    negatives = tf.concat([
        tf.where(is_self, _LARGE_NEGATIVE, cos_pos_view / temperature),
        tf.where(is_self, _LARGE_NEGATIVE, cos_same_view / temperature)
    ], axis=1)
    logits = tf.concat([positive[:, None] / temperature, negatives], axis=1)
    per_row = tf.reduce_logsumexp(logits, axis=1) - positive / temperature
    correct, entropy = _row_stats(logits)
    neg_sum = tf.reduce_sum(not_self * (cos_pos_view + cos_same_view))
    return {
        'loss': row_mean(per_row),
        'contrastive_accuracy': row_mean(correct),
        'entropy': row_mean(entropy),
        'positive_similarity': row_mean(positive),
        'negative_similarity': neg_weight * tf.math.divide_no_nan(
            neg_sum, neg_count),
    }

  ab = one_direction(a, b_all, a_all)
  ba = one_direction(b, a_all, b_all)
  out = {k: 0.5 * (ab[k] + ba[k]) for k in ab}
  out['loss'] = ab['loss'] + ba['loss']
  return out


def match_regions(source_regions: tf.Tensor,
                  target_regions: tf.Tensor,
                  target_mask: tf.Tensor) -> tf.Tensor:
  """Index of the most similar valid target region for each source region.

  j* = argmax_j cos(h_i, h'_j) over the valid target regions of the same video,
  without gradient (the choice is not differentiated).

  Args:
    source_regions: [B, N, D] raw pooled region features h of the source view.
    target_regions: [B, M, D] raw pooled region features h' of the target view.
    target_mask: [B, M], nonzero for valid target regions.

  Returns:
    int32 [B, N]. For a video without any valid target the index is 0 (such
    queries are ignored by `region_infonce`).
  """
  fn = 'match_regions'
  source_regions, target_regions, target_mask = _to_tensors(
      source_regions, target_regions, target_mask)
  _check_rank(source_regions, 3, 'source_regions', fn)
  _check_rank(target_regions, 3, 'target_regions', fn)
  _check_rank(target_mask, 2, 'target_mask', fn)
  src = _l2_normalize(tf.stop_gradient(source_regions))
  tgt = _l2_normalize(tf.stop_gradient(target_regions))
  valid = tf.cast(target_mask, tf.float32) > 0
  cos = tf.einsum('bnd,bmd->bnm', src, tgt)
  cos = tf.where(valid[:, None, :], cos, _LARGE_NEGATIVE)
  return tf.argmax(cos, axis=-1, output_type=tf.int32)


def region_infonce(predictions: tf.Tensor,
                   prediction_mask: tf.Tensor,
                   targets: tf.Tensor,
                   target_mask: tf.Tensor,
                   positive_index: tf.Tensor,
                   temperature: float = 0.2) -> Dict[str, tf.Tensor]:
  """Region InfoNCE of ConST-CL for one direction (source -> target view).

  Query (b, i) is the prediction z[b, i]. Its positive is
  targets[b, positive_index[b, i]]; its negatives are all VALID target regions
  of the OTHER videos of the global batch (all replicas). The other regions of
  the same video are neither positive nor negative. A query counts if its mask
  is set and its video has at least one valid target.

  Distribution convention: the loss (and each diagnostic) returned on a replica
  is `num_replicas * local_sum / global_count`, with `global_count` the number
  of valid queries summed over all replicas. Averaging the replica values (or
  dividing each replica's loss by `num_replicas_in_sync` and summing the
  gradients, as Model Garden's trainer does) gives the mean over all valid
  queries of the global batch, i.e. exactly one replica's value and gradient on
  the whole batch. With no valid query anywhere every value is exactly 0 and
  the gradients are 0.

  Args:
    predictions: [B, N, D] head outputs z for the source regions.
    prediction_mask: [B, N], nonzero for valid source regions.
    targets: [B, M, D] target-view region features h'.
    target_mask: [B, M], nonzero for valid target regions.
    positive_index: [B, N] integer, from `match_regions`.
    temperature: softmax temperature (released config: 0.2).

  Returns:
    Dict of float32 scalars: loss, contrastive_accuracy, entropy,
    positive_similarity, negative_similarity (mean cosine over all
    (valid query, negative) pairs) and num_valid (global number of valid
    queries, the same on every replica).
  """
  fn = 'region_infonce'
  predictions, prediction_mask, targets, target_mask, positive_index = (
      _to_tensors(predictions, prediction_mask, targets, target_mask,
                  positive_index))
  _check_temperature(temperature, fn)
  _check_rank(predictions, 3, 'predictions', fn)
  _check_rank(prediction_mask, 2, 'prediction_mask', fn)
  _check_rank(targets, 3, 'targets', fn)
  _check_rank(target_mask, 2, 'target_mask', fn)
  _check_rank(positive_index, 2, 'positive_index', fn)
  if (predictions.shape[-1] is not None and targets.shape[-1] is not None and
      predictions.shape[-1] != targets.shape[-1]):
    raise ValueError(f'{fn}: predictions {predictions.shape} and targets '
                     f'{targets.shape} must have the same feature size')
  if not prediction_mask.shape.is_compatible_with(predictions.shape[:2]):
    raise ValueError(f'{fn}: prediction_mask {prediction_mask.shape} does not '
                     f'match predictions {predictions.shape}')
  if not positive_index.shape.is_compatible_with(predictions.shape[:2]):
    raise ValueError(f'{fn}: positive_index {positive_index.shape} does not '
                     f'match predictions {predictions.shape}')
  if not target_mask.shape.is_compatible_with(targets.shape[:2]):
    raise ValueError(f'{fn}: target_mask {target_mask.shape} does not match '
                     f'targets {targets.shape}')

  z = _l2_normalize(predictions)
  h = _l2_normalize(targets)
  query_mask = tf.cast(prediction_mask, tf.float32) > 0
  tgt_valid = tf.cast(target_mask, tf.float32) > 0
  query_valid = tf.logical_and(
      query_mask, tf.reduce_any(tgt_valid, axis=1, keepdims=True))  # [B, N]

  positive_index = tf.cast(positive_index, tf.int32)
  positive = tf.reduce_sum(
      z * tf.gather(h, positive_index, batch_dims=1), axis=-1)  # [B, N]

  (h_all, tgt_valid_all), offset = cross_replica_gather(
      (h, tf.cast(tgt_valid, tf.float32)))
  tgt_valid_all = tf.stop_gradient(tgt_valid_all) > 0  # [V, M]
  num_videos = tf.shape(h_all)[0]
  local_batch = tf.shape(z)[0]
  own_video = offset + tf.range(local_batch, dtype=tf.int32)  # [B]
  other_video = tf.not_equal(own_video[:, None],
                             tf.range(num_videos, dtype=tf.int32)[None, :])
  neg_valid = tf.logical_and(other_video[:, :, None],
                             tgt_valid_all[None, :, :])  # [B, V, M]
  neg_valid = tf.reshape(neg_valid, [local_batch, 1, -1])  # [B, 1, V*M]
  neg_cos = tf.einsum('bnd,vmd->bnvm', z, h_all)
  neg_cos = tf.reshape(neg_cos, [local_batch, tf.shape(z)[1], -1])

  neg_logits = tf.where(neg_valid, neg_cos / temperature, _LARGE_NEGATIVE)
  logits = tf.concat([positive[..., None] / temperature, neg_logits], axis=-1)
  per_query = tf.reduce_logsumexp(logits, axis=-1) - positive / temperature
  correct, entropy = _row_stats(logits)

  weight = tf.cast(query_valid, tf.float32)
  # tf.where (not a product) keeps the huge loss of an invalid row out of the
  # sum and gives it a zero gradient.
  loss_sum = tf.reduce_sum(tf.where(query_valid, per_query, 0.))
  neg_valid_f = tf.cast(neg_valid, tf.float32)
  neg_sum = tf.reduce_sum(weight[..., None] * neg_valid_f * neg_cos)
  neg_count = tf.reduce_sum(weight * tf.reduce_sum(neg_valid_f, axis=-1))
  counts = _all_reduce_sum(tf.stack([tf.reduce_sum(weight), neg_count]))
  _, num_replicas = _replica_context_and_count()
  scale = float(num_replicas)

  def global_mean(local_sum, global_count):
    return tf.math.divide_no_nan(scale * local_sum, global_count)

  return {
      'loss': global_mean(loss_sum, counts[0]),
      'contrastive_accuracy': global_mean(
          tf.reduce_sum(weight * correct), counts[0]),
      'entropy': global_mean(tf.reduce_sum(weight * entropy), counts[0]),
      'positive_similarity': global_mean(
          tf.reduce_sum(weight * positive), counts[0]),
      'negative_similarity': global_mean(neg_sum, counts[1]),
      'num_valid': counts[0],
  }


def bidirectional_region_infonce(
    predictions_a: tf.Tensor,
    predictions_b: tf.Tensor,
    regions_a: tf.Tensor,
    regions_b: tf.Tensor,
    mask_a: tf.Tensor,
    mask_b: tf.Tensor,
    temperature: float = 0.2) -> Dict[str, tf.Tensor]:
  """ConST-CL local loss: mean of the a->b and b->a region InfoNCE.

  Args:
    predictions_a: [B, N, D] head outputs g(h_a, context of view b), i.e. the
      regions of view a reconstructed in view b.
    predictions_b: [B, M, D] head outputs g(h_b, context of view a).
    regions_a: [B, N, D] raw pooled region features h of view a.
    regions_b: [B, M, D] raw pooled region features h' of view b.
    mask_a: [B, N] validity of the regions of view a.
    mask_b: [B, M] validity of the regions of view b.
    temperature: softmax temperature (released config: 0.2).

  Returns:
    Dict of float32 scalars: the mean over the two directions of every entry
    of `region_infonce`, except `num_valid` which is their sum.
  """
  ab = region_infonce(predictions_a, mask_a, regions_b, mask_b,
                      match_regions(regions_a, regions_b, mask_b), temperature)
  ba = region_infonce(predictions_b, mask_b, regions_a, mask_a,
                      match_regions(regions_b, regions_a, mask_a), temperature)
  out = {k: 0.5 * (ab[k] + ba[k]) for k in ab}
  out['num_valid'] = ab['num_valid'] + ba['num_valid']
  return out


def dense_infonce(feats_a: tf.Tensor,
                  feats_b: tf.Tensor,
                  temperature: float = 0.1) -> Dict[str, tf.Tensor]:
  """Dense contrastive baseline (paper Eq. 1-2).

  For every voxel of view a the positive is the voxel of view b of the same
  video nearest in cosine similarity (chosen without gradient); the negatives
  are all voxels of view b of the other videos in the global batch. Mean over
  voxels; the two directions are averaged. This is the region loss with every
  voxel a valid region and the voxel itself as prediction.

  Memory: the logits are [B, P, num_replicas * B * P]; keep P small (pool or
  subsample voxels before calling) for large global batches.

  Args:
    feats_a: [B, P, D] voxel features of view a (after the caller's
      projection), P = T*H*W voxels.
    feats_b: [B, P, D] voxel features of view b.
    temperature: softmax temperature.

  Returns:
    Dict of float32 scalars: loss, contrastive_accuracy, entropy,
    positive_similarity, negative_similarity, each averaged over both
    directions (scaled as in `region_infonce`: the mean over replicas is the
    global value).
  """
  fn = 'dense_infonce'
  feats_a, feats_b = _to_tensors(feats_a, feats_b)
  _check_rank(feats_a, 3, 'feats_a', fn)
  _check_rank(feats_b, 3, 'feats_b', fn)
  if feats_a.shape != feats_b.shape:
    raise ValueError(f'{fn}: feats_a {feats_a.shape} and feats_b '
                     f'{feats_b.shape} must have the same shape')
  ones = tf.ones(tf.shape(feats_a)[:2], tf.float32)
  out = bidirectional_region_infonce(feats_a, feats_b, feats_a, feats_b, ones,
                                     ones, temperature)
  del out['num_valid']
  return out
