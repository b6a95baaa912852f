"""Runs tools/ava_eval.py as a user would and checks the JSON it writes."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_ava_eval_tool_writes_expected_json(tmp_path):
  (tmp_path / 'l.pbtxt').write_text(
      'label { name: "bend" label_id: 1 label_type: PERSON_MOVEMENT }\n'
      'label { name: "crawl" label_id: 3 label_type: PERSON_MOVEMENT }\n'
      'label { name: "dance" label_id: 5 label_type: PERSON_MOVEMENT }\n')
  (tmp_path / 'gt.csv').write_text(
      'v1,0902,0.100,0.100,0.400,0.600,1,0\n'
      'v1,0902,0.500,0.200,0.900,0.800,1,1\n'
      'v1,0902,0.500,0.200,0.900,0.800,3,1\n'
      'v1,0903,0.100,0.100,0.400,0.600,3,0\n'
      'v1,0903,0.100,0.100,0.400,1.600,3,0\n'   # bad: out of range
      'v1,0904,0.100,0.100,0.400,0.600,1,0\n')  # excluded frame
  (tmp_path / 'det.csv').write_text(
      'v1,902,0.000,0.000,0.050,0.050,1,0.9\n'   # FP
      'v1,902,0.100,0.100,0.400,0.600,1,0.8\n'   # TP
      'v1,902,0.500,0.200,0.900,0.800,1,0.7\n'   # TP -> bend AP 2/3
      'v1,902,0.500,0.200,0.900,0.800,3,0.6\n'   # TP
      'v1,903,0.100,0.100,0.400,0.600,3,0.5\n'   # TP -> crawl AP 1
      'v1,904,0.000,0.000,0.050,0.050,1,0.99\n'  # excluded
      'v1,902,0.100,0.100,0.400,0.600,2,0.5\n')  # bad: not in label map
  (tmp_path / 'exc.csv').write_text('v1,0904\n')
  out = tmp_path / 'metrics.json'
  proc = subprocess.run(
      [sys.executable, 'tools/ava_eval.py',
       f'--labelmap={tmp_path / "l.pbtxt"}',
       f'--groundtruth={tmp_path / "gt.csv"}',
       f'--detections={tmp_path / "det.csv"}',
       f'--exclusions={tmp_path / "exc.csv"}', f'--output_json={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(out.read_text())
  assert result['per_class'] == pytest.approx({'bend': 2 / 3, 'crawl': 1.0})
  assert result['mAP'] == pytest.approx(5 / 6)
  assert result['num_classes_evaluated'] == 2
  assert result['classes_without_groundtruth'] == ['dance']
  assert result['bad_rows'] == {
      'groundtruth': {'coordinates_out_of_range': 1},
      'detections': {'action_id_not_in_labelmap': 1},
      'exclusions': {}}
  assert 'mAP@0.5IoU = 0.8333 over 2 classes' in proc.stdout
  assert 'skipped 1 groundtruth row(s): coordinates_out_of_range' in proc.stdout


def _run(tmp_path, gt_text, exclusions_text=None):
  (tmp_path / 'l.pbtxt').write_text('label { name: "bend" label_id: 1 }\n')
  (tmp_path / 'gt.csv').write_text(gt_text)
  (tmp_path / 'det.csv').write_text('v1,902,0.1,0.1,0.4,0.6,1,0.5\n')
  args = [sys.executable, 'tools/ava_eval.py',
          f'--labelmap={tmp_path / "l.pbtxt"}',
          f'--groundtruth={tmp_path / "gt.csv"}',
          f'--detections={tmp_path / "det.csv"}']
  if exclusions_text is not None:
    (tmp_path / 'exc.csv').write_text(exclusions_text)
    args.append(f'--exclusions={tmp_path / "exc.csv"}')
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)


def test_zero_area_groundtruth_skipped_and_reported(tmp_path):
  proc = _run(tmp_path, 'v1,0902,0.100,0.100,0.400,0.600,1,0\n'
                        'v1,0902,0.400,0.100,0.400,0.600,1,1\n')
  assert proc.returncode == 0, proc.stderr
  assert 'mAP@0.5IoU = 1.0000 over 1 classes' in proc.stdout
  assert 'skipped 1 groundtruth row(s): zero_area_box' in proc.stdout


def test_no_usable_groundtruth_is_an_error_not_nan(tmp_path):
  # Pixel coordinates: every row is out of [0, 1].
  proc = _run(tmp_path, 'v1,0902,32,24,128,144,1,0\n'
                        'v1,0903,32,24,128,144,1,0\n')
  assert proc.returncode == 2
  assert 'nan' not in proc.stdout
  assert (f'error: {tmp_path / "gt.csv"}: no usable ground-truth row '
          '(skipped: 2 coordinates_out_of_range)') in proc.stderr


def test_every_groundtruth_frame_excluded_exits_1(tmp_path):
  proc = _run(tmp_path, 'v1,0902,0.100,0.100,0.400,0.600,1,0\n',
              exclusions_text='v1,0902\n')
  assert proc.returncode == 1
  assert 'has ground truth left in' in proc.stderr
  assert 'the mAP is undefined' in proc.stderr
