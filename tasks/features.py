"""Features of a pretrained ConST-CL model for every video of a dataset.

Used by `tools/extract_features.py` (and, for loading a pretrained model, by
`tools/export_saved_model.py` and `tools/visualize_attention.py`).

Clip sampling is deterministic: `num_clips` clips of T frames at the
experiment's temporal stride, with starts evenly spaced over the video (a video
shorter than one clip loops around, as the pretraining parser does). Frames
are resized so the shorter side is the crop size, centre-cropped and scaled to
[0, 1]. The features of a video are stacked over its clips: one array of shape
[num_clips, ...] per video.
"""
import os
import re
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

from absl import logging
import cv2
import numpy as np
import tensorflow as tf
import tf_keras
import tqdm

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.modeling import factory_3d

from configs import const_cl as exp_cfg
from dataloaders import video_records
from modeling import const_cl_model  # pylint: disable=unused-import
from modeling import export as export_lib
from tasks import pretrain
from tasks import registry_imports

ENDPOINTS = export_lib.SERVING_OUTPUTS
FORMATS = ('npy', 'tfrecord')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg',
                    '.mpeg')
# Keys of the feature TFRecords (one tf.train.Example per video).
FEATURE_KEY = 'features'
FEATURE_SHAPE_KEY = 'features/shape'
FEATURE_ENDPOINT_KEY = 'features/endpoint'


def assemble_experiment_config(
    experiment: str, config_files: Sequence[str] = (),
    params_override: str = '',
    overrides: Optional[Dict[str, Any]] = None) -> cfg.ExperimentConfig:
  """Registered experiment -> YAML files -> overrides -> validate -> lock.

  The same order as `train.py`, so a tool sees the model that was trained.
  Any experiment; `load_experiment_config` is the pretraining one.

  Args:
    experiment: registered experiment name.
    config_files: YAML files applied in order (unknown keys are errors).
    params_override: a `a.b=1,c=2` string or YAML (strict too).
    overrides: a dict applied last (strict), e.g. a tool's own settings.

  Returns:
    The validated, locked config.
  """
  registry_imports.check_experiment(experiment)
  params = exp_factory.get_exp_config(experiment)
  for path in config_files or ():
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'config file {path!r} does not exist')
    params = hyperparams.override_params_dict(params, path, is_strict=True)
  if params_override:
    params = hyperparams.override_params_dict(params, params_override,
                                              is_strict=True)
  if overrides:
    params.override(overrides, is_strict=True)
  params.validate()
  params.lock()
  return params


def load_experiment_config(experiment: str,
                           config_files: Sequence[str] = (),
                           params_override: str = '') -> cfg.ExperimentConfig:
  """`assemble_experiment_config` of a ConST-CL pretraining experiment."""
  params = assemble_experiment_config(experiment, config_files,
                                      params_override)
  if not isinstance(params.task, exp_cfg.ConstCLPretrainTask):
    raise ValueError(f'experiment {experiment!r} is not a ConST-CL '
                     f'pretraining experiment (task config '
                     f'{type(params.task).__name__})')
  return params


def build_pretrain_model(params: cfg.ExperimentConfig) -> tf_keras.Model:
  """The float32 `ConstCLModel` of a pretraining experiment, variables built.

  Built at the training clip size (the head's position tables depend on it),
  without reading any data.
  """
  data = params.task.train_data
  input_specs = tf_keras.layers.InputSpec(
      shape=[None] + list(data.feature_shape))
  model = factory_3d.build_model(
      params.task.model.model_type, input_specs=input_specs,
      model_config=params.task.model, num_classes=0)
  model(pretrain.ConstCLPretrainTask.dummy_inputs(data, batch_size=1),
        training=False)
  return model


def load_pretrained_model(params: cfg.ExperimentConfig,
                          checkpoint: str,
                          experiment: str = '') -> tf_keras.Model:
  """Builds the experiment's model and restores a pretraining checkpoint."""
  # Fails on a missing checkpoint before spending time building the model.
  checkpoint = export_lib.resolve_checkpoint_path(checkpoint)
  model = build_pretrain_model(params)
  what = (f'the ConstCLModel of experiment {experiment!r}' if experiment
          else 'the ConstCLModel of this experiment')
  export_lib.restore_pretrain_checkpoint(model, checkpoint, what)
  return model


def rebuild_for_clip_size(params: cfg.ExperimentConfig, model: tf_keras.Model,
                          num_frames: int, crop_size: int) -> tf_keras.Model:
  """`model`'s backbone and global head for clips of another size.

  The backbone is a functional Keras model built for the training clip size;
  its weights do not depend on it, so a model built for the new size takes a
  copy of them (the local head, whose position tables do depend on the size,
  is left unbuilt: serving does not use it).

  Args:
    params: the experiment config.
    model: the restored model.
    num_frames: T of the new clips.
    crop_size: H = W of the new clips.

  Returns:
    `model` itself when the size is the training size, else the new model.
  """
  data = params.task.train_data
  if (num_frames, crop_size, crop_size) == tuple(data.feature_shape[:3]):
    return model
  input_specs = tf_keras.layers.InputSpec(
      shape=[None, num_frames, crop_size, crop_size, 3])
  try:
    new = factory_3d.build_model(
        params.task.model.model_type, input_specs=input_specs,
        model_config=params.task.model, num_classes=0)
  except ValueError as e:
    raise ValueError(f'clips of {num_frames}x{crop_size}x{crop_size} do not '
                     f'fit the backbone: {e}') from e
  new.backbone.set_weights(model.backbone.get_weights())
  old_head = export_lib.global_projection_head(model)
  new_head = export_lib.global_projection_head(new)
  channels = int(new.backbone.output_specs['5g'][-1])
  new_head(tf.zeros([1, channels]), training=False)
  new_head.set_weights(old_head.get_weights())
  return new


def clip_geometry(params: cfg.ExperimentConfig,
                  num_frames: Optional[int] = None,
                  crop_size: Optional[int] = None) -> Tuple[int, int, int]:
  """(num_frames, temporal stride, crop size), defaults from the config.

  Raises:
    ValueError: a given `num_frames` or `crop_size` below 1 (0 was silently
      the default; a negative size failed deep in TensorFlow), naming the
      flag, or frames that are not a multiple of the backbone stride.
  """
  for name, value in (('num_frames', num_frames), ('crop_size', crop_size)):
    if value is not None and value < 1:
      raise ValueError(f'--{name}={value}: must be >= 1 (omit it for the '
                       "training clip's)")
  data = params.task.train_data
  t = num_frames or data.feature_shape[0]
  size = crop_size or data.feature_shape[1]
  stride = data.temporal_stride
  frame_stride = exp_cfg.backbone_frame_stride(params.task.model)
  if t % frame_stride:
    raise ValueError(f'num_frames ({t}) must be a multiple of the backbone '
                     f'temporal stride ({frame_stride})')
  return t, stride, size


def sample_clip_indices(num_source_frames: int, num_frames: int, stride: int,
                        num_clips: int = 1) -> np.ndarray:
  """Source-frame indices of `num_clips` evenly spaced clips.

  Args:
    num_source_frames: frames in the video (>= 1).
    num_frames: T frames per clip.
    stride: temporal stride.
    num_clips: clips per video; starts are evenly spaced from the first to
      the last valid start (one clip: the centred clip).

  Returns:
    int64 [num_clips, T]; a video shorter than a clip loops around.
  """
  if num_source_frames < 1:
    raise ValueError(f'a video needs at least one frame, got '
                     f'{num_source_frames}')
  if num_clips < 1:
    raise ValueError(f'num_clips must be >= 1, got {num_clips}')
  span = (num_frames - 1) * stride + 1
  last_start = max(num_source_frames - span, 0)
  if num_clips == 1:
    starts = np.array([last_start // 2])
  else:
    starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
  idx = starts[:, None] + stride * np.arange(num_frames)[None, :]
  return np.mod(idx, num_source_frames).astype(np.int64)


def center_crop_geometry(height: int, width: int, crop_size: int
                         ) -> Tuple[int, int, int, int]:
  """(resized h, resized w, top, left) of shorter-side resize + centre crop."""
  scale = crop_size / min(height, width)
  rh = max(crop_size, int(round(height * scale)))
  rw = max(crop_size, int(round(width * scale)))
  return rh, rw, (rh - crop_size) // 2, (rw - crop_size) // 2


def resize_and_center_crop(frames: np.ndarray, crop_size: int) -> np.ndarray:
  """uint8 [F, H, W, 3] -> uint8 [F, S, S, 3]: shorter side to S, centre crop."""
  _, h, w, _ = frames.shape
  rh, rw, top, left = center_crop_geometry(h, w, crop_size)
  out = np.empty((frames.shape[0], crop_size, crop_size, 3), np.uint8)
  for i, frame in enumerate(frames):
    if (rh, rw) != (h, w):
      interp = cv2.INTER_AREA if rh < h else cv2.INTER_LINEAR
      frame = cv2.resize(frame, (rw, rh), interpolation=interp)
    out[i] = frame[top:top + crop_size, left:left + crop_size]
  return out


def crop_boxes(boxes: np.ndarray, height: int, width: int,
               crop_size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Normalized source boxes [n, 4] -> boxes in the centre crop, and validity.

  A box is valid when some of it is inside the crop; it is clipped to it.
  """
  rh, rw, top, left = center_crop_geometry(height, width, crop_size)
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  ys = (boxes[:, [0, 2]] * rh - top) / crop_size
  xs = (boxes[:, [1, 3]] * rw - left) / crop_size
  out = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=-1)
  out = np.clip(out, 0.0, 1.0)
  valid = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
  return out.astype(np.float32), valid


def make_clips(frames: np.ndarray, num_frames: int, stride: int,
               crop_size: int, num_clips: int = 1) -> np.ndarray:
  """Video frames uint8 [F, H, W, 3] -> clips float32 [K, T, S, S, 3] in [0,1]."""
  idx = sample_clip_indices(frames.shape[0], num_frames, stride, num_clips)
  used = np.unique(idx)
  cropped = resize_and_center_crop(frames[used], crop_size)
  lookup = {int(f): i for i, f in enumerate(used)}
  clips = cropped[np.vectorize(lookup.get)(idx)]
  return clips.astype(np.float32) / 255.0


def decode_jpeg_frames(encoded: Sequence[bytes]) -> np.ndarray:
  """JPEG bytes per frame -> uint8 [F, H, W, 3] (TensorFlow's decoder, as in
  training)."""
  frames = [tf.io.decode_jpeg(e, channels=3).numpy() for e in encoded]
  shapes = {f.shape for f in frames}
  if len(shapes) != 1:
    raise ValueError(f'frames of different sizes {sorted(shapes)}')
  return np.stack(frames)


class Video:
  """One decoded video: a name, its frames, optional labels, or an error."""

  def __init__(self, name: str, frames: Optional[np.ndarray] = None,
               label: Optional[List[int]] = None, error: str = ''):
    self.name = name
    self.frames = frames
    self.label = label or []
    self.error = error


def _safe_name(name: str) -> str:
  """A file name from a video id ('/' and odd characters become '_')."""
  name = re.sub(r'[^A-Za-z0-9._=-]+', '_', name).strip('._')
  return name or 'video'


def count_records(pattern: str) -> int:
  files = video_records.match_tfrecord_files(pattern, '--input_pattern')
  return sum(1 for _ in tf.data.TFRecordDataset(files))


def iter_tfrecord_videos(pattern: str) -> Iterator[Video]:
  """Videos of Model Garden video TFRecords, in file order.

  Named by `clip/id`, else `<file name>_<index in file>`. A record that does
  not parse or decode is yielded with `error` set (the caller counts it).
  """
  files = video_records.match_tfrecord_files(pattern, '--input_pattern')
  for path in files:
    base = os.path.splitext(os.path.basename(path))[0]
    for i, serialized in enumerate(
        tf.data.TFRecordDataset(path).as_numpy_iterator()):
      fallback = f'{base}_{i:06d}'
      try:
        record = video_records.read_sequence_example(serialized)
      except Exception as e:  # pylint: disable=broad-except
        yield Video(fallback, error=f'{path} record {i}: not a video '
                    f'SequenceExample ({e})')
        continue
      name = record['video_id'] or fallback
      if not record['frames']:
        yield Video(name, error=f'{path} record {i} ({name}): no frames')
        continue
      try:
        frames = decode_jpeg_frames(record['frames'])
      except (tf.errors.OpError, ValueError) as e:
        yield Video(name, error=f'{path} record {i} ({name}): cannot decode '
                    f'frames: {str(e).splitlines()[0]}')
        continue
      yield Video(name, frames, record['label'])


def list_video_files(video_dir: str) -> List[str]:
  if not os.path.isdir(video_dir):
    raise FileNotFoundError(f'--video_dir {video_dir!r} is not a directory')
  files = sorted(f for f in os.listdir(video_dir)
                 if f.lower().endswith(VIDEO_EXTENSIONS))
  if not files:
    raise FileNotFoundError(f'--video_dir {video_dir!r} holds no video file '
                            f'({", ".join(VIDEO_EXTENSIONS)})')
  return [os.path.join(video_dir, f) for f in files]


def read_video_file(path: str) -> np.ndarray:
  """All frames of a video file as uint8 RGB [F, H, W, 3] (cv2)."""
  capture = cv2.VideoCapture(path)
  frames = []
  try:
    while True:
      ok, frame = capture.read()
      if not ok:
        break
      frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
  finally:
    capture.release()
  if not frames:
    raise ValueError(f'{path}: no frame could be decoded')
  return np.stack(frames)


def iter_video_files(paths: Sequence[str]) -> Iterator[Video]:
  """Videos of files, named by file name without extension."""
  for path in paths:
    name = os.path.splitext(os.path.basename(path))[0]
    try:
      yield Video(name, read_video_file(path))
    except ValueError as e:
      yield Video(name, error=str(e))


class FeatureExtractor:
  """Turns a video's frames into the features of one serving output."""

  def __init__(self, feature_fn: Callable[[tf.Tensor], Dict[str, tf.Tensor]],
               num_frames: int, stride: int, crop_size: int,
               endpoint: str = 'res5g_pooled', num_clips: int = 1):
    """Initializes the extractor.

    Args:
      feature_fn: clips [K, T, S, S, 3] -> dict of `ENDPOINTS` (e.g.
        `ConstCLExportModule.serve`, or a reloaded SavedModel signature).
      num_frames: T.
      stride: temporal stride.
      crop_size: S.
      endpoint: which output to keep.
      num_clips: clips per video.
    """
    if endpoint not in ENDPOINTS:
      raise ValueError(f'endpoint must be one of {ENDPOINTS}, got '
                       f'{endpoint!r}')
    self._fn = feature_fn
    self._geometry = (num_frames, stride, crop_size)
    self._endpoint = endpoint
    self._num_clips = num_clips

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [F, H, W, 3] -> float32 [num_clips, ...] features."""
    t, s, size = self._geometry
    clips = make_clips(frames, t, s, size, self._num_clips)
    outputs = self._fn(tf.constant(clips))
    return outputs[self._endpoint].numpy()


def _feature_example(name: str, features: np.ndarray, endpoint: str,
                     label: Sequence[int]) -> tf.train.Example:
  ex = tf.train.Example()
  f = ex.features.feature
  f[video_records.VIDEO_ID_KEY].bytes_list.value[:] = [name.encode('utf-8')]
  f[FEATURE_KEY].float_list.value[:] = features.reshape(-1).tolist()
  f[FEATURE_SHAPE_KEY].int64_list.value[:] = list(features.shape)
  f[FEATURE_ENDPOINT_KEY].bytes_list.value[:] = [endpoint.encode('utf-8')]
  if label:
    f[video_records.LABEL_KEY].int64_list.value[:] = [int(l) for l in label]
  return ex


def iter_feature_records(path: str, with_endpoint: bool = False
                         ) -> Iterator[Tuple[Any, ...]]:
  """(clip/id, features array, labels) of each record of a feature file.

  With `with_endpoint`, each tuple also ends with the record's
  `features/endpoint` ('' when the record has none).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is not a TFRecord file, a record is not a
      tf.train.Example, or its value count does not fit its shape, naming
      the file and the record.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: no such feature file (write it with '
                            'tools/extract_features.py --format=tfrecord)')
  try:
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
  except tf.errors.OpError as e:
    raise ValueError(f'{path}: not a readable TFRecord file: '
                     f'{e.message}') from e
  for index, serialized in enumerate(records):
    try:
      ex = tf.train.Example.FromString(serialized)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'{path}: record {index} is not a tf.train.Example: '
                       f'{e}') from e
    f = ex.features.feature
    ids = f[video_records.VIDEO_ID_KEY].bytes_list.value
    name = ids[0].decode('utf-8') if ids else f'#{index}'
    shape = list(f[FEATURE_SHAPE_KEY].int64_list.value)
    values = f[FEATURE_KEY].float_list.value
    if not shape or int(np.prod(shape)) != len(values):
      raise ValueError(f'{path}: record {name!r} has {len(values)} feature '
                       f'values for the shape {shape} ({FEATURE_SHAPE_KEY})')
    out = (name, np.asarray(values, np.float32).reshape(shape),
           list(f[video_records.LABEL_KEY].int64_list.value))
    if with_endpoint:
      endpoint = f[FEATURE_ENDPOINT_KEY].bytes_list.value
      out += (endpoint[0].decode('utf-8') if endpoint else '',)
    yield out


def read_feature_records(path: str) -> Dict[str, np.ndarray]:
  """Reads feature TFRecords back: {clip/id: features array}."""
  return {name: x for name, x, _ in iter_feature_records(path)}


def extract_features(videos: Iterable[Video], extractor: FeatureExtractor,
                     output_dir: str, output_format: str = 'npy',
                     endpoint: str = 'res5g_pooled',
                     total: Optional[int] = None,
                     progress: bool = True) -> Dict[str, object]:
  """Writes the features of every video; returns a summary.

  Args:
    videos: `Video`s (videos with `error` set are skipped, counted, logged).
    extractor: the feature extractor.
    output_dir: folder for `<name>.npy` files or `<endpoint>.tfrecord`.
    output_format: npy | tfrecord.
    endpoint: the endpoint name (for the TFRecord file and records).
    total: number of videos, for the progress bar.
    progress: show a tqdm progress bar.

  Returns:
    dict with `written` (count), `skipped` (count), `errors` (list of str),
    `names` (written names, in order), `shape` (feature shape of the last
    video) and `outputs` (the written paths).
  """
  if output_format not in FORMATS:
    raise ValueError(f'output format must be one of {FORMATS}, got '
                     f'{output_format!r}')
  os.makedirs(output_dir, exist_ok=True)
  writer = None
  outputs = []
  if output_format == 'tfrecord':
    path = os.path.join(output_dir, f'{endpoint}.tfrecord')
    writer = tf.io.TFRecordWriter(path)
    outputs.append(path)
  names, errors, used = [], [], set()
  shape = None
  try:
    for video in tqdm.tqdm(videos, total=total, disable=not progress,
                           unit='video', desc=f'features ({endpoint})'):
      if video.error:
        errors.append(video.error)
        logging.warning('skipped: %s', video.error)
        continue
      name = _safe_name(video.name)
      if name in used:
        k = 1
        while f'{name}_{k}' in used:
          k += 1
        logging.warning('duplicate video name %r; writing it as %s_%d',
                        video.name, name, k)
        name = f'{name}_{k}'
      used.add(name)
      features = extractor(video.frames)
      if not np.all(np.isfinite(features)):
        errors.append(f'{video.name}: non-finite features')
        logging.warning('skipped: %s has non-finite features', video.name)
        continue
      shape = features.shape
      if writer is not None:
        writer.write(_feature_example(name, features, endpoint,
                                      video.label).SerializeToString())
      else:
        path = os.path.join(output_dir, f'{name}.npy')
        np.save(path, features)
        outputs.append(path)
      names.append(name)
  finally:
    if writer is not None:
      writer.close()
  return {'written': len(names), 'skipped': len(errors), 'errors': errors,
          'names': names, 'shape': shape, 'outputs': outputs}
