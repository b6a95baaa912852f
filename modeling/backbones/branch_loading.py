"""Loads one res5 branch of a pretraining checkpoint into a single-res5 backbone.

A ConST-CL pretraining checkpoint holds a Y backbone (`ResNet3DY` with
`duplicate_res5=True`: stem, res2-res4, `res5g`, `res5r`) saved by the Model
Garden trainer as `tf.train.Checkpoint(global_step=..., model=...,
optimizer=..., backbone=...)` (the pretraining model's `checkpoint_items`
put the backbone at the top level). A CVRL checkpoint (our pretraining with
`local_loss: none`, or the `c5` / `c4p` ablations) holds a plain backbone
with one res5.

Downstream models use a single-branch backbone (`duplicate_res5=False`).
`load_backbone_branch` restores the checkpoint's backbone into a temporary
backbone of the checkpoint's kind, built by the caller's `build_backbone`
callable, then copies stem..res4 and the chosen res5 branch into the target
layer by layer. Everything is checked: a missing path, a checkpoint without a
backbone, a backbone of neither kind, a variable of the target left
unrestored or a shape mismatch each raise a `ValueError` naming the path and
what was expected.

`reset_stages` (with `stage_layers`) puts chosen stages of a backbone back to
a fresh initialization, for experiments on which pretrained stages a
downstream task uses (`tools/reset_backbone_stages.py`);
`frozen_variable_ids` names the variables of the early stages a train step
keeps fixed (`freeze_until`).
"""
import re
from typing import Any, Callable, Dict, List, Mapping, Sequence, Set, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from configs import backbones as backbones_cfg
from modeling.layers import blocks_3d

BRANCH_ENDPOINTS = {'res5g': '5g', 'res5r': '5r'}
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def resolve_checkpoint_path(path: str, field: str = 'task.init_checkpoint'
                            ) -> str:
  """A checkpoint file prefix from a model dir or a prefix.

  Args:
    path: A model dir (its latest checkpoint is used) or a checkpoint prefix.
    field: The config field that gave `path`, for the error message.

  Returns:
    The checkpoint prefix.

  Raises:
    ValueError: naming `field` and `path` when there is no checkpoint there.
  """
  if not path:
    raise ValueError(f'{field} is empty: expected a model dir or a '
                     'checkpoint prefix')
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      raise ValueError(
          f'{field}={path!r} is a directory without a checkpoint (no '
          '"checkpoint" index file naming a ckpt-N): expected the model dir '
          'of a training run')
    return latest
  if not tf.io.gfile.exists(path + '.index'):
    raise ValueError(
        f'{field}={path!r} does not exist: expected a model dir or a '
        f'checkpoint prefix with {path}.index beside it')
  return path


def backbone_checkpoint_keys(path: str) -> List[str]:
  """The variable keys stored under the checkpoint's top-level `backbone`."""
  return sorted(
      name for name, _ in tf.train.list_variables(path)
      if name.startswith('backbone/') and name.endswith(_VALUE_SUFFIX)
      and '.OPTIMIZER_SLOT' not in name)


def _keras_producer(tensor) -> Tuple[tf_keras.layers.Layer, List]:
  """(layer, input tensors) of the node that produced a functional tensor."""
  layer, node_index, _ = tensor._keras_history  # pylint: disable=protected-access
  node = layer._inbound_nodes[node_index]  # pylint: disable=protected-access
  return layer, tf.nest.flatten(node.keras_inputs)


def layer_variables(layer: tf_keras.layers.Layer) -> List[tf.Variable]:
  """A layer's variables in creation order, whatever its `trainable` state.

  `layer.weights` lists trainable variables first, so a frozen copy of a
  layer orders them differently from a trainable one; the per-sublayer
  creation lists do not change when `trainable` does.
  """
  out = []
  # pylint: disable=protected-access
  for sub in layer._flatten_layers(include_self=True, recursive=True):
    out.extend(sub._trainable_weights + sub._non_trainable_weights)
  # pylint: enable=protected-access
  seen = set()
  return [v for v in out if not (v.ref() in seen or seen.add(v.ref()))]


def layers_between(model: tf_keras.Model, output, stop) -> List[
    tf_keras.layers.Layer]:
  """Layers with weights on the paths from `stop` tensors to `output`.

  Args:
    model: A functional model.
    output: One of its (symbolic) output tensors.
    stop: Symbolic tensors where the walk stops (their producers excluded);
      empty to walk back to the inputs.

  Returns:
    The layers, in `model.layers` order (creation order, so the same order
    for two models built by the same code).
  """
  stop_ids = {id(t) for t in stop}
  seen = set()
  stack = [output]
  while stack:
    tensor = stack.pop()
    if id(tensor) in stop_ids:
      continue
    layer, inputs = _keras_producer(tensor)
    if id(layer) in seen:
      continue
    seen.add(id(layer))
    stack.extend(inputs)
  return [l for l in model.layers if id(l) in seen and l.weights]


def frozen_variable_ids(backbone: tf_keras.Model,
                        freeze_until: str) -> Set[int]:
  """ids of the trainable variables from the input up to `freeze_until`.

  'stem' covers the stem, '2' the stem and res2, '3' also res3, '' nothing
  (`stage_layers` splits the stages). A train step drops these from the
  variables it updates; batch norm in them still runs in training mode (its
  moving statistics update).

  Raises:
    ValueError: for a value outside `configs.backbones.FREEZE_UNTIL`.
  """
  backbones_cfg.check_freeze_until(freeze_until)
  if not freeze_until:
    return set()
  last = 'stem' if freeze_until == 'stem' else f'res{freeze_until}'
  stages = stage_layers(backbone)
  return {id(v) for s in STAGES[:STAGES.index(last) + 1]
          for l in stages[s] for v in l.trainable_weights}


def branch_layers(backbone: tf_keras.Model, endpoint: str
                  ) -> Tuple[List[tf_keras.layers.Layer],
                             List[tf_keras.layers.Layer]]:
  """(trunk layers: stem..res4, branch layers: res4 -> `endpoint`)."""
  outputs = backbone.output
  if endpoint not in outputs:
    raise ValueError(f'backbone has no endpoint {endpoint!r}; it has '
                     f'{sorted(outputs)}')
  trunk = layers_between(backbone, outputs['4'], [])
  branch = layers_between(backbone, outputs[endpoint], [outputs['4']])
  return trunk, branch


def copy_branch(source: tf_keras.Model, target: tf_keras.Model,
                branch: str = 'res5g') -> int:
  """Copies stem..res4 and `branch` of `source` into single-res5 `target`.

  Args:
    source: A backbone with endpoints '4' and the branch's endpoint.
    target: A backbone with one res5 (its '5g' endpoint).
    branch: 'res5g' or 'res5r'.

  Returns:
    The number of variables copied (all of the target's).

  Raises:
    ValueError: if the layer lists or weight shapes of the two disagree.
  """
  if branch not in BRANCH_ENDPOINTS:
    raise ValueError(f'branch must be one of {sorted(BRANCH_ENDPOINTS)}, got '
                     f'{branch!r}')
  src_trunk, src_branch = branch_layers(source, BRANCH_ENDPOINTS[branch])
  tgt_trunk, tgt_branch = branch_layers(target, '5g')
  pairs = list(zip(src_trunk, tgt_trunk)) + list(zip(src_branch, tgt_branch))
  if (len(src_trunk), len(src_branch)) != (len(tgt_trunk), len(tgt_branch)):
    raise ValueError(
        f'copy_branch: source has {len(src_trunk)} trunk + {len(src_branch)} '
        f'{branch} layers with weights, target has {len(tgt_trunk)} + '
        f'{len(tgt_branch)}: the backbones were built from different configs')
  copied = 0
  for src, tgt in pairs:
    src_w, tgt_w = layer_variables(src), layer_variables(tgt)
    if (type(src) is not type(tgt) or  # pylint: disable=unidiomatic-typecheck
        [w.shape for w in src_w] != [w.shape for w in tgt_w]):
      raise ValueError(
          f'copy_branch: layer {src.name} ({type(src).__name__}, '
          f'{[tuple(w.shape) for w in src_w]}) does not match target layer '
          f'{tgt.name} ({type(tgt).__name__}, '
          f'{[tuple(w.shape) for w in tgt_w]})')
    for s, t in zip(src_w, tgt_w):
      t.assign(s)
      copied += 1
  if copied != len(target.weights):
    raise ValueError(f'copy_branch: copied {copied} of the target\'s '
                     f'{len(target.weights)} variables; the rest would stay '
                     'at their random initialization')
  return copied


def restore_items(path: str, items: Mapping[str, Any], what: str,
                  field: str = 'task.init_checkpoint') -> None:
  """Restores `items` (e.g. {'backbone': ...}) from checkpoint prefix `path`.

  Every variable of the items present in the checkpoint must get a value;
  the rest of the checkpoint (other heads, optimizer) is not needed.

  Raises:
    ValueError: naming `field`, `path` and `what`, when a variable's shape
      differs or the items' variables are left unrestored (e.g. a CVRL
      checkpoint, one res5, into a Y backbone, two).
  """
  try:
    status = tf.train.Checkpoint(**items).read(path)
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    # A variable of another shape: the backbone config differs.
    raise ValueError(f'{field}={path!r}: cannot restore it as a {what} of '
                     f'the configured size (a variable shape differs: was it '
                     f'trained with another backbone config?): {e}') from e
  try:
    status.expect_partial().assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(
        f'{field}={path!r}: restoring it as a {what} left '
        f'{unmatched_variables_summary(e)} (a CVRL checkpoint has one res5, a '
        'ConST-CL one two: task.model.backbone.resnet_3d_y.duplicate_res5 '
        'must match it)') from None


def unmatched_variables_summary(error: AssertionError) -> str:
  """'N variables unrestored, e.g. a, b, c' from `assert_*_matched`'s error.

  TF's message holds the repr (values included) of up to 10 unmatched
  variables; an error that quotes or chains it runs to hundreds of lines.
  """
  message = str(error)
  found = re.search(r'Found (\d+) Python objects', message)
  names = re.findall(r"<tf\.Variable '([^']+)'", message)
  if not found and not names:
    # TF's other wording ("Object ... not assigned a value from
    # checkpoint."): its first line, shortened.
    return f'objects unrestored: {message.splitlines()[0][:300]}'
  count = found.group(1) if found else 'some'
  examples = f', e.g. {", ".join(names[:3])}' if names else ''
  return f'{count} variables unrestored{examples}'


def restore_init_checkpoint(model: tf_keras.Model, init_checkpoint: str,
                            modules: str = 'backbone') -> str:
  """A task's `initialize`: restores `init_checkpoint` into `model`.

  Args:
    model: a model with `backbone` and `checkpoint_items`.
    init_checkpoint: a model dir (its latest checkpoint) or a prefix.
    modules: 'backbone', or 'all' (every item of `model.checkpoint_items`).

  Returns:
    The checkpoint prefix restored.
  """
  path = resolve_checkpoint_path(init_checkpoint)
  items = ({'backbone': model.backbone} if modules == 'backbone'
           else model.checkpoint_items)
  restore_items(path, items, ' and '.join(items))
  return path


def load_backbone_branch(
    path: str,
    target: tf_keras.Model,
    build_backbone: Callable[[bool], tf_keras.Model],
    branch: str = 'res5g',
    field: str = 'task.init_checkpoint') -> Dict[str, object]:
  """Restores a pretraining checkpoint's backbone into `target`.

  Args:
    path: Pretraining model dir or checkpoint prefix.
    target: The single-res5 backbone to fill (variables created).
    build_backbone: `build_backbone(duplicate_res5)` builds a backbone from
      the same config as `target` with or without the duplicated res5
      (variables created).
    branch: Which res5 of a Y checkpoint to keep: 'res5g' or 'res5r'.
    field: The config field that gave `path`, for error messages.

  Returns:
    {'path': the checkpoint prefix read, 'kind': 'y' | 'single_res5',
     'branch': the branch copied, 'num_variables': variables restored}.

  Raises:
    ValueError: naming the path and what was expected, when the checkpoint
      is missing, has no `backbone`, or its backbone matches neither a Y nor
      a single-res5 backbone of the configured size.
  """
  if branch not in BRANCH_ENDPOINTS:
    raise ValueError(f'branch must be one of {sorted(BRANCH_ENDPOINTS)}, got '
                     f'{branch!r}')
  prefix = resolve_checkpoint_path(path, field)
  keys = backbone_checkpoint_keys(prefix)
  if not keys:
    top = sorted({name.split('/')[0]
                  for name, _ in tf.train.list_variables(prefix)})
    raise ValueError(
        f'{field}: {prefix} is not a ConST-CL/CVRL pretraining checkpoint: '
        'expected a top-level `backbone` object (written by the pretraining '
        f'trainer from the model\'s checkpoint_items); found {top}')
  y_backbone = build_backbone(True)
  num_y = len(y_backbone.weights)
  num_single = len(target.weights)
  if len(keys) == num_y:
    restore_items(prefix, {'backbone': y_backbone},
                  'Y backbone (res5g + res5r)')
    copied = copy_branch(y_backbone, target, branch)
    kind = 'y'
  elif len(keys) == num_single:
    if branch != 'res5g':
      logging.warning('%s has a single res5 (CVRL / c5 / c4p); it is used as '
                      'is for branch=%s', prefix, branch)
    restore_items(prefix, {'backbone': target}, 'single-res5 backbone (CVRL)')
    copied = num_single
    kind = 'single_res5'
  else:
    raise ValueError(
        f'{field}: the backbone in {prefix} has {len(keys)} variables; '
        f'expected {num_y} (ConST-CL Y backbone: res5g + res5r) or '
        f'{num_single} (CVRL: one res5) for the configured '
        'task.model.backbone: was it pretrained with another backbone '
        'config (block_repeats, base_filters)?')
  logging.info('Loaded %s backbone (%s, %d variables) from %s', kind, branch,
               copied, prefix)
  return {'path': prefix, 'kind': kind, 'branch': branch,
          'num_variables': copied}


def weights_by_part(backbone: tf_keras.Model, endpoints: Sequence[str]
                    ) -> Dict[str, List[tf.Variable]]:
  """{'trunk': stem..res4 variables, endpoint: its branch's variables}."""
  out = {}
  for endpoint in endpoints:
    trunk, branch = branch_layers(backbone, endpoint)
    out['trunk'] = [w for l in trunk for w in layer_variables(l)]
    out[endpoint] = [w for l in branch for w in layer_variables(l)]
  return out


# Stages of a ResNet3DY backbone, input to output (`stage_layers`).
STAGES = ('stem', 'res2', 'res3', 'res4', 'res5g', 'res5r')


def stage_layers(backbone: tf_keras.Model
                 ) -> Dict[str, List[tf_keras.layers.Layer]]:
  """{stage: its layers with weights}, for the stages of `STAGES` it has.

  Found from the endpoints '2', '3', '4', '5g' and '5r', so the split holds
  for any block_repeats; the stem is the part of the walk to res2 that is
  not a residual block. A backbone without a duplicated res5 ('5r' is '5g')
  has no `res5r` stage.

  Args:
    backbone: A `ResNet3DY` (functional, endpoints '2'..'5r').

  Returns:
    The layers per stage, each list in `backbone.layers` order.

  Raises:
    ValueError: if an endpoint is missing.
  """
  outputs = backbone.output
  missing = [k for k in ('2', '3', '4', '5g', '5r') if k not in outputs]
  if missing:
    raise ValueError(f'stage_layers needs a ResNet3DY backbone with endpoints '
                     f"'2', '3', '4', '5g', '5r'; missing {missing} (it has "
                     f'{sorted(outputs)})')
  to_res2 = layers_between(backbone, outputs['2'], [])
  # The residual blocks of res2 hang off the stem's max pool; every layer
  # with weights before them (stem conv and its BN) is the stem.
  blocks = [l for l in to_res2
            if isinstance(l, blocks_3d.DilatedBottleneckBlock3D)]
  out = {'stem': [l for l in to_res2 if l not in blocks], 'res2': blocks}
  for stage, end, start in (('res3', '3', '2'), ('res4', '4', '3'),
                            ('res5g', '5g', '4'), ('res5r', '5r', '4')):
    if stage == 'res5r' and outputs['5r'] is outputs['5g']:
      continue
    out[stage] = layers_between(backbone, outputs[end], [outputs[start]])
  return out


def reset_stages(target: tf_keras.Model, fresh: tf_keras.Model,
                 stages: Sequence[str]) -> Dict[str, int]:
  """Copies `fresh`'s variables of `stages` into `target`, layer by layer.

  With `fresh` a newly initialized backbone of the same config, this puts
  those stages of a pretrained `target` back to a random initialization
  (e.g. to see which pretrained stages help or hinder a downstream task);
  the other stages keep their pretrained values.

  Args:
    target: Backbone to modify (variables created).
    fresh: Backbone built from the same config (variables created).
    stages: Names from `STAGES`.

  Returns:
    {stage: number of variables reset}.

  Raises:
    ValueError: for an unknown stage, a stage the backbones do not have, or
      layers / shapes that differ between the two.
  """
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise ValueError(f'reset_stages: stages must be a non-empty subset of '
                     f'{STAGES}, got {list(stages)}')
  target_stages, fresh_stages = stage_layers(target), stage_layers(fresh)
  counts = {}
  for stage in stages:
    if stage not in target_stages or stage not in fresh_stages:
      raise ValueError(f'reset_stages: the backbone has no stage {stage!r} '
                       f'(it has {sorted(target_stages)}; res5r needs '
                       'duplicate_res5=True)')
    if len(target_stages[stage]) != len(fresh_stages[stage]):
      raise ValueError(f'reset_stages: {stage} has {len(target_stages[stage])}'
                       f' layers with weights in the target and '
                       f'{len(fresh_stages[stage])} in the fresh backbone')
    counts[stage] = 0
    for tgt, src in zip(target_stages[stage], fresh_stages[stage]):
      tgt_w, src_w = layer_variables(tgt), layer_variables(src)
      if [w.shape for w in tgt_w] != [w.shape for w in src_w]:
        raise ValueError(
            f'reset_stages: {stage} layer {tgt.name} '
            f'{[tuple(w.shape) for w in tgt_w]} does not match the fresh '
            f'layer {src.name} {[tuple(w.shape) for w in src_w]}')
      for t, s in zip(tgt_w, src_w):
        t.assign(s)
        counts[stage] += 1
  return counts
