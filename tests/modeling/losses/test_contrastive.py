"""Single-replica tests of modeling/losses/contrastive.py.

Each loss is checked against an independent numpy reference written with
explicit loops, against hand-worked values, and under XLA.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from modeling.losses import contrastive

TOL = 1e-5
DIAG_KEYS = ('loss', 'contrastive_accuracy', 'entropy', 'positive_similarity',
             'negative_similarity')


# ----------------------------------------------------------------------------
# Independent numpy references (explicit loops, float64).
# ----------------------------------------------------------------------------
def _unit(v):
  n = math.sqrt(sum(float(x) * float(x) for x in v))
  return np.asarray(v, np.float64) / max(n, 1e-6)


def _cos(u, v):
  return float(np.dot(_unit(u), _unit(v)))


def _row(pos_cos, neg_cos, t):
  """Loss, correct, entropy of one InfoNCE row (positive first)."""
  logits = [pos_cos / t] + [c / t for c in neg_cos]
  m = max(logits)
  lse = m + math.log(sum(math.exp(l - m) for l in logits))
  probs = [math.exp(l - lse) for l in logits]
  entropy = -sum(p * math.log(p) for p in probs if p > 0)
  correct = float(all(logits[0] > l for l in logits[1:]))
  return lse - logits[0], correct, entropy


def np_global_infonce(emb_a, emb_b, t):
  n = len(emb_a)
  per_dir = []
  for q_set, other, same in ((emb_a, emb_b, emb_a), (emb_b, emb_a, emb_b)):
    losses, corrects, ents, poss, negs = [], [], [], [], []
    for i in range(n):
      neg = []
      for j in range(n):
        if j != i:
          neg.append(_cos(q_set[i], other[j]))
      for j in range(n):
        if j != i:
          neg.append(_cos(q_set[i], same[j]))
      pos = _cos(q_set[i], other[i])
      loss, correct, ent = _row(pos, neg, t)
      losses.append(loss)
      corrects.append(correct)
      ents.append(ent)
      poss.append(pos)
      negs.extend(neg)
    per_dir.append({
        'loss': np.mean(losses), 'contrastive_accuracy': np.mean(corrects),
        'entropy': np.mean(ents), 'positive_similarity': np.mean(poss),
        'negative_similarity': np.mean(negs)})
  out = {k: 0.5 * (per_dir[0][k] + per_dir[1][k]) for k in per_dir[0]}
  out['loss'] = per_dir[0]['loss'] + per_dir[1]['loss']
  return out


def np_match_regions(src, tgt, tmask):
  b_size, n_size = src.shape[:2]
  out = np.zeros((b_size, n_size), np.int32)
  for b in range(b_size):
    for i in range(n_size):
      best, best_j = -np.inf, 0
      for j in range(tgt.shape[1]):
        if tmask[b, j] > 0:
          c = _cos(src[b, i], tgt[b, j])
          if c > best:
            best, best_j = c, j
      out[b, i] = best_j
  return out


def np_region_infonce(z, zmask, h, hmask, pos_idx, t):
  losses, corrects, ents, poss, negs = [], [], [], [], []
  for b in range(z.shape[0]):
    if not any(hmask[b] > 0):
      continue
    for i in range(z.shape[1]):
      if zmask[b, i] <= 0:
        continue
      pos = _cos(z[b, i], h[b, pos_idx[b, i]])
      neg = []
      for v in range(h.shape[0]):
        if v == b:
          continue
        for m in range(h.shape[1]):
          if hmask[v, m] > 0:
            neg.append(_cos(z[b, i], h[v, m]))
      loss, correct, ent = _row(pos, neg, t)
      losses.append(loss)
      corrects.append(correct)
      ents.append(ent)
      poss.append(pos)
      negs.extend(neg)
  if not losses:
    return {k: 0. for k in DIAG_KEYS} | {'num_valid': 0.}
  return {'loss': np.mean(losses), 'contrastive_accuracy': np.mean(corrects),
          'entropy': np.mean(ents), 'positive_similarity': np.mean(poss),
          'negative_similarity': np.mean(negs) if negs else 0.,
          'num_valid': float(len(losses))}


def np_dense_infonce(fa, fb, t):
  dirs = []
  for q, k in ((fa, fb), (fb, fa)):
    losses, corrects, ents, poss, negs = [], [], [], [], []
    for b in range(q.shape[0]):
      for p in range(q.shape[1]):
        sims = [_cos(q[b, p], k[b, r]) for r in range(k.shape[1])]
        pos = max(sims)
        neg = [_cos(q[b, p], k[v, r]) for v in range(k.shape[0]) if v != b
               for r in range(k.shape[1])]
        loss, correct, ent = _row(pos, neg, t)
        losses.append(loss)
        corrects.append(correct)
        ents.append(ent)
        poss.append(pos)
        negs.extend(neg)
    dirs.append({'loss': np.mean(losses),
                 'contrastive_accuracy': np.mean(corrects),
                 'entropy': np.mean(ents), 'positive_similarity': np.mean(poss),
                 'negative_similarity': np.mean(negs)})
  return {k: 0.5 * (dirs[0][k] + dirs[1][k]) for k in dirs[0]}


def _assert_dict_close(got, want, keys=DIAG_KEYS, tol=TOL):
  for k in keys:
    assert got[k].dtype == tf.float32, k
    assert got[k].shape == (), k
    np.testing.assert_allclose(float(got[k]), want[k], atol=tol, rtol=tol,
                               err_msg=k)


def _region_inputs(seed=0, b=4, n=3, m=4, d=6):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(b, n, d)).astype(np.float32)
  h = rng.normal(size=(b, m, d)).astype(np.float32)
  src = rng.normal(size=(b, n, d)).astype(np.float32)
  zmask = (rng.uniform(size=(b, n)) > 0.3).astype(np.float32)
  hmask = (rng.uniform(size=(b, m)) > 0.3).astype(np.float32)
  zmask[0, 0] = 1.
  hmask[1] = 0.  # Video 1 has no valid target: its queries are ignored.
  hmask[0, 0] = 1.
  return z, zmask, h, hmask, src


# ----------------------------------------------------------------------------
# Against the numpy references.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('temperature', [0.1, 0.5])
def test_global_infonce_matches_numpy(temperature):
  rng = np.random.default_rng(1)
  a = rng.normal(size=(5, 7)).astype(np.float32)
  b = (a + 0.8 * rng.normal(size=(5, 7))).astype(np.float32)
  got = contrastive.global_infonce(tf.constant(a), tf.constant(b), temperature)
  _assert_dict_close(got, np_global_infonce(a, b, temperature))


def test_match_regions_matches_numpy():
  z, _, h, hmask, src = _region_inputs(seed=2)
  got = contrastive.match_regions(src, h, hmask)
  assert got.dtype == tf.int32
  want = np_match_regions(src, h, hmask)
  # Video 1 has no valid target: index unspecified (0), query ignored later.
  np.testing.assert_array_equal(np.delete(got.numpy(), 1, 0),
                                np.delete(want, 1, 0))
  for b in range(h.shape[0]):
    if hmask[b].any():
      assert all(hmask[b, j] > 0 for j in got.numpy()[b])


def test_match_regions_skips_masked_best_match():
  src = np.array([[[1., 0.]]], np.float32)              # [1, 1, 2]
  tgt = np.array([[[1., 0.], [0.6, 0.8], [-1., 0.]]], np.float32)
  assert contrastive.match_regions(src, tgt, [[1., 1., 1.]]).numpy()[0, 0] == 0
  assert contrastive.match_regions(src, tgt, [[0., 1., 1.]]).numpy()[0, 0] == 1
  assert contrastive.match_regions(src, tgt, [[0., 0., 1.]]).numpy()[0, 0] == 2


@pytest.mark.parametrize('seed', [3, 4])
def test_region_infonce_matches_numpy(seed):
  z, zmask, h, hmask, src = _region_inputs(seed=seed)
  pos_idx = np_match_regions(src, h, hmask)
  got = contrastive.region_infonce(z, zmask, h, hmask, pos_idx, 0.2)
  want = np_region_infonce(z, zmask, h, hmask, pos_idx, 0.2)
  _assert_dict_close(got, want, DIAG_KEYS + ('num_valid',))


def test_bidirectional_region_infonce_matches_numpy():
  rng = np.random.default_rng(5)
  za, zb = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  ha, hb = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  ma = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 1]], np.float32)
  mb = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]], np.float32)
  got = contrastive.bidirectional_region_infonce(za, zb, ha, hb, ma, mb, 0.2)
  ab = np_region_infonce(za, ma, hb, mb, np_match_regions(ha, hb, mb), 0.2)
  ba = np_region_infonce(zb, mb, ha, ma, np_match_regions(hb, ha, ma), 0.2)
  want = {k: 0.5 * (ab[k] + ba[k]) for k in DIAG_KEYS}
  want['num_valid'] = ab['num_valid'] + ba['num_valid']
  # a->b: 3 + 0 + 3 valid queries; b->a: 3 + 3 + 2, less the 3 of video 1
  # whose view a has no valid region to match.
  assert want['num_valid'] == 6 + 5
  _assert_dict_close(got, want, DIAG_KEYS + ('num_valid',))


def test_dense_infonce_matches_numpy():
  rng = np.random.default_rng(6)
  fa = rng.normal(size=(3, 4, 5)).astype(np.float32)
  fb = (fa[:, ::-1] + 0.5 * rng.normal(size=(3, 4, 5))).astype(np.float32)
  got = contrastive.dense_infonce(fa, fb, 0.1)
  _assert_dict_close(got, np_dense_infonce(fa, fb, 0.1))


# ----------------------------------------------------------------------------
# Hand-worked values.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('batch,temperature', [(2, 0.1), (2, 1.0), (3, 0.5)])
def test_global_infonce_orthogonal_identical_views(batch, temperature):
  # Identical views, orthogonal (scaled) embeddings: each row has the positive
  # at cos 1 and 2B-2 negatives at cos 0 (its own other view is masked), so the
  # row loss is log(1 + (2B-2) exp(-1/t)) and the loss (a->b plus b->a) twice
  # that.
  emb = 3. * np.eye(batch, 4, dtype=np.float32)
  got = contrastive.global_infonce(emb, emb, temperature)
  k = 2 * batch - 2
  e = math.exp(-1. / temperature)
  row = math.log(1. + k * e)
  p_pos, p_neg = 1. / (1. + k * e), e / (1. + k * e)
  entropy = -(p_pos * math.log(p_pos) + k * p_neg * math.log(p_neg))
  # atol: float32 log-sum-exp minus the positive logit (1/t) cancels, leaving
  # ~1e-7 absolute error on these tiny losses.
  np.testing.assert_allclose(got['loss'], 2. * row, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got['entropy'], entropy, rtol=1e-5, atol=1e-6)
  assert float(got['contrastive_accuracy']) == 1.
  np.testing.assert_allclose(got['positive_similarity'], 1., atol=1e-6)
  np.testing.assert_allclose(got['negative_similarity'], 0., atol=1e-6)


def test_global_infonce_collapsed_embeddings():
  # Every embedding equal: each row is 2B-1 tied logits (own other view
  # masked), so loss per direction is log(2B-1), entropy log(2B-1), and the
  # positive never strictly wins.
  batch = 3
  emb = np.ones((batch, 4), np.float32)
  got = contrastive.global_infonce(emb, 2. * emb, 0.1)
  np.testing.assert_allclose(got['loss'], 2 * math.log(2 * batch - 1),
                             rtol=1e-6)
  np.testing.assert_allclose(got['entropy'], math.log(2 * batch - 1),
                             rtol=1e-6)
  assert float(got['contrastive_accuracy']) == 0.
  np.testing.assert_allclose(got['negative_similarity'], 1., atol=1e-6)


def test_global_infonce_b2_t1_exact_number():
  # log(1 + 2/e) * 2 = 1.1297... worked out by hand for B=2, t=1.
  emb = np.eye(2, dtype=np.float32)
  got = contrastive.global_infonce(emb, emb, 1.0)
  np.testing.assert_allclose(got['loss'], 2 * math.log(1 + 2 / math.e),
                             rtol=1e-6)


def test_region_infonce_orthogonal_hand_worked():
  # Video 0 regions e0, e1; video 1 regions e2, e3; predictions equal targets.
  # Target (1, 1) and query (1, 1) are masked. Queries:
  #   (0, 0), (0, 1): negatives {e2} only -> log(1 + e^{-1/t}) each (e1 / e0,
  #     the other region of the same video, is not a negative).
  #   (1, 0): negatives {e0, e1} -> log(1 + 2 e^{-1/t}).
  t = 0.2
  h = np.eye(4, dtype=np.float32).reshape(2, 2, 4)
  hmask = np.array([[1, 1], [1, 0]], np.float32)
  zmask = np.array([[1, 1], [1, 0]], np.float32)
  pos_idx = contrastive.match_regions(h, h, hmask)
  np.testing.assert_array_equal(pos_idx, [[0, 1], [0, 0]])
  got = contrastive.region_infonce(h, zmask, h, hmask, pos_idx, t)
  e = math.exp(-1 / t)
  want = (2 * math.log(1 + e) + math.log(1 + 2 * e)) / 3
  np.testing.assert_allclose(got['loss'], want, rtol=1e-5, atol=1e-6)
  assert float(got['num_valid']) == 3.
  assert float(got['contrastive_accuracy']) == 1.
  np.testing.assert_allclose(got['positive_similarity'], 1., atol=1e-6)
  np.testing.assert_allclose(got['negative_similarity'], 0., atol=1e-6)


@pytest.mark.parametrize('which', ['queries', 'targets', 'both'])
def test_region_infonce_all_masked_is_exactly_zero(which):
  rng = np.random.default_rng(7)
  z = tf.Variable(rng.normal(size=(3, 2, 4)).astype(np.float32))
  h = tf.Variable(rng.normal(size=(3, 5, 4)).astype(np.float32))
  zmask = np.zeros((3, 2)) if which != 'targets' else np.ones((3, 2))
  hmask = np.zeros((3, 5)) if which != 'queries' else np.ones((3, 5))
  with tf.GradientTape() as tape:
    idx = contrastive.match_regions(z, h, hmask)
    out = contrastive.region_infonce(z, zmask, h, hmask, idx)
  grads = tape.gradient(out['loss'], [z, h])
  for k, v in out.items():
    assert float(v) == 0., k
  for g in grads:
    assert g is None or np.all(np.isfinite(g.numpy()))
    assert g is None or not np.any(g.numpy())


def test_dense_infonce_gradients_finite_with_zero_voxels():
  # A zero feature (e.g. padded voxel) must not produce NaN through the
  # normalization.
  f = np.random.default_rng(8).normal(size=(2, 3, 4)).astype(np.float32)
  f[0, 1] = 0.
  fa = tf.Variable(f)
  with tf.GradientTape() as tape:
    loss = contrastive.dense_infonce(fa, tf.constant(f[:, ::-1]))['loss']
  grad = tape.gradient(loss, fa)
  assert np.isfinite(float(loss))
  assert np.all(np.isfinite(grad.numpy()))


def test_bfloat16_inputs_give_float32_outputs():
  rng = np.random.default_rng(9)
  a = tf.cast(rng.normal(size=(4, 8)), tf.bfloat16)
  b = tf.cast(rng.normal(size=(4, 8)), tf.bfloat16)
  got = contrastive.global_infonce(a, b)
  want = contrastive.global_infonce(tf.cast(a, tf.float32),
                                    tf.cast(b, tf.float32))
  for k in DIAG_KEYS:
    assert got[k].dtype == tf.float32
    np.testing.assert_allclose(got[k], want[k], atol=TOL)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match='emb_a'):
    contrastive.global_infonce(tf.zeros([2, 3, 4]), tf.zeros([2, 3, 4]))
  with pytest.raises(ValueError, match='temperature'):
    contrastive.global_infonce(tf.zeros([2, 3]), tf.zeros([2, 3]), 0.)
  with pytest.raises(ValueError, match='feature size'):
    contrastive.region_infonce(tf.zeros([2, 3, 4]), tf.ones([2, 3]),
                               tf.zeros([2, 5, 6]), tf.ones([2, 5]),
                               tf.zeros([2, 3], tf.int32))
  with pytest.raises(ValueError, match='target_mask'):
    contrastive.region_infonce(tf.zeros([2, 3, 4]), tf.ones([2, 3]),
                               tf.zeros([2, 5, 4]), tf.ones([2, 4]),
                               tf.zeros([2, 3], tf.int32))


def test_cross_replica_gather_single_replica_is_identity():
  x = tf.constant([[1., 2.], [3., 4.]])
  gathered, offset = contrastive.cross_replica_gather(x)
  assert gathered is x
  assert int(offset) == 0 and offset.dtype == tf.int32


# ----------------------------------------------------------------------------
# XLA.
# ----------------------------------------------------------------------------
def test_all_losses_compile_with_xla_and_match_eager():
  rng = np.random.default_rng(10)
  emb_a, emb_b = rng.normal(size=(2, 6, 8)).astype(np.float32)
  z, zmask, h, hmask, src = _region_inputs(seed=11)
  fa, fb = rng.normal(size=(2, 4, 3, 6)).astype(np.float32)

  # dense_infonce goes through bidirectional_region_infonce.
  def all_losses(emb_a, emb_b, z, zmask, h, hmask, src, fa, fb):
    return {
        'global': contrastive.global_infonce(emb_a, emb_b),
        'region': contrastive.region_infonce(
            z, zmask, h, hmask, contrastive.match_regions(src, h, hmask)),
        'dense': contrastive.dense_infonce(fa, fb),
        'match': contrastive.match_regions(src, h, hmask),
    }

  args = [tf.constant(x) for x in
          (emb_a, emb_b, z, zmask, h, hmask, src, fa, fb)]
  eager = all_losses(*args)
  xla = tf.function(all_losses, jit_compile=True)(*args)
  np.testing.assert_array_equal(xla['match'], eager['match'])
  for name in ('global', 'region', 'dense'):
    for k, v in eager[name].items():
      np.testing.assert_allclose(xla[name][k], v, atol=TOL, rtol=TOL,
                                 err_msg=f'{name}/{k}')
