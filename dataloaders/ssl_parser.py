"""Two-view self-supervised input pipeline with region boxes (ConST-CL).

One record (Model Garden video SequenceExample, `video_records`) becomes one
example with two augmented views and per-frame region boxes:

  'image':       float32 [2, T, H, W, 3] in [0, 1]
  'boxes':       float32 [2, T, N, 4]  normalized [ymin, xmin, ymax, xmax] in
                 that view's augmented coordinates
  'box_mask':    float32 [2, T, N]     1 = valid box
  'frame_index': int32   [2, T]        source-frame index of every frame
  'label':       int32   []            first `clip/label/index`, else -1

`build_ssl_dataset` batches these (batch dimension in front of every key).
"""
import sys
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from dataloaders import augment
from dataloaders import example_seeds
from dataloaders import region_sources
from dataloaders import video_records

_SOURCE_KEY = 'source'


class Decoder:
  """Decodes a serialized video SequenceExample into tensors.

  Output keys: 'image/encoded' string [F]; 'label' int32 (first label or
  -1); 'video_id' string ('' when absent); 'boxes' float32 [F', M, 4] and
  'box_mask' float32 [F', M] from `region/bbox/*` (F' = 0 when the record
  has no box lists; M = most boxes on one frame).
  """

  def __init__(self, read_boxes: bool = True):
    self._read_boxes = read_boxes

  def decode(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    context_features = {
        video_records.LABEL_KEY: tf.io.VarLenFeature(tf.int64),
        video_records.VIDEO_ID_KEY: tf.io.FixedLenFeature(
            [], tf.string, default_value=''),
    }
    sequence_features = {
        video_records.IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)
    }
    if self._read_boxes:
      for key in video_records.BOX_KEYS:
        sequence_features[key] = tf.io.VarLenFeature(tf.float32)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_features,
        sequence_features=sequence_features)
    labels = context[video_records.LABEL_KEY].values
    label = tf.cond(tf.size(labels) > 0,
                    lambda: tf.cast(labels[0], tf.int32),
                    lambda: tf.constant(-1, tf.int32))
    out = {
        video_records.IMAGE_KEY: sequence[video_records.IMAGE_KEY],
        'label': label,
        'video_id': context[video_records.VIDEO_ID_KEY],
    }
    if self._read_boxes:
      coords = [sequence[k] for k in video_records.BOX_KEYS]
      out['boxes'] = tf.stack([tf.sparse.to_dense(c) for c in coords], -1)
      ones = tf.sparse.map_values(tf.ones_like, coords[0])
      out['box_mask'] = tf.sparse.to_dense(ones)
    else:
      out['boxes'] = tf.zeros([0, 0, 4])
      out['box_mask'] = tf.zeros([0, 0])
    return out


def sample_two_clip_starts(seed: tf.Tensor, num_source_frames: tf.Tensor,
                           num_frames: int, stride: int) -> tf.Tensor:
  """Start frames of the two views, CVRL's distribution.

  As `video_ssl_preprocess_ops.sample_ssl_sequence`: with L source frames and
  M = L - (T-1) s > 0 valid starts, the gap d between the two starts has the
  linearly decreasing density p(d) ~ 1 - d / M on [0, M) (drawn here by the
  closed-form inverse CDF floor(M (1 - sqrt(1 - u))), the integer that
  video_ssl's bisection finds), the earlier start is uniform in [0, M - d),
  and which view gets the earlier start is a coin flip. When the video is
  too short (M <= 0) both starts are uniform in [0, L) and independent.

  Returns:
    int32 [2] start frames.
  """
  u = tf.random.stateless_uniform([4], seed=tf.cast(seed, tf.int64))
  length = tf.cast(num_source_frames, tf.float32)
  span = float((num_frames - 1) * stride)
  m = length - span

  def long_video():
    d = tf.floor(m * (1.0 - tf.sqrt(1.0 - u[0])))
    d = tf.clip_by_value(d, 0.0, m - 1.0)
    first = tf.floor(u[1] * (m - d))
    starts = tf.stack([first, first + d])
    return tf.where(u[3] < 0.5, starts, tf.reverse(starts, [0]))

  def short_video():
    return tf.floor(u[1:3] * length)

  starts = tf.cond(m > 0, long_video, short_video)
  return tf.cast(starts, tf.int32)


class Parser:
  """Turns one decoded video into the two-view example (see module doc).

  Temporal sampling: two views of `num_frames` frames at stride `stride`,
  starts drawn as CVRL does (`sample_two_clip_starts`; the views may
  overlap). Frame i of a view is source frame (start + stride * i) mod L:
  a video shorter than the clip loops around (5 frames, T=4, s=2, start 3
  gives 3, 0, 2, 4).
  Spatial augmentation: `augment` (CVRL recipe), drawn independently per
  view from the example seed. Region boxes: `region_source` (see
  `region_sources`).
  """

  def __init__(self,
               num_frames: int,
               stride: int,
               crop_size: int,
               num_boxes: int = 8,
               region_source: str = 'random',
               min_box_size: float = 0.1,
               max_box_size: float = 0.5,
               min_box_aspect: float = 0.5,
               max_box_aspect: float = 2.0,
               min_crop_area: float = 0.3,
               color_jitter_strength: float = 1.0,
               use_fast_path: bool = True,
               output_dtype: tf.DType = tf.float32,
               min_crop_aspect: float = 0.5,
               max_crop_aspect: float = 2.0,
               blur_probs=(1.0, 0.1),
               solarize_probs=(0.0, 0.2),
               min_visible_fraction: float = 0.5):
    """Initializes the parser.

    Args:
      num_frames: T, frames per view.
      stride: temporal stride s.
      crop_size: output height and width.
      num_boxes: N boxes per frame.
      region_source: random | slic | felzenszwalb | detector.
      min_box_size: random boxes: smallest width (fraction of the view).
      max_box_size: random boxes: largest width.
      min_box_aspect: random boxes: smallest w/h.
      max_box_aspect: random boxes: largest w/h.
      min_crop_area: smallest random-crop area (largest is 1).
      color_jitter_strength: CVRL colour strength.
      use_fast_path: fused crop-decode path (else the plain reference).
      output_dtype: dtype of 'image'.
      min_crop_aspect: smallest crop aspect ratio (video_ssl: 0.5).
      max_crop_aspect: largest crop aspect ratio (video_ssl: 2.0).
      blur_probs: blur probability of view 0 and view 1 (video_ssl: 1.0,
        0.1).
      solarize_probs: solarization probability of view 0 and view 1
        (video_ssl: 0.0, 0.2).
      min_visible_fraction: stored boxes less visible than this in the crop
        are masked out.
    """
    if region_source not in region_sources.REGION_SOURCES:
      raise ValueError(f'region_source {region_source!r} not in '
                       f'{region_sources.REGION_SOURCES}')
    if num_frames < 1 or stride < 1 or crop_size < 1 or num_boxes < 1:
      raise ValueError(
          f'num_frames ({num_frames}), stride ({stride}), crop_size '
          f'({crop_size}) and num_boxes ({num_boxes}) must be positive')
    self._num_frames = num_frames
    self._stride = stride
    self._crop_size = crop_size
    self._num_boxes = num_boxes
    self._region_source = region_source
    self._box_args = dict(min_size=min_box_size, max_size=max_box_size,
                          min_aspect=min_box_aspect, max_aspect=max_box_aspect)
    self._aug_args = dict(min_area=min_crop_area, min_aspect=min_crop_aspect,
                          max_aspect=max_crop_aspect,
                          color_jitter_strength=color_jitter_strength)
    self._blur_probs = tuple(blur_probs)
    self._solarize_probs = tuple(solarize_probs)
    self._use_fast_path = use_fast_path
    self._output_dtype = output_dtype
    self._min_visible = min_visible_fraction

  @property
  def uses_stored_boxes(self) -> bool:
    return self._region_source != 'random'

  def record_problems(self, decoded: Dict[str, tf.Tensor]
                      ) -> Dict[str, tf.Tensor]:
    """Boolean checks of a decoded record (True = problem)."""
    encoded = decoded[video_records.IMAGE_KEY]
    problems = {
        'no frames': tf.equal(tf.size(encoded), 0),
        'a frame that is not a complete JPEG': tf.logical_not(
            tf.reduce_all(video_records.jpeg_markers_ok(encoded))),
    }
    if self.uses_stored_boxes:
      box_frames = tf.shape(decoded['boxes'])[0]
      problems[f'no region/bbox lists (region_source '
               f'{self._region_source!r})'] = tf.equal(box_frames, 0)
      problems['region/bbox lists for a different number of frames'] = (
          (box_frames > 0) & tf.not_equal(box_frames, tf.size(encoded)))
    return problems

  def is_valid(self, decoded: Dict[str, tf.Tensor]) -> tf.Tensor:
    return tf.logical_not(tf.reduce_any(tf.stack(
        list(self.record_problems(decoded).values()))))

  def _assert_valid(self, decoded):
    name = decoded.get(_SOURCE_KEY, decoded['video_id'])
    checks = []
    for what, bad in self.record_problems(decoded).items():
      checks.append(tf.debugging.Assert(
          tf.logical_not(bad), ['ssl_parser: record', name, f'has {what}']))
    return checks

  def parse(self, decoded: Dict[str, tf.Tensor],
            seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Builds the two-view example.

    Args:
      decoded: output of `Decoder.decode` (optionally with a 'source' string
        naming the record for error messages).
      seed: int [2] stateless seed of this example.

    Returns:
      dict with the keys and shapes of the module docstring.
    """
    seed = tf.cast(seed, tf.int64)
    with tf.control_dependencies(self._assert_valid(decoded)):
      encoded = tf.identity(decoded[video_records.IMAGE_KEY])
    length = tf.size(encoded)
    t, s = self._num_frames, self._stride
    starts = sample_two_clip_starts(
        tf.random.experimental.stateless_fold_in(seed, 0), length, t, s)
    frame_index = tf.math.floormod(
        starts[:, None] + s * tf.range(t)[None, :], length)
    shape = tf.image.extract_jpeg_shape(encoded[0])
    height, width = shape[0], shape[1]
    images, boxes, masks = [], [], []
    for v in range(2):
      view_seed = tf.random.experimental.stateless_fold_in(seed, 1 + v)
      params = augment.draw_view_params(
          view_seed, height, width, blur_prob=self._blur_probs[v],
          solarize_prob=self._solarize_probs[v], **self._aug_args)
      view_frames = tf.gather(encoded, frame_index[v])
      if self._use_fast_path:
        images.append(augment.augment_view_fast(
            view_frames, params, self._crop_size,
            output_dtype=self._output_dtype))
      else:
        images.append(augment.augment_view_plain(
            view_frames, params, self._crop_size,
            output_dtype=self._output_dtype))
      if self.uses_stored_boxes:
        b, m = region_sources.transform_boxes(
            tf.gather(decoded['boxes'], frame_index[v]),
            tf.gather(decoded['box_mask'], frame_index[v]),
            augment.crop_window(params, height, width), params['flip'],
            num_boxes=self._num_boxes,
            min_visible_fraction=self._min_visible)
      else:
        b = region_sources.random_boxes(
            tf.random.experimental.stateless_fold_in(seed, 3 + v), t,
            self._num_boxes, **self._box_args)
        m = tf.ones([t, self._num_boxes], tf.float32)
      boxes.append(b)
      masks.append(m)
    size = self._crop_size
    return {
        'image': tf.ensure_shape(tf.stack(images), [2, t, size, size, 3]),
        'boxes': tf.ensure_shape(tf.stack(boxes), [2, t, self._num_boxes, 4]),
        'box_mask': tf.ensure_shape(tf.stack(masks), [2, t, self._num_boxes]),
        'frame_index': tf.ensure_shape(tf.cast(frame_index, tf.int32), [2, t]),
        'label': tf.ensure_shape(decoded['label'], []),
    }


def build_ssl_dataset(file_pattern: str,
                      parser: Parser,
                      global_batch_size: int,
                      is_training: bool,
                      shuffle_buffer_size: int = 64,
                      cycle_length: int = 8,
                      seed: Optional[int] = None,
                      input_context: Optional[tf.distribute.InputContext] = None,
                      skip_bad_records: bool = False,
                      deterministic: Optional[bool] = None,
                      skip_examples: int = 0,
                      field: str = 'file_pattern',
                      drop_remainder: Optional[bool] = None
                      ) -> tf.data.Dataset:
  """Builds the batched two-view dataset.

  Pipeline: files (shard by input pipeline) -> interleave -> shuffle ->
  repeat (training) -> per-example seed -> skip `skip_examples` (training)
  -> decode + check + parse -> batch.

  Seeds: training zips in `tf.data.Dataset.random` AFTER the repeat, so every
  epoch draws new augmentations and boxes, reproducibly for a fixed `seed`
  (a random one when None). Evaluation seeds are (seed or 0, position), the
  same at every evaluation.

  Bad records (no frames, a frame that is not a complete JPEG, missing box
  lists for a stored-box `region_source`): by default an InvalidArgument
  error naming the record (`clip/id`, else the file name); with
  `skip_bad_records` each skip is logged with the record name and a running
  count, and frames that pass the marker check yet fail to decode are
  dropped by `ignore_errors(log_warning=True)`.

  Args:
    file_pattern: glob of TFRecord files (comma-separated globs allowed).
    parser: a `Parser`.
    global_batch_size: batch over all replicas.
    is_training: shuffle, repeat and random seeds when True.
    shuffle_buffer_size: examples in the shuffle buffer.
    cycle_length: files read in parallel.
    seed: base seed (shuffles and per-example seeds).
    input_context: `tf.distribute.InputContext` for sharding.
    skip_bad_records: skip (and log) bad records instead of failing.
    deterministic: passed to interleave/map (None: tf.data default).
    skip_examples: training only: drops this many serialized records (with
      their seeds) of this input pipeline before anything is decoded, so a
      run resumed from a checkpoint continues where the uninterrupted run
      would be. The drop sits after the shuffles and the seed attachment:
      with a fixed `seed` the next record and its augmentation seed are the
      ones the uninterrupted run used. Skipped records are read, not decoded.
    field: the config field of `file_pattern`, for error messages.
    drop_remainder: drop the last partial batch (`DataConfig.drop_remainder`);
      None means `is_training`. Training repeats, so there it only makes the
      batch dimension static; in evaluation it decides whether the last
      videos are seen at all.

  Returns:
    `tf.data.Dataset` of dicts with a leading batch dimension.

  Raises:
    ValueError: naming `field`, when no file matches the pattern, when
      every matched file is empty, or when a file is not a TFRecord file
      (its first record header does not check): without `skip_bad_records`
      at all, with it if every file is; else such files are skipped and
      logged.
  """
  files = video_records.match_tfrecord_files(file_pattern or '', field,
                                             check_headers=False)
  statuses = video_records.tfrecord_file_statuses(files)
  bad = video_records.non_tfrecord_files(files, statuses)
  num_matched = len(files)
  if bad:
    message = video_records.non_tfrecord_message(field, file_pattern, bad,
                                                 len(files))
    if not skip_bad_records or len(bad) == len(files):
      # task.train_data.input_path -> task.train_data.skip_bad_records
      switch = '.'.join(field.split('.')[:-1] + ['skip_bad_records'])
      raise ValueError(message + ('' if skip_bad_records else
                                  f'; {switch}=true skips them'))
    logging.warning('build_ssl_dataset: skipping files: %s', message)
    bad = set(bad)
    files = [f for f in files if f not in bad]
  if 'ok' not in statuses:
    # Only empty files are left: the dataset would end before step 1.
    raise ValueError(video_records.no_records_message(
        field, file_pattern, num_matched, len(bad)))
  if skip_examples < 0 or (skip_examples and not is_training):
    raise ValueError(f'skip_examples ({skip_examples}) must be >= 0, and 0 '
                     f'for evaluation data ({file_pattern!r})')
  batch_size = global_batch_size
  num_pipelines, pipeline_id = 1, 0
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    num_pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
  base_seed = example_seeds.pipeline_base_seed(seed, pipeline_id,
                                               is_training)

  shard_files = len(files) >= num_pipelines
  ds = tf.data.Dataset.from_tensor_slices(files)
  if shard_files and num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)
  if is_training:
    ds = ds.shuffle(len(files), seed=base_seed, reshuffle_each_iteration=True)

  def _read(path):
    return tf.data.TFRecordDataset(path).map(lambda s: (s, path))

  ds = ds.interleave(_read, cycle_length=cycle_length,
                     num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)
  if not shard_files and num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)
  if is_training:
    ds = ds.shuffle(shuffle_buffer_size, seed=base_seed,
                    reshuffle_each_iteration=True)
    ds = ds.repeat()
  ds = tf.data.Dataset.zip(
      (ds, example_seeds.example_seeds(base_seed, is_training)))
  if skip_examples:
    logging.info('build_ssl_dataset: skipping %d records of %s (resume)',
                 skip_examples, file_pattern)
    ds = ds.skip(skip_examples)

  decoder = Decoder(read_boxes=parser.uses_stored_boxes)

  def _decode(record, example_seed):
    serialized, path = record
    decoded = decoder.decode(serialized)
    decoded[_SOURCE_KEY] = tf.where(
        tf.strings.length(decoded['video_id']) > 0,
        decoded['video_id'], tf.strings.join(['a record of ', path]))
    return decoded, example_seed

  ds = ds.map(_decode, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=deterministic)
  if skip_bad_records:
    logging.info('build_ssl_dataset: skip_bad_records is on for %s',
                 file_pattern)

    # A scan (sequential, but only over cheap checks) carries the running
    # count of skipped records for the log line.
    def _check(skipped, element):
      decoded, example_seed = element
      ok = parser.is_valid(decoded)
      skipped = skipped + tf.cast(tf.logical_not(ok), tf.int64)
      ok = tf.cond(ok, lambda: ok,
                   lambda: _log_skip(decoded[_SOURCE_KEY], skipped, ok))
      return skipped, (decoded, example_seed, ok)

    ds = ds.scan(tf.constant(0, tf.int64), _check)
    ds = ds.filter(lambda decoded, example_seed, ok: ok)
    ds = ds.map(lambda decoded, example_seed, ok: (decoded, example_seed))
  ds = ds.map(parser.parse, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=deterministic)
  if skip_bad_records:
    ds = ds.ignore_errors(log_warning=True)
  if drop_remainder is None:
    drop_remainder = is_training
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)


def _log_skip(name: tf.Tensor, count: tf.Tensor, ok: tf.Tensor) -> tf.Tensor:
  """Logs one skipped record to stderr; returns `ok` once logged."""
  printed = tf.print('WARNING: ssl_parser: skipped bad record', name,
                     '(unusable: see Parser.record_problems);', count,
                     'skipped so far', output_stream=sys.stderr)
  with tf.control_dependencies([printed]):
    return tf.identity(ok)
