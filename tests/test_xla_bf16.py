"""The pretraining train step under XLA and under bfloat16 (toy config).

XLA: the whole `ConstCLPretrainTask.train_step` (forward, both losses,
gradients, SGD update, metrics) compiles with `jit_compile=True` and gives
the loss (1e-4) and, to float32 precision of training-mode BN, the update
of the uncompiled step. The `random` and
`nearest` region-frame strategies compile too (`tf.random.uniform` has an
XLA kernel; the draw is stateful, so it is checked for range, not value).

bfloat16: with the `bfloat16` policy set before the model is built (as
train.py does for `runtime.mixed_precision_dtype: bfloat16`) the model
computes in bfloat16, keeps float32 variables, and the losses (computed in
float32) stay finite and near the float32 ones.
"""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.modeling import performance

from modeling.layers import region_frames

_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'multiworker_worker.py')
_spec = importlib.util.spec_from_file_location('multiworker_worker', _HELPER)
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)

BATCH = 2  # videos


def _batch(config, seed):
  return mw.replica_batch(
      mw.synthetic_global_batch(config.task.train_data, BATCH, seed), 0, 1)


def _reset(model, optimizer, init):
  mw.set_variables(model, init)
  variables = optimizer.variables
  for v in (variables() if callable(variables) else variables):
    v.assign(tf.zeros_like(v))


@pytest.fixture(scope='module')
def float32_setup():
  config = mw.tiny_config(use_sync_bn=False, global_batch=BATCH)
  task, model, optimizer = mw.build(config)
  return dict(config=config, task=task, model=model, optimizer=optimizer,
              init=mw.variables_by_name(model))


def test_train_step_compiles_with_xla_and_matches_the_plain_step(
    float32_setup):
  s = float32_setup
  task, model, optimizer = s['task'], s['model'], s['optimizer']
  metrics = task.build_metrics(training=True)
  inputs = _batch(s['config'], seed=11)
  results = {}
  for jit in (False, True):
    _reset(model, optimizer, s['init'])
    step = tf.function(
        lambda x: task.train_step(x, model, optimizer, metrics=metrics),
        jit_compile=jit)
    loss = float(step(inputs)[task.loss])
    results[jit] = (loss, mw.variables_by_name(model))
  loss_plain, after_plain = results[False]
  loss_xla, after_xla = results[True]
  assert np.isfinite(loss_plain)
  np.testing.assert_allclose(loss_xla, loss_plain, rtol=1e-4)
  # The update (lr x gradient) agrees to 5% of each variable's largest
  # update: XLA reorders the float32 reductions of training-mode BN, whose
  # backward pass cancels digits (see tests/test_distributed.py: permuting
  # the videos of one batch already moves the stem gradient by ~0.4%).
  moved = 0
  for key, before in s['init'].items():
    update_plain = after_plain[key] - before
    update_xla = after_xla[key] - before
    scale = float(np.abs(update_plain).max())
    np.testing.assert_allclose(update_xla, update_plain, rtol=0,
                               atol=1e-6 + 0.05 * scale, err_msg=key)
    moved += int(scale > 0)
  assert moved > 50  # the update was applied by both


@pytest.mark.parametrize('strategy', ['random', 'nearest'])
def test_region_frame_strategies_compile_with_xla(strategy):
  rng = np.random.default_rng(0)
  # Feature-frame source indices of 16 videos, 4 feature frames each.
  starts = rng.integers(0, 20, [2, 16, 1])
  frames = tf.constant(starts + 4 * np.arange(4)[None, None], tf.int32)
  fn = tf.function(
      lambda a, b: region_frames.select_region_frames(a, b, strategy, True),
      jit_compile=True)
  t_a, t_b = [x.numpy() for x in fn(frames[0], frames[1])]
  assert t_a.shape == t_b.shape == (16,)
  assert t_a.min() >= 0 and t_b.min() >= 0
  assert t_a.max() <= 3 and t_b.max() <= 3
  if strategy == 'nearest':
    plain = region_frames.select_region_frames(frames[0], frames[1], strategy,
                                               True)
    np.testing.assert_array_equal(t_a, plain[0].numpy())
    np.testing.assert_array_equal(t_b, plain[1].numpy())
  else:
    # Independent draws: not all 16 videos get one frame.
    assert len(set(t_a.tolist())) > 1


def test_bfloat16_steps_are_finite_and_close_to_float32(float32_setup):
  s = float32_setup
  inputs = [_batch(s['config'], seed=20 + i) for i in range(3)]
  # The float32 reference loss of the first step from the same weights.
  _reset(s['model'], s['optimizer'], s['init'])
  loss_f32 = float(tf.function(
      lambda x: s['task'].train_step(x, s['model'], s['optimizer']))(
          inputs[0])[s['task'].loss])

  config = mw.tiny_config(use_sync_bn=False, global_batch=BATCH)
  config.runtime.mixed_precision_dtype = 'bfloat16'
  performance.set_mixed_precision_policy('bfloat16')
  try:
    task, model, optimizer = mw.build(config)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  mw.set_variables(model, s['init'])
  assert all(v.dtype == tf.float32 for v in model.weights)
  raw = model(inputs[0], training=False)
  assert raw['global_embeddings'].dtype == tf.bfloat16
  assert not isinstance(optimizer,
                        tf_keras.mixed_precision.LossScaleOptimizer)
  step = tf.function(lambda x: task.train_step(x, model, optimizer))
  losses = []
  for x in inputs:
    out = step(x)[task.loss]
    assert out.dtype == tf.float32
    losses.append(float(out))
  assert all(np.isfinite(losses)), losses
  # bfloat16 keeps 8 bits of mantissa, and training-mode BN divides by the
  # tiny batch deviation of some channels on these noise inputs, which
  # amplifies rounding: measured ~8% from the float32 loss.
  np.testing.assert_allclose(losses[0], loss_f32, rtol=0.2)
  assert all(np.isfinite(v.numpy()).all() for v in model.weights)
