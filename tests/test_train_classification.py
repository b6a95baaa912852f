"""2-step train + eval smoke of the toy classification experiments through
`train.py`, from a toy pretraining checkpoint.

The five toy experiments are three configs: the UCF101 and HMDB51 linear
evaluations are identical (the toy variant replaces everything
dataset-specific), and so are the two fine-tunings; the Kinetics-400 linear
evaluation differs from them only in its toy world (the pretraining world
'pairs', not the transfer world 'shapes'). Tests check that, and one of each
transfer config runs through `train.py` (in parallel: TensorFlow start-up
dominates)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.modeling import factory_3d

from dataloaders import toy_world
from modeling import const_cl_model  # pylint: disable=unused-import
from tasks import pretrain
from tasks import registry_imports  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(REPO)
# Smoked experiment -> the registered toy experiments with the same config.
SAME_CONFIG = {
    'const_cl_linear_eval_ucf101_toy': ('const_cl_linear_eval_hmdb51_toy',),
    'const_cl_finetune_hmdb51_toy': ('const_cl_finetune_ucf101_toy',),
}
TOY_EXPERIMENTS = tuple(SAME_CONFIG)
OVERRIDES = ','.join([
    'trainer.train_steps=2', 'trainer.steps_per_loop=1',
    'trainer.summary_interval=1', 'trainer.checkpoint_interval=2',
    'trainer.validation_interval=2', 'trainer.validation_steps=1',
    'task.train_data.global_batch_size=2',
    'task.validation_data.global_batch_size=1',
])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  # The toy worlds once, before the racing processes would each render them
  # (the pretraining config below reads no data).
  toy_world.ensure_named_dataset('shapes')
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  data = config.task.train_data
  model = factory_3d.build_model(
      'const_cl', tf_keras.layers.InputSpec(
          shape=[None] + list(data.feature_shape)),
      config.task.model, num_classes=0)
  model(pretrain.ConstCLPretrainTask.dummy_inputs(data, 2), training=False)
  pretrain_dir = tmp_path_factory.mktemp('pretrain')
  tf.train.Checkpoint(
      global_step=tf.Variable(2, dtype=tf.int64), model=model,
      optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
      **model.checkpoint_items).save(str(pretrain_dir / 'ckpt'))
  procs = {}
  for name in TOY_EXPERIMENTS:
    model_dir = tmp_path_factory.mktemp(name)
    cmd = [sys.executable, os.path.join(REPO, 'train.py'),
           f'--experiment={name}', '--mode=train_and_eval',
           f'--model_dir={model_dir}',
           f'--params_override={OVERRIDES},'
           f'task.init_checkpoint={pretrain_dir}']
    procs[name] = (model_dir, subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True))
  out = {}
  for name, (model_dir, proc) in procs.items():
    log, _ = proc.communicate(timeout=900)
    out[name] = (model_dir, proc.returncode, log)
  return out


def test_the_toy_experiments_are_two_configs():
  for smoked, same in SAME_CONFIG.items():
    reference = exp_factory.get_exp_config(smoked).as_dict()
    for name in same:
      assert exp_factory.get_exp_config(name).as_dict() == reference, name


def test_kinetics_linear_eval_differs_only_in_its_world():
  k400 = exp_factory.get_exp_config(
      'const_cl_linear_eval_kinetics400_toy').as_dict()
  ucf = exp_factory.get_exp_config('const_cl_linear_eval_ucf101_toy').as_dict()
  diff = {}
  for split in ('train_data', 'validation_data'):
    for key in k400['task'][split]:
      if k400['task'][split][key] != ucf['task'][split][key]:
        diff[f'{split}.{key}'] = (k400['task'][split][key],
                                  ucf['task'][split][key])
  assert diff == {
      'train_data.toy_world': ('pairs', 'shapes'),
      'train_data.num_classes': (10, 5),
      'validation_data.toy_world': ('pairs', 'shapes'),
      'validation_data.num_classes': (10, 5),
      'validation_data.num_examples': (100, 300),
  }
  k400['task'].pop('train_data'), ucf['task'].pop('train_data')
  k400['task'].pop('validation_data'), ucf['task'].pop('validation_data')
  assert k400 == ucf


@pytest.mark.parametrize('name', TOY_EXPERIMENTS)
def test_toy_experiment_trains_and_evaluates(runs, name):
  model_dir, returncode, log = runs[name]
  assert returncode == 0, log[-3000:]
  assert (model_dir / 'params.yaml').exists()
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-2')
  assert 'Loaded y backbone (res5g' in log
  # The eval output of step 2 holds the four metrics, each in [0, 1].
  eval_part = log[log.rindex('eval | step:      2'):]
  for metric in ('clip_top_1_accuracy', 'clip_top_5_accuracy',
                 'video_top_1_accuracy', 'video_top_5_accuracy'):
    start = eval_part.index(f"'{metric}': np.float32(") + len(metric) + 15
    value = float(eval_part[start:eval_part.index(')', start)])
    assert 0.0 <= value <= 1.0
  # Validation summaries were written for TensorBoard too.
  assert tf.io.gfile.glob(str(model_dir / 'validation' / 'events.*'))


def test_linear_eval_checkpoint_keeps_the_pretrained_backbone(runs):
  """The classifier trained; the frozen backbone is still the pretrained."""
  model_dir, _, _ = runs['const_cl_linear_eval_ucf101_toy']
  ckpt = tf.train.latest_checkpoint(str(model_dir))
  names = [n for n, _ in tf.train.list_variables(ckpt)
           if n.startswith('model/') and 'OPTIMIZER_SLOT' not in n]
  assert any('_classifier/kernel' in n for n in names)
  slots = [n for n, _ in tf.train.list_variables(ckpt)
           if 'OPTIMIZER_SLOT' in n]
  # Momentum slots exist for the classifier only (kernel and bias).
  assert len(slots) == 2 and all('_classifier' in n for n in slots)
  assert np.isfinite(tf.train.load_variable(
      ckpt, [n for n in names if '_classifier/kernel' in n][0])).all()
