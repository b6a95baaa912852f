"""The video record format shared by every task: Model Garden video TFRecords.

One `tf.train.SequenceExample` per video (SPEC section 3):
  context   `clip/label/index`  int64 list (may be empty for unlabelled videos)
            `clip/label/text`   bytes, optional
            `clip/id`           bytes, optional (video id, used in error messages)
  features  `image/encoded`     one JPEG per frame
            `region/bbox/{ymin,xmin,ymax,xmax}`  optional, one float list per
            frame (normalized coordinates; the lists of a frame may be empty)

This module only writes and reads records in numpy; the tf.data parsers live in
the parser modules.
"""
from concurrent import futures
import struct
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

IMAGE_KEY = 'image/encoded'
LABEL_KEY = 'clip/label/index'
LABEL_TEXT_KEY = 'clip/label/text'
VIDEO_ID_KEY = 'clip/id'
BOX_KEYS = ('region/bbox/ymin', 'region/bbox/xmin', 'region/bbox/ymax',
            'region/bbox/xmax')


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """Encodes one HxWx3 uint8 frame as JPEG bytes."""
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
    raise ValueError(
        f'expected an HxWx3 uint8 frame, got {frame.dtype} {frame.shape}')
  return tf.io.encode_jpeg(frame, quality=quality).numpy()


def jpeg_markers_ok(encoded: tf.Tensor) -> tf.Tensor:
  """Per frame: starts with the JPEG SOI marker and ends with EOI.

  A cheap in-graph test that catches garbage and truncated frames before
  `decode_jpeg` fails with a message that cannot name the record (the
  parsers assert it with the record's name). `encode_jpeg`'s frames always
  end with EOI.
  """
  head = tf.strings.substr(encoded, 0, 3)
  # substr with pos -2 raises on a string shorter than 2 bytes, before the
  # assert that names the record could run.
  start = tf.maximum(tf.strings.length(encoded) - 2, 0)
  tail = tf.strings.substr(encoded, start, tf.fill(tf.shape(start), 2))
  return (tf.equal(head, b'\xff\xd8\xff') & tf.equal(tail, b'\xff\xd9') &
          (tf.strings.length(encoded) > 4))


def make_sequence_example(
    frames: Optional[np.ndarray] = None,
    *,
    encoded_frames: Optional[Sequence[bytes]] = None,
    label: Optional[Sequence[int]] = None,
    label_text: Optional[str] = None,
    video_id: Optional[str] = None,
    boxes: Optional[Sequence[np.ndarray]] = None,
    jpeg_quality: int = 90) -> tf.train.SequenceExample:
  """Builds one video record.

  Args:
    frames: [T, H, W, 3] uint8 frames, JPEG-encoded here; or
    encoded_frames: already encoded frames (exactly one of the two).
    label: class indices of the video (int or list), omitted when None.
    label_text: optional class name.
    video_id: optional video id.
    boxes: optional per-frame boxes, a list of T arrays of shape [n_t, 4] in
      normalized [ymin, xmin, ymax, xmax].
    jpeg_quality: JPEG quality for `frames`.

  Returns:
    A `tf.train.SequenceExample`.
  """
  if (frames is None) == (encoded_frames is None):
    raise ValueError('give exactly one of `frames` and `encoded_frames`')
  if encoded_frames is None:
    encoded_frames = [encode_jpeg(f, jpeg_quality) for f in frames]
  seq = tf.train.SequenceExample()
  ctx = seq.context.feature
  if label is not None:
    labels = [int(label)] if np.isscalar(label) else [int(l) for l in label]
    ctx[LABEL_KEY].int64_list.value[:] = labels
  if label_text is not None:
    ctx[LABEL_TEXT_KEY].bytes_list.value[:] = [label_text.encode('utf-8')]
  if video_id is not None:
    ctx[VIDEO_ID_KEY].bytes_list.value[:] = [video_id.encode('utf-8')]
  image_list = seq.feature_lists.feature_list[IMAGE_KEY]
  for data in encoded_frames:
    image_list.feature.add().bytes_list.value[:] = [data]
  if boxes is not None:
    if len(boxes) != len(encoded_frames):
      raise ValueError(f'{len(boxes)} box lists for '
                       f'{len(encoded_frames)} frames')
    for k, key in enumerate(BOX_KEYS):
      fl = seq.feature_lists.feature_list[key]
      for frame_boxes in boxes:
        frame_boxes = np.asarray(frame_boxes, np.float32).reshape(-1, 4)
        fl.feature.add().float_list.value[:] = frame_boxes[:, k].tolist()
  return seq


def write_records(path: str, examples: Iterable[tf.train.SequenceExample]
                  ) -> int:
  """Writes examples to one TFRecord file; returns how many were written."""
  n = 0
  with tf.io.TFRecordWriter(path) as writer:
    for ex in examples:
      writer.write(ex.SerializeToString())
      n += 1
  return n


def read_sequence_example(serialized: bytes) -> Dict[str, object]:
  """Reads one record back into numpy (for tests and inspection tools).

  Returns:
    dict with `frames` (list of encoded JPEG bytes), `label` (list of int),
    `label_text` (str or None), `video_id` (str or None) and `boxes` (list of
    [n_t, 4] float32 arrays, or None when the record has no boxes).
  """
  seq = tf.train.SequenceExample.FromString(serialized)
  ctx = seq.context.feature
  fls = seq.feature_lists.feature_list
  frames = [f.bytes_list.value[0] for f in fls[IMAGE_KEY].feature]
  boxes = None
  if BOX_KEYS[0] in fls:
    cols = [[np.asarray(f.float_list.value, np.float32)
             for f in fls[key].feature] for key in BOX_KEYS]
    boxes = [np.stack([c[t] for c in cols], axis=-1).reshape(-1, 4)
             for t in range(len(cols[0]))]

  def _text(key):
    if key in ctx and ctx[key].bytes_list.value:
      return ctx[key].bytes_list.value[0].decode('utf-8')
    return None

  return {
      'frames': frames,
      'label': list(ctx[LABEL_KEY].int64_list.value) if LABEL_KEY in ctx
               else [],
      'label_text': _text(LABEL_TEXT_KEY),
      'video_id': _text(VIDEO_ID_KEY),
      'boxes': boxes,
  }


def read_records(pattern: str) -> List[Dict[str, object]]:
  """Reads every record of the files matching `pattern` (tests, tools)."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f'no files match {pattern!r}')
  out = []
  for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
    out.append(read_sequence_example(serialized))
  return out


def _crc32c_table() -> List[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
    table.append(c)
  return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`, the checksum TFRecord files use."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_head(path: str, size: int) -> bytes:
  """The first `size` bytes of `path` (local: `open`; remote: gfile)."""
  if '://' in path:
    with tf.io.gfile.GFile(path, 'rb') as f:
      return f.read(size)
  with open(path, 'rb') as f:
    return f.read(size)


def is_gzip_file(path: str) -> bool:
  """Whether `path` starts with the GZIP magic bytes (1f 8b)."""
  try:
    return _read_head(path, 2) == b'\x1f\x8b'
  except (OSError, tf.errors.OpError):
    return False


def _header_status(path: str) -> str:
  """'ok', 'empty' (a TFRecord file without records) or 'bad'.

  A TFRecord is a sequence of (uint64 length, uint32 masked CRC-32C of the
  length, data, uint32 masked CRC-32C of the data); this reads the first 12
  bytes and checks the length's checksum. A path that cannot be read (e.g.
  a directory) is 'bad'. Local files are read with `open`; remote ones
  (`scheme://`) with `tf.io.gfile`, whose buffered reader may fetch up to
  512 KiB of each.
  """
  try:
    header = _read_head(path, 12)
  except (OSError, tf.errors.OpError):
    return 'bad'
  if not header:
    return 'empty'
  if len(header) < 12:
    return 'bad'
  (crc,) = struct.unpack('<I', header[8:])
  return 'ok' if _masked_crc32c(header[:8]) == crc else 'bad'


def tfrecord_file_statuses(files: Sequence[str]) -> List[str]:
  """Per file: 'ok', 'empty' or 'bad', from its first record header.

  A header check only: a file corrupted further in fails when it is read.
  """
  with futures.ThreadPoolExecutor(max_workers=16) as pool:
    return list(pool.map(_header_status, files))


def non_tfrecord_files(files: Sequence[str],
                       statuses: Optional[Sequence[str]] = None) -> List[str]:
  """The files of `files` whose first record header does not check.

  `statuses`: `tfrecord_file_statuses(files)`, when already at hand.
  """
  if statuses is None:
    statuses = tfrecord_file_statuses(files)
  return [f for f, s in zip(files, statuses) if s == 'bad']


def no_records_message(field: str, pattern: str, num_files: int,
                       num_skipped: int = 0) -> str:
  """The error for a pattern with no record in its readable files."""
  skipped = (f', {num_skipped} of them skipped as not TFRecord files'
             if num_skipped else '')
  return (f'{field}={pattern!r}: no records in the {num_files} matched '
          f'files{skipped}: the {num_files - num_skipped} TFRecord files are '
          'empty (a converter that wrote no example leaves such a shard)')


def non_tfrecord_message(field: str, pattern: str, bad: Sequence[str],
                         num_files: int, inspect_hint: bool = True) -> str:
  """The error naming `field`, its `pattern` and (some of) the `bad` files.

  `inspect_hint` adds how to inspect one (not from the inspector itself).
  """
  shown = ', '.join(bad[:3]) + (f' and {len(bad) - 3} more'
                                if len(bad) > 3 else '')
  # TFRecordWriter(..., options='GZIP') output: every reader here takes
  # uncompressed records, and a gzip file fails the header check.
  gzipped = [f for f in bad if is_gzip_file(f)]
  hint = (f'; {len(gzipped)} of them GZIP-compressed (e.g. {gzipped[0]}): '
          'these readers take uncompressed TFRecords, `zcat <file> > '
          '<file>.tfrecord` writes one' if gzipped else '')
  return (f'{field}={pattern!r}: {len(bad)} of {num_files} files are not '
          f'TFRecord files (unreadable, or the first record header does not '
          f'check): {shown}{hint}' +
          ('; tools/inspect_tfrecord.py --input_pattern=<file> inspects one'
           if inspect_hint else ''))


def match_tfrecord_files(pattern: str, field: str,
                         check_headers: bool = True) -> List[str]:
  """The files of a comma-separated glob `pattern`, sorted.

  Raises:
    ValueError: naming `field` when nothing matches, or (with
      `check_headers`) when a matched file is not a TFRecord file or every
      matched file is empty.
  """
  files = []
  for p in pattern.split(','):
    if p.strip():
      files.extend(sorted(tf.io.gfile.glob(p.strip())))
  if not files:
    raise ValueError(f'{field}={pattern!r} matches no file')
  if check_headers:
    statuses = tfrecord_file_statuses(files)
    bad = non_tfrecord_files(files, statuses)
    if bad:
      raise ValueError(non_tfrecord_message(field, pattern, bad, len(files)))
    if 'ok' not in statuses:
      raise ValueError(no_records_message(field, pattern, len(files)))
  return files
