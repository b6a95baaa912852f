"""ConST-CL training driver (Model Garden `train_lib` + Orbit).

Usage:
  python train.py --experiment=const_cl_pretrain_toy --mode=train_and_eval \
      --model_dir=/tmp/const_cl_toy
  python train.py --experiment=const_cl_pretrain_kinetics400 \
      --config_file=configs/yaml/const_cl_pretrain_k400_200k.yaml \
      --params_override='task.train_data.input_path=gs://b/k400/train*' \
      --mode=train --model_dir=gs://b/runs/const_cl_200k

Flags are Model Garden's: --experiment, --config_file (strict: an unknown key
is an error), --params_override, --mode (train | eval | train_and_eval |
continuous_eval), --model_dir, --tpu. `--mode=eval` evaluates the latest
checkpoint in --model_dir once and is an error if there is none. A train
mode resuming a checkpoint under another config than MODEL_DIR/params.yaml
(beyond runtime.* and the trainer's steps and intervals) is an error.
`--mode=continuous_eval` warns when --model_dir does not exist (the training
job may still create it) and, while it waits for a checkpoint, logs every
5 minutes how long it has waited.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from official.common import distribute_utils
from official.common import flags as tfm_flags
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
from official.modeling.hyperparams import params_dict
import orbit

from tasks import features as features_lib
from tasks import registry_imports

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    'seed', None, 'Seeds Python, NumPy and TensorFlow; with --deterministic a '
    'restarted run reproduces an uninterrupted one.')
flags.DEFINE_bool(
    'deterministic', False, 'Enables TensorFlow op determinism (slower).')


class NonFiniteLossGuard:
  """Stops training at a non-finite loss, before any checkpoint of it.

  Orbit runs train actions before it saves a checkpoint, so raising here
  leaves the last good checkpoint as the newest one on disk.
  """

  def __init__(self, global_step: tf.Variable):
    self._global_step = global_step

  def __call__(self, output):
    first = output.get('first_nonfinite_step')
    loss = output.get('training_loss')
    step = int(self._global_step.numpy())
    if first is not None and float(first) >= 0:
      raise RuntimeError(
          f'Non-finite loss at training step {int(first)} (loop ending at '
          f'step {step}); stopping without writing a checkpoint for it.')
    if loss is not None and not np.isfinite(float(loss)):
      raise RuntimeError(
          f'Non-finite mean training loss ({float(loss)}) in the loop ending '
          f'at step {step}; stopping without writing a checkpoint for it.')


def check_eval_checkpoint(mode: str, model_dir: str) -> None:
  """`--mode=eval` needs a checkpoint in `model_dir`.

  Orbit would otherwise evaluate the freshly initialized model and report
  its metrics as those of the run. `continuous_eval` waits for checkpoints
  and the train modes start from scratch, so only `eval` is checked.
  """
  if mode == 'eval' and not tf.train.latest_checkpoint(model_dir):
    raise ValueError(
        f'--mode=eval: no checkpoint in --model_dir={model_dir!r}; it '
        'evaluates the latest checkpoint of a run (train first, point '
        '--model_dir at a trained run, or use --mode=continuous_eval to wait '
        'for one)')


def warn_missing_model_dir(mode: str, model_dir: str) -> bool:
  """Warns when `--mode=continuous_eval` starts on a missing `model_dir`.

  Not an error: the training job may create the folder later. But a
  mistyped path would otherwise wait for a checkpoint forever after one
  "Waiting for new checkpoint" line.

  Returns:
    Whether the warning was logged.
  """
  if mode != 'continuous_eval' or tf.io.gfile.isdir(model_dir):
    return False
  logging.warning(
      '--mode=continuous_eval: --model_dir=%r does not exist (yet); waiting '
      'for a training job to create it and write a checkpoint there',
      model_dir)
  return True


# How often a continuous evaluation waiting for a checkpoint says so.
WAIT_LOG_INTERVAL_S = 300.0


class CheckpointWaitLogger:
  """`timeout` / `timeout_fn` of `tf.train.checkpoints_iterator` that log.

  The iterator logs once when it starts waiting, then sleeps up to
  `timeout` (Model Garden: `trainer.continuous_eval_timeout`, 1 h) or
  forever. This waits in rounds of `poll_timeout` <= `interval` seconds
  instead, logging after each round how long it has waited, and applies
  the caller's `timeout` / `timeout_fn` as the iterator did:
    * after each evaluated checkpoint (the controller calls `evaluated`
      first), the iterator asks `timeout_fn` at once whether training is
      done (Model Garden's: the global step reached `train_steps`);
    * after as many rounds without a new checkpoint as make up `timeout`,
      it asks `timeout_fn`, or ends when there is none.
  Each round may end up to a second early (the iterator polls every
  second), so a timeout of N rounds may end up to N seconds early.

  Args:
    directory: The checkpoint folder (named in the messages).
    timeout: The caller's timeout in seconds, or None (wait forever).
    timeout_fn: The caller's timeout_fn, or None.
    interval: Longest time between two progress messages, seconds.
    clock: Seconds, for the waited time in the messages.
  """

  def __init__(self, directory, timeout=None, timeout_fn=None,
               interval=WAIT_LOG_INTERVAL_S, clock=time.monotonic):
    self._directory = directory
    self._timeout_fn = timeout_fn
    self._clock = clock
    if timeout is None:
      self._rounds = None
      self.poll_timeout = interval
    else:
      # Equal rounds that add up to the caller's timeout.
      self._rounds = max(1, math.ceil(timeout / interval))
      self.poll_timeout = timeout / self._rounds
    self._last = None  # The newest checkpoint evaluated.
    self._just_evaluated = False
    self._since = clock()  # When the current wait started.
    self._done_rounds = 0  # Rounds since then, toward the caller's timeout.

  def evaluated(self, checkpoint_path: str) -> None:
    """Called when the iterator has yielded `checkpoint_path`."""
    self._last = checkpoint_path
    self._just_evaluated = True

  def message(self, waited_s: float) -> str:
    """The progress line after `waited_s` seconds without a new checkpoint."""
    if self._last is None:
      what = 'a checkpoint'
    else:
      what = f'a checkpoint newer than {os.path.basename(self._last)}'
    text = f'still waiting for {what} in {self._directory}, {waited_s:.0f} s'
    if not tf.io.gfile.isdir(self._directory):
      text += ' (the folder does not exist)'
    return text

  def __call__(self) -> bool:
    """Called by the iterator after each evaluation and each empty round.

    Returns:
      True to end the iterator, else False (wait again).
    """
    now = self._clock()
    if self._just_evaluated:
      # As the iterator without this wrapper: ask the caller at once.
      self._just_evaluated = False
      self._since = now
      self._done_rounds = 0
      return bool(self._timeout_fn()) if self._timeout_fn else False
    self._done_rounds += 1
    if self._rounds is not None and self._done_rounds >= self._rounds:
      if self._timeout_fn is None or self._timeout_fn():
        return True
      self._done_rounds = 0  # The iterator's timeout starts again.
    logging.info(self.message(now - self._since))
    return False


class WaitLoggingController(orbit.Controller):
  """An Orbit controller whose continuous evaluation logs while it waits."""

  _waiter = None

  def evaluate_continuously(self, steps=-1, timeout=None, timeout_fn=None):
    self._waiter = CheckpointWaitLogger(
        self.checkpoint_manager.directory, timeout=timeout,
        timeout_fn=timeout_fn, interval=WAIT_LOG_INTERVAL_S)
    try:
      return super().evaluate_continuously(
          steps=steps, timeout=self._waiter.poll_timeout,
          timeout_fn=self._waiter)
    finally:
      self._waiter = None

  def restore_checkpoint(self, checkpoint_path=None):
    # evaluate_continuously restores each checkpoint the iterator yields.
    if self._waiter is not None and checkpoint_path:
      self._waiter.evaluated(checkpoint_path)
    return super().restore_checkpoint(checkpoint_path)


def _flatten(tree, prefix=''):
  if not isinstance(tree, dict):
    return {prefix[:-1]: tree}
  out = {}
  for key, value in tree.items():
    out.update(_flatten(value, f'{prefix}{key}.'))
  return out


def _may_change_on_resume(key: str) -> bool:
  """Hardware and loop bookkeeping; not the model, data, loss or optimizer."""
  return key.startswith('runtime.') or (
      key.startswith('trainer.') and
      not key.startswith('trainer.optimizer_config.'))


def _saved_config(path: str, experiment: str) -> dict:
  """A run's params.yaml as a dict, normalized as `validate()` does.

  A run started before the configs normalized their leaves saved e.g.
  `feature_endpoint: 4` or `toy_world_split: null` where `validate()` now
  stores '4' and ''; read through the experiment's config, such a file
  compares equal to the same command line today. A file that does not fit
  the experiment's config (another experiment) is compared as it is.
  """
  try:
    # The tools' assembly (registered experiment, the YAML, validate()),
    # which reads the file with Model Garden's own YAML reader.
    return features_lib.assemble_experiment_config(
        experiment, [path]).as_dict()
  except (KeyError, ValueError, TypeError, AttributeError):
    return params_dict.read_yaml_to_params_dict(path).as_dict()


def check_resume_config(params, model_dir: str, experiment: str) -> None:
  """A train mode resuming a checkpoint keeps the run's params.yaml config.

  train.py overwrites MODEL_DIR/params.yaml before Orbit restores the latest
  checkpoint: with another model that failed in a shape mismatch deep in
  TensorFlow after the record of the run was already replaced, and with
  another loss, data or optimizer it continued silently. `runtime.*` and
  the `trainer.*` keys outside `trainer.optimizer_config` (steps,
  intervals) may change.
  """
  path = os.path.join(model_dir, 'params.yaml')
  if not (tf.train.latest_checkpoint(model_dir) and tf.io.gfile.exists(path)):
    return
  old = _flatten(_saved_config(path, experiment))
  new = _flatten(params.as_dict())
  changed = [f'{k}: {old.get(k, "<absent>")!r} -> {new.get(k, "<absent>")!r}'
             for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k) and not _may_change_on_resume(k)]
  if changed:
    more = f' (and {len(changed) - 5} more)' if len(changed) > 5 else ''
    raise ValueError(
        f'--model_dir={model_dir!r} holds a checkpoint of a run with '
        f'another config; {path} differs in {"; ".join(changed[:5])}{more}. '
        'Use a new --model_dir, or remove that params.yaml to resume with '
        'the new config anyway')


def check_config_files(paths) -> None:
  """Every `--config_file` exists (else a NotFoundError from deep in gfile)."""
  for path in paths or ():
    if not tf.io.gfile.exists(path):
      raise ValueError(f'--config_file={path!r} does not exist')


def main(_):
  registry_imports.check_experiment(FLAGS.experiment)
  check_config_files(FLAGS.config_file)
  gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_params)
  if FLAGS.seed is not None:
    tf_keras.utils.set_random_seed(FLAGS.seed)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  params = train_utils.parse_configuration(FLAGS)
  model_dir = FLAGS.model_dir
  check_eval_checkpoint(FLAGS.mode, model_dir)
  warn_missing_model_dir(FLAGS.mode, model_dir)
  if 'train' in FLAGS.mode:
    check_resume_config(params, model_dir, FLAGS.experiment)
    # Eval-only jobs do not write params.yaml: a continuous evaluator would
    # race the trainer for the same file.
    train_utils.serialize_config(params, model_dir)
  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(
        params.runtime.mixed_precision_dtype)
  strategy = distribute_utils.get_distribution_strategy(
      distribution_strategy=params.runtime.distribution_strategy,
      all_reduce_alg=params.runtime.all_reduce_alg,
      num_gpus=params.runtime.num_gpus,
      tpu_address=params.runtime.tpu)
  with strategy.scope():
    task = task_factory.get_task(params.task, logging_dir=model_dir)
    trainer = train_utils.create_trainer(
        params, task, train='train' in FLAGS.mode,
        evaluate=('eval' in FLAGS.mode),
        checkpoint_exporter=train_utils.maybe_create_best_ckpt_exporter(
            params, model_dir))
  train_lib.run_experiment(
      distribution_strategy=strategy,
      task=task,
      mode=FLAGS.mode,
      params=params,
      model_dir=model_dir,
      trainer=trainer,
      train_actions=[NonFiniteLossGuard(trainer.global_step)],
      controller_cls=WaitLoggingController)
  train_utils.save_gin_config(FLAGS.mode, model_dir)


if __name__ == '__main__':
  tfm_flags.define_flags()
  flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
  app.run(main)
