"""Loading one res5 branch of a pretraining checkpoint, with its checks."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from configs import backbones as backbones_cfg
from modeling.backbones import branch_loading
from modeling.backbones import resnet_3d_y


def _build(duplicate_res5, base_filters=8):
  cfg = backbones_cfg.resnet_3d_y_tiny()
  backbone = resnet_3d_y.ResNet3DY(
      block_repeats=cfg.block_repeats, base_filters=base_filters,
      temporal_kernel_sizes=backbones_cfg.stage_temporal_kernel_sizes(cfg),
      duplicate_res5=duplicate_res5,
      input_specs=tf_keras.layers.InputSpec(shape=[None, 4, 32, 32, 3]))
  return backbone


def _randomize(model, seed):
  rng = np.random.default_rng(seed)
  for v in model.weights:
    # Positive values keep BN variances valid; distinct per variable.
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))


def _save_like_trainer(backbone, directory):
  """As Model Garden's trainer: model, optimizer, global_step + backbone."""
  model = tf.Module()  # stands in for the whole pretraining model
  model.backbone = backbone
  ckpt = tf.train.Checkpoint(
      global_step=tf.Variable(2, dtype=tf.int64), model=model,
      optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
      backbone=backbone)
  return ckpt.save(str(directory / 'ckpt'))


@pytest.fixture(scope='module')
def nets():
  """Built once (building dominates the run time); loads overwrite them."""
  return {'source_y': _build(True), 'temp_y': _build(True),
          'single': _build(False)}


@pytest.fixture
def build(nets):
  """The loader's builder: returns the prebuilt temporary Y / single."""
  return lambda duplicate_res5: (
      nets['temp_y'] if duplicate_res5 else nets['single'])


@pytest.fixture(scope='module')
def y_checkpoint(tmp_path_factory, nets):
  directory = tmp_path_factory.mktemp('y')
  y = nets['source_y']
  _randomize(y, 0)
  _save_like_trainer(y, directory)
  parts = branch_loading.weights_by_part(y, ['5g', '5r'])
  return str(directory), {k: _values(v) for k, v in parts.items()}


def _values(variables):
  return [v.numpy() for v in variables]


@pytest.mark.parametrize('branch,endpoint', [('res5g', '5g'), ('res5r', '5r')])
def test_loads_exactly_the_chosen_branch(y_checkpoint, nets, build, branch,
                                        endpoint):
  directory, source = y_checkpoint
  target = nets['single']
  _randomize(target, 1)
  _randomize(nets['temp_y'], 2)
  info = branch_loading.load_backbone_branch(directory, target, build, branch)
  assert info['kind'] == 'y' and info['branch'] == branch
  assert info['num_variables'] == len(target.weights)
  got = branch_loading.weights_by_part(target, ['5g'])
  assert len(got['trunk']) + len(got['5g']) == len(target.weights)
  for a, b in zip(source['trunk'], _values(got['trunk'])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(source[endpoint], _values(got['5g'])):
    np.testing.assert_array_equal(a, b)
  other = '5r' if endpoint == '5g' else '5g'
  assert not any(np.array_equal(a, b) for a, b in
                 zip(source[other], _values(got['5g'])))


def test_branch_layers_split_the_y_backbone(nets):
  y = nets['temp_y']
  parts = branch_loading.weights_by_part(y, ['5g', '5r'])
  assert len(parts['trunk']) + len(parts['5g']) + len(parts['5r']) == len(
      y.weights)
  assert {id(v) for v in parts['5g']}.isdisjoint(id(v) for v in parts['5r'])


def test_loads_a_cvrl_single_res5_checkpoint(tmp_path, nets, build):
  single = nets['single']
  _randomize(single, 3)
  _save_like_trainer(single, tmp_path)
  saved = _values(single.weights)
  _randomize(single, 4)
  info = branch_loading.load_backbone_branch(str(tmp_path), single, build)
  assert info['kind'] == 'single_res5'
  for a, b in zip(saved, _values(single.weights)):
    np.testing.assert_array_equal(a, b)


def test_missing_checkpoint_names_the_path(tmp_path, nets, build):
  missing = str(tmp_path / 'nope' / 'ckpt-7')
  with pytest.raises(ValueError, match='nope/ckpt-7.*does not exist'):
    branch_loading.load_backbone_branch(missing, nets['single'], build)
  with pytest.raises(ValueError, match=f'{tmp_path}.*without a checkpoint'):
    branch_loading.load_backbone_branch(str(tmp_path), nets['single'], build)


def test_checkpoint_without_backbone_is_rejected(tmp_path, nets, build):
  model = tf_keras.Sequential([tf_keras.layers.Dense(3)])
  model.build([None, 2])
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / 'ckpt'))
  with pytest.raises(ValueError,
                     match=f'{path} is not a ConST-CL/CVRL pretraining'):
    branch_loading.load_backbone_branch(path, nets['single'], build)


def test_backbone_of_another_size_is_rejected(tmp_path, nets, build):
  # Same variable count, other widths: the restore's shape check names it.
  other = _build(True, base_filters=4)
  path = _save_like_trainer(other, tmp_path)
  with pytest.raises(ValueError, match=f'{path}.*Y backbone.*shape'):
    branch_loading.load_backbone_branch(path, nets['single'], build)


def test_stage_layers_split_the_backbone_by_stage(nets):
  y = nets['temp_y']
  stages = branch_loading.stage_layers(y)
  assert tuple(stages) == branch_loading.STAGES
  # Tiny backbone: one bottleneck block per stage (4 convs + 4 BNs = 20
  # variables), a stem of conv + BN (kernel + 4 BN variables).
  counts = {s: sum(len(branch_loading.layer_variables(l)) for l in ls)
            for s, ls in stages.items()}
  assert counts == {'stem': 5, 'res2': 20, 'res3': 20, 'res4': 20,
                    'res5g': 20, 'res5r': 20}
  assert sum(counts.values()) == len(y.weights)
  ids = [id(l) for ls in stages.values() for l in ls]
  assert len(ids) == len(set(ids))
  assert 'res5r' not in branch_loading.stage_layers(nets['single'])


def test_reset_stages_resets_exactly_the_chosen_stages(nets):
  target, fresh = nets['temp_y'], nets['source_y']
  _randomize(target, 5)
  _randomize(fresh, 6)
  before = _values(target.weights)
  counts = branch_loading.reset_stages(target, fresh, ['stem', 'res4'])
  assert counts == {'stem': 5, 'res4': 20}
  reset_ids = {id(w) for s in ('stem', 'res4')
               for l in branch_loading.stage_layers(target)[s]
               for w in branch_loading.layer_variables(l)}
  fresh_values = {id(t): f.numpy() for t, f in zip(target.weights,
                                                   fresh.weights)}
  assert len(reset_ids) == 25
  for w, old in zip(target.weights, before):
    if id(w) in reset_ids:
      np.testing.assert_array_equal(w.numpy(), fresh_values[id(w)])
    else:
      np.testing.assert_array_equal(w.numpy(), old)


def test_reset_stages_names_a_bad_stage(nets):
  with pytest.raises(ValueError, match=r"subset of .*'res5r'.*\['res6'\]"):
    branch_loading.reset_stages(nets['temp_y'], nets['source_y'], ['res6'])
  with pytest.raises(ValueError, match="no stage 'res5r'"):
    branch_loading.reset_stages(nets['single'], nets['single'], ['res5r'])


def test_unmatched_variables_summary_names_variables_or_keeps_tf_line():
  found = AssertionError(
      "Found 20 Python objects that were not bound to checkpointed values, "
      "likely due to changes in the Python program. Showing 10 of 20 "
      "unmatched objects: [<tf.Variable 'a/gamma:0' shape=(4,) dtype=float32,"
      " numpy=\narray([1., 1., 1., 1.])>, <tf.Variable 'b/kernel:0' shape=(1,)"
      " dtype=float32, numpy=array([0.5])>]")
  assert branch_loading.unmatched_variables_summary(found) == (
      '20 variables unrestored, e.g. a/gamma:0, b/kernel:0')
  # TF's other wording: its first line, not "some variables".
  other = AssertionError('Object <Dense name=d> not assigned a value from '
                         'checkpoint.\nmore')
  assert branch_loading.unmatched_variables_summary(other) == (
      'objects unrestored: Object <Dense name=d> not assigned a value from '
      'checkpoint.')
