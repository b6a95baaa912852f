"""SiamFC tracker with a pluggable clip feature extractor.

The tracker follows SiamFC's inference (Bertinetto et al. 2016): an exemplar
crop of the first frame is embedded once; on every new frame a pyramid of
search crops centred on the previous position is embedded and correlated with
the exemplar; the responses are upsampled, non-central scales penalised, the
best scale's response blended with a cosine window, and the peak displacement
mapped back to the image.

`embed_fn` maps a batch of clips `[B, T, S, S, 3]` (float32 in [0, 1], T =
2 * context_frames + 1, the middle frame being the one tracked) to features
`[B, h, w, C]` with feature stride `total_stride`: the ConST-CL backbone with
its centre-frame feature slice is plugged in here.
"""
import os
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from dataloaders import siamfc_pairs
from dataloaders import tracking_readers

EmbedFn = Callable[[np.ndarray], np.ndarray]


def _correlate(exemplar: np.ndarray, search: np.ndarray) -> np.ndarray:
  """'valid' cross-correlation of one `[hz, wz, C]` over `[N, hx, wx, C]`."""
  hz, wz, _ = exemplar.shape
  n, hx, wx, _ = search.shape
  ho, wo = hx - hz + 1, wx - wz + 1
  if ho < 1 or wo < 1:
    raise ValueError(f'exemplar features {exemplar.shape} larger than search '
                     f'features {search.shape}')
  # Sliding windows as a strided view: [N, ho, wo, hz, wz, C].
  windows = np.lib.stride_tricks.sliding_window_view(search, (hz, wz),
                                                     axis=(1, 2))
  # sliding_window_view puts the window axes last: [N, ho, wo, C, hz, wz].
  return np.einsum('nijcuv,uvc->nij', windows, exemplar, optimize=True)


class SiamFCTracker:
  """SiamFC single-object tracker on clips (see module docstring).

  Boxes are `x, y, w, h` in continuous pixel coordinates.
  """

  def __init__(self,
               embed_fn: EmbedFn,
               exemplar_size: int = 127,
               search_size: int = 255,
               total_stride: int = 8,
               num_scales: int = 3,
               scale_step: float = 1.0375,
               scale_penalty: float = 0.9745,
               scale_lr: float = 0.59,
               window_influence: float = 0.176,
               response_up: int = 16,
               context_frames: int = 2,
               context_amount: float = 0.5,
               min_scale: float = 0.2,
               max_scale: float = 5.0,
               response_fn: Optional[Callable[[np.ndarray, np.ndarray],
                                              np.ndarray]] = None):
    """Initializes the tracker.

    Args:
      embed_fn: Clip batch `[B, T, S, S, 3]` -> features `[B, h, w, C]`.
      exemplar_size: Exemplar crop side.
      search_size: Search crop side.
      total_stride: Feature stride of `embed_fn` (search pixels per cell).
      num_scales: Number of search scales (odd).
      scale_step: Ratio between consecutive scales.
      scale_penalty: In (0, 1]: multiplier on the peak responses of the
        non-central scales (divisor where they are negative), which decide
        the scale.
      scale_lr: Damping of the scale update (0 keeps the size fixed).
      window_influence: Weight of the cosine window in the final response.
      response_up: Upsampling factor of the response (bicubic).
      context_frames: Neighbours on each side of the tracked frame.
      context_amount: SiamFC context amount of the crops.
      min_scale: Target size never shrinks below this fraction of the
        initial size (per side).
      max_scale: ... nor grows beyond this multiple of it (and never beyond
        the frame).
      response_fn: Optional `(exemplar_feat [1, hz, wz, C], search_feat
        [N, hx, wx, C]) -> [N, ho, wo(, 1)]`, e.g. a trained `SiamFCHead`
        (its bias matters: the scale penalty multiplies positive peaks and
        divides negative ones).
        Default: the plain cross-correlation.
    """
    if num_scales < 1 or num_scales % 2 == 0:
      raise ValueError(f'num_scales must be odd and >= 1, got {num_scales}')
    if not 0 < scale_penalty <= 1:
      raise ValueError(f'scale_penalty must be in (0, 1], got {scale_penalty}')
    self.embed_fn = embed_fn
    self.exemplar_size = exemplar_size
    self.search_size = search_size
    self.total_stride = total_stride
    self.num_scales = num_scales
    self.scale_penalty = scale_penalty
    self.scale_lr = scale_lr
    self.window_influence = window_influence
    self.response_up = response_up
    self.context_frames = context_frames
    self.context_amount = context_amount
    self.min_scale = min_scale
    self.response_fn = response_fn
    self.max_scale = max_scale
    half = num_scales // 2
    self.scale_factors = scale_step ** np.linspace(-half, half, num_scales)
    self._kernel = None
    self._window = None

  def _check_frames(self, frames: Sequence[np.ndarray]) -> List[np.ndarray]:
    expected = 2 * self.context_frames + 1
    if len(frames) != expected:
      raise ValueError(f'expected {expected} frames (the tracked frame and '
                       f'{self.context_frames} neighbours on each side), got '
                       f'{len(frames)}')
    return [np.asarray(f, dtype=np.float32) for f in frames]

  def _embed(self, clips: np.ndarray) -> np.ndarray:
    feats = np.asarray(self.embed_fn(clips.astype(np.float32)),
                       dtype=np.float32)
    if feats.ndim != 4 or feats.shape[0] != clips.shape[0]:
      raise ValueError(f'embed_fn must return [B, h, w, C] for {clips.shape[0]}'
                       f' clips, got {feats.shape}')
    return feats

  def init(self, frames_around_first: Sequence[np.ndarray],
           box_xywh: Sequence[float]) -> None:
    """Starts tracking the target `box_xywh` of the middle frame."""
    frames = self._check_frames(frames_around_first)
    x, y, w, h = [float(v) for v in box_xywh]
    if not (np.all(np.isfinite([x, y, w, h])) and w > 0 and h > 0):
      raise ValueError(f'initial box must be finite with w, h > 0, got '
                       f'{box_xywh}')
    self.center = np.array([y + h / 2, x + w / 2], dtype=np.float64)
    self.target_sz = np.array([h, w], dtype=np.float64)
    self.initial_sz = self.target_sz.copy()
    s_z, s_x = siamfc_pairs.crop_sizes((w, h), self.context_amount,
                                       self.exemplar_size, self.search_size)
    self.z_sz, self.x_sz = s_z, s_x
    middle = frames[len(frames) // 2]
    self.frame_hw = np.array(middle.shape[:2], dtype=np.float64)
    # The padding colour of every later crop: SiamFC keeps the first frame's
    # mean so the exemplar and search paddings look alike.
    self.avg_color = middle.reshape(-1, middle.shape[-1]).mean(axis=0)
    clip = np.stack([
        siamfc_pairs.crop_and_resize_patch_np(f, self.center, s_z,
                                              self.exemplar_size,
                                              self.avg_color)
        for f in frames])
    self._kernel = self._embed(clip[None])[0]
    self._window = None

  def update(self, frames_around_current: Sequence[np.ndarray]) -> np.ndarray:
    """Locates the target in the middle frame; returns `x, y, w, h`."""
    if self._kernel is None:
      raise RuntimeError('SiamFCTracker.update called before init')
    frames = self._check_frames(frames_around_current)
    clips = np.stack([
        np.stack([
            siamfc_pairs.crop_and_resize_patch_np(f, self.center,
                                                  self.x_sz * scale,
                                                  self.search_size,
                                                  self.avg_color)
            for f in frames]) for scale in self.scale_factors])
    feats = self._embed(clips)
    if self.response_fn is None:
      responses = _correlate(self._kernel, feats)  # [S, r, r]
    else:
      responses = np.asarray(self.response_fn(self._kernel[None], feats),
                             dtype=np.float32)
      if responses.ndim == 4:
        responses = responses[..., 0]
    up = self.response_up * responses.shape[1]
    up_w = self.response_up * responses.shape[2]
    responses = np.stack([
        cv2.resize(r.astype(np.float32), (up_w, up),
                   interpolation=cv2.INTER_CUBIC) for r in responses])
    # SiamFC multiplies the other scales' responses by the penalty (<= 1)
    # and takes the scale of the highest peak. A head with a bias can
    # respond below 0, where the product would raise a peak: there it
    # divides, so another scale always loses. The penalty only picks the
    # scale; the peak is found on that scale's own response (a factor
    # cancels in its normalization below).
    peaks = responses.reshape(self.num_scales, -1).max(1)
    side = np.arange(self.num_scales) != self.num_scales // 2
    peaks[side] = np.where(peaks[side] > 0,
                           peaks[side] * self.scale_penalty,
                           peaks[side] / self.scale_penalty)
    scale_id = int(np.argmax(peaks))

    response = responses[scale_id].astype(np.float64)
    response -= response.min()
    response /= response.sum() + 1e-16
    if self._window is None or self._window.shape != response.shape:
      hann_y, hann_x = np.hanning(up), np.hanning(up_w)
      window = np.outer(hann_y, hann_x)
      self._window = window / window.sum()
    response = ((1 - self.window_influence) * response +
                self.window_influence * self._window)
    peak = np.array(np.unravel_index(np.argmax(response), response.shape),
                    dtype=np.float64)
    disp_response = peak - (np.array(response.shape) - 1) / 2.0
    disp_crop = disp_response * self.total_stride / self.response_up
    disp_image = (disp_crop * self.x_sz * self.scale_factors[scale_id] /
                  self.search_size)
    self.center = self.center + disp_image
    self.center = np.clip(self.center, 0.0, self.frame_hw)

    scale = (1 - self.scale_lr) + self.scale_lr * self.scale_factors[scale_id]
    new_sz = self.target_sz * scale
    low = self.initial_sz * self.min_scale
    high = np.minimum(self.initial_sz * self.max_scale, self.frame_hw)
    new_sz = np.clip(new_sz, np.minimum(low, high), high)
    # Crops follow the clamped size so they keep their context ratio.
    ratio = np.sqrt(np.prod(new_sz) / np.prod(self.target_sz))
    self.target_sz = new_sz
    self.z_sz *= ratio
    self.x_sz *= ratio
    return self.box()

  def box(self) -> np.ndarray:
    """Current box `x, y, w, h`."""
    h, w = self.target_sz
    return np.array([self.center[1] - w / 2, self.center[0] - h / 2, w, h])


class _FrameCache:
  """Loads frames lazily and keeps only the window of frames in use."""

  def __init__(self, sequence: tracking_readers.Sequence):
    self.sequence = sequence
    self.frames: Dict[int, np.ndarray] = {}

  def clip(self, index: int, context_frames: int) -> List[np.ndarray]:
    n = len(self.sequence.frame_paths)
    wanted = [min(max(i, 0), n - 1)
              for i in range(index - context_frames,
                             index + context_frames + 1)]
    for stale in [k for k in self.frames if k < wanted[0]]:
      del self.frames[stale]
    for i in wanted:
      if i not in self.frames:
        self.frames[i] = tracking_readers.load_frame(self.sequence, i)
    return [self.frames[i] for i in wanted]


def track_sequence(sequence: tracking_readers.Sequence,
                   embed_fn: Optional[EmbedFn] = None,
                   tracker: Optional[SiamFCTracker] = None,
                   **tracker_kwargs) -> np.ndarray:
  """Tracks one sequence from its first ground-truth box.

  Args:
    sequence: The sequence; frames are read with cv2, each with
      `context_frames` neighbours on each side (edge frames repeat).
    embed_fn: Feature extractor (used when `tracker` is None).
    tracker: An existing tracker to reuse instead.
    **tracker_kwargs: Passed to `SiamFCTracker` when `tracker` is None.

  Returns:
    float64 `[n, 4]` boxes `x, y, w, h`; row 0 is the initial ground truth.
  """
  if tracker is None:
    if embed_fn is None:
      raise ValueError('track_sequence needs embed_fn or tracker')
    tracker = SiamFCTracker(embed_fn, **tracker_kwargs)
  if len(sequence.boxes) == 0:
    raise ValueError(f'sequence {sequence.name} has no initial box')
  first_box = np.asarray(sequence.boxes[0], dtype=np.float64)
  if not (np.all(np.isfinite(first_box)) and np.all(first_box[2:] > 0)):
    first = (os.path.dirname(sequence.frame_paths[0])
             if sequence.frame_paths else '')
    raise ValueError(
        f'sequence {sequence.name} (frames in {first}): its first '
        f'ground-truth box {first_box.tolist()} is not finite or has no '
        'area (w, h must be > 0); tracking starts from it')
  cache = _FrameCache(sequence)
  c = tracker.context_frames
  n = len(sequence.frame_paths)
  boxes = np.zeros((n, 4), dtype=np.float64)
  boxes[0] = sequence.boxes[0]
  tracker.init(cache.clip(0, c), sequence.boxes[0])
  for i in range(1, n):
    boxes[i] = tracker.update(cache.clip(i, c))
  return boxes


def write_results(path: str, boxes: np.ndarray,
                  pixel_origin: int = 0) -> None:
  """Writes boxes as OTB results: one `x,y,w,h` line per frame.

  Args:
    path: the results file.
    boxes: `[n, 4]` 0-based boxes, as the tracker returns them.
    pixel_origin: added to x and y: the sequence's `pixel_origin`, so that
      the file is in its layout's coordinates (OTB: 1-based).
  """
  boxes = np.array(boxes, dtype=np.float64)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f'{path}: expected boxes [n, 4], got {boxes.shape}')
  boxes[:, :2] += pixel_origin
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, 'w') as f:
    for box in boxes:
      f.write(','.join(f'{v:.4f}' for v in box) + '\n')
