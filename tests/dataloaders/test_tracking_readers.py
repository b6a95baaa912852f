"""Tests for the GOT-10k / OTB sequence readers."""
import os

import cv2
import numpy as np
import pytest

from dataloaders import tracking_readers


def _write_image(path, value=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  cv2.imwrite(path, np.full((8, 10, 3), value, np.uint8))


def _make_otb(root, name, num_images, gt_text, first_image=1,
              gt_name='groundtruth_rect.txt'):
  seq_dir = os.path.join(root, name)
  for i in range(first_image, first_image + num_images):
    _write_image(os.path.join(seq_dir, 'img', f'{i:04d}.jpg'))
  with open(os.path.join(seq_dir, gt_name), 'w') as f:
    f.write(gt_text)
  return seq_dir


def _make_got10k(root, name, num_frames, gt_text):
  seq_dir = os.path.join(root, name)
  for i in range(1, num_frames + 1):
    _write_image(os.path.join(seq_dir, f'{i:08d}.jpg'), value=10 * i)
  with open(os.path.join(seq_dir, 'groundtruth.txt'), 'w') as f:
    f.write(gt_text)
  return seq_dir


EXPECTED = np.array([[1, 2, 3, 4], [5.5, 6, 7, 8], [9, 10, 11, 12.25]])


@pytest.mark.parametrize('text', [
    '1,2,3,4\n5.5,6,7,8\n9,10,11,12.25\n',
    '1\t2\t3\t4\n5.5\t6\t7\t8\n9\t10\t11\t12.25\n',
    '1 2 3 4\n5.5 6 7 8\n9 10 11 12.25\n',
    '1, 2\t3 4\r\n5.5,6,\t7  8\n\n9\t10,11 12.25',
])
def test_otb_separators(tmp_path, text):
  seq_dir = _make_otb(str(tmp_path), 'Car', 3, text)
  seq = tracking_readers.read_otb_sequence(seq_dir)
  assert seq.name == 'Car'
  assert seq.boxes.dtype == np.float64
  # OTB files are 1-based: the reader's boxes are 0-based.
  np.testing.assert_array_equal(seq.boxes, EXPECTED - [1, 1, 0, 0])
  assert seq.pixel_origin == 1
  assert [os.path.basename(p) for p in seq.frame_paths] == [
      '0001.jpg', '0002.jpg', '0003.jpg']


def test_otb_explicit_start_frame(tmp_path):
  seq_dir = _make_otb(str(tmp_path), 'Seq', 10, '1,2,3,4\n' * 3)
  seq = tracking_readers.read_otb_sequence(seq_dir, start_frame=6)
  assert [os.path.basename(p) for p in seq.frame_paths] == [
      '0006.jpg', '0007.jpg', '0008.jpg']


def test_otb_start_frame_table_and_inference(tmp_path):
  root = str(tmp_path)
  # Known table entry: Tiger1 starts at image 6.
  seq = tracking_readers.read_otb_sequence(
      _make_otb(root, 'Tiger1', 9, '1,2,3,4\n' * 3))
  assert os.path.basename(seq.frame_paths[0]) == '0006.jpg'
  # Images numbered from 300: the first image is the start frame.
  seq = tracking_readers.read_otb_sequence(
      _make_otb(root, 'Numbered', 5, '1,2,3,4\n' * 4, first_image=300))
  assert [os.path.basename(p) for p in seq.frame_paths] == [
      '0300.jpg', '0301.jpg', '0302.jpg', '0303.jpg']
  # Images from 1 but more images than lines: the annotation covers the
  # first images, as the OTB toolkit's default start frame 1 has it.
  seq = tracking_readers.read_otb_sequence(
      _make_otb(root, 'Unknown', 7, '1,2,3,4\n' * 2))
  assert [os.path.basename(p) for p in seq.frame_paths] == [
      '0001.jpg', '0002.jpg']
  # OTB2015's Football1 holds 74 annotations and more images: from image 1
  # (the toolkit's startFrame 1, endFrame 74).
  seq = tracking_readers.read_otb_sequence(
      _make_otb(root, 'Football1', 80, '1,2,3,4\n' * 74))
  assert os.path.basename(seq.frame_paths[0]) == '0001.jpg'
  assert os.path.basename(seq.frame_paths[-1]) == '0074.jpg'


def test_otb_missing_frame_names_sequence_and_frame(tmp_path):
  seq_dir = _make_otb(str(tmp_path), 'Short', 2, '1,2,3,4\n' * 3)
  with pytest.raises(ValueError, match=r'Short.*0003'):
    tracking_readers.read_otb_sequence(seq_dir)


def test_otb_bad_line(tmp_path):
  seq_dir = _make_otb(str(tmp_path), 'Bad', 2, '1,2,3,4\n1,2,3\n')
  with pytest.raises(ValueError, match='line 2 has 3 fields'):
    tracking_readers.read_otb_sequence(seq_dir)


def test_got10k_reader(tmp_path):
  seq_dir = _make_got10k(str(tmp_path), 'GOT-10k_Train_000001', 3,
                         '1,2,3,4\n2,3,4,5\n3,4,5,6\n')
  seq = tracking_readers.read_got10k_sequence(seq_dir)
  assert seq.name == 'GOT-10k_Train_000001'
  assert len(seq) == 3
  np.testing.assert_array_equal(seq.boxes[2], [3, 4, 5, 6])
  frame = tracking_readers.load_frame(seq, 1)
  assert frame.shape == (8, 10, 3) and frame.dtype == np.float32
  np.testing.assert_allclose(frame, 20 / 255, atol=2 / 255)


def test_got10k_test_split_first_line_only(tmp_path):
  seq_dir = _make_got10k(str(tmp_path), 'GOT-10k_Test_000001', 4, '1,2,3,4\n')
  seq = tracking_readers.read_got10k_sequence(seq_dir)
  assert len(seq.frame_paths) == 4 and seq.boxes.shape == (1, 4)


def test_got10k_fewer_frames_than_lines(tmp_path):
  seq_dir = _make_got10k(str(tmp_path), 'seqA', 2, '1,2,3,4\n' * 3)
  with pytest.raises(ValueError, match=r'seqA.*00000003\.jpg'):
    tracking_readers.read_got10k_sequence(seq_dir)


def test_unreadable_frame_names_sequence_and_frame(tmp_path):
  seq_dir = _make_got10k(str(tmp_path), 'seqB', 2, '1,2,3,4\n' * 2)
  with open(os.path.join(seq_dir, '00000002.jpg'), 'wb') as f:
    f.write(b'not a jpeg')
  seq = tracking_readers.read_got10k_sequence(seq_dir)
  with pytest.raises(ValueError, match=r'seqB.*frame 1.*00000002\.jpg'):
    tracking_readers.load_frame(seq, 1)


def test_list_sequences(tmp_path):
  root = str(tmp_path)
  _make_otb(root, 'Basketball', 2, '1,2,3,4\n' * 2)
  _make_otb(root, 'Jogging', 2, '1,2,3,4\n' * 2,
            gt_name='groundtruth_rect.1.txt')
  with open(os.path.join(root, 'Jogging', 'groundtruth_rect.2.txt'), 'w') as f:
    f.write('5,6,7,8\n' * 2)
  _make_got10k(root, 'got', 2, '1,2,3,4\n' * 2)
  os.makedirs(os.path.join(root, 'not_a_sequence'))
  with open(os.path.join(root, 'list.txt'), 'w') as f:
    f.write('got\n')
  seqs = tracking_readers.list_sequences(root)
  assert [s.name for s in seqs] == ['Basketball', 'Jogging.1', 'Jogging.2',
                                    'got']
  np.testing.assert_array_equal(seqs[2].boxes[0], [4, 5, 7, 8])  # 1-based
  np.testing.assert_array_equal(seqs[3].boxes[0], [1, 2, 3, 4])  # 0-based
  assert [s.pixel_origin for s in seqs] == [1, 1, 1, 0]
