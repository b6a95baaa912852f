"""The ConST-CL model encodes its context by offsets from the region frame.

Toy models at 8 feature frames and context 5, as in the main setting. With
the `nearest` strategy on disjoint views the region frames are the facing
ends, 7 (view a) and 0 (view b), where the context window is shifted:
[3..7] and [0..4]. The encoding must still give the region frame's own
slice the offset-0 row; the `center` model must keep its variables and
outputs as released.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.modeling import factory_3d

from configs import ablations  # pylint: disable=unused-import
from modeling import const_cl_model  # pylint: disable=unused-import
from modeling.backbones import resnet_3d_y  # pylint: disable=unused-import

SIZE = 32
BOXES = 2


def _toy_model(strategy):
  config = exp_factory.get_exp_config(
      f'const_cl_ablation_region_frame_{strategy}_toy')
  # The main setting's 16 input frames (8 feature frames), context 5.
  shape = [16, SIZE, SIZE, 3]
  config.task.model.local_head.context_length = 5
  tf_keras.utils.set_random_seed(0)
  model = factory_3d.build_model(
      config.task.model.model_type,
      input_specs=tf_keras.layers.InputSpec(shape=[None] + shape),
      model_config=config.task.model, num_classes=0)
  return model, shape[0]


def _inputs(num_frames, disjoint=True):
  rng = np.random.default_rng(0)
  frames = np.arange(num_frames)
  index = np.stack([frames, frames + (100 if disjoint else 0)])
  boxes = np.tile([0.1, 0.2, 0.6, 0.7], (2, num_frames, BOXES, 1))
  return {
      'image': tf.constant(rng.normal(size=(2, num_frames, SIZE, SIZE, 3)),
                           tf.float32),
      'boxes': tf.constant(boxes, tf.float32),
      'box_mask': tf.ones([2, num_frames, BOXES], tf.bool),
      'frame_index': tf.constant(index, tf.int32),
  }


def _record_encodings(encoding):
  """Wraps `encoding.call` to record what it adds: [B, L, H, W, dim]."""
  added = []
  call = encoding.call

  def recording(tokens, **kwargs):
    out = call(tokens, **kwargs)
    added.append((out - tokens).numpy())
    return out
  encoding.call = recording
  return added


def _head_weights(model):
  return {v.name.split('const_cl_head/')[-1]: tuple(v.shape)
          for v in model.local_head.weights}


def test_region_frame_slice_gets_the_offset_zero_encoding_near_clip_ends():
  model, num_frames = _toy_model('nearest')
  data = _inputs(num_frames)
  model(data, training=False)  # builds the variables
  added = _record_encodings(model.local_head.position_encoding)
  out = model(data, training=True)
  t_a, t_b = int(out['region_frame_a'][0]), int(out['region_frame_b'][0])
  ctx_a = out['context_frames_a'][0].numpy().tolist()
  ctx_b = out['context_frames_b'][0].numpy().tolist()
  assert (t_a, t_b) == (7, 0)
  assert ctx_a == [3, 4, 5, 6, 7] and ctx_b == [0, 1, 2, 3, 4]
  enc = model.local_head.position_encoding
  offset_zero = (enc.time_embedding[2][None, None] +
                 enc.height_embedding[:, None] +
                 enc.width_embedding[None]).numpy()
  # Head calls: a->b reads view b's context, b->a view a's.
  a2b, b2a = added
  np.testing.assert_allclose(a2b[0, ctx_b.index(t_b)], offset_zero,
                             atol=1e-6)
  np.testing.assert_allclose(b2a[0, ctx_a.index(t_a)], offset_zero,
                             atol=1e-6)
  # Context frame 2 of view b is 2 frames after the region frame.
  assert np.abs(a2b[0, 2] - offset_zero).max() > 1e-4


def test_only_models_with_shifting_windows_get_more_time_rows():
  center, _ = _toy_model('center')
  nearest, num_frames = _toy_model('nearest')
  data = _inputs(num_frames)
  center(data, training=False)
  nearest(data, training=False)
  weights = _head_weights(center)
  time = [k for k in weights if 'context_position' in k]
  assert sorted(time) == ['context_position/height:0',
                          'context_position/time:0',
                          'context_position/width:0']
  length, dim = weights['context_position/time:0']
  assert length == 5
  # Offsets -4..4 (window shifted to either end): 9 rows, 4 new.
  assert _head_weights(nearest) == dict(
      weights, **{'context_position/time_extra:0': (4, dim)})


def test_center_model_outputs_are_the_released_ones():
  # The released head indexed time by position in the window, as the
  # encoding does without offsets; the centre window's offsets must read
  # exactly those rows, bit for bit, in the compiled train step too.
  model, num_frames = _toy_model('center')
  data = _inputs(num_frames, disjoint=False)
  new = model(data, training=False)
  encoding = model.local_head.position_encoding
  call = encoding.call
  encoding.call = lambda tokens, time_offsets=None: call(tokens)
  released = model(data, training=False)
  for key in ('pred_a2b', 'pred_b2a'):
    np.testing.assert_array_equal(new[key].numpy(), released[key].numpy())
  encoding.call = call
  compiled = tf.function(lambda x: model(x, training=False)['pred_a2b'],
                         jit_compile=True)
  np.testing.assert_allclose(compiled(data).numpy(),
                             released['pred_a2b'].numpy(), atol=1e-5)


def test_shifted_windows_compile_with_xla():
  model, num_frames = _toy_model('nearest')
  data = _inputs(num_frames)  # region frames 7 and 0: both windows shifted
  eager = model(data, training=True)
  compiled = tf.function(lambda x: model(x, training=True),
                         jit_compile=True)
  out = compiled(data)
  for key in ('pred_a2b', 'pred_b2a'):
    np.testing.assert_allclose(out[key].numpy(), eager[key].numpy(),
                               atol=1e-4)


@pytest.mark.parametrize('strategy', ['center', 'nearest'])
def test_train_step_compiles_with_xla(strategy):
  # tf.gather's sparse gradient (when the table is the `time` variable
  # alone, as in the centre model) would make SGD-momentum use an update op
  # XLA cannot compile; the encoding's table gets a dense gradient.
  model, num_frames = _toy_model(strategy)
  data = _inputs(num_frames)  # nearest: region frames 7 and 0
  model(data, training=False)
  # The legacy SGD, as the Model Garden optimizer factory builds it.
  optimizer = tf_keras.optimizers.legacy.SGD(0.1, momentum=0.9)
  encoding = model.local_head.position_encoding
  tables = [encoding.time_embedding]
  if strategy == 'nearest':
    tables.append(encoding.time_extra_embedding)
  before = [t.numpy() for t in tables]

  @tf.function(jit_compile=True)
  def step(x):
    with tf.GradientTape() as tape:
      out = model(x, training=True)
      loss = tf.reduce_sum(out['pred_a2b']**2 + out['pred_b2a']**2)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  assert np.isfinite(float(step(data)))
  # Every row was read: offsets -2..2 (centre); -4..4 (nearest: windows
  # [3..7] around 7 and [0..4] around 0), -4, -3, 3, 4 in `time_extra`.
  for table, old in zip(tables, before):
    assert (np.abs(table.numpy() - old).max(axis=1) > 0).all()
