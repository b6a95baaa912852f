"""Tests for OTB one-pass evaluation (numbers worked out by hand)."""
import os

import numpy as np
import pytest

from dataloaders import toy_world
from dataloaders import tracking_readers
from tasks import tracking_inference
from tasks.evaluation import otb

GT = np.array([[10.0, 10.0, 20.0, 20.0]] * 5)


def test_perfect_track():
  curves = otb.sequence_curves(GT, GT)
  np.testing.assert_array_equal(curves['precision_curve'], np.ones(51))
  # IoU == 1 exceeds every threshold but the last (IoU > 1 is impossible).
  np.testing.assert_array_equal(curves['success_curve'],
                                [1.0] * 20 + [0.0])
  assert curves['precision'] == 1.0
  assert curves['success'] == pytest.approx(20 / 21, abs=1e-12)


def test_constant_horizontal_offset():
  pred = GT + [10.0, 0.0, 0.0, 0.0]
  np.testing.assert_allclose(otb.center_error(pred, GT), 10.0)
  # Overlap 10 x 20 = 200, union 400 + 400 - 200 = 600.
  np.testing.assert_allclose(otb.iou(pred, GT), 1 / 3)
  curves = otb.sequence_curves(pred, GT)
  expected_precision = (np.arange(51) >= 10).astype(float)
  np.testing.assert_array_equal(curves['precision_curve'], expected_precision)
  # 1/3 > t for t = 0, 0.05, ..., 0.30: 7 of the 21 thresholds.
  np.testing.assert_array_equal(curves['success_curve'],
                                [1.0] * 7 + [0.0] * 14)
  assert curves['precision'] == 1.0
  assert curves['success'] == pytest.approx(7 / 21)


def test_first_frame_counts_like_any_other():
  pred = GT + [10.0, 0.0, 0.0, 0.0]
  pred[0] = GT[0]  # The initial box is the ground truth.
  curves = otb.sequence_curves(pred, GT)
  assert curves['precision_curve'][5] == pytest.approx(1 / 5)
  assert curves['precision_curve'][10] == 1.0
  # Thresholds 0..0.30: all 5 frames; 0.35..0.95: only frame 0; 1.0: none.
  assert curves['success'] == pytest.approx((7 * 1.0 + 13 * 0.2) / 21)


@pytest.mark.parametrize('bad', [[10, 10, 0, 20], [10, 10, 20, -1],
                                 [np.nan, 10, 20, 20], [0, 0, 0, 0]])
def test_empty_prediction_counts_as_iou_zero(bad):
  pred = GT[:2].copy()
  pred[1] = bad
  assert otb.iou(pred, GT[:2])[1] == 0.0
  assert np.isinf(otb.center_error(pred, GT[:2])[1])
  curves = otb.sequence_curves(pred, GT[:2])
  np.testing.assert_array_equal(curves['precision_curve'], np.full(51, 0.5))
  assert curves['success'] == pytest.approx(10 / 21)


def test_invalid_ground_truth_frames_are_excluded():
  gt = GT.copy()
  gt[1] = 0.0
  gt[2] = np.nan
  pred = gt.copy()
  pred[1] = [50, 50, 5, 5]
  pred[2] = [50, 50, 5, 5]
  curves = otb.sequence_curves(pred, gt)
  assert curves['num_frames'] == 3
  assert curves['precision'] == 1.0
  assert curves['success'] == pytest.approx(20 / 21)


def test_overall_is_mean_of_sequence_curves():
  result = otb.evaluate_sequences(
      {'a': GT, 'b': GT[:2] + [10.0, 0, 0, 0]}, {'a': GT, 'b': GT[:2]})
  assert result['success'] == pytest.approx((20 / 21 + 7 / 21) / 2)
  assert result['precision'] == 1.0
  assert result['precision_curve'][5] == pytest.approx(0.5)
  assert result['per_sequence']['b']['success'] == pytest.approx(7 / 21)
  assert len(result['precision_curve']) == 51
  assert len(result['success_curve']) == 21


def _make_dataset(root):
  data_dir = os.path.join(root, 'otb')
  for name, n in (('Car', 3), ('Dog', 2)):
    os.makedirs(os.path.join(data_dir, name, 'img'))
    for i in range(1, n + 1):
      open(os.path.join(data_dir, name, 'img', f'{i:04d}.jpg'), 'wb').close()
    with open(os.path.join(data_dir, name, 'groundtruth_rect.txt'), 'w') as f:
      f.write('10\t10\t20\t20\n' * n)
  results_dir = os.path.join(root, 'results')
  os.makedirs(results_dir)
  with open(os.path.join(results_dir, 'Car.txt'), 'w') as f:
    f.write('10,10,20,20\n' * 3)
  with open(os.path.join(results_dir, 'Dog.txt'), 'w') as f:
    f.write('20 10 20 20\n' * 2)
  return data_dir, results_dir


def test_evaluate_otb_and_plot(tmp_path):
  data_dir, results_dir = _make_dataset(str(tmp_path))
  result = otb.evaluate_otb(data_dir, results_dir)
  assert sorted(result['per_sequence']) == ['Car', 'Dog']
  assert result['per_sequence']['Car']['success'] == pytest.approx(20 / 21)
  assert result['per_sequence']['Dog']['success'] == pytest.approx(7 / 21)
  assert result['success'] == pytest.approx(27 / 42)
  png = os.path.join(str(tmp_path), 'plots', 'otb.png')
  otb.plot_curves(result, png)
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_wrong_length_results_file_is_named(tmp_path):
  data_dir, results_dir = _make_dataset(str(tmp_path))
  with open(os.path.join(results_dir, 'Dog.txt'), 'w') as f:
    f.write('20,10,20,20\n' * 3)
  with pytest.raises(ValueError, match=r'Dog\.txt has 3 boxes.*2 annotated'):
    otb.evaluate_otb(data_dir, results_dir)


def test_missing_results_file_is_named(tmp_path):
  data_dir, results_dir = _make_dataset(str(tmp_path))
  os.remove(os.path.join(results_dir, 'Car.txt'))
  with pytest.raises(FileNotFoundError, match=r'Car\.txt'):
    otb.evaluate_otb(data_dir, results_dir)


def test_results_files_are_in_the_layouts_coordinates(tmp_path):
  """The reader's 0-based ground truth, written back, is OTB's own file.

  A tracker that returns the reader's boxes exactly writes, with the
  sequence's pixel origin, the 1-based ground-truth file line for line, and
  scores a perfect track; written without the origin it is 1 px off in x and
  y: the centre error is sqrt(2) px (precision still 1 at 20 px), and the
  IoU of a w x h box shifted by (1, 1) is below 1, so success drops.
  """
  data_dir = str(tmp_path / 'otb')
  toy_world.write_tracking_sequences(
      data_dir, 1, seed=5, spec=toy_world.ToyWorldSpec(num_frames=4),
      layout='otb')
  (sequence,) = tracking_readers.list_sequences(data_dir)
  gt_file = tracking_readers.read_box_file(
      os.path.join(data_dir, sequence.name, 'groundtruth_rect.txt'))
  np.testing.assert_array_equal(sequence.boxes[:, :2], gt_file[:, :2] - 1)
  for origin, success in ((sequence.pixel_origin, 20 / 21), (0, None)):
    results_dir = str(tmp_path / f'results{origin}')
    tracking_inference.write_results(
        os.path.join(results_dir, f'{sequence.name}.txt'), sequence.boxes,
        origin)
    result = otb.evaluate_otb(data_dir, results_dir)
    if success is not None:
      np.testing.assert_allclose(tracking_readers.read_box_file(
          os.path.join(results_dir, f'{sequence.name}.txt')), gt_file)
      assert result['success'] == pytest.approx(success)
    else:
      assert result['success'] < 20 / 21
    assert result['precision'] == 1.0
