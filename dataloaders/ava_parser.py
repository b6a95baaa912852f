"""tf.data decoder and parser of the AVA key-frame records.

Records are written by `dataloaders.converters.ava` (one SequenceExample per
key frame). The parser outputs, per example, static-shape tensors:

  image           float32 [T, H, W, 3] in [0, 1]
  boxes           float32 [max_boxes, 4] ymin, xmin, ymax, xmax normalized in
                  the output image
  original_boxes  float32 [max_boxes, 4] the same boxes in the original
                  frame's normalized coordinates (for the detections CSV)
  box_mask        float32 [max_boxes] 1 for real boxes
  box_scores      float32 [max_boxes] detector scores (1 for ground truth)
  labels          float32 [max_boxes, num_classes] multi-hot, class index =
                  action_id - 1 (all zero for detector boxes)
  video_id        string []
  timestamp       float32 []
  num_boxes_dropped       int32 [] boxes of the record beyond `max_boxes`
                          (truncated away, never scored)
  num_boxes_cropped_out   int32 [] boxes among the first `max_boxes` with
                          no area left in the crop window (mask 0)

The two counts are disjoint and say how many of the record's boxes the
model does not score: at evaluation each one is a ground-truth person (or
detector box) without a detection row, which costs recall in the mAP.

Errors on a bad record (no frames, a frame that is not a JPEG, inconsistent
labels, `use_detections` on a record converted without `--detections`) are
`InvalidArgumentError`s whose message names the record's video id and
timestamp.

Training draws (crop window, box jitter, flip) are stateless, from the
example's `example_seeds.SEED_KEY` seed that `build_inputs` attaches with
`example_seeds.attach_example_seeds`: a fixed data seed fixes them however
many threads parse. A decoded dict without that key (a parser used on its
own) gets a seed from a stateful op seeded with the parser's `seed`.
"""
from typing import Any, Dict, List, Optional, Sequence, Union

import tensorflow as tf

from dataloaders import example_seeds
from dataloaders import video_records
from dataloaders.converters import ava as ava_converter
from official.vision.dataloaders import decoder
from official.vision.dataloaders import parser

_IMAGE_KEY = 'image/encoded'
_VIDEO_ID_KEY = 'clip/id'


def _has_context_key(serialized_example: tf.Tensor, key: str) -> tf.Tensor:
  """Whether the SequenceExample's context has `key`, even with no values.

  The parsing ops decode a missing list feature and an empty one alike (an
  empty tensor); the converter writes the detection fields only when it was
  given detections, so their presence is what tells "converted without
  --detections" from "no detection on this key frame". Reads the context's
  map keys with `decode_proto` (graph ops, no Python): the frames are
  skipped, not copied.
  """
  context = tf.io.decode_proto(
      tf.reshape(serialized_example, [1]), 'tensorflow.SequenceExample',
      ['context'], [tf.string]).values[0]
  entries = tf.io.decode_proto(
      tf.reshape(context, [-1]), 'tensorflow.Features', ['feature'],
      [tf.string]).values[0]
  keys = tf.io.decode_proto(
      tf.reshape(entries, [-1]), 'tensorflow.Features.FeatureEntry',
      ['key'], [tf.string]).values[0]
  return tf.reduce_any(tf.equal(keys, key))


def _record_name(decoded: Dict[str, tf.Tensor]) -> List[Any]:
  """Assert data naming the record: its video id and key-frame timestamp."""
  return ['video_id:', decoded['video_id'], 'timestamp:',
          decoded['timestamp']]


class Decoder(decoder.Decoder):
  """Parses a serialized key-frame SequenceExample into dense tensors.

  `check_detection_fields`: also output `has_detections` (whether the
  record carries the detection fields at all), which the parser asserts
  with `use_detections`. It walks the serialized proto once more, so input
  pipelines that do not read detections (training) turn it off.
  """

  def __init__(self, check_detection_fields: bool = True):
    self._check_detection_fields = check_detection_fields
    floats = tf.io.VarLenFeature(tf.float32)
    ints = tf.io.VarLenFeature(tf.int64)
    self._context = {
        _VIDEO_ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
        ava_converter.KEY_FRAME_TIMESTAMP_KEY: tf.io.FixedLenFeature(
            [], tf.float32, default_value=0.0),
        ava_converter.KEY_FRAME_INDEX_KEY: tf.io.FixedLenFeature(
            [], tf.int64, default_value=-1),
        ava_converter.LABEL_INDEX_KEY: ints,
        ava_converter.LABEL_COUNT_KEY: ints,
        ava_converter.DETECTION_SCORE_KEY: floats,
    }
    for key in ava_converter.BOX_KEYS + ava_converter.DETECTION_BOX_KEYS:
      self._context[key] = floats
    self._sequence = {_IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}

  def decode(self, serialized_example: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Returns `frames` (encoded), boxes, labels and ids of one record."""
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized_example, self._context, self._sequence)
    dense = lambda k: tf.sparse.to_dense(ctx[k])

    def _boxes(keys):
      return tf.stack([dense(k) for k in keys], axis=-1)

    decoded = {
        'frames': seq[_IMAGE_KEY],
        'video_id': ctx[_VIDEO_ID_KEY],
        'timestamp': ctx[ava_converter.KEY_FRAME_TIMESTAMP_KEY],
        'key_frame_index': ctx[ava_converter.KEY_FRAME_INDEX_KEY],
        'boxes': _boxes(ava_converter.BOX_KEYS),
        'label_index': dense(ava_converter.LABEL_INDEX_KEY),
        'label_count': dense(ava_converter.LABEL_COUNT_KEY),
        'detection_boxes': _boxes(ava_converter.DETECTION_BOX_KEYS),
        'detection_scores': dense(ava_converter.DETECTION_SCORE_KEY),
    }
    if self._check_detection_fields:
      decoded['has_detections'] = _has_context_key(
          serialized_example, ava_converter.DETECTION_SCORE_KEY)
    return decoded


def _pad_to(x: tf.Tensor, n: int) -> tf.Tensor:
  """Truncates or zero-pads the first dimension to exactly n."""
  x = x[:n]
  pad = n - tf.shape(x)[0]
  paddings = [[0, pad]] + [[0, 0]] * (len(x.shape) - 1)
  x = tf.pad(x, paddings)
  return tf.ensure_shape(x, [n] + x.shape.as_list()[1:])


class Parser(parser.Parser):
  """Makes training / evaluation examples of AVA key frames."""

  def __init__(self,
               num_frames: int,
               crop_size: Union[int, Sequence[int]],
               max_boxes: int,
               num_classes: int,
               box_jitter: float = 0.0,
               use_detections: bool = False,
               detection_score_threshold: float = 0.0,
               is_training: bool = True,
               train_crop_scale: Sequence[float] = (0.8, 1.0),
               random_flip: bool = True,
               center_crop: bool = True,
               seed: Optional[int] = None):
    """Initializes the parser.

    Args:
      num_frames: frames per output clip, taken around the key frame from the
        stored clip (edge frames repeat when the record has fewer).
      crop_size: output size, int (square) or (height, width).
      max_boxes: boxes per example (padded / truncated; `num_boxes_dropped`
        counts the truncated ones; detections are truncated after sorting
        by score, so the lowest-scored go).
      num_classes: size of the multi-hot labels (80 for AVA: ids 1..80).
      box_jitter: training only; each box coordinate moves by up to this
        fraction of the box height/width.
      use_detections: evaluation only; use the detector boxes of the record
        (score >= detection_score_threshold) instead of ground truth.
      detection_score_threshold: minimum detector score.
      is_training: training (random crop + flip + jitter) or evaluation
        (deterministic resize / center crop).
      train_crop_scale: training crops are windows whose side is this
        fraction range of the largest window of their aspect: the output's
        with `center_crop` (evaluation then takes that aspect too), the
        frame's without (evaluation resizes the whole frame to the output
        size, so training stretches its crops the same way and people keep
        the proportions the evaluation shows them with).
      random_flip: flip left-right at training, boxes included.
      center_crop: evaluation keeps the largest centred window of the output
        aspect; False resizes the whole frame (aspect not kept). Boxes with
        no area left in the window get mask 0 (`num_boxes_cropped_out`):
        they are not scored, so they count as misses in the mAP.
      seed: seed of the stateful op that draws an example seed when the
        decoded dict has none (see the module docstring).
    """
    if isinstance(crop_size, int):
      crop_size = (crop_size, crop_size)
    self._crop_size = tuple(int(c) for c in crop_size)
    if len(self._crop_size) != 2 or min(self._crop_size) < 1:
      raise ValueError(f'crop_size must be a positive int or (h, w), got '
                       f'{crop_size}')
    if num_frames < 1 or max_boxes < 1 or num_classes < 1:
      raise ValueError(f'num_frames ({num_frames}), max_boxes ({max_boxes}) '
                       f'and num_classes ({num_classes}) must be >= 1')
    if not 0 < train_crop_scale[0] <= train_crop_scale[1] <= 1:
      raise ValueError(f'train_crop_scale must satisfy 0 < lo <= hi <= 1, '
                       f'got {train_crop_scale}')
    if use_detections and is_training:
      raise ValueError('use_detections is for evaluation: detector boxes have '
                       'no labels to train on')
    if box_jitter < 0:
      raise ValueError(f'box_jitter must be >= 0, got {box_jitter}')
    self._num_frames = num_frames
    self._max_boxes = max_boxes
    self._num_classes = num_classes
    self._box_jitter = box_jitter
    self._use_detections = use_detections
    self._score_threshold = detection_score_threshold
    self._is_training = is_training
    self._crop_scale = tuple(train_crop_scale)
    self._random_flip = random_flip
    self._center_crop = center_crop
    self._seed = seed

  def __call__(self, decoded: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return self.parse(decoded)

  def parse(self, decoded: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Parses one decoded record with this parser's `is_training`."""
    if self._is_training:
      return self._parse_train_data(decoded)
    return self._parse_eval_data(decoded)

  # The frames of the clip around the key frame.
  def _frames(self, decoded):
    encoded = decoded['frames']
    n = tf.shape(encoded)[0]
    has_frames = tf.debugging.Assert(
        n > 0, ['AVA record has no frames:'] + _record_name(decoded))
    with tf.control_dependencies([has_frames]):
      key = tf.cast(decoded['key_frame_index'], tf.int32)
    key = tf.where(key < 0, n // 2, key)
    idx = key + tf.range(self._num_frames) - self._num_frames // 2
    idx = tf.clip_by_value(idx, 0, n - 1)
    encoded = tf.gather(encoded, idx)
    # decode_jpeg's own error ("Unknown image file format") does not say
    # which record is bad: check the frames it will decode first.
    ok = video_records.jpeg_markers_ok(encoded)
    is_jpeg = tf.debugging.Assert(
        tf.reduce_all(ok),
        ['AVA record has a frame that is not a complete JPEG:'] +
        _record_name(decoded) + ['clip frame indices:', idx,
                                 'JPEG markers ok:', ok])
    with tf.control_dependencies([is_jpeg]):
      encoded = tf.identity(encoded)
    frames = tf.map_fn(
        lambda x: tf.io.decode_jpeg(x, channels=3), encoded,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return frames

  def _labels(self, decoded):
    index = decoded['label_index']
    count = decoded['label_count']
    num_boxes = tf.shape(decoded['boxes'])[0]
    name = _record_name(decoded)
    checks = [
        tf.debugging.Assert(
            tf.equal(tf.shape(count)[0], num_boxes),
            ['clip/key_frame/bbox/label/count must have one entry per box:']
            + name + ['counts:', tf.shape(count)[0], 'boxes:', num_boxes]),
        tf.debugging.Assert(
            tf.equal(tf.reduce_sum(count),
                     tf.shape(index, out_type=tf.int64)[0]),
            ['label/count does not add up to the number of labels:'] + name
            + ['sum of counts:', tf.reduce_sum(count), 'labels:',
               tf.shape(index)[0]]),
        tf.debugging.Assert(
            tf.reduce_all(index >= 1),
            ['action ids are 1-based:'] + name + ['action ids:', index]),
        tf.debugging.Assert(
            tf.reduce_all(index <= self._num_classes),
            [f'action id above num_classes ({self._num_classes}):'] + name
            + ['action ids:', index]),
    ]
    with tf.control_dependencies(checks):
      ragged = tf.RaggedTensor.from_row_lengths(index - 1, count)
    hot = tf.one_hot(ragged, self._num_classes, dtype=tf.float32)
    # Boxes without labels give an empty row: reduce_max over it is -inf.
    return tf.reshape(tf.maximum(tf.reduce_max(hot, axis=1), 0.0),
                      [-1, self._num_classes])

  def _select_boxes(self, decoded):
    """Boxes, scores and labels before padding, in original coordinates."""
    if self._use_detections:
      checks = []
      if 'has_detections' in decoded:
        # A record without the fields would give no box at all (mAP 0), not
        # an error: say what to do instead.
        checks.append(tf.debugging.Assert(
            decoded['has_detections'],
            ['use_detections is set but this AVA record has no detection '
             'fields (clip/key_frame/detection/*):'] + _record_name(decoded)
            + ['convert the records with --detections (the detections CSV) '
               'or evaluate with use_detections=False']))
      with tf.control_dependencies(checks):
        boxes = tf.identity(decoded['detection_boxes'])
      scores = decoded['detection_scores']
      keep = scores >= self._score_threshold
      boxes = tf.boolean_mask(boxes, keep)
      scores = tf.boolean_mask(scores, keep)
      order = tf.argsort(scores, direction='DESCENDING', stable=True)
      boxes = tf.gather(boxes, order)
      scores = tf.gather(scores, order)
      labels = tf.zeros([tf.shape(boxes)[0], self._num_classes], tf.float32)
    else:
      boxes = decoded['boxes']
      scores = tf.ones([tf.shape(boxes)[0]], tf.float32)
      labels = self._labels(decoded)
    return tf.reshape(boxes, [-1, 4]), scores, labels

  def _crop_window(self, height, width, training, seed=None):
    """Integer crop window [y0, x0, h, w] (aspect: see `train_crop_scale`)."""
    out_h, out_w = self._crop_size
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    aspect = out_w / out_h if self._center_crop else w / h
    # Largest window of that aspect that fits the frame.
    win_h = tf.minimum(h, w / aspect)
    win_w = win_h * aspect
    if training:
      u = tf.random.stateless_uniform([3], seed=example_seeds.fold(seed, 0))
      lo, hi = self._crop_scale
      scale = lo + (hi - lo) * u[0]
      win_h *= scale
      win_w *= scale
    win_h = tf.clip_by_value(tf.round(win_h), 1.0, h)
    win_w = tf.clip_by_value(tf.round(win_w), 1.0, w)
    if training:
      y0 = tf.floor(u[1] * (h - win_h + 1))
      x0 = tf.floor(u[2] * (w - win_w + 1))
    else:
      y0 = tf.floor((h - win_h) / 2)
      x0 = tf.floor((w - win_w) / 2)
    return tf.cast(tf.stack([y0, x0, win_h, win_w]), tf.int32)

  def _jitter(self, boxes, seed):
    hw = tf.concat([boxes[:, 2:] - boxes[:, :2]] * 2, axis=-1)
    noise = tf.random.stateless_uniform(
        tf.shape(boxes), example_seeds.fold(seed, 1), -self._box_jitter,
        self._box_jitter)
    boxes = tf.clip_by_value(boxes + noise * hw, 0.0, 1.0)
    return tf.concat([tf.minimum(boxes[:, :2], boxes[:, 2:]),
                      tf.maximum(boxes[:, :2], boxes[:, 2:])], axis=-1)

  def _example_seed(self, decoded):
    seed = decoded.get(example_seeds.SEED_KEY)
    if seed is None:
      seed = tf.random.uniform([2], maxval=2**62, dtype=tf.int64,
                               seed=self._seed)
    return tf.cast(seed, tf.int64)

  def _parse(self, decoded, training):
    seed = self._example_seed(decoded) if training else None
    frames = self._frames(decoded)
    boxes, scores, labels = self._select_boxes(decoded)
    original = boxes
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    if training and self._box_jitter > 0:
      boxes = self._jitter(boxes, seed)
    if training or self._center_crop:
      y0, x0, ch, cw = tf.unstack(
          self._crop_window(height, width, training, seed))
      frames = frames[:, y0:y0 + ch, x0:x0 + cw, :]
      # Box coordinates of the crop window, from the integer pixel window.
      hf = tf.cast(height, tf.float32)
      wf = tf.cast(width, tf.float32)
      offset = tf.stack([tf.cast(y0, tf.float32) / hf,
                         tf.cast(x0, tf.float32) / wf] * 2)
      size = tf.stack([tf.cast(ch, tf.float32) / hf,
                       tf.cast(cw, tf.float32) / wf] * 2)
      boxes = tf.clip_by_value((boxes - offset) / size, 0.0, 1.0)
    image = tf.image.resize(frames, self._crop_size, method='bilinear',
                            antialias=True)
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    if training and self._random_flip:
      flip = tf.random.stateless_uniform(
          [], seed=example_seeds.fold(seed, 2)) < 0.5
      image = tf.cond(flip, lambda: tf.reverse(image, axis=[2]),
                      lambda: image)
      boxes = tf.cond(flip, lambda: flip_boxes_left_right(boxes),
                      lambda: boxes)
    num = tf.shape(boxes)[0]
    mask = tf.ones([num], tf.float32)
    if training or self._center_crop:
      # A box cropped away entirely carries no pixels: nothing to learn from
      # at training, and at evaluation its ROI would be a degenerate line at
      # the crop border, scored as if it were the person. Masked out, it
      # gives no detection row (a miss for the mAP, counted below).
      visible = tf.logical_and(boxes[:, 2] > boxes[:, 0],
                               boxes[:, 3] > boxes[:, 1])
      mask *= tf.cast(visible, tf.float32)
    kept = tf.minimum(num, self._max_boxes)
    num_dropped = num - kept
    num_cropped_out = kept - tf.cast(tf.reduce_sum(mask[:kept]), tf.int32)
    image = tf.ensure_shape(image, [self._num_frames, *self._crop_size, 3])
    return {
        'image': image,
        'boxes': _pad_to(boxes, self._max_boxes),
        'original_boxes': _pad_to(original, self._max_boxes),
        'box_mask': _pad_to(mask, self._max_boxes),
        'box_scores': _pad_to(scores, self._max_boxes),
        'labels': _pad_to(labels, self._max_boxes),
        'video_id': decoded['video_id'],
        'timestamp': tf.cast(decoded['timestamp'], tf.float32),
        'num_boxes_dropped': num_dropped,
        'num_boxes_cropped_out': num_cropped_out,
    }

  def _parse_train_data(self, decoded_tensors):
    return self._parse(decoded_tensors, training=True)

  def _parse_eval_data(self, decoded_tensors):
    return self._parse(decoded_tensors, training=False)


def flip_boxes_left_right(boxes: tf.Tensor) -> tf.Tensor:
  """Mirrors [N, 4] ymin, xmin, ymax, xmax normalized boxes."""
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
