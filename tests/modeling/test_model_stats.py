"""Parameter counts and FLOPs: profiler vs hand formulas, pinned variants."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.modeling import factory_3d

from configs import ablations  # pylint: disable=unused-import
from modeling import const_cl_model  # pylint: disable=unused-import
from modeling import model_stats
from modeling.backbones import resnet_3d_y
from modeling.heads import const_cl_head
from modeling.heads import global_head

# Pinned in tests/modeling/backbones/test_resnet_3d_y.py (SPEC section 1).
R3D50_PARAMS = 31_725_248
R3D50_Y_PARAMS = 51_955_392
GLOBAL_HEAD_PARAMS = 12_869_760


def _conv(kernel, c_in, c_out, out_thw):
  """2 * k_t*k_h*k_w * C_in * C_out * T*H*W (a multiply-add = 2 FLOPs)."""
  return 2 * int(np.prod(kernel)) * c_in * c_out * int(np.prod(out_thw))


def _tiny_backbone_conv_flops(t, size, stem=8):
  """Conv FLOPs of the tiny Y (8 filters, 1 block/stage, t-kernels 1,1,3,3).

  Stem 5x7x7 stride (2,2,2), pool stride (1,2,2); per bottleneck block a
  projection shortcut (channels change in every first block), a [t,1,1]
  conv at the input resolution, a [1,3,3] conv at the output resolution
  (stride 2 from res3 on) and a [1,1,1] expansion; res5 twice (5g + 5r).
  """
  res = (t // 2, size // 2, size // 2)
  total = _conv((5, 7, 7), 3, stem, res)
  res = (res[0], res[1] // 2, res[2] // 2)  # max-pool
  c_in = stem
  for stage, k in enumerate((1, 1, 3, 3)):
    f = 8 * 2**stage
    out = res if stage == 0 else (res[0], res[1] // 2, res[2] // 2)
    block = (_conv((1, 1, 1), c_in, 4 * f, out) +
             _conv((k, 1, 1), c_in, f, res) +
             _conv((1, 3, 3), f, f, out) + _conv((1, 1, 1), f, 4 * f, out))
    total += block * (2 if stage == 3 else 1)
    c_in, res = 4 * f, out
  return total


def test_tiny_backbone_flops_match_the_hand_formula():
  t, size = 8, 64  # the toy input
  backbone = resnet_3d_y.ResNet3DY(
      block_repeats=(1, 1, 1, 1), base_filters=8,
      temporal_kernel_sizes=((1,), (1,), (3,), (3,)),
      input_specs=tf_keras.layers.InputSpec(shape=[None, t, size, size, 3]))
  flops = model_stats.function_flops(
      lambda x: backbone(x, training=False),
      [tf.TensorSpec([1, t, size, size, 3], tf.float32)])
  hand = _tiny_backbone_conv_flops(t, size)
  assert hand == 72_024_064
  # The profiler also counts residual adds and pooling means (65,536), and
  # the stem max-pool, a 2D pool over frames, at 3x3 = 9 per output:
  # 4*16*16*8 outputs * 9 = 73,728.
  assert flops == 72_024_064 + 65_536 + 73_728 == 72_163_328
  assert abs(flops - hand) / hand < 0.01


def test_einsum_flops_are_counted():
  a = tf.TensorSpec([2, 3, 4], tf.float32)
  b = tf.TensorSpec([4, 5], tf.float32)
  flops = model_stats.function_flops(
      lambda x, y: tf.einsum('bij,jk->bik', x, y), [a, b])
  assert flops == 2 * 2 * 3 * 4 * 5


def _full_size_heads(output_dim, context_length=5, map_size=7):
  """Full-size heads from the main config, built on small inputs only."""
  lh = exp_factory.get_exp_config(
      'const_cl_pretrain_kinetics400').task.model.local_head
  head = const_cl_head.ConstCLHead(
      output_dim=output_dim, num_layers=lh.num_layers,
      num_heads=lh.num_heads, hidden_dim=lh.hidden_dim, mlp_dim=lh.mlp_dim)
  head(tf.zeros([1, 1, output_dim]), tf.zeros([1, 1, 4]),
       tf.zeros([1, context_length, map_size, map_size, output_dim]))
  ghead = global_head.GlobalProjectionHead(2048, 3, 128)
  ghead(tf.zeros([1, 2048]))
  return head.count_params(), ghead.count_params()


@pytest.mark.parametrize('endpoints,backbone,channels,total', [
    ('y', R3D50_Y_PARAMS, 2048, 66_607_296),
    ('c5', R3D50_PARAMS, 2048, 46_377_152),
    # res4 (1024 channels, 14x14) average-pooled 2x2 -> 7x7.
    ('c4p', R3D50_PARAMS, 1024, 45_982_912),
])
def test_pinned_parameter_counts_per_loss_endpoint(endpoints, backbone,
                                                   channels, total):
  local, global_params = _full_size_heads(channels)
  assert global_params == GLOBAL_HEAD_PARAMS
  assert backbone + global_params + local == total


def test_pinned_local_head_counts_per_context_length():
  # Only the time table of the position encoding grows with the context:
  # (L + 7 + 7) * 128 parameters.
  counts = {length: _full_size_heads(2048, length)[0] for length in (1, 5)}
  assert counts[5] == 1_782_144
  assert counts[5] - counts[1] == 4 * 128
  # Context 0: the region MLP 2048 -> 2048 (BN) -> 2048.
  mlp = global_head.RegionMLP(hidden_dim=2048, output_dim=2048)
  mlp(tf.zeros([1, 2048]))
  assert mlp.count_params() == 2 * 2048 * 2048 + 4 * 2048 + 2048


def _toy_model(name):
  config = exp_factory.get_exp_config(name)
  data = config.task.train_data
  model = factory_3d.build_model(
      config.task.model.model_type,
      input_specs=tf_keras.layers.InputSpec(
          shape=[None] + list(data.feature_shape)),
      model_config=config.task.model, num_classes=0)
  model_stats.build_variables(model, data.feature_shape, data.num_boxes)
  return model, data


def test_toy_model_stats_add_up():
  model, data = _toy_model('const_cl_ablation_context_length_5_toy')
  stats = model_stats.model_stats(model, data.feature_shape, data.num_boxes)
  # The tiny Y backbone of test_resnet_3d_y.py (stem as wide as res2, 8).
  assert stats['params_backbone'] == 269_144
  assert stats['params_total'] == (
      stats['params_backbone'] + stats['params_global_head'] +
      stats['params_local_head'])
  # 16 frames: twice the backbone FLOPs of 8 frames (every layer is
  # linear in T); the heads add a small positive amount.
  hand = _tiny_backbone_conv_flops(16, 64)
  assert abs(stats['backbone_flops_per_clip'] - hand) / hand < 0.01
  assert 0 < stats['head_flops_per_clip'] < (
      0.1 * stats['backbone_flops_per_clip'])
  table = model_stats.format_table(stats)
  assert 'params_total' in table and 'flops_per_clip' in table


def test_cvrl_has_no_local_head():
  model, data = _toy_model('const_cl_ablation_baseline_cvrl_toy')
  counts = model_stats.parameter_counts(model)
  assert counts['local_head'] == 0
  # Plain tiny R3D: the Y minus one res5 (113,152, test_resnet_3d_y.py).
  assert counts['backbone'] == 269_144 - 113_152
