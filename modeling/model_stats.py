"""Parameter counts and forward FLOPs of the pretraining model (Tables 3, 6).

Parameters are Keras `count_params()` (BN moving statistics included, as the
pinned backbone counts of SPEC section 1), split into backbone, global head
and local head.

FLOPs come from TensorFlow's graph profiler
(`tf.compat.v1.profiler` with `ProfileOptionBuilder.float_operation()`) on the
frozen graph of one inference-mode forward pass: a multiply-add counts as 2
FLOPs (Conv3D: 2 * k_t * k_h * k_w * C_in * T' * H' * W' * C_out). TensorFlow
itself has no FLOP statistics for `Einsum` (the attention of the ConST-CL
head and Keras `EinsumDense`); Model Garden's `official.core.train_utils`
registers them (2 * product of the index sizes), so it is imported here.
Element-wise ops without statistics (ReLU, fused batch
norm) are not counted, as usual for such tables.

The pretraining forward takes both views of a video; FLOPs are reported per
clip: the backbone on one clip, and the whole model (backbone + heads, both
loss directions) on one two-view pair divided by 2.
"""
from typing import Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import

# Registers the 'flops' statistics of Einsum with the profiler.
from official.core import train_utils  # pylint: disable=unused-import


def parameter_counts(model: tf_keras.Model) -> Dict[str, int]:
  """Parameters of a built `modeling.const_cl_model.ConstCLModel`.

  Args:
    model: the model, already called once (so every variable exists).

  Returns:
    dict with `total`, `backbone`, `global_head`, `local_head` (0 for CVRL).

  Raises:
    ValueError: if the parts do not add up to the total (a layer outside
      backbone and heads, which this table would silently miss).
  """
  if not model.built:
    raise ValueError('parameter_counts: call the model once first so its '
                     'variables exist')
  local = model.local_head
  counts = {
      'total': int(model.count_params()),
      'backbone': int(model.backbone.count_params()),
      'global_head': int(model.global_projection.count_params()),
      'local_head': int(local.count_params()) if local is not None else 0,
  }
  parts = counts['backbone'] + counts['global_head'] + counts['local_head']
  if parts != counts['total']:
    raise ValueError(f'parameter_counts: backbone + heads ({parts}) != total '
                     f'({counts["total"]}) for {model.name}')
  return counts


def graph_flops(graph: tf.Graph) -> int:
  """Float operations of a graph with fully defined shapes.

  Args:
    graph: e.g. the graph of a frozen concrete function.

  Returns:
    The profiler's `total_float_ops`.
  """
  options = (tf.compat.v1.profiler.ProfileOptionBuilder(
      tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
             .with_empty_output().build())
  profile = tf.compat.v1.profiler.profile(
      graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd='op',
      options=options)
  return int(profile.total_float_ops)


def function_flops(fn, input_signature) -> int:
  """FLOPs of `fn(*input_signature)` traced once and frozen.

  Args:
    fn: a Python callable of TensorFlow ops (e.g. a Keras model call).
    input_signature: list of `tf.TensorSpec` with fully defined shapes.

  Returns:
    The float operations of one call (see `graph_flops`).
  """
  concrete = tf.function(fn).get_concrete_function(*input_signature)
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  return graph_flops(frozen.graph)


def _pair_signature(feature_shape, num_boxes: int
                    ) -> Dict[str, tf.TensorSpec]:
  """Inputs of one two-view example (2 clips, view a first)."""
  t, h, w, c = (int(x) for x in feature_shape)
  return {
      'image': tf.TensorSpec([2, t, h, w, c], tf.float32),
      'boxes': tf.TensorSpec([2, t, num_boxes, 4], tf.float32),
      'box_mask': tf.TensorSpec([2, t, num_boxes], tf.float32),
      'frame_index': tf.TensorSpec([2, t], tf.int32),
  }


def build_variables(model: tf_keras.Model, feature_shape,
                    num_boxes: int) -> None:
  """Creates the model's variables by tracing one forward (nothing runs).

  Cheaper than an eager call at full size (R3D-50 at 16x224x224 costs tens
  of seconds on a CPU), and the ConST-CL head's position tables need the
  true feature-map size, so a smaller dummy input would not do.
  """
  if not model.built:
    spec = _pair_signature(feature_shape, num_boxes)
    tf.function(lambda x: model(x, training=False)).get_concrete_function(
        spec)


def flop_counts(model: tf_keras.Model, feature_shape,
                num_boxes: int) -> Dict[str, int]:
  """Forward FLOPs per clip at `feature_shape` (inference mode, batch 1).

  Args:
    model: a built `ConstCLModel`.
    feature_shape: [T, H, W, C] of one clip.
    num_boxes: regions per frame.

  Returns:
    dict with `backbone_flops_per_clip`, `flops_per_clip` (backbone + heads,
    half of one two-view pair) and `head_flops_per_clip` (their difference).
  """
  t, h, w, c = (int(x) for x in feature_shape)
  backbone = model.backbone
  backbone_flops = function_flops(
      lambda x: backbone(x, training=False),
      [tf.TensorSpec([1, t, h, w, c], tf.float32)])
  spec = _pair_signature(feature_shape, num_boxes)
  pair_flops = function_flops(lambda x: model(x, training=False), [spec])
  per_clip = pair_flops // 2
  return {
      'backbone_flops_per_clip': backbone_flops,
      'flops_per_clip': per_clip,
      'head_flops_per_clip': per_clip - backbone_flops,
  }


def model_stats(model: tf_keras.Model, feature_shape, num_boxes: int,
                with_flops: bool = True) -> Dict[str, int]:
  """`parameter_counts` and (optionally) `flop_counts` in one dict.

  Args:
    model: a built `ConstCLModel`.
    feature_shape: [T, H, W, C] of one clip.
    num_boxes: regions per frame.
    with_flops: also profile the FLOPs (builds two graphs).

  Returns:
    dict of parameter counts prefixed `params_` and FLOP counts.
  """
  stats = {f'params_{k}': v for k, v in parameter_counts(model).items()}
  if with_flops:
    stats.update(flop_counts(model, feature_shape, num_boxes))
  return stats


def format_table(stats: Mapping[str, int],
                 title: Optional[str] = None) -> str:
  """A two-column text table (millions of parameters, GFLOPs)."""
  lines = [title] if title else []
  for key, value in stats.items():
    if key.startswith('params_'):
      pretty = f'{value / 1e6:10.3f} M'
    elif 'flops' in key:
      pretty = f'{value / 1e9:10.3f} G'
    else:
      pretty = str(value)
    lines.append(f'{key:28s} {value:>16,d}  {pretty}')
  return '\n'.join(lines)
