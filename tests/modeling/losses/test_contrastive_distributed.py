"""Two replicas (MirroredStrategy on 2 logical CPUs) equal one replica.

The per-replica loss is divided by `num_replicas_in_sync` and the per-replica
gradients summed, as Model Garden's trainer does; the result must equal one
replica's loss and gradient on the whole global batch. Gradients are taken
w.r.t. a small projection variable applied to the inputs, so they flow through
the cross-replica all-gather.
"""
import numpy as np
import pytest
import tensorflow as tf

from modeling.losses import contrastive

NUM_REPLICAS = 2
TOL = 1e-5


@pytest.fixture(scope='module')
def strategy(mirrored_strategy):
  return mirrored_strategy  # Shared: see tests/conftest.py.


def _run_both(strategy, loss_fn, arrays, w_init):
  """((loss, grad) single replica, (loss, grad) mirrored), even halves."""
  half = arrays[0].shape[0] // NUM_REPLICAS
  return _run_split(strategy, loss_fn, arrays, w_init,
                    [half] * NUM_REPLICAS)


def _assert_same(single, single_grad, mirrored, mirrored_grad):
  assert set(single) == set(mirrored)
  for k in single:
    np.testing.assert_allclose(mirrored[k], single[k], atol=TOL, rtol=TOL,
                               err_msg=k)
  assert np.any(np.abs(single_grad.numpy()) > 1e-4)  # Non-trivial gradient.
  np.testing.assert_allclose(mirrored_grad, single_grad, atol=TOL, rtol=TOL)


def test_cross_replica_gather_concatenates_and_offsets(strategy):
  x = np.arange(12, dtype=np.float32).reshape(4, 3)

  def value_fn(ctx):
    r = ctx.replica_id_in_sync_group
    return tf.constant(x[2 * r:2 * r + 2])

  @tf.function
  def step(v):
    return strategy.run(contrastive.cross_replica_gather, args=(v,))

  gathered, offset = step(
      strategy.experimental_distribute_values_from_function(value_fn))
  for g in strategy.experimental_local_results(gathered):
    np.testing.assert_array_equal(g, x)
  offsets = [int(o) for o in strategy.experimental_local_results(offset)]
  assert offsets == [0, 2]


def test_global_infonce_two_replicas_equal_one(strategy):
  rng = np.random.default_rng(0)
  xa = rng.normal(size=(6, 5)).astype(np.float32)
  xb = (xa + 0.7 * rng.normal(size=(6, 5))).astype(np.float32)
  w_init = rng.normal(size=(5, 4)).astype(np.float32)

  def loss_fn(w, xa, xb):
    return contrastive.global_infonce(tf.matmul(xa, w), tf.matmul(xb, w), 0.1)

  _assert_same(*_run_both(strategy, loss_fn, [xa, xb], w_init))


def _masked_region_arrays(seed, empty_replica0):
  rng = np.random.default_rng(seed)
  b, n, m, d_in = 4, 3, 4, 5
  xz = rng.normal(size=(b, n, d_in)).astype(np.float32)
  xh = rng.normal(size=(b, m, d_in)).astype(np.float32)
  xsrc = rng.normal(size=(b, n, d_in)).astype(np.float32)
  # Replica 1 (videos 2, 3) has 5 valid queries and replica 0 one (video 1
  # has no valid target), so a plain per-replica mean would weigh queries
  # unequally; with `empty_replica0` replica 0 has none at all.
  zmask = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1], [1, 1, 0]], np.float32)
  hmask = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0, 1, 1, 1]],
                   np.float32)
  if empty_replica0:
    zmask[:2] = 0.
  return [xz, zmask, xh, hmask, xsrc], rng.normal(size=(d_in, 6)).astype(
      np.float32)


@pytest.mark.parametrize('empty_replica0', [False, True])
def test_region_infonce_two_replicas_equal_one(strategy, empty_replica0):
  arrays, w_init = _masked_region_arrays(1, empty_replica0)

  def loss_fn(w, xz, zmask, xh, hmask, xsrc):
    z = tf.einsum('bnd,de->bne', xz, w)
    h = tf.einsum('bmd,de->bme', xh, w)
    idx = contrastive.match_regions(xsrc, xh, hmask)
    return contrastive.region_infonce(z, zmask, h, hmask, idx, 0.2)

  single, single_grad, mirrored, mirrored_grad = _run_both(
      strategy, loss_fn, arrays, w_init)
  assert float(single['num_valid']) == (5. if empty_replica0 else 6.)
  _assert_same(single, single_grad, mirrored, mirrored_grad)


def test_dense_infonce_two_replicas_equal_one(strategy):
  # dense_infonce runs bidirectional_region_infonce with all-valid masks, so
  # this also covers the bidirectional wrapper under distribution.
  rng = np.random.default_rng(2)
  xa = rng.normal(size=(4, 3, 5)).astype(np.float32)
  xb = (xa[:, ::-1] + 0.5 * rng.normal(size=(4, 3, 5))).astype(np.float32)
  w_init = rng.normal(size=(5, 6)).astype(np.float32)

  def loss_fn(w, xa, xb):
    return contrastive.dense_infonce(tf.einsum('bpd,de->bpe', xa, w),
                                     tf.einsum('bpd,de->bpe', xb, w), 0.1)

  _assert_same(*_run_both(strategy, loss_fn, [xa, xb], w_init))


# ----------------------------------------------------------------------------
# Uneven and empty replicas: the last validation batch (no drop_remainder) is
# split unevenly by MirroredStrategy / MultiWorkerMirroredStrategy, and a
# replica may get no example at all.
# ----------------------------------------------------------------------------
def _run_split(strategy, loss_fn, arrays, w_init, sizes):
  """Like `_run_both`, but replica r gets `sizes[r]` rows of every array.

  The reference is the single replica on the rows the replicas hold together
  (the single-replica path is checked against numpy in test_contrastive.py).
  """
  assert len(sizes) == NUM_REPLICAS
  starts = np.cumsum([0] + list(sizes))
  used = [a[:starts[-1]] for a in arrays]
  w_single = tf.Variable(w_init)
  with tf.GradientTape() as tape:
    single = loss_fn(w_single, *[tf.constant(a) for a in used])
  single_grad = tape.gradient(single['loss'], w_single)

  with strategy.scope():
    w_mirrored = tf.Variable(w_init)

  def value_fn(ctx):
    r = ctx.replica_id_in_sync_group
    return tuple(tf.constant(a[starts[r]:starts[r + 1]]) for a in used)

  inputs = strategy.experimental_distribute_values_from_function(value_fn)

  @tf.function
  def step(inputs):
    def replica_fn(*args):
      with tf.GradientTape() as tape:
        out = loss_fn(w_mirrored, *args)
        scaled = out['loss'] / tf.distribute.get_replica_context(
        ).num_replicas_in_sync
      return out, tape.gradient(scaled, w_mirrored)

    out, grad = strategy.run(replica_fn, args=inputs)
    return out, strategy.reduce(tf.distribute.ReduceOp.SUM, grad, axis=None)

  out, mirrored_grad = step(inputs)
  per_replica = {k: [float(x) for x in strategy.experimental_local_results(v)]
                 for k, v in out.items()}
  for k, values in per_replica.items():
    assert np.all(np.isfinite(values)), (k, values)
  mirrored = {k: np.mean(v) for k, v in per_replica.items()}
  return single, single_grad, mirrored, mirrored_grad


@pytest.mark.parametrize('sizes', [(2, 1), (1, 2), (2, 0), (0, 2)])
def test_global_infonce_uneven_replicas_equal_one(strategy, sizes):
  rng = np.random.default_rng(3)
  xa = rng.normal(size=(3, 5)).astype(np.float32)
  xb = (xa + 0.7 * rng.normal(size=(3, 5))).astype(np.float32)
  w_init = rng.normal(size=(5, 4)).astype(np.float32)

  def loss_fn(w, xa, xb):
    return contrastive.global_infonce(tf.matmul(xa, w), tf.matmul(xb, w), 0.1)

  single, single_grad, mirrored, mirrored_grad = _run_split(
      strategy, loss_fn, [xa, xb], w_init, sizes)
  # Not vacuous: the single-replica reference itself is finite and non-zero.
  assert np.isfinite(float(single['loss'])) and float(single['loss']) > 0.
  _assert_same(single, single_grad, mirrored, mirrored_grad)


@pytest.mark.parametrize('sizes', [(2, 1), (1, 2), (2, 0), (0, 2)])
def test_region_infonce_uneven_replicas_equal_one(strategy, sizes):
  rng = np.random.default_rng(4)
  b, n, m, d_in = 3, 2, 3, 5
  xz = rng.normal(size=(b, n, d_in)).astype(np.float32)
  xh = rng.normal(size=(b, m, d_in)).astype(np.float32)
  xsrc = rng.normal(size=(b, n, d_in)).astype(np.float32)
  zmask = np.ones((b, n), np.float32)
  hmask = np.ones((b, m), np.float32)
  w_init = rng.normal(size=(d_in, 6)).astype(np.float32)

  def loss_fn(w, xz, zmask, xh, hmask, xsrc):
    z = tf.einsum('bnd,de->bne', xz, w)
    h = tf.einsum('bmd,de->bme', xh, w)
    idx = contrastive.match_regions(xsrc, xh, hmask)
    return contrastive.region_infonce(z, zmask, h, hmask, idx, 0.2)

  single, single_grad, mirrored, mirrored_grad = _run_split(
      strategy, loss_fn, [xz, zmask, xh, hmask, xsrc], w_init, sizes)
  assert float(single['num_valid']) == float(n * sum(sizes))
  _assert_same(single, single_grad, mirrored, mirrored_grad)


def test_dense_infonce_uneven_replicas_equal_one(strategy):
  rng = np.random.default_rng(5)
  xa = rng.normal(size=(3, 2, 5)).astype(np.float32)
  xb = (xa[:, ::-1] + 0.5 * rng.normal(size=(3, 2, 5))).astype(np.float32)
  w_init = rng.normal(size=(5, 6)).astype(np.float32)

  def loss_fn(w, xa, xb):
    return contrastive.dense_infonce(tf.einsum('bpd,de->bpe', xa, w),
                                     tf.einsum('bpd,de->bpe', xb, w), 0.1)

  _assert_same(*_run_split(strategy, loss_fn, [xa, xb], w_init, (2, 1)))
