"""Per-example seed streams: distinct per example and per input pipeline,
fixed for evaluation, attached in order."""
import numpy as np
import tensorflow as tf

from dataloaders import example_seeds


def _take(ds, n):
  return np.stack([x.numpy() for x in ds.take(n)])


def test_base_seed_per_pipeline():
  assert example_seeds.pipeline_base_seed(5, 0, True) == 5
  assert example_seeds.pipeline_base_seed(5, 2, True) == 5 + 2 * 1000003
  assert example_seeds.pipeline_base_seed(None, 0, False) == 0
  assert example_seeds.pipeline_base_seed(None, 1, False) == 1000003


def test_training_seeds_are_distinct_and_fixed_by_the_base():
  seeds = _take(example_seeds.example_seeds(7, True), 64)
  assert seeds.shape == (64, 2) and seeds.dtype == np.int64
  assert len({tuple(s) for s in seeds}) == 64
  np.testing.assert_array_equal(
      _take(example_seeds.example_seeds(7, True), 64), seeds)
  other = _take(example_seeds.example_seeds(8, True), 64)
  assert not {tuple(s) for s in seeds} & {tuple(s) for s in other}


def test_evaluation_seeds_are_base_and_position():
  np.testing.assert_array_equal(
      _take(example_seeds.example_seeds(3, False), 4),
      [[3, 0], [3, 1], [3, 2], [3, 3]])


def test_attach_keeps_records_in_order_and_pipelines_apart():
  records = tf.data.Dataset.range(6).map(lambda i: {'x': i})

  def attached(pipeline_id):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline_id)
    fn = example_seeds.attach_example_seeds(11, True, context)
    out = list(fn(records))
    assert [int(o['x']) for o in out] == list(range(6))
    return np.stack([o[example_seeds.SEED_KEY].numpy() for o in out])

  first = attached(0)
  np.testing.assert_array_equal(
      first, _take(example_seeds.example_seeds(11, True), 6))
  np.testing.assert_array_equal(
      attached(1), _take(example_seeds.example_seeds(11 + 1000003, True), 6))
  assert not np.array_equal(attached(1), first)


def test_fold_gives_independent_seeds():
  seed = tf.constant([1, 2], tf.int64)
  folds = {tuple(example_seeds.fold(seed, k).numpy()) for k in range(5)}
  assert len(folds) == 5
  np.testing.assert_array_equal(
      example_seeds.fold(seed, 3),
      tf.random.experimental.stateless_fold_in(seed, 3))


def test_evaluation_pipelines_get_no_sample_fn():
  assert example_seeds.attach_example_seeds(11, False) is None
