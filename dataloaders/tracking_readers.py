"""Readers for single-object tracking sequences (GOT-10k and OTB layouts).

Layouts (SPEC section 3):
  GOT-10k  `<seq>/00000001.jpg, 00000002.jpg, ...` and `<seq>/groundtruth.txt`
           with one `x,y,w,h` line per frame. The GOT-10k test split only
           ships the first line; that is accepted (`boxes` then has one row).
  OTB      `<seq>/img/0001.jpg, ...` and `<seq>/groundtruth_rect.txt` with one
           `x,y,w,h` line per frame; numbers are separated by commas, tabs or
           spaces, possibly mixed within one file. Sequences with two targets
           ship `groundtruth_rect.1.txt` / `groundtruth_rect.2.txt` and are
           read as `<seq>.1` / `<seq>.2` (OTB's `Jogging.1` naming).

Boxes are float64 `[n, 4]` in 0-based continuous pixel coordinates
`x, y, w, h` (pixel column i spans [i, i + 1)). GOT-10k files are 0-based
already; OTB files are 1-based (MATLAB's convention, OTB's toolkit: x = 1 is
the first column), so `read_otb_sequence` subtracts 1 from x and y and
records the file's origin in `Sequence.pixel_origin`. Results written for a
sequence add it back (`tracking_inference.write_results`), so an OTB results
file is in OTB's coordinates, as the official toolkit and published results
files are, and `tasks.evaluation.otb.evaluate_otb` subtracts it again.

OTB start frames. A few OTB sequences are annotated from a frame other than
the first image (David from 300, Tiger1 from 6, BlurCar1 from 247, ...).
`read_otb_sequence` aligns the ground truth with the images as follows, first
rule that applies:
  1. an explicit `start_frame` argument;
  2. the `OTB_START_FRAMES` table below (the OTB2015 benchmark's values);
  3. if the image numbering itself does not start at 1 (e.g. `img/0300.jpg`
     is the first file), the first file is the start frame;
  4. otherwise frame 1, the OTB toolkit's default. With more images than
     ground-truth lines a warning names the sequence: the annotation is
     taken to cover the first images (as for OTB2015's Football1, Freeman3,
     Freeman4 and Diving, whose folders hold extra images at the end), which
     is wrong for a sequence annotated from a later frame that the table
     does not list.
The returned `frame_paths` hold exactly the annotated frames, aligned
row-for-row with `boxes`.
"""
import dataclasses
import os
import re
from typing import Dict, List, Optional

from absl import logging
import cv2
import numpy as np

# Start frames (1-based image numbers) of the OTB2015 sequences whose
# annotation does not start on the first image (the toolkit's `startFrame`).
# Diving, Football1, Freeman3 and Freeman4 are annotated from frame 1 and hold
# more images than annotations; they are listed so that no warning is logged.
OTB_START_FRAMES: Dict[str, int] = {
    'David': 300,
    'Tiger1': 6,
    'BlurCar1': 247,
    'BlurCar3': 3,
    'BlurCar4': 18,
    'Diving': 1,
    'Football1': 1,
    'Freeman3': 1,
    'Freeman4': 1,
}
# Pixel origin of each layout's box files: the coordinate of the first
# column / row (GOT-10k 0, OTB 1). Readers return 0-based boxes.
GOT10K_PIXEL_ORIGIN = 0
OTB_PIXEL_ORIGIN = 1

_SEPARATORS = re.compile(r'[,\s]+')
_GOT10K_GT = 'groundtruth.txt'
_OTB_GT = re.compile(r'^groundtruth_rect(?:\.(\d+))?\.txt$')
_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


@dataclasses.dataclass
class Sequence:
  """One annotated tracking sequence.

  Attributes:
    name: Sequence name (folder name, `<folder>.<k>` for OTB multi-target).
    frame_paths: Image paths, one per frame, in temporal order.
    boxes: float64 `[n, 4]` ground truth `x, y, w, h`, 0-based, row i for
      frame i. For GOT-10k test sequences only the first row exists.
    pixel_origin: the origin of the layout's box files (module docstring):
      results files for this sequence are written with it added to x, y.
    absent: GOT-10k's `absence.label` (int `[n]`, 1: the target is not in
      the frame), or None when the folder has none.
    cover: GOT-10k's `cover.label` (int `[n]`, the visible share of the
      target in ninths, 0: fully occluded ... 8: fully visible), or None.
  """
  name: str
  frame_paths: List[str]
  boxes: np.ndarray
  pixel_origin: int = GOT10K_PIXEL_ORIGIN
  absent: Optional[np.ndarray] = None
  cover: Optional[np.ndarray] = None

  def visible(self) -> np.ndarray:
    """bool `[n]`: frames whose target the labels do not mark as hidden.

    A frame counts as hidden when `absent` is 1 or `cover` is 0; without
    the label files every frame is visible.
    """
    shown = np.ones(len(self.boxes), dtype=bool)
    if self.absent is not None:
      shown &= self.absent == 0
    if self.cover is not None:
      shown &= self.cover > 0
    return shown

  def __len__(self) -> int:
    return len(self.frame_paths)


def parse_box_text(text: str, source: str) -> np.ndarray:
  """Parses `x,y,w,h` lines separated by commas, tabs and/or spaces.

  Args:
    text: File contents. Blank lines are ignored.
    source: Name used in error messages (usually the file path).

  Returns:
    float64 array `[n, 4]`. Fields written as `NaN` parse to NaN.

  Raises:
    ValueError: if a line does not hold exactly 4 numbers.
  """
  rows = []
  for line_no, line in enumerate(text.splitlines(), start=1):
    line = line.strip()
    if not line:
      continue
    fields = [f for f in _SEPARATORS.split(line) if f]
    if len(fields) != 4:
      raise ValueError(f'{source}: line {line_no} has {len(fields)} fields, '
                       f'expected 4 (x,y,w,h): {line!r}')
    try:
      rows.append([float(f) for f in fields])
    except ValueError:
      raise ValueError(f'{source}: line {line_no} is not numeric: '
                       f'{line!r}') from None
  return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_box_file(path: str) -> np.ndarray:
  """Reads a ground-truth or results file of `x,y,w,h` lines (any separator)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'box file not found: {path}')
  with open(path, 'r') as f:
    return parse_box_text(f.read(), path)


def _frame_number(file_name: str) -> Optional[int]:
  stem, ext = os.path.splitext(file_name)
  if ext.lower() not in _IMAGE_EXTENSIONS or not stem.isdigit():
    return None
  return int(stem)


def _numbered_frames(directory: str) -> Dict[int, str]:
  """Maps frame number -> path for the numbered images in `directory`."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'frame directory not found: {directory}')
  frames = {}
  for file_name in os.listdir(directory):
    number = _frame_number(file_name)
    if number is not None:
      frames[number] = os.path.join(directory, file_name)
  return frames


def read_got10k_sequence(sequence_dir: str) -> Sequence:
  """Reads a GOT-10k sequence folder.

  Args:
    sequence_dir: Folder with `00000001.jpg, ...` and `groundtruth.txt`.

  Returns:
    A `Sequence` with every frame; `boxes` has one row per frame, or a single
    row for test-split sequences that only annotate the first frame.

  Raises:
    ValueError: if there are fewer frames than ground-truth lines, or frame
      numbers are not consecutive from 1.
  """
  name = os.path.basename(os.path.normpath(sequence_dir))
  boxes = read_box_file(os.path.join(sequence_dir, _GOT10K_GT))
  frames = _numbered_frames(sequence_dir)
  numbers = sorted(frames)
  if numbers != list(range(1, len(numbers) + 1)):
    missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    raise ValueError(f'sequence {name} ({sequence_dir}): frames are not '
                     f'numbered 1..n; missing frame(s) {missing[:5]}')
  if len(numbers) < len(boxes):
    raise ValueError(
        f'sequence {name} ({sequence_dir}): {len(numbers)} frames but '
        f'{len(boxes)} ground-truth lines; first missing frame is '
        f'{len(numbers) + 1:08d}.jpg')
  if len(boxes) == 0:
    raise ValueError(f'sequence {name}: empty {_GOT10K_GT} in {sequence_dir}')
  labels = {key: _read_frame_labels(os.path.join(sequence_dir, file_name),
                                    len(boxes), name)
            for key, file_name in (('absent', 'absence.label'),
                                   ('cover', 'cover.label'))}
  return Sequence(name, [frames[n] for n in numbers], boxes, **labels)


def _read_frame_labels(path: str, num_boxes: int,
                       name: str) -> Optional[np.ndarray]:
  """A GOT-10k per-frame label file (one integer per line), or None."""
  if not os.path.isfile(path):
    return None
  with open(path, 'r') as f:
    lines = [line.strip() for line in f if line.strip()]
  try:
    values = np.array([int(float(v)) for v in lines], dtype=np.int64)
  except ValueError:
    raise ValueError(f'sequence {name}: {path} holds a line that is not an '
                     'integer') from None
  if len(values) != num_boxes:
    raise ValueError(f'sequence {name}: {path} has {len(values)} lines for '
                     f'{num_boxes} ground-truth boxes')
  return values


def read_otb_sequence(sequence_dir: str,
                      start_frame: Optional[int] = None,
                      target_index: Optional[int] = None,
                      start_frames: Optional[Dict[str, int]] = None
                      ) -> Sequence:
  """Reads an OTB sequence folder.

  Args:
    sequence_dir: Folder with `img/0001.jpg, ...` and `groundtruth_rect.txt`.
    start_frame: 1-based image number of the first annotated frame. None
      applies the rules of the module docstring.
    target_index: For multi-target folders, k of `groundtruth_rect.<k>.txt`
      (the sequence is then named `<folder>.<k>`).
    start_frames: Table name -> start frame consulted when `start_frame` is
      None; defaults to `OTB_START_FRAMES`. Looked up by sequence name, then
      by folder name.

  Returns:
    A `Sequence` whose frames are exactly the annotated images.

  Raises:
    ValueError: if an annotated frame has no image.
  """
  folder = os.path.basename(os.path.normpath(sequence_dir))
  if target_index is None:
    name, gt_name = folder, 'groundtruth_rect.txt'
  else:
    name = f'{folder}.{target_index}'
    gt_name = f'groundtruth_rect.{target_index}.txt'
  boxes = read_box_file(os.path.join(sequence_dir, gt_name))
  if len(boxes) == 0:
    raise ValueError(f'sequence {name}: empty {gt_name} in {sequence_dir}')
  frames = _numbered_frames(os.path.join(sequence_dir, 'img'))
  if not frames:
    raise ValueError(f'sequence {name}: no numbered images in '
                     f'{os.path.join(sequence_dir, "img")}')
  first, last = min(frames), max(frames)

  table = OTB_START_FRAMES if start_frames is None else start_frames
  if start_frame is None:
    start_frame = table.get(name, table.get(folder))
  if start_frame is None:
    start_frame = first
    if first == 1 and last > len(boxes):
      logging.warning(
          'sequence %s: %d images but %d ground-truth lines and no known '
          'start frame; assuming the annotation covers frames 1..%d (pass '
          'start_frame if it starts later)', name, last, len(boxes),
          len(boxes))

  paths = []
  for number in range(start_frame, start_frame + len(boxes)):
    if number not in frames:
      raise ValueError(
          f'sequence {name} ({sequence_dir}): {len(boxes)} ground-truth lines '
          f'from start frame {start_frame} need image {number:04d}, which is '
          f'missing (images {first}..{last})')
    paths.append(frames[number])
  boxes = boxes.copy()
  boxes[:, :2] -= OTB_PIXEL_ORIGIN
  return Sequence(name, paths, boxes, OTB_PIXEL_ORIGIN)


def read_sequence(sequence_dir: str) -> List[Sequence]:
  """Reads one folder in whichever layout it has (OTB may give 2 targets)."""
  if os.path.isfile(os.path.join(sequence_dir, _GOT10K_GT)):
    return [read_got10k_sequence(sequence_dir)]
  indices = []
  for file_name in os.listdir(sequence_dir):
    match = _OTB_GT.match(file_name)
    if match:
      indices.append(None if match.group(1) is None else int(match.group(1)))
  if not indices:
    raise ValueError(f'{sequence_dir}: neither {_GOT10K_GT} nor '
                     'groundtruth_rect*.txt found')
  if None in indices:
    return [read_otb_sequence(sequence_dir)]
  return [read_otb_sequence(sequence_dir, target_index=k)
          for k in sorted(indices)]


def list_sequences(dataset_dir: str) -> List[Sequence]:
  """Reads every sequence folder of a GOT-10k or OTB dataset directory.

  Sub-folders without a ground-truth file (e.g. anything that is not a
  sequence) are skipped; `list.txt` and other files are ignored.

  Args:
    dataset_dir: Directory whose sub-folders are sequences.

  Returns:
    Sequences sorted by name.
  """
  if not os.path.isdir(dataset_dir):
    raise FileNotFoundError(f'dataset directory not found: {dataset_dir}')
  sequences = []
  for entry in sorted(os.listdir(dataset_dir)):
    path = os.path.join(dataset_dir, entry)
    if not os.path.isdir(path):
      continue
    files = os.listdir(path)
    if _GOT10K_GT in files or any(_OTB_GT.match(f) for f in files):
      sequences.extend(read_sequence(path))
    else:
      logging.info('skipping %s: no ground-truth file', path)
  return sorted(sequences, key=lambda s: s.name)


def load_frame(sequence: Sequence, index: int) -> np.ndarray:
  """Loads frame `index` (0-based) of a sequence as RGB float32 in [0, 1].

  Raises:
    IndexError: if `index` is out of range.
    ValueError: if the image cannot be decoded; names sequence and frame.
  """
  if not 0 <= index < len(sequence.frame_paths):
    raise IndexError(f'sequence {sequence.name}: frame index {index} out of '
                     f'range [0, {len(sequence.frame_paths)})')
  path = sequence.frame_paths[index]
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f'sequence {sequence.name}: cannot read frame {index} '
                     f'({path})')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
