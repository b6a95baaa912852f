"""The whole pretraining train step is the same on 2 replicas as on 1.

MirroredStrategy over the two logical CPU devices of tests/conftest.py runs
`ConstCLPretrainTask.train_step` (model forward, global + local losses, L2,
loss / num_replicas, cross-replica gradient sum, optimizer update) on a fixed
global batch split by video; the default strategy runs it on the whole batch.
The model has `use_sync_bn=True` throughout.

Batch norm is checked in two modes:
  * Inference-mode BN (fixed statistics; the task's train step run on a
    wrapper that calls the model with training=False): nothing couples the
    examples except the losses, so loss AND gradients must agree to 1e-5.
    This is the strict check of the loss-side distribution logic.
  * Training-mode sync BN (the real train step): BN all-reduces the moments,
    so it normalizes with the global batch as one replica does. Without sync
    BN each replica would use the statistics of its own 4 clips and the
    results would differ. BN moving statistics agree to 1e-5, the loss to
    1e-4 relative and the whole gradient vector to 3e-2 relative (L2; 1.3e-2
    was measured with the 8-wide tiny stem): that is the float32 floor of
    training-mode BN on these noise inputs (some
    channels have a tiny batch deviation that BN divides by, and the
    backward pass subtracts batch means of the upstream gradient, cancelling
    digits); merely permuting the videos inside ONE replica moves the loss
    by ~5e-6 relative, the stem gradient by ~4e-3 of its maximum and some
    res5 gradients by several percent.

The gradient is read from the update: SGD with learning rate 1 and a zero
momentum buffer moves every trainable variable by exactly -gradient on its
first step, so `before - after` is the gradient the optimizer applied (after
the cross-replica sum).
"""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

import tf_keras

import train as train_script  # pylint: disable=g-bad-import-order

_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'multiworker_worker.py')
_spec = importlib.util.spec_from_file_location('multiworker_worker', _HELPER)
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)

GLOBAL_BATCH = 4  # videos: 2 per replica


def _setup(strategy, config, init=None):
  with strategy.scope():
    task, model, optimizer = mw.build(config)
    metrics = task.build_metrics(training=True)
    frozen_bn = mw.InferenceModeBN(model)
  if init is not None:
    mw.set_variables(model, init)

  def make_step(step_model):
    @tf.function
    def step(inputs):
      out = strategy.run(
          lambda x: task.train_step(x, step_model, optimizer,
                                    metrics=metrics),
          args=(inputs,))
      return strategy.experimental_local_results(out[task.loss])
    return step

  return dict(strategy=strategy, task=task, model=model, optimizer=optimizer,
              metrics=metrics, step=make_step(model),
              step_inference_bn=make_step(frozen_bn))


def _reset(setup, init):
  """Weights back to `init`, optimizer slots and metrics to zero."""
  mw.set_variables(setup['model'], init)
  optimizer = setup['optimizer']
  variables = optimizer.variables
  # Legacy Keras optimizers (Model Garden's SGD) expose a method.
  for v in (variables() if callable(variables) else variables):
    v.assign(tf.zeros_like(v))
  for m in setup['metrics']:
    m.reset_state()


def _distribute(setup, global_batch):
  strategy = setup['strategy']
  n = strategy.num_replicas_in_sync
  return strategy.experimental_distribute_values_from_function(
      lambda ctx: mw.replica_batch(global_batch, ctx.replica_id_in_sync_group,
                                   n))


@pytest.fixture(scope='module')
def setups(mirrored_strategy):
  tf_keras.utils.set_random_seed(0)
  config = mw.tiny_config(use_sync_bn=True, global_batch=GLOBAL_BATCH,
                          learning_rate=1.0)
  single = _setup(tf.distribute.get_strategy(), config)
  init = mw.variables_by_name(single['model'])
  # The session's strategy (tests/conftest.py): a second one in the same
  # process would clash with its collective keys.
  mirrored = _setup(mirrored_strategy, config, init)
  assert mirrored['strategy'].num_replicas_in_sync == 2
  return dict(config=config, single=single, mirrored=mirrored, init=init)


def _one_step_each(setups, batch, step_name, loss_rtol):
  results = {}
  init = setups['init']
  for name in ('single', 'mirrored'):
    setup = setups[name]
    _reset(setup, init)
    losses = setup[step_name](_distribute(setup, batch))
    after = dict(zip(init, mw.variables_by_name(setup['model']).values()))
    results[name] = dict(losses=[float(x) for x in losses], after=after)
  single, mirrored = results['single'], results['mirrored']
  assert len(single['losses']) == 1 and len(mirrored['losses']) == 2
  # Each replica's loss is its share; their mean is the global-batch loss.
  np.testing.assert_allclose(np.mean(mirrored['losses']), single['losses'][0],
                             rtol=loss_rtol)
  # The replicas really held different examples.
  assert abs(mirrored['losses'][0] - mirrored['losses'][1]) > 1e-3
  return single, mirrored


def _gradients(init, after, trainable):
  return {k: init[k] - after[k] for k in trainable}


def test_two_replicas_equal_one_with_inference_mode_bn(setups):
  config, init = setups['config'], setups['init']
  batch = mw.synthetic_global_batch(config.task.train_data, GLOBAL_BATCH,
                                    seed=7)
  single, mirrored = _one_step_each(setups, batch, 'step_inference_bn',
                                     loss_rtol=1e-5)
  trainable = mw.trainable_keys(setups['single']['model'])
  grads_s = _gradients(init, single['after'], trainable)
  grads_m = _gradients(init, mirrored['after'], trainable)
  assert len(trainable) > 50
  for key in trainable:
    np.testing.assert_allclose(grads_m[key], grads_s[key], rtol=0, atol=1e-5,
                               err_msg=key)
  # The step did something: the gradient is not all zeros.
  assert sum(float(np.abs(g).sum()) for g in grads_s.values()) > 1e-2
  # Inference mode: the BN moving statistics did not move.
  for key in set(init) - trainable:
    np.testing.assert_array_equal(mirrored['after'][key], init[key])


def test_two_replicas_equal_one_with_training_mode_sync_bn(setups):
  config, init = setups['config'], setups['init']
  batch = mw.synthetic_global_batch(config.task.train_data, GLOBAL_BATCH,
                                    seed=7)
  single, mirrored = _one_step_each(setups, batch, 'step', loss_rtol=1e-4)
  trainable = mw.trainable_keys(setups['single']['model'])
  grads_s = _gradients(init, single['after'], trainable)
  grads_m = _gradients(init, mirrored['after'], trainable)
  # Relative error of the whole gradient vector (see the module docstring
  # for why training-mode BN is not held to 1e-5 per element).
  diff = np.sqrt(sum(float(np.sum((grads_m[k] - grads_s[k])**2))
                     for k in trainable))
  norm = np.sqrt(sum(float(np.sum(grads_s[k]**2)) for k in trainable))
  assert norm > 1e-2
  assert diff / norm < 3e-2, (diff, norm)
  # BN moving mean / variance: sync BN gives the global-batch moments.
  moved = 0
  for key in set(init) - trainable:
    np.testing.assert_allclose(mirrored['after'][key], single['after'][key],
                               rtol=0, atol=1e-5, err_msg=key)
    moved += int(not np.array_equal(single['after'][key], init[key]))
  assert moved > 10
  # Per-loss diagnostics are averaged over replicas into the global value
  # (to the same 1e-4 as the training-mode loss).
  for metric_s, metric_m in zip(setups['single']['metrics'],
                                setups['mirrored']['metrics']):
    np.testing.assert_allclose(float(metric_m.result()),
                               float(metric_s.result()), rtol=1e-4,
                               atol=1e-6, err_msg=metric_s.name)


def test_nonfinite_loss_on_one_replica_stops_training_under_mirrored(setups):
  config, init = setups['config'], setups['init']
  setup = setups['mirrored']
  _reset(setup, init)
  good = mw.synthetic_global_batch(config.task.train_data, GLOBAL_BATCH,
                                   seed=3)
  bad = {k: v.copy() for k, v in good.items()}
  # A NaN pixel in the LAST video: only replica 1 receives it.
  bad['image'][-1, 0, 0, 0, 0, 0] = np.nan
  global_step = setup['optimizer'].iterations
  guard = train_script.NonFiniteLossGuard(global_step)
  first = [m for m in setup['metrics'] if m.name == 'first_nonfinite_step'][0]

  losses = setup['step'](_distribute(setup, good))
  assert all(np.isfinite(float(x)) for x in losses)
  assert float(first.result()) == -1.0
  guard({'first_nonfinite_step': first.result(),
         'training_loss': np.mean([float(x) for x in losses])})

  setup['step'](_distribute(setup, bad))
  assert int(global_step.numpy()) == 2
  assert float(first.result()) == 2.0
  with pytest.raises(RuntimeError, match='Non-finite loss at training step 2'):
    guard({'first_nonfinite_step': first.result(), 'training_loss': 0.0})
