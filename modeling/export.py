"""SavedModel export of the pretrained ConST-CL backbone (both res5 branches).

The serving signature takes a batch of clips and returns the features that
downstream users want from a pretrained model:

  clips float32 [B, T, H, W, 3], RGB in [0, 1] (the pretraining input range;
    the backbone normalizes nothing itself)
  -> global_embedding float32 [B, P]: the global MLP head's projection of the
       pooled res5g, L2-normalized (the vector the global InfoNCE compares);
     res5g_pooled float32 [B, C]: res5g averaged over time and space (the
       holistic feature, e.g. for linear classification);
     res5r float32 [B, T', H', W', C]: the dense local-branch map (instance
       tasks). Models with a single res5 (`loss_endpoints` c5 / c4p, or the
       CVRL baseline) have no res5r; their one res5 is returned under this key.

Built on Model Garden's `official.core.export_base.ExportModule`; the export
itself is `official.core.export_base.export`.
"""
import contextlib
from typing import Any, Dict, List, Mapping, Optional, Text, Union

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import export_base

from modeling.backbones import branch_loading

SERVING_OUTPUTS = ('global_embedding', 'res5g_pooled', 'res5r')
# The one signature this module serves, and its input's name.
CLIPS_FUNCTION_KEY = 'clips'
CLIPS_INPUT_NAME = 'clips'


def resolve_checkpoint_path(checkpoint: str) -> str:
  """A checkpoint prefix from a prefix or a directory (-> latest checkpoint).

  Args:
    checkpoint: checkpoint prefix (`.../ckpt-300`) or a directory holding
      checkpoints (the trainer's `model_dir`).

  Returns:
    The checkpoint prefix.

  Raises:
    FileNotFoundError: naming the path, when nothing is there.
  """
  if not checkpoint:
    raise FileNotFoundError('no checkpoint given (empty path)')
  if tf.io.gfile.isdir(checkpoint):
    latest = tf.train.latest_checkpoint(checkpoint)
    if not latest:
      raise FileNotFoundError(
          f'checkpoint directory {checkpoint!r} holds no checkpoint (no '
          '"checkpoint" index file naming a ckpt-N)')
    return latest
  if not tf.io.gfile.exists(checkpoint + '.index'):
    raise FileNotFoundError(
        f'checkpoint {checkpoint!r} does not exist (expected the file '
        f'{checkpoint}.index, or a directory of checkpoints)')
  return checkpoint


def restore_pretrain_checkpoint(model: tf_keras.Model, checkpoint: str,
                                description: str = 'a ConstCLModel') -> str:
  """Restores a pretraining checkpoint into a built `ConstCLModel`.

  The Model Garden trainer saves `tf.train.Checkpoint(model=..., optimizer=
  ...)`; only `model` is read. Every variable of `model` must be in the
  checkpoint, so a checkpoint of a different model (or of another experiment
  variant) is refused instead of leaving random weights in place.

  Args:
    model: the model, with all its variables already created.
    checkpoint: checkpoint prefix or directory (-> latest).
    description: what the model is, for error messages (e.g. the
      experiment name).

  Returns:
    The checkpoint prefix that was read.

  Raises:
    FileNotFoundError: when there is no checkpoint at `checkpoint`.
    ValueError: when the checkpoint is not a pretraining checkpoint of this
      model, with what was expected and what was found.
  """
  path = resolve_checkpoint_path(checkpoint)
  try:
    names = [name for name, _ in tf.train.list_variables(path)]
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f'cannot read checkpoint {path!r}: {e}') from e
  roots = sorted({n.split('/')[0] for n in names if '/' in n})
  if 'model' not in roots:
    raise ValueError(
        f'{path!r} is not a ConST-CL pretraining checkpoint: expected the '
        'model under the key "model" (as train.py / the Model Garden trainer '
        'and tf.train.Checkpoint(model=model) write it), found top-level '
        f'keys {roots}')
  try:
    status = tf.train.Checkpoint(model=model).read(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    said = (branch_loading.unmatched_variables_summary(e)
            if isinstance(e, AssertionError)
            else ' '.join(str(e).splitlines())[:600])
    raise ValueError(
        f'{path!r} does not fit {description}: expected a pretraining '
        'checkpoint of the same experiment (backbone, global head and local '
        f'head with the same sizes). Restoring said: {said}') from None
  extra = _checkpoint_only_objects(path, model)
  if extra:
    shown = ', '.join(sorted(extra, key=len)[:3])
    raise ValueError(
        f'{path!r} does not fit {description}: the checkpoint holds '
        f'{len(extra)} model objects that {description} does not have (e.g. '
        f'{shown}), so they would be dropped; is it a checkpoint of another '
        'experiment variant (ConST-CL has res5r and a local head, CVRL '
        'neither)?')
  logging.info('Restored %s from %s', description, path)
  return path


def _checkpoint_only_objects(path: str, model: tf_keras.Model) -> List[str]:
  """Paths of the checkpoint's `model` objects that `model` does not have.

  `assert_existing_objects_matched` catches model variables missing from
  the checkpoint, not the other way round: a ConST-CL checkpoint read into
  the smaller CVRL model would lose res5r and the local head silently.
  """
  view = tf.train.CheckpointView(path)
  root = view.children(0)['model']
  names = {root: 'model'}
  stack = [root]
  while stack:
    node = stack.pop()
    for key, child in view.children(node).items():
      if child not in names:
        names[child] = f'{names[node]}/{key}'
        stack.append(child)
  matched = view.match(tf.train.Checkpoint(model=model))
  return [name for node, name in names.items() if node not in matched]


def global_projection_head(model: tf_keras.Model) -> tf_keras.layers.Layer:
  """The global MLP head of a `ConstCLModel`."""
  head = getattr(model, 'global_projection', None)
  if head is None:
    # ConstCLModel keeps the head private; this is the one place that reads
    # it.
    head = getattr(model, '_global_projection', None)
  if head is None:
    raise ValueError(f'{type(model).__name__} has no global projection head; '
                     'expected a ConstCLModel')
  return head


def backbone_features(clips: tf.Tensor, model: tf_keras.Model
                      ) -> Dict[str, tf.Tensor]:
  """The serving outputs (module docstring) of `model` for `clips`.

  (Argument order as Model Garden's `inference_step`: model second.)

  Args:
    clips: float32 [B, T, H, W, 3] in [0, 1].
    model: a `ConstCLModel`.

  Returns:
    dict with `SERVING_OUTPUTS`, all float32.
  """
  endpoints = model.backbone(clips, training=False)
  pooled = tf.reduce_mean(endpoints['5g'], axis=[1, 2, 3])
  projection = global_projection_head(model)(pooled, training=False)
  dense = endpoints['5r'] if '5r' in endpoints else endpoints['5g']
  return {
      'global_embedding': tf.math.l2_normalize(
          tf.cast(projection, tf.float32), axis=-1),
      'res5g_pooled': tf.cast(pooled, tf.float32),
      'res5r': tf.cast(dense, tf.float32),
  }


class ConstCLExportModule(export_base.ExportModule):
  """Serves `backbone_features` on clips of a fixed size.

  The backbone is fully convolutional, so the clip size may differ from the
  pretraining size; it must give at least one res5 voxel (e.g. 8x64x64 for
  the toy backbone).
  """

  def __init__(self, params, model: tf_keras.Model, num_frames: int,
               crop_size: int, batch_size: Optional[int] = None):
    """Initializes the module.

    Args:
      params: the experiment config (kept for reference, as Model Garden).
      model: a built and restored `ConstCLModel`.
      num_frames: T of the served clips.
      crop_size: H = W of the served clips.
      batch_size: fixed batch size of the signature, or None for any.
    """
    if num_frames < 1 or crop_size < 1:
      raise ValueError(f'num_frames ({num_frames}) and crop_size '
                       f'({crop_size}) must be positive')
    if batch_size is not None and batch_size < 1:
      raise ValueError(f'batch_size must be positive or None, got '
                       f'{batch_size}')
    super().__init__(params=params, model=model,
                     inference_step=backbone_features)
    self._num_frames = num_frames
    self._crop_size = crop_size
    self._batch_size = batch_size

  @property
  def input_signature(self) -> tf.TensorSpec:
    return tf.TensorSpec(
        [self._batch_size, self._num_frames, self._crop_size,
         self._crop_size, 3], tf.float32, name=CLIPS_INPUT_NAME)

  @tf.function
  def serve(self, clips: tf.Tensor) -> Mapping[Text, tf.Tensor]:
    return self.inference_step(clips)

  def get_inference_signatures(
      self, function_keys: Dict[Text, Text]) -> Mapping[Text, Any]:
    signatures = {}
    for key, signature_name in function_keys.items():
      if key != CLIPS_FUNCTION_KEY:
        raise ValueError(f'unknown function key {key!r}; this module serves '
                         f'only {CLIPS_FUNCTION_KEY!r}')
      signatures[signature_name] = self.serve.get_concrete_function(
          self.input_signature)
    return signatures


@contextlib.contextmanager
def _no_keras_traces():
  """Skips tracing every Keras layer's call function while saving.

  The serving signature is all a user of the SavedModel calls; the per-layer
  Keras traces would only serve `tf_keras.models.load_model`, and they make
  the export several times slower (about 60 s instead of 10 s for the toy
  model on 2 CPU cores). `tf_keras.Model.save(save_traces=False)` is the
  public switch; this is the same switch for `tf.saved_model.save`.
  """
  try:
    from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils  # pylint: disable=g-import-not-at-top
    scope = keras_saved_model_utils.keras_option_scope(save_traces=False)
  except (ImportError, AttributeError):
    scope = contextlib.nullcontext()
  with scope:
    yield


def export_saved_model(module: ConstCLExportModule, export_dir: str,
                       timestamped: bool = False) -> str:
  """Writes `module` as a SavedModel with the default serving signature.

  The module's model must already hold the pretrained weights
  (`restore_pretrain_checkpoint`).

  Args:
    module: the export module.
    export_dir: output folder (a timestamped subfolder when `timestamped`).
    timestamped: whether to write into `<export_dir>/<unix time>`.

  Returns:
    The SavedModel folder.
  """
  function_keys: Union[List[Text], Dict[Text, Text]] = {
      CLIPS_FUNCTION_KEY: tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY}
  with _no_keras_traces():
    path = export_base.export(module, function_keys, export_dir,
                              checkpoint_path=None, timestamped=timestamped)
  logging.info('SavedModel written to %s', path)
  return path
