"""OTB one-pass evaluation (OPE): precision and success curves, in numpy.

Definitions (as the OTB benchmark, Wu et al. 2015):
  * Boxes are continuous `x, y, w, h`; centre = `(x + w / 2, y + h / 2)`,
    IoU = intersection area / union area.
  * Precision curve: fraction of frames whose centre error is <= t, for
    t = 0, 1, ..., 50 px. The reported precision is the value at 20 px.
  * Success curve: fraction of frames whose IoU is > t for the 21 thresholds
    t = 0, 0.05, ..., 1. The reported success is the mean of the curve (the
    AUC). t = 1 can never count (IoU > 1 is impossible), so a perfect tracker
    scores 20/21 = 0.952..., as in the OTB toolkit.
  * The first frame's result is the initial ground truth and counts like any
    other frame.
  * A prediction with w <= 0, h <= 0 or any NaN/inf field is a failure: IoU 0
    and infinite centre error. (The OTB toolkit instead copies the previous
    box; counting it as a miss cannot reward a tracker for reporting nothing.)
  * Ground-truth frames that are invalid -- any NaN, or w <= 0 or h <= 0,
    which covers the all-zero rows some OTB sequences contain -- are excluded
    from the frame count of their sequence.
  * Overall curves are the mean of the per-sequence curves (every sequence
    weighs the same, whatever its length).
"""
import os
from typing import Any, Dict, Iterable, Optional

import numpy as np

from dataloaders import tracking_readers

PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_REPORT_THRESHOLD = 20


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
  boxes = np.asarray(boxes, dtype=np.float64)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f'{name}: expected boxes of shape [n, 4], got '
                     f'{boxes.shape}')
  return boxes


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
  """Returns a bool mask of boxes that are finite with w > 0 and h > 0."""
  boxes = _check_boxes(boxes, 'boxes')
  finite = np.all(np.isfinite(boxes), axis=1)
  with np.errstate(invalid='ignore'):
    positive = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
  return finite & positive


def iou(predicted: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
  """IoU of row-aligned `x, y, w, h` boxes; invalid predictions give 0.

  Args:
    predicted: `[n, 4]` boxes.
    ground_truth: `[n, 4]` boxes.

  Returns:
    float64 `[n]`.
  """
  p = _check_boxes(predicted, 'predicted')
  g = _check_boxes(ground_truth, 'ground_truth')
  ok = valid_boxes(p) & valid_boxes(g)
  p = np.where(ok[:, None], p, 0.0)
  g = np.where(ok[:, None], g, 0.0)
  inter_w = np.maximum(0.0, np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2])
                       - np.maximum(p[:, 0], g[:, 0]))
  inter_h = np.maximum(0.0, np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3])
                       - np.maximum(p[:, 1], g[:, 1]))
  inter = inter_w * inter_h
  union = p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - inter
  out = np.zeros(len(p), dtype=np.float64)
  np.divide(inter, union, out=out, where=ok & (union > 0))
  return out


def center_error(predicted: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
  """Euclidean distance between box centres; invalid predictions give inf."""
  p = _check_boxes(predicted, 'predicted')
  g = _check_boxes(ground_truth, 'ground_truth')
  ok = valid_boxes(p) & valid_boxes(g)
  dx = (p[:, 0] + p[:, 2] / 2) - (g[:, 0] + g[:, 2] / 2)
  dy = (p[:, 1] + p[:, 3] / 2) - (g[:, 1] + g[:, 3] / 2)
  with np.errstate(invalid='ignore'):
    err = np.sqrt(dx * dx + dy * dy)
  return np.where(ok, err, np.inf)


def sequence_curves(predicted: np.ndarray, ground_truth: np.ndarray,
                    name: str = 'sequence') -> Dict[str, Any]:
  """Precision and success curves of one sequence.

  Args:
    predicted: `[n, 4]` tracker output, one row per frame.
    ground_truth: `[n, 4]` annotations; invalid rows are excluded.
    name: Used in error messages.

  Returns:
    dict with `precision_curve` [51], `success_curve` [21], `precision`
    (at 20 px), `success` (AUC), `num_frames` (valid frames counted).

  Raises:
    ValueError: on a length mismatch or no valid ground-truth frame.
  """
  p = _check_boxes(predicted, name)
  g = _check_boxes(ground_truth, name)
  if len(p) != len(g):
    raise ValueError(f'{name}: {len(p)} predicted boxes for {len(g)} '
                     'ground-truth frames')
  keep = valid_boxes(g)
  if not np.any(keep):
    raise ValueError(f'{name}: no valid ground-truth frame')
  p, g = p[keep], g[keep]
  errors = center_error(p, g)
  overlaps = iou(p, g)
  precision_curve = np.mean(errors[None, :] <= PRECISION_THRESHOLDS[:, None],
                            axis=1)
  success_curve = np.mean(overlaps[None, :] > SUCCESS_THRESHOLDS[:, None],
                          axis=1)
  return dict(
      precision_curve=precision_curve,
      success_curve=success_curve,
      precision=float(precision_curve[PRECISION_REPORT_THRESHOLD]),
      success=float(np.mean(success_curve)),
      num_frames=int(keep.sum()))


def evaluate_sequences(predictions: Dict[str, np.ndarray],
                       ground_truths: Dict[str, np.ndarray]
                       ) -> Dict[str, Any]:
  """Averages per-sequence curves over the sequences of `ground_truths`.

  Args:
    predictions: name -> `[n, 4]` boxes; must hold every ground-truth name.
    ground_truths: name -> `[n, 4]` boxes.

  Returns:
    dict(precision, success, precision_curve, success_curve, per_sequence,
    precision_thresholds, success_thresholds); curves are Python lists and
    precision/success fractions in [0, 1].
  """
  if not ground_truths:
    raise ValueError('no sequences to evaluate')
  per_sequence = {}
  precision_curves, success_curves = [], []
  for name in sorted(ground_truths):
    if name not in predictions:
      raise ValueError(f'no results for sequence {name}')
    curves = sequence_curves(predictions[name], ground_truths[name], name)
    precision_curves.append(curves['precision_curve'])
    success_curves.append(curves['success_curve'])
    per_sequence[name] = dict(precision=curves['precision'],
                              success=curves['success'],
                              num_frames=curves['num_frames'])
  precision_curve = np.mean(precision_curves, axis=0)
  success_curve = np.mean(success_curves, axis=0)
  return dict(
      precision=float(precision_curve[PRECISION_REPORT_THRESHOLD]),
      success=float(np.mean(success_curve)),
      precision_curve=precision_curve.tolist(),
      success_curve=success_curve.tolist(),
      precision_thresholds=PRECISION_THRESHOLDS.tolist(),
      success_thresholds=SUCCESS_THRESHOLDS.tolist(),
      per_sequence=per_sequence)


def evaluate_otb(dataset_dir: str, results_dir: str,
                 sequence_names: Optional[Iterable[str]] = None
                 ) -> Dict[str, Any]:
  """One-pass evaluation of a results folder against an OTB dataset folder.

  Args:
    dataset_dir: OTB folder (`<Seq>/groundtruth_rect.txt`, `<Seq>/img/`); a
      GOT-10k-layout folder with full annotations works too.
    results_dir: Folder with `<Seq>.txt`, one `x,y,w,h` line per annotated
      frame (commas, tabs or spaces), in the dataset layout's coordinates
      (OTB: 1-based, as the toolkit's results files;
      `tracking_inference.write_results` with the sequence's
      `pixel_origin` writes them so).
    sequence_names: Optional subset of sequence names to evaluate.

  Returns:
    See `evaluate_sequences`.

  Raises:
    FileNotFoundError: if a sequence has no results file.
    ValueError: if a results file has the wrong number of lines.
  """
  sequences = tracking_readers.list_sequences(dataset_dir)
  if sequence_names is not None:
    wanted = set(sequence_names)
    unknown = wanted - {s.name for s in sequences}
    if unknown:
      raise ValueError(f'sequences {sorted(unknown)} not found in '
                       f'{dataset_dir}')
    sequences = [s for s in sequences if s.name in wanted]
  predictions, ground_truths = {}, {}
  for sequence in sequences:
    path = os.path.join(results_dir, f'{sequence.name}.txt')
    if not os.path.isfile(path):
      raise FileNotFoundError(f'results file for sequence {sequence.name} '
                              f'not found: {path}')
    boxes = tracking_readers.read_box_file(path)
    boxes[:, :2] -= sequence.pixel_origin  # to 0-based, as the ground truth
    if len(boxes) != len(sequence.boxes):
      raise ValueError(f'results file {path} has {len(boxes)} boxes but '
                       f'sequence {sequence.name} has {len(sequence.boxes)} '
                       'annotated frames')
    predictions[sequence.name] = boxes
    ground_truths[sequence.name] = sequence.boxes
  return evaluate_sequences(predictions, ground_truths)


def plot_curves(result: Dict[str, Any], png_path: str,
                label: str = 'tracker') -> None:
  """Draws the precision and success plots of `evaluate_otb` into a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (ax_p, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
  ax_p.plot(PRECISION_THRESHOLDS, result['precision_curve'],
            label=f'{label} [{result["precision"]:.3f}]')
  ax_p.set(title='Precision plots of OPE', xlabel='Location error threshold',
           ylabel='Precision', xlim=(0, 50), ylim=(0, 1))
  ax_s.plot(SUCCESS_THRESHOLDS, result['success_curve'],
            label=f'{label} [{result["success"]:.3f}]')
  ax_s.set(title='Success plots of OPE', xlabel='Overlap threshold',
           ylabel='Success rate', xlim=(0, 1), ylim=(0, 1))
  for ax in (ax_p, ax_s):
    ax.grid(True, alpha=0.3)
    ax.legend(loc='lower left' if ax is ax_s else 'lower right')
  fig.tight_layout()
  directory = os.path.dirname(os.path.abspath(png_path))
  os.makedirs(directory, exist_ok=True)
  fig.savefig(png_path, dpi=100)
  plt.close(fig)
