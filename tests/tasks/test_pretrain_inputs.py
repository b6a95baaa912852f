"""`ConstCLPretrainTask.build_inputs` honours `drop_remainder` and `dtype`.

Both `DataConfig` fields used to be ignored: the last partial batch was kept
in evaluation and dropped in training whatever the config said, and the clips
were always float32.
"""
import numpy as np
import pytest
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory

from dataloaders import toy_world
from tasks import registry_imports  # pylint: disable=unused-import

NUM_VIDEOS = 3
BATCH = 2


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  """Three tiny toy videos in one shard: batches of 2 leave a remainder."""
  root = tmp_path_factory.mktemp('pretrain_inputs')
  return toy_world.write_video_split(str(root), 'validation', NUM_VIDEOS,
                                     seed=5, num_shards=1)


def _config(pattern):
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  for data in (config.task.train_data, config.task.validation_data):
    data.toy_world_split = ''
    data.input_path = pattern
    data.global_batch_size = BATCH
    data.feature_shape = (8, 32, 32, 3)
    data.shuffle_buffer_size = 1
    data.cycle_length = 1
    data.seed = 0
  return config


def _batch_sizes(config, data):
  config.validate()
  task = task_factory.get_task(config.task)
  # stack_views puts both views on the batch axis: 2 rows per video.
  return [int(f['image'].shape[0]) // 2 for f in task.build_inputs(data)]


def test_registered_defaults_keep_the_remainder_only_in_evaluation():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  assert config.task.train_data.drop_remainder
  assert not config.task.validation_data.drop_remainder


def test_validation_keeps_the_last_partial_batch_by_default(records):
  config = _config(records)
  assert _batch_sizes(config, config.task.validation_data) == [2, 1]


def test_validation_drop_remainder_drops_the_last_partial_batch(records):
  config = _config(records)
  config.task.validation_data.drop_remainder = True
  assert _batch_sizes(config, config.task.validation_data) == [2]


def test_training_batch_dimension_is_static_by_default(records):
  config = _config(records)
  task = task_factory.get_task(config.task)
  dataset = task.build_inputs(config.task.train_data)
  assert dataset.element_spec['image'].shape[0] == 2 * BATCH


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16', 'float32'])
@pytest.mark.parametrize('data_name', ['train_data', 'validation_data'])
def test_dtype_sets_the_image_dtype(records, dtype, data_name):
  config = _config(records)
  data = getattr(config.task, data_name)
  data.dtype = dtype
  config.validate()
  task = task_factory.get_task(config.task)
  features = next(iter(task.build_inputs(data)))
  assert features['image'].dtype == tf.dtypes.as_dtype(dtype)
  assert features['image'].shape == (2 * BATCH, 8, 32, 32, 3)
  image = features['image'].numpy().astype(np.float32)
  assert np.all(np.isfinite(image)) and image.std() > 0  # real frames


def test_unknown_dtype_is_a_config_error():
  config = exp_factory.get_exp_config('const_cl_pretrain_toy')
  config.task.validation_data.dtype = 'int8'
  with pytest.raises(ValueError, match='validation_data.dtype'):
    config.validate()
