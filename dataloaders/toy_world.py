"""The toy world: a procedural, seeded video world in the real data formats.

No video corpus can be downloaded on the development machine, so this module
renders small videos (64x64, 32-80 frames) that stand in for Kinetics
(pretraining, classification), AVA (action localization) and GOT-10k / OTB
(tracking). Everything is determined by a seed; a 32-frame video renders in
about 10 ms with numpy.

What is in a video:
  * A textured background (smooth noise, stripes, checkerboard or gradient;
    two random muted colours) drifting slowly, plus a little pixel noise.
  * 3-4 objects. Each has a shape (disc, square, triangle, ring, cross), a
    saturated colour, a size, and a motion program. Objects are drawn in a
    random depth order, so they may occlude each other. They always stay fully
    inside the frame.

The clip-level CLASS (10 balanced classes) is a scene "script": which two of
five KEY ACTORS the scene contains. The key actors are a disc that orbits, a
square that bounces, a triangle that zigzags, a ring that moves in a straight
line and a cross that jitters; the 10 classes are the 10 pairs. The other
1-2 objects are fillers. By default (`fillers='still'`) they stand still
(though they may pulse or spin) and have the shapes of the three other key
actors, so one frame shows 3-4 candidate shapes and only motion over time
tells which two are the actors. With `fillers='non_key'` a filler may be any
(shape, motion) that is not a key actor (a bouncing disc beside the orbiting
one), so the class needs shape and motion bound per object (harder). Colours
and sizes are random, so neither a colour nor one frame tells the class.

A second labelled world, `named_world('shapes')`, stands in for the small
downstream sets (UCF101, HMDB51) that a Kinetics-pretrained backbone is
transferred to: a flat grey background, white objects, and the class is the
shape all 3-4 objects share (5 classes), each object moving with a random
key-actor motion. The pair class is beyond a tiny backbone at toy budgets
(600 supervised steps stay at chance; docs/toy_benchmark_findings.md, "Why
the toy probe changed worlds"), and in the pretraining world's own colours
and textures the contrastive features encode the background and colours
first; the shapes world asks the transferred features for object shape
alone.

A third, `named_world('plain')`, is the pairs world without colour (flat grey
background, white objects, the same classes): a pretraining world in which
instance discrimination cannot be solved by colour.

The per-object ACTIONS (AVA-style, 1-based ids, multi-label) are each object's
own motion program: exactly one trajectory action (1 stand still, 2 move
straight, 3 orbit, 4 bounce, 5 zigzag, 6 jitter) plus optional modifiers
(7 pulse: the size oscillates; 8 spin: the object rotates, only for shapes
where rotation is visible). An AVA-style head must read them from each box's
own motion, at key frames (AVA timestamp t, in integer seconds, is frame
t * fps). The AVA experiments (`task.toy_world.fillers`) default to the
pretraining world's `fillers='still'`: the fillers stand still (42-44 % of
the boxes are "stand still") and each key actor moves with its shape's
motion, so the head must tell which boxes move, and a moving box's
trajectory action then follows from its shape. With `fillers='non_key'`
every shape takes every motion and the trajectory action can only be read
from the motion itself.

TRACKING sequences follow a target object past DISTRACTORS (default 2) of the
same shape, a close colour (each channel within +-30) and a similar size,
whose paths are built to cross or pass within a few pixels of the target in
the middle of the sequence (and may occlude it), so a tracker must tell
similar objects apart rather than find "the red disc".

Boxes are exact: the tight box of the object's rendered pixel mask (before
occlusion, i.e. amodal), normalized [ymin, xmin, ymax, xmax] with pixel-edge
convention (pixel row r spans [r/H, (r+1)/H]). `visible[t]` is False when less
than `ToyWorldSpec.min_visible_fraction` of the object's pixels show.

Writers produce exactly the formats of SPEC section 3:
  * `write_video_split`: Model Garden video TFRecords (SequenceExamples via
    `dataloaders.video_records`), with per-frame object boxes as
    `region/bbox/*` (the toy world's "detector boxes").
  * `ensure_toy_dataset`: a cached train/validation pair of such splits plus a
    label map, created on first use.
  * `write_tracking_sequences`: GOT-10k or OTB folders.
  * `write_ava_dataset`: mp4 videos plus AVA v2.2 CSVs and label map.

Tracking box convention: GOT-10k `groundtruth.txt` uses 0-based continuous
pixel coordinates (`tracking_readers.GOT10K_PIXEL_ORIGIN = 0`): x,y is the
top-left corner of the box, pixel column i spans [i, i+1), so a box covering
columns 3..7 has x=3, w=5. OTB `groundtruth_rect.txt` uses OTB's 1-based
coordinates (`tracking_readers.OTB_PIXEL_ORIGIN = 1`): the same box has x=4,
w=5. The readers (`dataloaders/tracking_readers.py`) subtract the origin to
get 0-based boxes.
"""
import colorsys
import dataclasses
import hashlib
import json
import os
import time
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import cv2
import numpy as np

from dataloaders import cache
from dataloaders import tracking_readers

# Bump when rendering changes so cached datasets are rebuilt.
TOY_WORLD_VERSION = 1

SHAPES = ('disc', 'square', 'triangle', 'ring', 'cross')
# Shapes whose rotation changes the pixels (a spinning disc looks still).
_ROTATABLE = ('square', 'triangle', 'cross')

# 1-based action ids, as AVA uses. Ids 1-6 are the trajectory programs (each
# object has exactly one), 7-8 are optional modifiers.
ACTION_NAMES = ('stand still', 'move straight', 'orbit', 'bounce', 'zigzag',
                'jitter', 'pulse', 'spin')
NUM_ACTIONS = len(ACTION_NAMES)
_MOTIONS = ('still', 'linear', 'orbit', 'bounce', 'zigzag', 'jitter')
_MOTION_ID = {m: i + 1 for i, m in enumerate(_MOTIONS)}
PULSE_ID = 7
SPIN_ID = 8

# The five key actors; a class is a pair of them.
KEY_ACTORS = (('disc', 'orbit'), ('square', 'bounce'), ('triangle', 'zigzag'),
              ('ring', 'linear'), ('cross', 'jitter'))
_CLASS_ACTORS = tuple((a, b) for a in range(len(KEY_ACTORS))
                      for b in range(a + 1, len(KEY_ACTORS)))
CLASS_NAMES = tuple(
    f'{KEY_ACTORS[a][0]}_{KEY_ACTORS[a][1]}+{KEY_ACTORS[b][0]}_'
    f'{KEY_ACTORS[b][1]}' for a, b in _CLASS_ACTORS)
NUM_CLASSES = len(CLASS_NAMES)
_FILLER_COMBOS = tuple((s, m) for s in SHAPES for m in _MOTIONS
                       if (s, m) not in KEY_ACTORS)

BACKGROUNDS = ('noise', 'stripes', 'checker', 'gradient')

_OTB_SEPARATORS = (',', '\t', ' ')

_SPLIT_SALT = {'train': 1, 'validation': 2, 'test': 3}


# The allowed values of ToyWorldSpec's string fields.
_SPEC_CHOICES = {
    'fillers': ('still', 'non_key'),
    'background': ('random', 'flat'),
    'object_colors': ('random', 'white'),
    'clip_class': ('pairs', 'shape'),
}


@dataclasses.dataclass
class ToyWorldSpec:
  """Sizes and knobs of the toy world.

  Attributes:
    height: frame height in pixels.
    width: frame width in pixels.
    num_frames: frames per video.
    fps: frames per second (AVA key frames are at integer seconds).
    min_objects: fewest objects per classification scene (>= 2: the two key
      actors of the class; the default 3 always adds a filler, so the shapes
      seen in one frame do not give the class away).
    max_objects: most objects per scene.
    fillers: how the non-key objects behave. 'still': they stand still (but
      may pulse or spin) and have shapes other than the two key actors', so
      the class is "which two shapes travel", readable only over time.
      'non_key': any (shape, motion) that is not a key actor (e.g. a bouncing
      disc beside the orbiting one), so the class needs the conjunction of
      shape and motion per object: harder, and the default for AVA videos,
      where every shape should take every motion.
    min_size: smallest object radius, as a fraction of min(height, width).
    max_size: largest object radius, as a fraction of min(height, width).
    modifier_prob: probability of each modifier action (pulse, spin).
    background: 'random' (textured, drifting) or 'flat' (uniform grey).
    object_colors: 'random' (a saturated random colour per object) or
      'white' (every object light grey, 230): shape and motion are then the
      only things that tell objects apart.
    clip_class: what the clip label is. 'pairs': which two of the five key
      actors the scene contains (10 classes, module docstring). 'shape':
      which of the five SHAPES every object of the scene has (5 classes;
      each object moves with a random key-actor motion, so motion says
      nothing about the class).
    pixel_noise: std of the per-pixel grey noise added to every frame.
    min_visible_fraction: an object is `visible` in a frame when at least
      this fraction of its pixels is not occluded.
    num_distractors: similar-looking distractors in tracking sequences (>= 1).
    jpeg_quality: JPEG quality of written frames.
  """
  height: int = 64
  width: int = 64
  num_frames: int = 32
  fps: int = 8
  min_objects: int = 3
  max_objects: int = 4
  fillers: str = 'still'  # still | non_key
  min_size: float = 0.07
  max_size: float = 0.12
  modifier_prob: float = 0.3
  background: str = 'random'  # random | flat
  object_colors: str = 'random'  # random | white
  clip_class: str = 'pairs'  # pairs | shape
  pixel_noise: float = 3.0
  min_visible_fraction: float = 0.25
  num_distractors: int = 2
  jpeg_quality: int = 90

  def validate(self) -> None:
    """Raises ValueError naming the field when the spec is unusable."""
    if self.height < 16 or self.width < 16:
      raise ValueError(f'ToyWorldSpec: frames must be at least 16x16, got '
                       f'height={self.height} width={self.width}')
    if self.num_frames < 2:
      raise ValueError(f'ToyWorldSpec: num_frames ({self.num_frames}) < 2')
    if self.fps < 1:
      raise ValueError(f'ToyWorldSpec: fps ({self.fps}) < 1')
    if not 2 <= self.min_objects <= self.max_objects:
      raise ValueError(
          f'ToyWorldSpec: need 2 <= min_objects ({self.min_objects}) <= '
          f'max_objects ({self.max_objects}); a class needs two key actors')
    if not 0 < self.min_size <= self.max_size <= 0.25:
      raise ValueError(f'ToyWorldSpec: need 0 < min_size ({self.min_size}) <= '
                       f'max_size ({self.max_size}) <= 0.25')
    for name, choices in _SPEC_CHOICES.items():
      value = getattr(self, name)
      if value not in choices:
        raise ValueError(f'ToyWorldSpec: {name} must be '
                         f'{" or ".join(choices)}, got {value!r}')
    if self.num_distractors < 1:
      raise ValueError(
          f'ToyWorldSpec: num_distractors ({self.num_distractors}) < 1')


# The colour of every object when `ToyWorldSpec.object_colors == 'white'`.
WHITE = (230, 230, 230)


def class_names(spec: ToyWorldSpec) -> Tuple[str, ...]:
  """The clip class names of `spec.clip_class` (index = label)."""
  return CLASS_NAMES if spec.clip_class == 'pairs' else SHAPES


def num_classes(spec: ToyWorldSpec) -> int:
  """How many clip classes `spec` has (10 for pairs, 5 for shape)."""
  return len(class_names(spec))


@dataclasses.dataclass(frozen=True)
class NamedWorld:
  """A labelled classification world and the size of its cached splits."""
  spec: ToyWorldSpec
  num_train: int
  num_val: int


def _named_worlds() -> Dict[str, NamedWorld]:
  return {
      # The pretraining world (the Kinetics stand-in): textured drifting
      # backgrounds, random colours, the 10 key-actor pair classes.
      'pairs': NamedWorld(ToyWorldSpec(), 500, 100),
      # The transfer world (the UCF101 / HMDB51 stand-in): flat grey
      # background, white objects, the class is the shape all objects share.
      # 300 validation videos, so the top-1 of one run moves by ~2.7 points
      # (binomial std at 30%) instead of ~4.6 with 100.
      'shapes': NamedWorld(ToyWorldSpec(background='flat',
                                        object_colors='white',
                                        clip_class='shape'), 500, 300),
      # The pairs world without colour: flat grey background, white objects.
      # A pretraining world in which instance discrimination cannot be
      # solved by a colour histogram (the shortcut strong colour jitter
      # removes in the released recipe, which collapses at toy batch sizes):
      # only shapes, sizes, places and motions tell videos and objects apart.
      'plain': NamedWorld(ToyWorldSpec(background='flat',
                                       object_colors='white'), 500, 100),
  }


WORLD_NAMES = tuple(_named_worlds())


def named_world(name: str) -> NamedWorld:
  """The registered world `name` ('pairs' or 'shapes'); ValueError else."""
  worlds = _named_worlds()
  if name not in worlds:
    raise ValueError(f'unknown toy world {name!r}; known: {sorted(worlds)}')
  return worlds[name]


@dataclasses.dataclass
class ObjectProgram:
  """Everything needed to draw one object in every frame.

  Attributes:
    shape: one of SHAPES.
    color: RGB, 3 ints in [0, 255].
    actions: sorted 1-based action ids (one trajectory id + modifiers).
    cy: [T] float32 centre row in pixels (pixel centres at r + 0.5).
    cx: [T] float32 centre column in pixels.
    radius: [T] float32 radius in pixels.
    angle: [T] float32 rotation in radians.
  """
  shape: str
  color: Tuple[int, int, int]
  actions: List[int]
  cy: np.ndarray
  cx: np.ndarray
  radius: np.ndarray
  angle: np.ndarray


@dataclasses.dataclass
class BackgroundProgram:
  """A background: `kind` in BACKGROUNDS, two colours and pattern params."""
  kind: str
  color_a: np.ndarray
  color_b: np.ndarray
  params: Dict[str, float]


@dataclasses.dataclass
class ToyObject:
  """One rendered object.

  Attributes:
    track_id: 0-based object id within the video (AVA `person_id`).
    shape: one of SHAPES.
    color: RGB colour.
    actions: 1-based action ids (indices into ACTION_NAMES plus one).
    boxes: [T, 4] float32 normalized [ymin, xmin, ymax, xmax], tight around
      the object's full (amodal) pixel mask.
    visible: [T] bool, at least `min_visible_fraction` of the pixels show.
    visible_fraction: [T] float32 fraction of the object's pixels that show.
    program: the ObjectProgram it was drawn from (to re-render it).
  """
  track_id: int
  shape: str
  color: Tuple[int, int, int]
  actions: List[int]
  boxes: np.ndarray
  visible: np.ndarray
  visible_fraction: np.ndarray
  program: ObjectProgram


@dataclasses.dataclass
class ToyVideo:
  """One rendered video.

  Attributes:
    frames: [T, H, W, 3] uint8 RGB frames.
    label: class index in [0, num_classes(spec)), or -1 for tracking
      sequences.
    label_text: class_names(spec)[label] (or 'tracking').
    objects: the objects, in drawing (depth) order.
    target: index into `objects` of the tracking target, -1 if none.
  """
  frames: np.ndarray
  label: int
  label_text: str
  objects: List[ToyObject]
  target: int = -1


def derive_seed(seed: int, split: str, index: int) -> int:
  """The seed of video `index` of `split` in a dataset with seed `seed`."""
  salt = _SPLIT_SALT.get(split, zlib.crc32(split.encode('utf-8')))
  ss = np.random.SeedSequence([int(seed), salt, int(index)])
  return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------
# Motion programs.


def _fold(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Reflects unconstrained positions into [lo, hi] (bouncing off walls)."""
  span = max(hi - lo, 1e-6)
  m = np.mod(u - lo, 2 * span)
  return lo + np.where(m > span, 2 * span - m, m)


def _random_color(rng: np.random.Generator) -> np.ndarray:
  r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0),
                                rng.uniform(0.75, 1.0))
  return np.round(np.array([r, g, b]) * 255).astype(np.int64)


def _object_color(rng: np.random.Generator,
                  spec: ToyWorldSpec) -> np.ndarray:
  """An object's colour under `spec.object_colors`."""
  if spec.object_colors == 'white':
    return np.array(WHITE, np.int64)
  return _random_color(rng)


def _extent(shape: str) -> float:
  """Farthest pixel of a shape from its centre, in radii (any rotation)."""
  return {'square': 0.85 * np.sqrt(2.0), 'cross': np.hypot(1.0, 0.34)}.get(
      shape, 1.0)


def _make_program(rng: np.random.Generator, spec: ToyWorldSpec, shape: str,
                  motion: str, color: np.ndarray, base_radius: float,
                  modifiers: Sequence[int]) -> ObjectProgram:
  """Samples the trajectory of one object with the given motion program."""
  t_len = spec.num_frames
  t = np.arange(t_len, dtype=np.float64)
  unit = min(spec.height, spec.width) / 64.0  # speeds are set for 64x64

  radius = np.full(t_len, base_radius)
  if PULSE_ID in modifiers:
    period = rng.uniform(8, 16)
    radius = base_radius * (0.85 + 0.25 * np.sin(
        2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
  angle = np.full(t_len, rng.uniform(0, 2 * np.pi))
  if SPIN_ID in modifiers:
    period = rng.uniform(10, 20) * rng.choice([-1.0, 1.0])
    angle = angle + 2 * np.pi * t / period
  margin = _extent(shape) * radius.max() + 0.5
  y_lo, y_hi = margin, spec.height - margin
  x_lo, x_hi = margin, spec.width - margin

  def uniform_point(pad=0.0):
    return (rng.uniform(y_lo + pad, y_hi - pad),
            rng.uniform(x_lo + pad, x_hi - pad))

  if motion == 'still':
    y0, x0 = uniform_point()
    cy, cx = np.full(t_len, y0), np.full(t_len, x0)
  elif motion == 'linear':
    # A straight path between two points far enough apart to see motion.
    y0, x0 = uniform_point()
    best = None
    for _ in range(20):
      y1, x1 = uniform_point()
      d = np.hypot(y1 - y0, x1 - x0)
      if best is None or d > best[0]:
        best = (d, y1, x1)
      if d >= 0.35 * min(spec.height, spec.width):
        break
    _, y1, x1 = best
    frac = t / max(t_len - 1, 1)
    cy, cx = y0 + (y1 - y0) * frac, x0 + (x1 - x0) * frac
  elif motion == 'orbit':
    orbit_r = rng.uniform(0.1, 0.18) * min(spec.height, spec.width)
    orbit_r = min(orbit_r, 0.45 * min(y_hi - y_lo, x_hi - x_lo))
    y0, x0 = uniform_point(orbit_r)
    period = rng.uniform(14, 26) * rng.choice([-1.0, 1.0])
    phase = 2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)
    cy, cx = y0 + orbit_r * np.sin(phase), x0 + orbit_r * np.cos(phase)
  elif motion == 'bounce':
    y0, x0 = uniform_point()
    speed = rng.uniform(1.2, 2.0) * unit
    theta = rng.uniform(0, 2 * np.pi)
    cy = _fold(y0 + speed * np.sin(theta) * t, y_lo, y_hi)
    cx = _fold(x0 + speed * np.cos(theta) * t, x_lo, x_hi)
  elif motion == 'zigzag':
    amp = rng.uniform(3.5, 6.0) * unit
    amp = min(amp, 0.3 * min(y_hi - y_lo, x_hi - x_lo))
    period = rng.uniform(8, 14)
    speed = rng.uniform(0.5, 0.9) * unit
    theta = rng.uniform(0, 2 * np.pi)
    y0, x0 = uniform_point(amp)
    base_y = _fold(y0 + speed * np.sin(theta) * t, y_lo + amp, y_hi - amp)
    base_x = _fold(x0 + speed * np.cos(theta) * t, x_lo + amp, x_hi - amp)
    # Triangle wave in [-1, 1] across the direction of travel.
    wave = 2 * np.abs(2 * np.mod(t / period + rng.uniform(), 1.0) - 1) - 1
    cy = base_y + amp * wave * np.cos(theta)
    cx = base_x - amp * wave * np.sin(theta)
  elif motion == 'jitter':
    jit = 2.5 * unit
    y0, x0 = uniform_point(jit)
    cy = y0 + rng.uniform(-jit, jit, t_len)
    cx = x0 + rng.uniform(-jit, jit, t_len)
  else:
    raise ValueError(f'unknown motion {motion!r}; expected one of {_MOTIONS}')
  actions = sorted({_MOTION_ID[motion], *modifiers})
  f32 = lambda a: np.asarray(a, np.float32)
  return ObjectProgram(shape=shape, color=tuple(int(c) for c in color),
                       actions=actions, cy=f32(cy), cx=f32(cx),
                       radius=f32(radius), angle=f32(angle))


def _sample_modifiers(rng: np.random.Generator, spec: ToyWorldSpec,
                      shape: str) -> List[int]:
  mods = []
  if rng.uniform() < spec.modifier_prob:
    mods.append(PULSE_ID)
  if shape in _ROTATABLE and rng.uniform() < spec.modifier_prob:
    mods.append(SPIN_ID)
  return mods


def _base_radius(rng: np.random.Generator, spec: ToyWorldSpec) -> float:
  return rng.uniform(spec.min_size, spec.max_size) * min(spec.height,
                                                         spec.width)


def _sample_background(rng: np.random.Generator,
                       spec: ToyWorldSpec) -> Optional[BackgroundProgram]:
  if spec.background == 'flat':
    return None
  kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  # Muted colours (mixed with grey) keep the saturated objects easy to see.
  grey = rng.uniform(70, 180)
  color_a = 0.5 * rng.uniform(30, 220, 3) + 0.5 * grey
  color_b = color_a + rng.uniform(-60, 60, 3)
  drift = rng.uniform(0.1, 0.4) * min(spec.height, spec.width) / 64.0
  drift_dir = rng.uniform(0, 2 * np.pi)
  params = {'vy': drift * np.sin(drift_dir), 'vx': drift * np.cos(drift_dir),
            'theta': rng.uniform(0, np.pi), 'period': rng.uniform(5, 16),
            'cell': float(rng.integers(4, 12)),
            'seed': int(rng.integers(2**31))}
  return BackgroundProgram(kind, color_a, np.clip(color_b, 0, 255), params)


# ----------------------------------------------------------------------------
# Rendering.


def _render_background(bg: Optional[BackgroundProgram],
                       spec: ToyWorldSpec) -> np.ndarray:
  """Returns [T, H, W, 3] float32 background frames."""
  shape = (spec.num_frames, spec.height, spec.width, 3)
  if bg is None:
    return np.full(shape, 128.0, np.float32)
  p = {k: float(v) for k, v in bg.params.items()}
  f32 = np.float32
  t = np.arange(spec.num_frames, dtype=f32)[:, None, None]
  y = np.arange(spec.height, dtype=f32)[None, :, None] + f32(0.5) + f32(
      p['vy']) * t
  x = np.arange(spec.width, dtype=f32)[None, None, :] + f32(0.5) + f32(
      p['vx']) * t

  def plane_sin(ky, kx, phase):
    # sin(ky*y + kx*x + phase) from [T,H,1] and [T,1,W] factors: separable,
    # so only the final product touches every pixel.
    a, b = ky * y + f32(phase), kx * x
    return np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b)

  if bg.kind == 'stripes':
    k = 2 * np.pi / p['period']
    pattern = 0.5 + 0.5 * plane_sin(f32(k * np.sin(p['theta'])),
                                    f32(k * np.cos(p['theta'])), 0.0)
  elif bg.kind == 'checker':
    cell = f32(p['cell'])
    pattern = np.mod(np.floor(y / cell) + np.floor(x / cell), f32(2.0))
  elif bg.kind == 'gradient':
    # A slow triangle wave: a soft ramp across the frame.
    period = 2.0 * max(spec.height, spec.width)
    ay = np.mod(y * f32(np.sin(p['theta']) / period), f32(1.0))
    ax = np.mod(x * f32(np.cos(p['theta']) / period), f32(1.0))
    pattern = np.abs(2 * np.mod(ay + ax, f32(1.0)) - 1)
  elif bg.kind == 'noise':
    # Smooth periodic noise: a few random low-frequency plane waves.
    wave_rng = np.random.default_rng(int(p['seed']))
    pattern = f32(0.5)
    for _ in range(5):
      fy, fx = wave_rng.uniform(-3.5, 3.5, 2)
      pattern = pattern + f32(0.1) * plane_sin(
          f32(2 * np.pi * fy / spec.height), f32(2 * np.pi * fx / spec.width),
          wave_rng.uniform(0, 2 * np.pi))
  else:
    raise ValueError(f'unknown background {bg.kind!r}; expected {BACKGROUNDS}')
  pattern = np.broadcast_to(pattern, shape[:3])
  color_a = bg.color_a.astype(f32)
  diff = (bg.color_b - bg.color_a).astype(f32)
  return color_a + pattern[..., None] * diff


def _object_window(prog: ObjectProgram, spec: ToyWorldSpec):
  """Per-frame square windows that contain the object.

  Returns:
    (oy [T] int, ox [T] int, size int): window of frame t covers rows
    oy[t]..oy[t]+size-1 and columns ox[t]..ox[t]+size-1.
  """
  size = int(np.ceil(2 * _extent(prog.shape) * float(prog.radius.max()))) + 3
  size = min(size, spec.height, spec.width)
  oy = np.clip(np.floor(prog.cy - size / 2).astype(np.int64), 0,
               spec.height - size)
  ox = np.clip(np.floor(prog.cx - size / 2).astype(np.int64), 0,
               spec.width - size)
  return oy, ox, size


def _object_masks(prog: ObjectProgram, spec: ToyWorldSpec,
                  window=None) -> np.ndarray:
  """The pixel mask of one object.

  Args:
    prog: the object.
    spec: the world spec.
    window: (oy, ox, size) from `_object_window`, or None for full frames.

  Returns:
    [T, size, size] bool mask inside the windows, or [T, H, W] when window
    is None.
  """
  f32 = np.float32
  if window is None:
    oy = np.zeros(len(prog.cy), np.int64)
    ox = oy
    hh, ww = spec.height, spec.width
  else:
    oy, ox, size = window
    hh = ww = size
  yy = (np.arange(hh, dtype=f32)[None, :, None] + f32(0.5) +
        oy[:, None, None].astype(f32))
  xx = (np.arange(ww, dtype=f32)[None, None, :] + f32(0.5) +
        ox[:, None, None].astype(f32))
  dy = yy - prog.cy[:, None, None]
  dx = xx - prog.cx[:, None, None]
  cos = np.cos(prog.angle)[:, None, None]
  sin = np.sin(prog.angle)[:, None, None]
  u = cos * dx + sin * dy
  v = -sin * dx + cos * dy
  r = prog.radius[:, None, None]
  if prog.shape == 'disc':
    return u * u + v * v <= r * r
  if prog.shape == 'ring':
    d2 = u * u + v * v
    return (d2 <= r * r) & (d2 >= (f32(0.55) * r) ** 2)
  if prog.shape == 'square':
    s = f32(0.85) * r
    return (np.abs(u) <= s) & (np.abs(v) <= s)
  if prog.shape == 'cross':
    au, av = np.abs(u), np.abs(v)
    arm = f32(0.34) * r
    return ((au <= r) & (av <= arm)) | ((av <= r) & (au <= arm))
  if prog.shape == 'triangle':
    # Equilateral triangle inscribed in the circle of radius r: inside the
    # three half-planes at distance r/2 from the centre.
    mask = None
    for k in range(3):
      a = np.pi / 2 + 2 * np.pi * k / 3
      inside = u * f32(np.cos(a)) + v * f32(np.sin(a)) <= f32(0.5) * r
      mask = inside if mask is None else mask & inside
    return mask
  raise ValueError(f'unknown shape {prog.shape!r}; expected one of {SHAPES}')


def _tight_boxes(mask: np.ndarray, oy: np.ndarray, ox: np.ndarray,
                 height: int, width: int) -> np.ndarray:
  """Windowed [T, S, S] masks -> [T, 4] normalized boxes (zeros if empty)."""
  t_len, hh, ww = mask.shape
  rows = mask.any(axis=2)
  cols = mask.any(axis=1)
  ymin = oy + rows.argmax(axis=1)
  ymax = oy + hh - rows[:, ::-1].argmax(axis=1)
  xmin = ox + cols.argmax(axis=1)
  xmax = ox + ww - cols[:, ::-1].argmax(axis=1)
  boxes = np.stack([ymin / height, xmin / width, ymax / height, xmax / width],
                   axis=1)
  boxes[~rows.any(axis=1)] = 0.0
  return boxes.astype(np.float32).reshape(t_len, 4)


def render_scene(programs: Sequence[ObjectProgram], spec: ToyWorldSpec,
                 background: Optional[BackgroundProgram] = None,
                 noise_seed: Optional[int] = None
                 ) -> Tuple[np.ndarray, List[ToyObject]]:
  """Draws objects (in order, later ones in front) over a background.

  Args:
    programs: the objects to draw, back to front.
    spec: the world spec (frame size, number of frames, noise level).
    background: a BackgroundProgram, or None for flat grey (128).
    noise_seed: seed of the pixel noise; None or `spec.pixel_noise == 0`
      adds none.

  Returns:
    (frames [T, H, W, 3] uint8, list of ToyObject with track ids 0, 1, ...).
  """
  canvas = _render_background(background, spec)
  owner = np.full(canvas.shape[:3], -1, np.int16)
  painted = []
  for k, prog in enumerate(programs):
    window = _object_window(prog, spec)
    mask = _object_masks(prog, spec, window)
    ti, yi, xi = np.nonzero(mask)
    # Frame coordinates of the object's pixels.
    idx = (ti, yi + window[0][ti], xi + window[1][ti])
    canvas[idx] = np.asarray(prog.color, np.float32)
    owner[idx] = k
    painted.append((window, mask, idx))
  if noise_seed is not None and spec.pixel_noise > 0:
    noise_rng = np.random.default_rng(noise_seed)
    canvas += np.float32(spec.pixel_noise) * noise_rng.standard_normal(
        canvas.shape[:3] + (1,), dtype=np.float32)
  np.clip(canvas + np.float32(0.5), 0, 255, out=canvas)
  frames = canvas.astype(np.uint8)
  objects = []
  t_len = spec.num_frames
  for k, (prog, (window, mask, idx)) in enumerate(zip(programs, painted)):
    area = np.bincount(idx[0], minlength=t_len)
    shown = np.bincount(idx[0], weights=owner[idx] == k, minlength=t_len)
    fraction = np.where(area > 0, shown / np.maximum(area, 1), 0.0)
    objects.append(ToyObject(
        track_id=k, shape=prog.shape, color=prog.color,
        actions=list(prog.actions),
        boxes=_tight_boxes(mask, window[0], window[1], spec.height,
                           spec.width),
        visible=fraction >= spec.min_visible_fraction,
        visible_fraction=fraction.astype(np.float32), program=prog))
  return frames, objects


def render_video(seed: int, spec: Optional[ToyWorldSpec] = None,
                 label: Optional[int] = None) -> ToyVideo:
  """Renders one classification scene, fully determined by `seed`.

  Args:
    seed: the video's seed (see `derive_seed`).
    spec: the world spec; default ToyWorldSpec().
    label: the class to render; None draws it from the seed.

  Returns:
    A ToyVideo in random depth order. clip_class 'pairs': the two key actors
    of `label` plus fillers (see `ToyWorldSpec.fillers`); 'shape': 3-4
    objects of shape SHAPES[label], each with a random key-actor motion.
  """
  spec = spec or ToyWorldSpec()
  spec.validate()
  rng = np.random.default_rng(seed)
  n_classes = num_classes(spec)
  if label is None:
    label = int(rng.integers(n_classes))
  if not 0 <= label < n_classes:
    raise ValueError(f'label {label} outside [0, {n_classes}) '
                     f'(clip_class={spec.clip_class!r})')
  num_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
  if spec.clip_class == 'shape':
    motions = [m for _, m in KEY_ACTORS]
    combos = [(SHAPES[label], motions[rng.integers(len(motions))])
              for _ in range(num_objects)]
  else:
    combos = [KEY_ACTORS[a] for a in _CLASS_ACTORS[label]]
    if spec.fillers == 'still':
      key_shapes = {shape for shape, _ in combos}
      other_shapes = [s for s in SHAPES if s not in key_shapes]
    for _ in range(num_objects - 2):
      if spec.fillers == 'still':
        combos.append((other_shapes[rng.integers(len(other_shapes))],
                       'still'))
      else:
        combos.append(_FILLER_COMBOS[rng.integers(len(_FILLER_COMBOS))])
  combos = [combos[i] for i in rng.permutation(len(combos))]
  background = _sample_background(rng, spec)
  programs = []
  for shape, motion in combos:
    programs.append(_make_program(
        rng, spec, shape, motion, _object_color(rng, spec),
        _base_radius(rng, spec),
        _sample_modifiers(rng, spec, shape)))
  frames, objects = render_scene(programs, spec, background,
                                 noise_seed=int(rng.integers(2**31)))
  return ToyVideo(frames=frames, label=label,
                  label_text=class_names(spec)[label], objects=objects)


def render_tracking_video(seed: int,
                          spec: Optional[ToyWorldSpec] = None) -> ToyVideo:
  """Renders one tracking sequence: a target, similar distractors, fillers.

  The target moves (straight, orbit, bounce or zigzag). Each of the
  `spec.num_distractors` distractors has the target's shape, a colour within
  +-30 per channel and a size within +-15%, and travels a straight, wall-
  bouncing path through a point a few pixels from the target's position at a
  random time in the middle of the sequence, so the two cross or brush past.
  Depth order is random, so distractors may occlude the target.

  Args:
    seed: the sequence's seed.
    spec: the world spec; default ToyWorldSpec().

  Returns:
    A ToyVideo with label -1 and `target` the index of the target object.
  """
  spec = spec or ToyWorldSpec()
  spec.validate()
  rng = np.random.default_rng(seed)
  t_len = spec.num_frames
  shape = SHAPES[rng.integers(len(SHAPES))]
  motion = ('linear', 'orbit', 'bounce', 'zigzag')[rng.integers(4)]
  color = _object_color(rng, spec)
  radius = _base_radius(rng, spec)
  background = _sample_background(rng, spec)
  target = _make_program(rng, spec, shape, motion, color, radius,
                         _sample_modifiers(rng, spec, shape))
  programs = [target]
  t = np.arange(t_len, dtype=np.float64)
  unit = min(spec.height, spec.width) / 64.0
  for _ in range(spec.num_distractors):
    d_color = np.clip(color + rng.integers(-30, 31, 3), 0, 255)
    d_radius = radius * rng.uniform(0.85, 1.15)
    margin = _extent(shape) * d_radius + 0.5
    y_lo, y_hi = margin, spec.height - margin
    x_lo, x_hi = margin, spec.width - margin
    tc = int(rng.integers(int(0.3 * t_len), max(int(0.7 * t_len), 1) + 1))
    tc = min(tc, t_len - 1)
    off = rng.uniform(-3, 3, 2) * unit
    yc = float(np.clip(target.cy[tc] + off[0], y_lo, y_hi))
    xc = float(np.clip(target.cx[tc] + off[1], x_lo, x_hi))
    speed = rng.uniform(0.8, 1.6) * unit
    theta = rng.uniform(0, 2 * np.pi)
    cy = _fold(yc + speed * np.sin(theta) * (t - tc), y_lo, y_hi)
    cx = _fold(xc + speed * np.cos(theta) * (t - tc), x_lo, x_hi)
    programs.append(ObjectProgram(
        shape=shape, color=tuple(int(c) for c in d_color),
        actions=[_MOTION_ID['bounce']], cy=cy.astype(np.float32),
        cx=cx.astype(np.float32),
        radius=np.full(t_len, d_radius, np.float32),
        angle=np.full(t_len, rng.uniform(0, 2 * np.pi), np.float32)))
  if rng.uniform() < 0.5:
    f_shape, f_motion = _FILLER_COMBOS[rng.integers(len(_FILLER_COMBOS))]
    while f_shape == shape:
      f_shape = SHAPES[rng.integers(len(SHAPES))]
    programs.append(_make_program(
        rng, spec, f_shape, f_motion, _object_color(rng, spec),
        _base_radius(rng, spec), _sample_modifiers(rng, spec, f_shape)))
  order = rng.permutation(len(programs))
  programs = [programs[i] for i in order]
  frames, objects = render_scene(programs, spec, background,
                                 noise_seed=int(rng.integers(2**31)))
  return ToyVideo(frames=frames, label=-1, label_text='tracking',
                  objects=objects, target=int(np.argmax(order == 0)))


# ----------------------------------------------------------------------------
# Writers.


def _encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
  ok, data = cv2.imencode('.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                          [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError(f'cv2.imencode failed on a frame of shape {frame.shape}')
  return data.tobytes()


def frame_boxes(video: ToyVideo) -> List[np.ndarray]:
  """Per-frame [n_t, 4] boxes of the objects visible in each frame."""
  out = []
  for t in range(video.frames.shape[0]):
    boxes = [o.boxes[t] for o in video.objects if o.visible[t]]
    out.append(np.asarray(boxes, np.float32).reshape(-1, 4))
  return out


def write_label_map(path: str, spec: Optional[ToyWorldSpec] = None) -> str:
  """Writes `class_names(spec)` one per line (index = line number).

  Args:
    path: the text file to write.
    spec: the world spec; default ToyWorldSpec() (the 10 pair classes).

  Returns:
    `path`.
  """
  with open(path, 'w') as f:
    f.write('\n'.join(class_names(spec or ToyWorldSpec())) + '\n')
  return path


def write_video_split(output_dir: str, split: str, num_videos: int,
                      seed: int = 0, spec: Optional[ToyWorldSpec] = None,
                      num_shards: int = 2, with_boxes: bool = True) -> str:
  """Writes a split of classification videos as Model Garden TFRecords.

  Video i has seed `derive_seed(seed, split, i)` and class
  `i % num_classes(spec)` (exactly balanced when num_videos is a multiple of
  the number of classes). Videos go round-robin to shards
  `<output_dir>/<split>-0000k-of-0000n.tfrecord`.

  Args:
    output_dir: folder to write into (created if missing).
    split: split name, e.g. 'train' or 'validation' (also salts the seeds).
    num_videos: number of videos.
    seed: dataset seed.
    spec: the world spec; default ToyWorldSpec().
    num_shards: number of TFRecord files.
    with_boxes: also store the visible objects' boxes per frame as
      `region/bbox/*`.

  Returns:
    The file pattern of the written shards.
  """
  # Imported here: it pulls in TensorFlow, which the tracking and AVA writers
  # (and tools/make_toy_world.py for them) do not need.
  from dataloaders import video_records  # pylint: disable=g-import-not-at-top
  spec = spec or ToyWorldSpec()
  spec.validate()
  if num_videos < 1 or num_shards < 1:
    raise ValueError(f'num_videos ({num_videos}) and num_shards '
                     f'({num_shards}) must be >= 1')
  os.makedirs(output_dir, exist_ok=True)
  num_shards = min(num_shards, num_videos)
  n_classes = num_classes(spec)

  def examples(shard):
    for i in range(shard, num_videos, num_shards):
      video = render_video(derive_seed(seed, split, i), spec,
                           label=i % n_classes)
      yield video_records.make_sequence_example(
          encoded_frames=[_encode_jpeg(f, spec.jpeg_quality)
                          for f in video.frames],
          label=[video.label], label_text=video.label_text,
          video_id=f'toy_{split}_{i:06d}',
          boxes=frame_boxes(video) if with_boxes else None)

  start = time.time()
  for shard in range(num_shards):
    path = os.path.join(output_dir,
                        f'{split}-{shard:05d}-of-{num_shards:05d}.tfrecord')
    video_records.write_records(path, examples(shard))
    logging.info('toy world: wrote %s shard %d/%d (%.1fs)', split, shard + 1,
                 num_shards, time.time() - start)
  return os.path.join(output_dir, f'{split}-*-of-{num_shards:05d}.tfrecord')


def _cache_key(spec: ToyWorldSpec, num_train: int, num_val: int, seed: int,
               num_shards: int) -> str:
  blob = json.dumps({'spec': dataclasses.asdict(spec), 'num_train': num_train,
                     'num_val': num_val, 'seed': seed,
                     'num_shards': num_shards,
                     'version': TOY_WORLD_VERSION}, sort_keys=True)
  return hashlib.sha1(blob.encode('utf-8')).hexdigest()[:16]


def default_cache_root() -> str:
  """`$CONST_CL_CACHE/toy_world`, else `~/.cache/const_cl/toy_world`."""
  root = os.environ.get('CONST_CL_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'const_cl')
  return os.path.join(root, 'toy_world')


def _dataset_paths(folder: str, num_shards_train: int,
                   num_shards_val: int) -> Dict[str, str]:
  return {
      'train': os.path.join(
          folder, f'train-*-of-{num_shards_train:05d}.tfrecord'),
      'validation': os.path.join(
          folder, f'validation-*-of-{num_shards_val:05d}.tfrecord'),
      'label_map': os.path.join(folder, 'label_map.txt'),
      'dir': folder,
  }


def ensure_toy_dataset(cache_dir: Optional[str] = None,
                       spec: Optional[ToyWorldSpec] = None,
                       num_train: int = 500, num_val: int = 100,
                       seed: int = 0, num_shards: int = 2) -> Dict[str, str]:
  """Returns the cached toy classification dataset, creating it on first use.

  The data lives in `<cache_dir>/<hash of spec, sizes, seed, version>/`
  (cache_dir defaults to `default_cache_root()`). It is written into a unique
  temporary folder beside it and renamed into place once complete (with a
  `_COMPLETE` marker), so a crash never leaves a half dataset and two racing
  processes are safe: the first rename wins, the loser discards its copy.

  Args:
    cache_dir: root of the cache; None uses `default_cache_root()`.
    spec: the world spec; default ToyWorldSpec().
    num_train: training videos.
    num_val: validation videos.
    seed: dataset seed.
    num_shards: TFRecord shards per split.

  Returns:
    dict with `train` and `validation` file patterns, `label_map` (text file,
    one class name per line) and `dir` (the dataset folder).
  """
  spec = spec or ToyWorldSpec()
  spec.validate()
  root = cache_dir or default_cache_root()
  folder = os.path.join(root, _cache_key(spec, num_train, num_val, seed,
                                         num_shards))
  paths = _dataset_paths(folder, min(num_shards, num_train),
                         min(num_shards, num_val))
  def build(tmp):
    logging.info('toy world: creating %d train + %d validation videos '
                 '(%dx%dx%d) in %s', num_train, num_val, spec.num_frames,
                 spec.height, spec.width, folder)
    write_video_split(tmp, 'train', num_train, seed, spec, num_shards)
    write_video_split(tmp, 'validation', num_val, seed, spec, num_shards)
    write_label_map(os.path.join(tmp, 'label_map.txt'), spec)
    with open(os.path.join(tmp, 'spec.json'), 'w') as f:
      json.dump({'spec': dataclasses.asdict(spec), 'num_train': num_train,
                 'num_val': num_val, 'seed': seed,
                 'version': TOY_WORLD_VERSION}, f, indent=2)

  cache.build_once(folder, build, 'toy world')
  return paths


def ensure_named_dataset(name: str) -> Dict[str, str]:
  """`ensure_toy_dataset` of the named world `name` at its registered sizes."""
  named = named_world(name)
  return ensure_toy_dataset(spec=named.spec, num_train=named.num_train,
                            num_val=named.num_val)


def _pixel_xywh(box: np.ndarray, spec: ToyWorldSpec) -> np.ndarray:
  """Normalized [ymin, xmin, ymax, xmax] -> 0-based pixel [x, y, w, h]."""
  ymin, xmin, ymax, xmax = np.asarray(box, np.float64)
  return np.array([xmin * spec.width, ymin * spec.height,
                   (xmax - xmin) * spec.width, (ymax - ymin) * spec.height])


def write_tracking_sequences(output_dir: str, num_sequences: int,
                             seed: int = 0,
                             spec: Optional[ToyWorldSpec] = None,
                             layout: str = 'got10k') -> List[str]:
  """Writes tracking sequences as GOT-10k or OTB folders.

  `got10k`: `<output_dir>/GOT-10k_Toy_000001/00000001.jpg ...`,
  `groundtruth.txt` (one `x,y,w,h` line per frame, 0-based pixels, 4
  decimals), `absence.label` and `cover.label` (0-8 visible fraction, as
  GOT-10k ships them), and `<output_dir>/list.txt` with the sequence names.

  `otb`: `<output_dir>/Toy001/img/0001.jpg ...` and
  `groundtruth_rect.txt` with integer `x,y,w,h` in OTB's 1-based pixels;
  the separator cycles over comma, tab and space across sequences (sequence
  i uses `(',', '\\t', ' ')[i % 3]`) to exercise readers.

  The ground truth is the target's tight amodal box (see module docstring),
  present in every frame.

  Args:
    output_dir: folder to write into.
    num_sequences: number of sequences.
    seed: dataset seed (sequence i uses `derive_seed(seed, layout, i)`).
    spec: the world spec; default ToyWorldSpec().
    layout: 'got10k' or 'otb'.

  Returns:
    The sequence folder names, in order.
  """
  spec = spec or ToyWorldSpec()
  if layout not in ('got10k', 'otb'):
    raise ValueError(f'layout must be got10k or otb, got {layout!r}')
  os.makedirs(output_dir, exist_ok=True)
  names = []
  for i in range(num_sequences):
    video = render_tracking_video(derive_seed(seed, layout, i), spec)
    target = video.objects[video.target]
    xywh = np.stack([_pixel_xywh(b, spec) for b in target.boxes])
    if layout == 'got10k':
      name = f'GOT-10k_Toy_{i + 1:06d}'
      seq_dir = os.path.join(output_dir, name)
      img_dir = seq_dir
      frame_name = '{:08d}.jpg'
      lines = [','.join(f'{v:.4f}' for v in row) for row in xywh]
    else:
      name = f'Toy{i + 1:03d}'
      seq_dir = os.path.join(output_dir, name)
      img_dir = os.path.join(seq_dir, 'img')
      frame_name = '{:04d}.jpg'
      sep = _OTB_SEPARATORS[i % len(_OTB_SEPARATORS)]
      xywh_1 = np.round(xywh).astype(np.int64)
      xywh_1[:, :2] += tracking_readers.OTB_PIXEL_ORIGIN
      lines = [sep.join(str(v) for v in row) for row in xywh_1]
    os.makedirs(img_dir, exist_ok=True)
    for t, frame in enumerate(video.frames):
      with open(os.path.join(img_dir, frame_name.format(t + 1)), 'wb') as f:
        f.write(_encode_jpeg(frame, spec.jpeg_quality))
    gt_name = 'groundtruth.txt' if layout == 'got10k' else (
        'groundtruth_rect.txt')
    with open(os.path.join(seq_dir, gt_name), 'w') as f:
      f.write('\n'.join(lines) + '\n')
    if layout == 'got10k':
      with open(os.path.join(seq_dir, 'absence.label'), 'w') as f:
        f.write('\n'.join(str(int(not v)) for v in target.visible) + '\n')
      cover = np.round(target.visible_fraction * 8).astype(int)
      with open(os.path.join(seq_dir, 'cover.label'), 'w') as f:
        f.write('\n'.join(str(c) for c in cover) + '\n')
    names.append(name)
  if layout == 'got10k':
    with open(os.path.join(output_dir, 'list.txt'), 'w') as f:
      f.write('\n'.join(names) + '\n')
  logging.info('toy world: wrote %d %s sequences to %s', num_sequences,
               layout, output_dir)
  return names


def write_action_label_map(path: str) -> str:
  """Writes ACTION_NAMES as an AVA v2.2 label map `.pbtxt`; returns path."""
  entries = []
  for i, name in enumerate(ACTION_NAMES):
    entries.append(f'label {{\n  name: "{name}"\n  label_id: {i + 1}\n'
                   f'  label_type: PERSON_MOVEMENT\n}}\n')
  with open(path, 'w') as f:
    f.write(''.join(entries))
  return path


def _write_mp4(path: str, frames: np.ndarray, fps: int) -> None:
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), float(fps),
                           (w, h))
  if not writer.isOpened():
    raise RuntimeError(f'cv2.VideoWriter could not open {path} with mp4v')
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


def ava_key_frames(spec: ToyWorldSpec) -> List[int]:
  """Key-frame timestamps (integer seconds) of a toy AVA video.

  Every integer second t >= 1 whose frame `t * fps` exists and is not the
  last frame, so each key frame has context on both sides. The frame of
  timestamp t is `t * fps` (0-based).
  """
  last = spec.num_frames - 1
  return [t for t in range(1, last // spec.fps + 1) if t * spec.fps < last]


def write_ava_dataset(output_dir: str, num_videos: int, seed: int = 0,
                      spec: Optional[ToyWorldSpec] = None,
                      split: str = 'train') -> Dict[str, str]:
  """Writes a toy AVA v2.2 dataset, file for file as AVA ships it.

  Files (under `output_dir`):
    videos/<video_id>.mp4: mp4v (MPEG-4 part 2) at `spec.fps`, readable by
      cv2.VideoCapture with the exact frame count.
    ava_<split>_v2.2.csv: `video_id,timestamp,x1,y1,x2,y2,action_id,
      person_id`, normalized corners (3 decimals), one row per (box, action)
      at key frames (`ava_key_frames`), person_id = object track id; only
      objects visible at the key frame get rows; excluded timestamps get none.
    ava_<split>_predicted_boxes.csv: `video_id,timestamp,x1,y1,x2,y2,,score`:
      a stand-in person detector: ground-truth boxes jittered by up to 5% of
      their size, 10% missed, about 0.4 false positives per key frame, empty
      action_id, score in (0, 1].
    ava_<split>_excluded_timestamps_v2.2.csv: `video_id,timestamp` rows (one
      key frame of about every third video).
    ava_action_list_v2.2.pbtxt: the AVA label map of ACTION_NAMES.

  Args:
    output_dir: folder to write into.
    num_videos: number of videos.
    seed: dataset seed (video i uses `derive_seed(seed, 'ava_' + split, i)`;
      its class is i % num_classes(spec)).
    spec: the world spec; default ToyWorldSpec(num_frames=80), i.e. 10 s
      videos with the AVA experiments' default `fillers='still'`.
    split: split name used in the file names.

  Returns:
    dict with keys `videos_dir`, `annotations`, `detections`, `excluded`,
    `label_map`.
  """
  spec = spec or ToyWorldSpec(num_frames=80)
  spec.validate()
  key_times = ava_key_frames(spec)
  if not key_times:
    raise ValueError(f'ToyWorldSpec(num_frames={spec.num_frames}, '
                     f'fps={spec.fps}) has no key frame at an integer second')
  videos_dir = os.path.join(output_dir, 'videos')
  os.makedirs(videos_dir, exist_ok=True)
  det_rng = np.random.default_rng(derive_seed(seed, 'ava_det_' + split, 0))
  gt_rows, det_rows, excluded_rows = [], [], []
  fmt = lambda b: ','.join(f'{v:.3f}' for v in b)
  for i in range(num_videos):
    video_id = f'toy_{split}_{i:06d}'
    video = render_video(derive_seed(seed, 'ava_' + split, i), spec,
                         label=i % num_classes(spec))
    _write_mp4(os.path.join(videos_dir, video_id + '.mp4'), video.frames,
               spec.fps)
    excluded = set()
    if i % 3 == 0:
      excluded.add(key_times[int(det_rng.integers(len(key_times)))])
    for ts in key_times:
      frame = ts * spec.fps
      stamp = f'{ts:04d}'
      if ts in excluded:
        excluded_rows.append(f'{video_id},{stamp}')
      for obj in video.objects:
        if not obj.visible[frame]:
          continue
        ymin, xmin, ymax, xmax = obj.boxes[frame]
        corners = np.array([xmin, ymin, xmax, ymax])
        if ts not in excluded:
          for action in obj.actions:
            gt_rows.append(f'{video_id},{stamp},{fmt(corners)},{action},'
                           f'{obj.track_id}')
        if det_rng.uniform() < 0.1:
          continue  # a missed detection
        size = np.array([xmax - xmin, ymax - ymin] * 2)
        jittered = np.clip(corners + det_rng.uniform(-0.05, 0.05, 4) * size,
                           0.0, 1.0)
        score = det_rng.uniform(0.6, 1.0)
        det_rows.append(f'{video_id},{stamp},{fmt(jittered)},,{score:.6f}')
      while det_rng.uniform() < 0.3:  # false positives
        x1, y1 = det_rng.uniform(0.0, 0.8, 2)
        w, h = det_rng.uniform(0.08, 0.2, 2)
        corners = np.clip([x1, y1, x1 + w, y1 + h], 0.0, 1.0)
        score = det_rng.uniform(0.05, 0.6)
        det_rows.append(f'{video_id},{stamp},{fmt(corners)},,{score:.6f}')
  paths = {
      'videos_dir': videos_dir,
      'annotations': os.path.join(output_dir, f'ava_{split}_v2.2.csv'),
      'detections': os.path.join(output_dir,
                                 f'ava_{split}_predicted_boxes.csv'),
      'excluded': os.path.join(output_dir,
                               f'ava_{split}_excluded_timestamps_v2.2.csv'),
      'label_map': os.path.join(output_dir, 'ava_action_list_v2.2.pbtxt'),
  }
  for key, rows in (('annotations', gt_rows), ('detections', det_rows),
                    ('excluded', excluded_rows)):
    with open(paths[key], 'w') as f:
      f.write(''.join(r + '\n' for r in rows))
  write_action_label_map(paths['label_map'])
  logging.info('toy world: wrote %d AVA videos (%d annotation rows) to %s',
               num_videos, len(gt_rows), output_dir)
  return paths
