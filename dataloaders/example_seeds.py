"""Per-example stateless seeds for tf.data pipelines.

Stateful random ops (`tf.random.uniform(seed=...)`) inside a parallel
`Dataset.map` share one kernel state across the parallel calls, so which
example gets which draw depends on thread timing: two runs with the same seed
differ. The loaders here instead zip a seed stream into the pipeline at a
point whose order is deterministic, and the parsers draw everything with
`tf.random.stateless_*` ops from that example's seed. A fixed base seed then
fixes every augmentation, however many threads parse.

Training seeds come from `tf.data.Dataset.random` placed after the repeat, so
each epoch draws new augmentations (except where the parsed examples are
cached: Model Garden's `InputReader` with `cache=True` caches after the
parse and repeats the cache, so every epoch sees the first epoch's draws, as
without these seeds). Evaluation seeds are (base, position), the same at
every evaluation.
"""
from typing import Callable, Optional

import tensorflow as tf

# The decoded-dict key under which `attach_example_seeds` puts the seed.
SEED_KEY = 'example_seed'

# Input pipelines of one job get base seeds this far apart.
_PIPELINE_STRIDE = 1000003


def pipeline_base_seed(seed: Optional[int], pipeline_id: int,
                       is_training: bool) -> int:
  """The base seed of one input pipeline.

  Args:
    seed: the configured seed; None draws one for training (from the global
      TensorFlow seed when that is set, so `train.py --seed` still fixes it)
      and uses 0 for evaluation.
    pipeline_id: `InputContext.input_pipeline_id` (0 without one): each host
      draws different augmentations.
    is_training: see `seed`.

  Returns:
    int base seed.
  """
  if seed is None and is_training:
    seed = int(tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64))
  return (seed or 0) + _PIPELINE_STRIDE * pipeline_id


def example_seeds(base_seed: int, is_training: bool) -> tf.data.Dataset:
  """An endless dataset of int64 [2] stateless seeds."""
  if is_training:
    return tf.data.Dataset.random(seed=base_seed).batch(2)
  return tf.data.Dataset.counter().map(
      lambda i: tf.stack([tf.constant(base_seed, tf.int64), i]))


def attach_example_seeds(
    seed: Optional[int], is_training: bool,
    input_context: Optional[tf.distribute.InputContext] = None
) -> Optional[Callable[[tf.data.Dataset], tf.data.Dataset]]:
  """A `Dataset.apply` function adding `SEED_KEY` to each decoded dict.

  Made for Model Garden's `InputReader(sample_fn=...)`, which applies it
  after the (ordered) shuffle and decode and before the parallel parse.
  Every tf.data service worker of one job builds the same pipeline, so all
  draw the same seed stream (on different records).

  Args:
    seed: see `pipeline_base_seed`.
    is_training: evaluation parsers draw nothing, so for them this returns
      None (no `sample_fn`).
    input_context: the `tf.distribute.InputContext` of this pipeline.

  Returns:
    fn(dataset of dicts) -> dataset of dicts with `SEED_KEY`, or None.
  """
  if not is_training:
    return None
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  base = pipeline_base_seed(seed, pipeline_id, is_training)

  def apply(ds: tf.data.Dataset) -> tf.data.Dataset:
    zipped = tf.data.Dataset.zip((ds, example_seeds(base, is_training)))
    return zipped.map(lambda d, s: {**d, SEED_KEY: s})

  return apply


def fold(seed: tf.Tensor, k: int) -> tf.Tensor:
  """The k-th independent stateless seed derived from `seed`."""
  return tf.random.experimental.stateless_fold_in(
      tf.cast(seed, tf.int64), k)
