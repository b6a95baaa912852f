"""TFRecord file checks of `dataloaders/video_records.py`."""
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from dataloaders import video_records


def test_crc32c_matches_the_standard_check_value():
  # CRC-32C of the ASCII digits 1-9 is 0xE3069283 (RFC 3720, B.4).
  assert video_records.crc32c(b'123456789') == 0xE3069283
  assert video_records.crc32c(b'') == 0


def _write_records(path, payloads):
  with tf.io.TFRecordWriter(str(path)) as w:
    for p in payloads:
      w.write(p)
  return str(path)


def test_header_check_tells_tfrecords_from_other_files(tmp_path):
  rng = np.random.default_rng(0)
  good = [_write_records(tmp_path / f'g{n}.tfrecord',
                         [rng.bytes(n * 37 + 1) for _ in range(3)])
          for n in range(5)]
  empty = _write_records(tmp_path / 'empty.tfrecord', [])
  assert os.path.getsize(empty) == 0
  bad = []
  for name, content in (('random', rng.bytes(3000)), ('short', b'12345'),
                        ('text', b'not a tfrecord at all\n' * 10)):
    bad.append(str(tmp_path / name))
    with open(bad[-1], 'wb') as f:
      f.write(content)
  # One changed bit in a real file's length field fails its checksum.
  flipped = bytearray(open(good[1], 'rb').read())
  flipped[0] ^= 1
  bad.append(str(tmp_path / 'flipped'))
  with open(bad[-1], 'wb') as f:
    f.write(bytes(flipped))
  bad.append(str(tmp_path / 'a_directory'))  # a glob can match one
  os.mkdir(bad[-1])
  files = good + [empty] + bad
  assert video_records.tfrecord_file_statuses(files) == (
      ['ok'] * 5 + ['empty'] + ['bad'] * 5)
  assert video_records.non_tfrecord_files(files) == bad


def test_match_names_the_field_and_the_bad_files(tmp_path):
  good = _write_records(tmp_path / 'a-0.tfrecord', [b'x'])
  with pytest.raises(ValueError, match=r"task.train_data.input_path='.*b-\*' "
                     'matches no file'):
    video_records.match_tfrecord_files(str(tmp_path / 'b-*'),
                                       'task.train_data.input_path')
  with open(tmp_path / 'a-1.tfrecord', 'wb') as f:
    f.write(b'garbage bytes, twelve or more')
  pattern = str(tmp_path / 'a-*')
  with pytest.raises(ValueError, match=(
      r"task.x.input_path='.*a-\*': 1 of 2 files are not TFRecord files .*"
      r'a-1.tfrecord; tools/inspect_tfrecord.py')):
    video_records.match_tfrecord_files(pattern, 'task.x.input_path')
  assert video_records.match_tfrecord_files(
      pattern, 'f', check_headers=False) == [good,
                                             str(tmp_path / 'a-1.tfrecord')]


def test_gzip_compressed_records_are_named_as_such(tmp_path):
  plain = _write_records(tmp_path / 'a-0.tfrecord', [b'payload'])
  gz = str(tmp_path / 'a-1.tfrecord')
  with tf.io.TFRecordWriter(gz, options='GZIP') as w:
    w.write(b'payload')
  # The compressed file holds a valid record, read with the right option...
  assert [r.numpy() for r in tf.data.TFRecordDataset(
      gz, compression_type='GZIP')] == [b'payload']
  assert video_records.is_gzip_file(gz)
  assert not video_records.is_gzip_file(plain)
  assert not video_records.is_gzip_file(str(tmp_path))  # a directory
  # ... and the message says so, with the way to an uncompressed copy.
  with pytest.raises(ValueError, match=(
      r'1 of 2 files are not TFRecord files .*a-1.tfrecord; 1 of them '
      r'GZIP-compressed \(e.g. .*a-1.tfrecord\): these readers take '
      r'uncompressed TFRecords, `zcat <file> > <file>.tfrecord` writes one; '
      r'tools/inspect_tfrecord.py')):
    video_records.match_tfrecord_files(str(tmp_path / 'a-*'), 'task.x')
  # zcat's output (gzip.decompress here) is the uncompressed TFRecord.
  with open(gz, 'rb') as f, open(tmp_path / 'b.tfrecord', 'wb') as g:
    g.write(gzip.decompress(f.read()))
  assert open(tmp_path / 'b.tfrecord', 'rb').read() == open(plain,
                                                             'rb').read()


def test_match_refuses_a_pattern_of_empty_files_only(tmp_path):
  for name in ('a-0', 'a-1'):
    _write_records(tmp_path / f'{name}.tfrecord', [])
  assert [video_records.tfrecord_file_statuses(
      [str(tmp_path / 'a-0.tfrecord'), str(tmp_path)])] == [['empty', 'bad']]
  with pytest.raises(ValueError, match=(
      r"task.train_data.input_path='.*a-\*': no records in the 2 matched "
      r'files: the 2 TFRecord files are empty')):
    video_records.match_tfrecord_files(str(tmp_path / 'a-*'),
                                       'task.train_data.input_path')
  good = _write_records(tmp_path / 'a-2.tfrecord', [b'x'])
  assert video_records.match_tfrecord_files(
      str(tmp_path / 'a-*'), 'f')[-1] == good
