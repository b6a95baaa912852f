"""train.py end to end on the toy world, and its failure modes."""
import glob
import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

import train as train_script  # pylint: disable=g-bad-import-order
from official.core import exp_factory
from official.modeling.hyperparams import params_dict
from tasks import features as features_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ('trainer.train_steps=2,trainer.steps_per_loop=1,'
        'trainer.summary_interval=1,trainer.checkpoint_interval=2,'
        'trainer.validation_interval=2,trainer.validation_steps=1,'
        'task.train_data.global_batch_size=4,'
        'task.validation_data.global_batch_size=4')


def run_train(model_dir, *extra, overrides=TINY, mode='train_and_eval',
              experiment='const_cl_pretrain_toy', timeout=600):
  cmd = [sys.executable, os.path.join(REPO, 'train.py'),
         f'--experiment={experiment}', f'--mode={mode}',
         f'--model_dir={model_dir}']
  if overrides:
    cmd.append(f'--params_override={overrides}')
  cmd.extend(extra)
  return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                        cwd=REPO)


def test_two_step_train_and_eval_on_the_toy_world(tmp_path):
  model_dir = str(tmp_path / 'run')
  proc = run_train(model_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(model_dir, 'params.yaml')) as f:
    params = yaml.load(f, Loader=yaml.FullLoader)  # tuples are tagged
  assert params['trainer']['train_steps'] == 2
  assert params['task']['train_data']['global_batch_size'] == 4
  assert os.path.exists(os.path.join(model_dir, 'ckpt-2.index'))
  assert glob.glob(os.path.join(model_dir, 'train', 'events.out.tfevents.*'))
  assert glob.glob(os.path.join(model_dir, 'validation',
                                'events.out.tfevents.*'))
  log = proc.stderr
  # Both losses and their diagnostics were computed in training and eval.
  for key in ('global_loss', 'local_loss', 'global_contrastive_accuracy',
              'local_contrastive_accuracy', 'validation_loss'):
    assert f"'{key}'" in log, key
  assert "'first_nonfinite_step': np.float32(-1.0)" in log


def test_missing_input_path_fails_before_the_model_is_built(tmp_path):
  proc = run_train(
      str(tmp_path / 'run'), mode='train',
      overrides=TINY + ',task.train_data.toy_world_split=,'
      'task.train_data.input_path=/nonexistent/k400/train-*.tfrecord')
  assert proc.returncode != 0
  assert ("task.train_data.input_path='/nonexistent/k400/train-*.tfrecord' "
          'matches no file') in proc.stderr
  # The error came before the trainer built the model.
  assert 'Number of trainable params' not in proc.stderr
  assert 'build_model' not in proc.stderr.split('matches no file')[0][-2000:]


def test_empty_input_path_names_the_field(tmp_path):
  proc = run_train(str(tmp_path / 'run'), mode='train',
                   overrides=TINY + ',task.train_data.toy_world_split=')
  assert proc.returncode != 0
  assert 'task.train_data.input_path is empty' in proc.stderr


def test_unknown_override_key_is_an_error(tmp_path):
  proc = run_train(str(tmp_path / 'run'), mode='train',
                   overrides=TINY + ',task.losses.local_wieght=0.5')
  assert proc.returncode != 0
  assert 'local_wieght' in proc.stderr


def test_nonfinite_loss_stops_with_the_step_and_writes_no_checkpoint(
    tmp_path):
  # A learning rate of 1e30 blows the weights up within a few steps.
  model_dir = str(tmp_path / 'run')
  proc = run_train(
      model_dir, mode='train',
      overrides=TINY.replace('trainer.train_steps=2', 'trainer.train_steps=6')
      .replace('trainer.checkpoint_interval=2', 'trainer.checkpoint_interval=1')
      + ',trainer.optimizer_config.learning_rate.cosine.initial_learning_rate'
      '=1e30,trainer.optimizer_config.warmup.linear.warmup_steps=0')
  assert proc.returncode != 0
  assert 'Non-finite loss at training step' in proc.stderr
  step = int(proc.stderr.split('Non-finite loss at training step ')[1]
             .split(' ')[0])
  assert 1 <= step <= 6
  ckpts = sorted(int(p.split('ckpt-')[1].split('.')[0]) for p in
                 glob.glob(os.path.join(model_dir, 'ckpt-*.index')))
  # Checkpoints exist only for steps before the bad one.
  assert all(c < step for c in ckpts), (ckpts, step)


def test_fractional_train_steps_is_an_error_not_an_endless_loop(tmp_path):
  # It used to print `train | step: 1` forever (2 > 1.5 is never reached).
  proc = run_train(str(tmp_path / 'run'), mode='train',
                   overrides=TINY.replace('train_steps=2', 'train_steps=1.5'),
                   timeout=120)
  assert proc.returncode == 1
  assert ('trainer.train_steps must be int, got 1.5 (float)'
          in proc.stderr)
  # The error came before the trainer built the model.
  assert 'Number of trainable params' not in proc.stderr


def test_eval_without_a_checkpoint_is_an_error_naming_the_model_dir(
    tmp_path):
  # It used to evaluate the random initialization and exit 0.
  model_dir = str(tmp_path / 'run')
  proc = run_train(model_dir, mode='eval', experiment='const_cl_ava_toy',
                   overrides='trainer.validation_steps=1', timeout=120)
  assert proc.returncode == 1
  assert (f"--mode=eval: no checkpoint in --model_dir='{model_dir}'"
          in proc.stderr)
  assert not os.path.exists(os.path.join(model_dir, 'ava_eval_results.json'))
  assert 'Number of trainable params' not in proc.stderr


def test_missing_config_file_is_named(tmp_path):
  missing = str(tmp_path / 'nothere.yaml')
  proc = run_train(str(tmp_path / 'run'), f'--config_file={missing}',
                   timeout=120)
  assert proc.returncode == 1
  assert f"ValueError: --config_file='{missing}' does not exist" in (
      proc.stderr)
  assert 'NotFoundError' not in proc.stderr


def test_unknown_experiment_is_named_with_close_names(tmp_path):
  # Model Garden's registry raised a LookupError ("collection path ... is
  # never registered") from deep in exp_factory.
  proc = run_train(str(tmp_path / 'run'), experiment='const_cl_ava_tyo',
                   timeout=120)
  assert proc.returncode == 1
  assert ("ValueError: unknown experiment 'const_cl_ava_tyo' (" in
          proc.stderr)
  assert 'did you mean const_cl_ava_toy, ' in proc.stderr
  assert 'LookupError' not in proc.stderr


def test_resume_with_another_config_is_refused_params_yaml_kept(tmp_path):
  """Resuming with another model overwrote params.yaml, then failed in a
  shape mismatch deep in TensorFlow; another loss continued silently."""
  model_dir = str(tmp_path / 'run')
  proc = run_train(model_dir, mode='train')
  assert proc.returncode == 0, proc.stderr[-3000:]
  params_yaml = os.path.join(model_dir, 'params.yaml')
  with open(params_yaml) as f:
    before = f.read()
  proc = run_train(
      model_dir, mode='train', timeout=120, overrides=TINY + (
          ',task.model.backbone.resnet_3d_y.stem_filters=32'
          ',task.losses.global_temperature=0.2'))
  assert proc.returncode == 1
  assert proc.stderr.rstrip().endswith(
      f"ValueError: --model_dir='{model_dir}' holds a checkpoint of a run "
      f'with another config; {params_yaml} differs in '
      'task.losses.global_temperature: 0.1 -> 0.2; '
      'task.model.backbone.resnet_3d_y.stem_filters: 0 -> 32. Use a new '
      '--model_dir, or remove that params.yaml to resume with the new '
      'config anyway')
  with open(params_yaml) as f:
    assert f.read() == before
  # More steps (trainer keys outside the optimizer) resume as before.
  proc = run_train(model_dir, mode='train',
                   overrides=TINY.replace('train_steps=2', 'train_steps=3'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.exists(os.path.join(model_dir, 'ckpt-3.index'))


def test_resume_reads_an_older_params_yaml_as_validate_would(tmp_path):
  """A run started before the configs normalized their leaves saved
  `freeze_until: 2` and `toy_world_split: null`; the same command line now
  validates to '2' and '': it resumes. A real difference is still named."""
  overrides = 'task.model.freeze_until=2,task.validation_data.toy_world_split='
  params = features_lib.assemble_experiment_config(
      'const_cl_pretrain_toy', params_override=overrides)
  assert params.task.model.freeze_until == '2'
  assert params.task.validation_data.toy_world_split == ''
  def save_unvalidated(freeze_until):
    # What train.py wrote then: the overridden config, leaves as parsed.
    saved = exp_factory.get_exp_config('const_cl_pretrain_toy')
    saved.override({'task': {'model': {'freeze_until': freeze_until},
                             'validation_data': {'toy_world_split': None}}})
    params_dict.save_params_dict_to_yaml(saved, str(tmp_path / 'params.yaml'))

  save_unvalidated(2)
  assert 'freeze_until: 2\n' in (tmp_path / 'params.yaml').read_text()
  tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / 'ckpt'))
  train_script.check_resume_config(params, str(tmp_path),
                                   'const_cl_pretrain_toy')  # no error
  save_unvalidated(3)
  with pytest.raises(ValueError, match=(
      r"differs in task\.model\.freeze_until: '3' -> '2'\. ")):
    train_script.check_resume_config(params, str(tmp_path),
                                     'const_cl_pretrain_toy')


def test_eval_after_training_evaluates_the_checkpoint(tmp_path):
  model_dir = str(tmp_path / 'run')
  proc = run_train(model_dir, mode='train')
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_train(model_dir, mode='eval')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "'validation_loss'" in proc.stderr


def test_continuous_eval_on_a_missing_model_dir_warns_naming_it(tmp_path,
                                                                caplog):
  missing = str(tmp_path / 'not_yet')
  with caplog.at_level(logging.WARNING):
    assert train_script.warn_missing_model_dir('continuous_eval', missing)
  assert [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING] == [
              f"--mode=continuous_eval: --model_dir='{missing}' does not "
              'exist (yet); waiting for a training job to create it and '
              'write a checkpoint there']
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    # An existing folder, or another mode (which creates it): no warning.
    assert not train_script.warn_missing_model_dir('continuous_eval',
                                                   str(tmp_path))
    assert not train_script.warn_missing_model_dir('train', missing)
  assert not caplog.records


class _FakeClock:

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_checkpoint_wait_logger_logs_progress_and_keeps_the_timeout(
    tmp_path, caplog):
  """The iterator's calls simulated: no real waiting."""
  missing = str(tmp_path / 'run')
  clock, calls = _FakeClock(), []

  def timeout_fn():
    calls.append(clock.now)
    return len(calls) == 3  # Training ends at the third question.

  waiter = train_script.CheckpointWaitLogger(
      missing, timeout=3600, timeout_fn=timeout_fn, interval=300,
      clock=clock)
  assert waiter.poll_timeout == 300

  def rounds(n):
    results = []
    for _ in range(n):
      clock.now += waiter.poll_timeout
      results.append(waiter())
    return results

  with caplog.at_level(logging.INFO):
    assert rounds(12) == [False] * 12
  messages = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('still waiting')]
  assert messages[0] == (f'still waiting for a checkpoint in {missing}, '
                         '300 s (the folder does not exist)')
  assert messages[-1].startswith(
      f'still waiting for a checkpoint in {missing}, 3600 s')
  assert len(messages) == 12
  # The caller's timeout_fn ran once, after its 3600 s, as before.
  assert calls == [1000.0 + 3600]
  # A checkpoint came and was evaluated: as the iterator does after every
  # evaluation, the caller is asked at once (training not done yet), and
  # the wait starts again from there, logging nothing for the evaluation.
  os.makedirs(missing)
  clock.now += 10
  waiter.evaluated(os.path.join(missing, 'ckpt-2'))
  caplog.clear()
  with caplog.at_level(logging.INFO):
    assert not waiter()
  assert calls[1] == calls[0] + 10 and not caplog.records
  with caplog.at_level(logging.INFO):
    assert rounds(11) == [False] * 11
  assert caplog.records[0].getMessage() == (
      f'still waiting for a checkpoint newer than ckpt-2 in {missing}, 300 s')
  assert len(calls) == 2
  # 3600 s after that evaluation, timeout_fn says training ended.
  assert rounds(1) == [True]
  assert calls[2] == calls[1] + 12 * 300

  # Without a timeout_fn, an evaluation never ends the iterator (it did not
  # ask); an uneven timeout gives equal rounds that add up to it, and the
  # iterator ends at the timeout, as tf.train.checkpoints_iterator does.
  waiter = train_script.CheckpointWaitLogger(
      missing, timeout=1000, interval=300, clock=clock)
  assert waiter.poll_timeout == 250
  waiter.evaluated(os.path.join(missing, 'ckpt-3'))
  assert not waiter()
  assert rounds(4) == [False] * 3 + [True]
  # No timeout: it waits (and logs) forever.
  waiter = train_script.CheckpointWaitLogger(missing, interval=300,
                                             clock=clock)
  assert waiter.poll_timeout == 300
  assert rounds(50) == [False] * 50


def test_checkpoint_wait_logger_in_tf_checkpoints_iterator(tmp_path, caplog):
  """With the real iterator: rounds shorter than its 1 s sleep end at once."""
  missing = str(tmp_path / 'run')
  waiter = train_script.CheckpointWaitLogger(
      missing, timeout=0.8, timeout_fn=lambda: True, interval=0.2)
  with caplog.at_level(logging.INFO):
    assert not list(tf.train.checkpoints_iterator(
        missing, timeout=waiter.poll_timeout, timeout_fn=waiter))
  messages = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('still waiting')]
  assert len(messages) == 3
  assert all(m.startswith(f'still waiting for a checkpoint in {missing}, ')
             and m.endswith(' s (the folder does not exist)')
             for m in messages)


def test_iterator_ends_right_after_the_last_checkpoint(tmp_path):
  """timeout_fn is asked after each evaluated checkpoint; when it says
  training is done the iterator ends then, not a timeout later."""
  path = tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / 'ckpt'))
  asked = []
  waiter = train_script.CheckpointWaitLogger(
      str(tmp_path), timeout=3600, timeout_fn=lambda: asked.append(1) or True,
      interval=300)
  seen = []
  for checkpoint in tf.train.checkpoints_iterator(
      str(tmp_path), timeout=waiter.poll_timeout, timeout_fn=waiter):
    waiter.evaluated(checkpoint)  # What WaitLoggingController does.
    seen.append(checkpoint)
  assert seen == [path] and asked == [1]


def test_continuous_eval_ends_after_evaluating_the_last_checkpoint(tmp_path):
  """With the default 1 h continuous_eval_timeout: the evaluator ends once
  it has evaluated the checkpoint of the last training step."""
  model_dir = str(tmp_path / 'run')
  proc = run_train(model_dir, mode='train')
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_train(model_dir, mode='continuous_eval', timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "'validation_loss'" in proc.stderr
  assert 'No new checkpoints will be generated' in proc.stderr
  assert 'still waiting' not in proc.stderr


def test_continuous_eval_warns_and_ends_at_its_timeout(tmp_path):
  """train.py wires both in: a missing --model_dir is named, and the
  evaluator still ends at trainer.continuous_eval_timeout once the
  training steps are reached (0 here: no checkpoint is needed)."""
  model_dir = str(tmp_path / 'run')
  proc = run_train(
      model_dir, mode='continuous_eval', experiment='const_cl_ava_toy',
      overrides=('trainer.validation_steps=1,trainer.train_steps=0,'
                 'trainer.continuous_eval_timeout=2'), timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (f"--mode=continuous_eval: --model_dir='{model_dir}' does not exist "
          '(yet)') in proc.stderr
  assert 'No new checkpoints will be generated' in proc.stderr
