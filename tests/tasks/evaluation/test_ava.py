"""Tests of the AVA readers and frame-level mAP, against hand-worked numbers."""
import collections

import numpy as np
import pytest

from tasks.evaluation import ava

LABELMAP = {1: 'bend', 3: 'crawl', 5: 'dance'}
BOX_A = (0.1, 0.1, 0.4, 0.6)
BOX_B = (0.5, 0.2, 0.9, 0.8)


def _gt(vid, ts, box, action, pid=0):
  return (vid, ts) + tuple(box) + (action, pid)


def _det(vid, ts, box, action, score):
  return (vid, ts) + tuple(box) + (action, score)


def test_perfect_detections_give_map_one():
  gt = [_gt('v', 902, BOX_A, 1), _gt('v', 902, BOX_B, 3, 1),
        _gt('v', 903, BOX_A, 1), _gt('w', 902, BOX_B, 5)]
  dets = [g[:7] + (0.9,) for g in gt]
  r = ava.evaluate(gt, dets, LABELMAP)
  assert r['mAP'] == pytest.approx(1.0)
  assert r['per_class'] == {'bend': 1.0, 'crawl': 1.0, 'dance': 1.0}
  assert r['num_classes_evaluated'] == 3


def test_false_positive_ranked_first():
  # Ranking FP, TP, TP with 2 GT boxes: precisions 0, 1/2, 2/3 at recalls
  # 0, 1/2, 1. Envelope = 2/3 at both recall steps -> AP = 2/3.
  gt = [_gt('v', 902, BOX_A, 1), _gt('v', 902, BOX_B, 1, 1)]
  dets = [_det('v', 902, (0.0, 0.0, 0.05, 0.05), 1, 0.9),
          _det('v', 902, BOX_A, 1, 0.8), _det('v', 902, BOX_B, 1, 0.7)]
  r = ava.evaluate(gt, dets, {1: 'bend'})
  assert r['per_class']['bend'] == pytest.approx(2 / 3)
  # Ranking TP, FP, TP: precisions 1, 1/2, 2/3 -> AP = .5*1 + .5*2/3 = 5/6.
  dets[0] = _det('v', 902, (0.0, 0.0, 0.05, 0.05), 1, 0.75)
  r = ava.evaluate(gt, dets, {1: 'bend'})
  assert r['per_class']['bend'] == pytest.approx(5 / 6)


def test_compute_average_precision_by_hand():
  assert ava.compute_average_precision(
      np.array([0., .5, 2 / 3]), np.array([0., .5, 1.])) == pytest.approx(2 / 3)
  # Recall never reaches 1: the missing part counts as zero.
  assert ava.compute_average_precision(
      np.array([1., 1.]), np.array([.25, .5])) == pytest.approx(.5)
  assert ava.compute_average_precision(np.array([]), np.array([])) == 0.0


def test_duplicate_detection_is_false_positive():
  gt = [_gt('v', 902, BOX_A, 1)]
  shifted = (0.11, 0.1, 0.41, 0.6)  # IoU with BOX_A = 0.29/0.31 > 0.5.
  dets = [_det('v', 902, BOX_A, 1, 0.9), _det('v', 902, shifted, 1, 0.8)]
  # TP then FP: precisions 1, 1/2 at recall 1, 1 -> AP 1.
  assert ava.evaluate(gt, dets, {1: 'a'})['mAP'] == pytest.approx(1.0)
  # Duplicate ranked first is the TP, the exact box second is the FP: AP 1.
  # With a second GT box far away and never detected: AP = 0.5 * 1.
  gt.append(_gt('v', 902, BOX_B, 1, 1))
  assert ava.evaluate(gt, dets, {1: 'a'})['mAP'] == pytest.approx(0.5)
  # Duplicate whose best box is taken does not fall back to another box
  # with IoU >= 0.5: precisions 1, 1/2, 2/3, recall .5, .5, 1 -> 5/6.
  gt2 = [_gt('v', 1, (0., 0., .5, 1.), 1), _gt('v', 1, (.2, 0., .7, 1.), 1, 1)]
  dets2 = [_det('v', 1, (0., 0., .5, 1.), 1, .9),
           _det('v', 1, (.05, 0., .55, 1.), 1, .8),  # best: box 0 (taken).
           _det('v', 1, (.2, 0., .7, 1.), 1, .7)]
  assert ava.evaluate(gt2, dets2, {1: 'a'})['mAP'] == pytest.approx(5 / 6)


def test_iou_below_threshold_is_false_positive():
  gt = [_gt('v', 902, (0., 0., .5, 1.), 1)]
  # IoU = 0.25 / 0.5 = 0.5 exactly: true positive (>=).
  assert ava.evaluate(gt, [_det('v', 902, (0., 0., .25, 1.), 1, .5)],
                      {1: 'a'})['mAP'] == pytest.approx(1.0)
  assert ava.evaluate(gt, [_det('v', 902, (0., 0., .24, 1.), 1, .5)],
                      {1: 'a'})['mAP'] == 0.0
  np.testing.assert_allclose(
      ava.iou_matrix(np.array([[0., 0., .5, 1.]]),
                     np.array([[.25, 0., .75, 1.], [.6, .6, .7, .7]])),
      [[1 / 3, 0.]])


def test_classes_without_groundtruth_left_out_of_mean():
  gt = [_gt('v', 902, BOX_A, 1), _gt('v', 902, BOX_B, 3, 1)]
  dets = [_det('v', 902, BOX_A, 1, 0.9), _det('v', 902, BOX_A, 5, 0.9)]
  r = ava.evaluate(gt, dets, LABELMAP)
  assert r['per_class'] == {'bend': 1.0, 'crawl': 0.0}
  assert r['classes_without_groundtruth'] == ['dance']
  assert r['num_classes_evaluated'] == 2
  assert r['mAP'] == pytest.approx(0.5)


def test_only_labelmap_classes_are_evaluated():
  gt = [_gt('v', 902, BOX_A, 1), _gt('v', 902, BOX_A, 2)]
  dets = [_det('v', 902, BOX_A, 2, 0.9)]
  r = ava.evaluate(gt, dets, {1: 'bend'})
  assert list(r['per_class']) == ['bend']
  assert r['per_class']['bend'] == 0.0
  assert r['dropped']['groundtruth_class_not_in_labelmap'] == 1


def test_excluded_timestamps_ignored_and_formats_normalized():
  gt = [_gt('v', '0902', BOX_A, 1), _gt('v', '0903', BOX_B, 1)]
  # Frame 903 only has a false positive; frame 902 written as '902.0'.
  dets = [_det('v', '902.0', BOX_A, 1, 0.5), _det('v', 903, BOX_A, 1, 0.9)]
  r = ava.evaluate(gt, dets, {1: 'a'})
  # FP (0.9) then TP: precisions 0, 1/2; recalls 0, 1/2 -> 0.25.
  assert r['mAP'] == pytest.approx(0.25)
  r = ava.evaluate(gt, dets, {1: 'a'}, excluded=[('v', '903')])
  assert r['mAP'] == pytest.approx(1.0)
  assert r['dropped']['groundtruth_excluded'] == 1
  assert r['dropped']['detections_excluded'] == 1


def test_fifty_detections_per_frame_cap():
  gt = [_gt('v', 1, BOX_A, 1)]
  far = (0.9, 0.9, 0.95, 0.95)
  # 50 confident false positives of another class push the TP out.
  dets = [_det('v', 1, far, 3, 0.9)] * 50 + [_det('v', 1, BOX_A, 1, 0.1)]
  r = ava.evaluate(gt, dets, {1: 'a', 3: 'c'})
  assert r['per_class']['a'] == 0.0
  assert r['dropped']['detections_over_frame_cap'] == 1
  r = ava.evaluate(gt, dets[1:], {1: 'a', 3: 'c'})
  assert r['per_class']['a'] == 1.0
  # The cap is per frame: the same 50 on another frame do not count here.
  dets = [_det('w', 1, far, 3, 0.9)] * 50 + [_det('v', 1, BOX_A, 1, 0.1)]
  assert ava.evaluate(gt, dets, {1: 'a', 3: 'c'})['per_class']['a'] == 1.0


def test_classes_outside_the_labelmap_go_before_the_frame_cap():
  # The official read_csv drops non-whitelisted classes while reading and
  # caps afterwards: 50 confident rows of class 2 (not evaluated) must not
  # push the correct class-1 row out of the frame's top 50.
  gt = [_gt('v', 902, BOX_A, 1)]
  dets = [_det('v', 902, BOX_A, 2, 0.9)] * 50 + [_det('v', 902, BOX_A, 1,
                                                      0.5)]
  r = ava.evaluate(gt, dets, {1: 'a'})
  assert r['mAP'] == pytest.approx(1.0)
  assert r['dropped']['detections_class_not_in_labelmap'] == 50
  assert r['dropped'].get('detections_over_frame_cap', 0) == 0
  assert r['num_detections'] == 1


def test_multi_label_box_counts_once_per_label():
  # One person, two actions (two rows). Detecting only one label gives AP 1
  # for it, AP 0 for the other: mAP 0.5.
  gt = [_gt('v', 1, BOX_A, 1, 7), _gt('v', 1, BOX_A, 3, 7)]
  r = ava.evaluate(gt, [_det('v', 1, BOX_A, 1, 0.9)], {1: 'a', 3: 'c'})
  assert r['per_class'] == {'a': 1.0, 'c': 0.0}
  assert r['num_groundtruth'] == {'a': 1, 'c': 1}
  r = ava.evaluate(gt, [_det('v', 1, BOX_A, 1, .9), _det('v', 1, BOX_A, 3, .2)],
                   {1: 'a', 3: 'c'})
  assert r['mAP'] == pytest.approx(1.0)


def test_detections_across_frames_ranked_together():
  # Class 1: GT in frames f1, f2. Dets: f2 FP .9, f1 TP .8, f2 TP .3.
  gt = [_gt('v', 1, BOX_A, 1), _gt('v', 2, BOX_B, 1)]
  dets = [_det('v', 2, BOX_A, 1, .9), _det('v', 1, BOX_A, 1, .8),
          _det('v', 2, BOX_B, 1, .3)]
  assert ava.evaluate(gt, dets, {1: 'a'})['mAP'] == pytest.approx(2 / 3)


def test_labelmap_both_formats_and_errors(tmp_path):
  v22 = tmp_path / 'v22.pbtxt'
  v22.write_text('label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n'
                 '  label_type: PERSON_MOVEMENT\n}\n'
                 'label { name: "crawl" label_id: 3 label_type: '
                 'PERSON_MOVEMENT }\n')
  assert ava.read_labelmap(str(v22)) == {1: 'bend/bow (at the waist)',
                                         3: 'crawl'}
  v21 = tmp_path / 'v21.pbtxt'
  v21.write_text('# AVA v2.1\nitem {\n  name: "stand"\n  id: 12\n}\n'
                 'item {\n  name: "sit"\n  id: 11\n}\n')
  assert ava.read_labelmap(str(v21)) == {12: 'stand', 11: 'sit'}
  bad = tmp_path / 'bad.pbtxt'
  bad.write_text('item {\n  name: "stand"\n  id: 12\n}\nitem {\n'
                 '  name: "sit"\n  id: eleven\n}\n')
  with pytest.raises(ValueError, match=r'bad\.pbtxt:7: id .eleven.'):
    ava.read_labelmap(str(bad))
  bad.write_text('item {\n  name: "stand"\n  id 12\n}\n')
  with pytest.raises(ValueError, match=r'bad\.pbtxt:3:'):
    ava.read_labelmap(str(bad))


def test_csv_readers_count_bad_rows(tmp_path):
  gt = tmp_path / 'gt.csv'
  gt.write_text('v,0902,0.1,0.1,0.4,0.6,1,0\n'
                'v,0902,0.1,0.1,0.4,1.6,1,0\n'   # out of range
                'v,0902,0.1,0.1,0.4,0.6,9,0\n'   # unknown action
                'v,09x2,0.1,0.1,0.4,0.6,1,0\n'   # malformed timestamp
                'v,0902,0.1,0.1\n'               # malformed: too few fields
                'v,0902,0.5,0.1,0.4,0.6,1,0\n'   # inverted
                'kin_id,12.0,0.1,0.1,0.4,0.6,3\n')  # 7 columns: no person id
  bad = collections.Counter()
  rows = ava.read_groundtruth_csv(str(gt), {1, 3}, bad)
  assert bad == {ava.OUT_OF_RANGE: 1, ava.UNKNOWN_ACTION: 1,
                 ava.MALFORMED: 2, ava.INVERTED_BOX: 1}
  assert [(r.video_id, r.timestamp, r.action_id, r.person_id) for r in rows] \
      == [('v', 902.0, 1, 0), ('kin_id', 12.0, 3, -1)]
  det = tmp_path / 'det.csv'
  det.write_text('v,902,0.1,0.1,0.4,0.6,1,0.75\n'
                 'v,902,0.1,0.1,0.4,0.6,1,4,0.5\n'  # person id before score
                 'v,902,0.1,0.1,0.4,0.6,1,nan\n')
  bad = collections.Counter()
  rows = ava.read_detections_csv(str(det), {1}, bad)
  assert [(r.score, r.person_id) for r in rows] == [(0.75, -1), (0.5, 4)]
  assert bad == {ava.MALFORMED: 1}
  exc = tmp_path / 'exc.csv'
  exc.write_text('v,0902\nw,12.0\n')
  assert ava.read_exclusions_csv(str(exc)) == {('v', 902.0), ('w', 12.0)}


def test_write_detections_csv_round_trip(tmp_path):
  path = tmp_path / 'd.csv'
  n = ava.write_detections_csv(str(path), [
      ('v', 902.0, 0.1, 0.2, 0.3, 0.4, 5, 0.25),
      ava.AvaRow('k', 12.5, (0., 0., 1., 1.), 3, -1, 0.5)])
  assert n == 2
  assert path.read_text().splitlines() == [
      'v,0902,0.100,0.200,0.300,0.400,5,0.250000',
      'k,12.5,0.000,0.000,1.000,1.000,3,0.500000']
  rows = ava.read_detections_csv(str(path))
  assert [(r.video_id, r.timestamp, r.box, r.action_id, r.score)
          for r in rows] == [('v', 902.0, (0.1, 0.2, 0.3, 0.4), 5, 0.25),
                             ('k', 12.5, (0., 0., 1., 1.), 3, 0.5)]


def test_zero_area_groundtruth_rows_are_skipped_and_counted(tmp_path):
  gt = tmp_path / 'gt.csv'
  gt.write_text('v,0902,0.1,0.1,0.4,0.6,1,0\n'
                'v,0902,0.4,0.1,0.4,0.6,1,1\n'    # xmax == xmin
                'v,0902,0.1,0.6,0.4,0.6,1,2\n')   # ymax == ymin
  bad = collections.Counter()
  rows = ava.read_groundtruth_csv(str(gt), {1}, bad)
  assert bad == {ava.ZERO_AREA_BOX: 2}
  assert [r.person_id for r in rows] == [0]
  # A zero-area detection is a false positive (official protocol): kept.
  det = tmp_path / 'det.csv'
  det.write_text('v,902,0.4,0.1,0.4,0.6,1,0.75\n')
  bad = collections.Counter()
  assert len(ava.read_detections_csv(str(det), {1}, bad)) == 1
  assert not bad


def test_evaluate_files_without_usable_groundtruth_is_an_error(tmp_path):
  (tmp_path / 'l.pbtxt').write_text('label { name: "bend" label_id: 1 }\n')
  gt = tmp_path / 'gt.csv'
  gt.write_text('v,0902,32,24,128,144,1,0\n'      # pixels, not normalized
                'v,0902,0.4,0.1,0.4,0.6,1,1\n')   # zero area
  (tmp_path / 'det.csv').write_text('v,902,0.1,0.1,0.4,0.6,1,0.5\n')
  with pytest.raises(ValueError, match=(
      r'gt\.csv: no usable ground-truth row \(skipped: 1 '
      r'coordinates_out_of_range, 1 zero_area_box\)')):
    ava.evaluate_files(str(tmp_path / 'l.pbtxt'), str(gt),
                       str(tmp_path / 'det.csv'))
