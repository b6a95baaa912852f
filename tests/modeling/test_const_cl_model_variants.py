"""Every ablation experiment takes one training step in its toy variant.

The toy variants are shrunk further for speed (2 videos per batch, 32 px:
TensorFlow's CPU kernel for the gradient of the strided stem conv is slow);
everything else — the model built from the config by the task, the task's
input pipeline on the toy world, `task.train_step` — is the experiment's own
code path. Experiments whose model configs are equal share one model (they
differ only in their data), which keeps the graph work small.
"""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory

from configs import ablations
from dataloaders import region_sources
from dataloaders import toy_world
from tasks import registry_imports  # pylint: disable=unused-import

BATCH = 2
SIZE = 32


@pytest.fixture(scope='module')
def segment_records(tmp_path_factory):
  """Two toy videos with slic / felzenszwalb boxes, per method."""
  root = tmp_path_factory.mktemp('segment_records')
  source = toy_world.write_video_split(str(root / 'plain'), 'train', 2,
                                       seed=3, num_shards=1)
  patterns = {}
  for method in region_sources.SEGMENT_METHODS:
    out = root / method
    region_sources.precompute_regions(source, str(out), method, num_boxes=4)
    patterns[method] = str(out / '*.tfrecord')
  return patterns


def _toy_config(name, segment_patterns):
  config = exp_factory.get_exp_config(f'{name}_toy')
  data = config.task.train_data
  data.global_batch_size = BATCH
  data.feature_shape = (data.feature_shape[0], SIZE, SIZE, 3)
  data.shuffle_buffer_size = 1
  data.cycle_length = 1
  config.task.validation_data.toy_world_split = ''
  if data.region_source in region_sources.SEGMENT_METHODS:
    data.toy_world_split = ''
    data.input_path = segment_patterns[data.region_source]
  config.validate()
  return config


def _model_key(config):
  return json.dumps([config.task.model.as_dict(),
                     list(config.task.train_data.feature_shape),
                     config.task.train_data.num_boxes], sort_keys=True)


def test_every_ablation_takes_one_training_step(segment_records):
  toy_world.ensure_toy_dataset()
  groups = {}
  for name in ablations.ablation_experiments():
    config = _toy_config(name, segment_records)
    groups.setdefault(_model_key(config), []).append((name, config))
  # 17 rows, 11 distinct models (7 rows share the main model).
  assert sum(len(g) for g in groups.values()) == 17
  assert len(groups) == 11

  local_losses = {}
  for members in groups.values():
    model = None
    for name, config in members:
      task = task_factory.get_task(config.task)
      if model is None:
        model = task.build_model()
        optimizer = tf_keras.optimizers.SGD(learning_rate=0.01)
      dataset = iter(task.build_inputs(config.task.train_data))
      features = next(dataset)
      if config.task.train_data.region_source != 'random':
        # Segment and detector boxes can all leave the random crop of one
        # view (a counted zero of the local loss, not a failure); take the
        # first of a few batches where some box is valid in both views on
        # every frame, so the local loss has positives to be checked on.
        for _ in range(20):
          mask = features['box_mask'].numpy()  # [2B, T, N], view a first
          if (mask[:BATCH] * mask[BATCH:]).sum(-1).min(-1).min() > 0:
            break
          features = next(dataset)
        mask = features['box_mask'].numpy()
        assert (mask[:BATCH] * mask[BATCH:]).sum(-1).min() > 0, name
      t = config.task.train_data.feature_shape[0]
      assert features['image'].shape == (2 * BATCH, t, SIZE, SIZE, 3), name
      metrics = task.build_metrics(training=True)
      logs = task.train_step(features, model, optimizer, metrics)
      loss = float(logs[task.loss])
      assert np.isfinite(loss), (name, loss)
      values = {m.name: float(m.result()) for m in metrics}
      assert np.isfinite(values['global_loss']), (name, values)
      local_losses[name] = values['local_loss']
    del model
    tf_keras.backend.clear_session()

  assert local_losses.pop('const_cl_ablation_baseline_cvrl') == 0.0
  for name, value in local_losses.items():
    assert np.isfinite(value) and value > 0, (name, value)
