"""Runs a few ConST-CL train steps on fixed synthetic batches (test helper).

Used by tests/test_multiworker.py (as a subprocess, one per worker) and, as a
module, by tests/test_distributed.py for the shared synthetic inputs.

Usage (one process per worker; TF_CONFIG names the cluster and this worker):
  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:PORT0", "127.0.0.1:PORT1"]},
              "task": {"type": "worker", "index": 0}}' \
  python tests/multiworker_worker.py --strategy=multi_worker_mirrored \
      --init_weights=/tmp/init.npz --output=/tmp/worker0.npz

With `--strategy=off` the same steps run in one process on the whole global
batch (the reference). Each step's global batch is `synthetic_global_batch`
(seeded by the step); replica r of R trains on videos r*B/R..(r+1)*B/R of
both views, stacked view a first (`replica_batch`), exactly what the real
input pipeline gives a replica.
"""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import tensorflow as tf
import tf_keras

GLOBAL_BATCH = 4  # videos
NUM_STEPS = 3
LEARNING_RATE = 0.05


def tiny_config(use_sync_bn: bool = True, global_batch: int = GLOBAL_BATCH,
                region_frame: str = 'center',
                learning_rate: float = LEARNING_RATE):
  """The toy experiment with no data source (inputs are fed directly).

  Constant learning rate, no warm-up: a warm-up starting at 0 would make the
  first update a no-op and hide gradient errors.
  """
  from official.core import exp_factory
  from configs import const_cl  # pylint: disable=unused-import
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.override({
      'task': {
          'model': {'norm_activation': {'use_sync_bn': use_sync_bn},
                    'region_frame': region_frame},
          'train_data': {'toy_world_split': '', 'input_path': '',
                         'global_batch_size': global_batch},
          'validation_data': {'toy_world_split': '', 'input_path': ''},
      },
      'trainer': {'optimizer_config': {
          'learning_rate': {'type': 'constant',
                            'constant': {'learning_rate': learning_rate}},
          'warmup': {'type': None}}},
  }, is_strict=True)
  config.validate()
  return config


def synthetic_global_batch(data_config, batch: int, seed: int):
  """A fixed global batch in the loader's [B, 2, ...] layout (numpy).

  Boxes are valid and of varied size; about 1 in 4 boxes is masked out (at
  least one valid per frame), so the replicas hold different numbers of
  valid regions and the region loss normalization is exercised.
  """
  t, h, w, c = data_config.feature_shape
  n = data_config.num_boxes
  rng = np.random.default_rng(seed)
  image = rng.uniform(0.0, 1.0, [batch, 2, t, h, w, c]).astype(np.float32)
  size = rng.uniform(0.2, 0.5, [batch, 2, t, n, 2])
  corner = rng.uniform(0.0, 1.0, [batch, 2, t, n, 2]) * (1.0 - size)
  boxes = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)
  mask = (rng.uniform(size=[batch, 2, t, n]) > 0.25).astype(np.float32)
  mask[..., 0] = 1.0
  starts = rng.integers(0, 10, [batch, 2, 1])
  stride = data_config.temporal_stride
  frame_index = (starts + stride * np.arange(t)[None, None]).astype(np.int32)
  return {'image': image, 'boxes': boxes, 'box_mask': mask,
          'frame_index': frame_index}


def replica_batch(global_batch, replica: int, num_replicas: int):
  """Replica `replica`'s share, views stacked per replica (view a first).

  The split must come before the stacking: stacking the global batch first
  and splitting [2B, ...] would give replica 0 only view-a clips.
  """
  from tasks import pretrain
  size = next(iter(global_batch.values())).shape[0]
  if size % num_replicas:
    raise ValueError(f'global batch {size} does not split over '
                     f'{num_replicas} replicas')
  per = size // num_replicas
  part = {k: tf.constant(v[replica * per:(replica + 1) * per])
          for k, v in global_batch.items()}
  return pretrain.stack_views(part)


def build(config):
  """Task, model and optimizer, in the current strategy scope."""
  from official.core import task_factory
  # Only what the pretraining task needs is registered here.
  from modeling.backbones import resnet_3d_y  # pylint: disable=unused-import
  from tasks import pretrain  # pylint: disable=unused-import
  task = task_factory.get_task(config.task)
  model = task.build_model()
  optimizer = task.create_optimizer(config.trainer.optimizer_config,
                                    config.runtime)
  return task, model, optimizer


def variables_by_name(model):
  """{'<index>_<name>': numpy value} over `model.weights`, in order.

  Keyed by position first: Keras uniquifies layer names per process
  (`conv3d` then `conv3d_1`), so a second model built in the same process
  has other names but the same variable order.
  """
  return {f'{i:04d}_{v.name}': v.numpy() for i, v in enumerate(model.weights)}


def trainable_keys(model):
  """Keys of `variables_by_name` that are trainable."""
  trainable = {id(v) for v in model.trainable_variables}
  return {f'{i:04d}_{v.name}' for i, v in enumerate(model.weights)
          if id(v) in trainable}


def set_variables(model, values):
  """Assigns `variables_by_name`-style values, matched by position."""
  ordered = [values[k] for k in sorted(values)]
  if len(ordered) != len(model.weights):
    raise ValueError(f'{len(ordered)} values for {len(model.weights)} '
                     'variables')
  for v, value in zip(model.weights, ordered):
    v.assign(value)


class InferenceModeBN(tf_keras.Model):
  """Calls the wrapped model with training=False (BN uses fixed moments).

  With fixed moments nothing couples the examples of a batch except the
  losses, so one replica and several agree to float32 rounding. In training
  mode BN divides by the batch standard deviation, which on these noise
  inputs is tiny for some channels: float32 differences of 1e-3 of the
  largest gradient then appear even between two orders of the same batch,
  and they grow from step to step.
  """

  def __init__(self, model):
    super().__init__()
    self.inner = model

  def call(self, inputs, training=None):
    del training
    return self.inner(inputs, training=False)


def run(strategy, config, init=None, num_steps=NUM_STEPS):
  """Trains under `strategy`; returns a dict of losses and weights.

  `num_steps` steps with inference-mode BN (losses, weights after them),
  then one step with training-mode BN, sync BN when the config says so
  (its loss, and every variable after it: BN moving statistics included).
  """
  with strategy.scope():
    task, model, optimizer = build(config)
    frozen_bn = InferenceModeBN(model)
  if init is not None:
    set_variables(model, init)
  initial = variables_by_name(model)
  num_replicas = strategy.num_replicas_in_sync

  def make_step(step_model):
    @tf.function
    def step(inputs):
      per_replica = strategy.run(
          lambda x: task.train_step(x, step_model, optimizer), args=(inputs,))
      return strategy.reduce(tf.distribute.ReduceOp.MEAN,
                             per_replica[task.loss], axis=None)
    return step

  def inputs_for(seed):
    batch = synthetic_global_batch(config.task.train_data,
                                   config.task.train_data.global_batch_size,
                                   seed=seed)
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: replica_batch(batch, ctx.replica_id_in_sync_group,
                                  num_replicas))

  step = make_step(frozen_bn)
  losses = [float(step(inputs_for(100 + s))) for s in range(num_steps)]
  final = variables_by_name(model)
  train_loss = float(make_step(model)(inputs_for(200)))
  return dict(losses=losses, initial=initial, final=final,
              train_mode_loss=train_loss,
              after_train_mode=variables_by_name(model))


def main(argv):
  import argparse
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--strategy', default='off',
                      choices=('off', 'multi_worker_mirrored'))
  parser.add_argument('--init_weights', default='')
  parser.add_argument('--output', required=True)
  args = parser.parse_args(argv)
  if args.strategy == 'multi_worker_mirrored':
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  else:
    strategy = tf.distribute.get_strategy()
  init = None
  if args.init_weights:
    with np.load(args.init_weights) as f:
      init = {k: f[k] for k in f.files}
  config = tiny_config()
  result = run(strategy, config, init)
  task_info = json.loads(os.environ.get('TF_CONFIG', '{}')).get('task', {})
  arrays = {f'final/{k}': v for k, v in result['final'].items()}
  arrays.update({f'after_train_mode/{k}': v
                 for k, v in result['after_train_mode'].items()})
  np.savez(args.output + '.tmp.npz', **arrays)
  os.replace(args.output + '.tmp.npz', args.output)
  print(json.dumps({'worker': task_info.get('index', 0),
                    'losses': result['losses'],
                    'train_mode_loss': result['train_mode_loss'],
                    'num_replicas': strategy.num_replicas_in_sync}),
        flush=True)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  main(sys.argv[1:])
