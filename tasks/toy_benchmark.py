"""The toy-world benchmark: does pretraining help, and does ConST-CL beat CVRL?

The paper's central claim is that ConST-CL's local loss improves the local
tasks (action localization, tracking) over CVRL without hurting the holistic
one (classification). This module checks it on the toy world
(`dataloaders/toy_world.py`), end to end through the user-facing commands:

  1. pretrain ConST-CL (`const_cl_pretrain_toy`) and CVRL
     (`const_cl_ablation_baseline_cvrl_toy`: plain R3D, global loss only) with
     the same budget (steps, batch) and seed;
  2. for each of three backbones (random initialization, CVRL, ConST-CL)
     train and evaluate
       * a linear probe on res5g (`const_cl_linear_eval_ucf101_toy`):
         video-level top-1 on the validation split of the shapes world
         (flat background, white objects, 5 shape classes), the transfer
         stand-in for UCF101; pretraining is on the pairs world;
       * the AVA-style action-transformer head on res5r (`const_cl_ava_toy`
         with dilated res4/res5 and more videos, `ava_overrides`): frame-level
         mAP, read from `<model_dir>/ava_eval_results.json`;
       * SiamFC tracking on res5r (`const_cl_tracking_toy`), then one-pass
         OTB evaluation on the toy OTB sequences (`tools/track.py
         --evaluate`): precision at 20 px and success AUC;
       * the same OTB evaluation of the pretrained features with no tracker
         training (`tools/track.py --checkpoint=<pretraining dir>`, random
         initialization drawn with `--seed`): the tracking counterpart of
         the linear probe.
     A CVRL checkpoint has a single res5, so its downstream runs use a
     single-branch backbone (`duplicate_res5=false`, `feature_endpoint=5g`);
     random and ConST-CL keep the registered Y backbone and read res5r.
  3. repeat for seeds 0..N-1 and summarize: mean, sample standard deviation
     ("spread") and min/max per backbone x metric.

Every run is a subprocess (`python train.py --experiment=... --mode=
train_and_eval --model_dir=... --params_override=... --seed=S`, or
`python tools/track.py ... --evaluate` for the OTB evaluations); results are
read back from files only (`params.yaml`, TensorBoard event files under
`<model_dir>/train` and `<model_dir>/validation`, the JSON files the tasks and
tools write). A failed run is recorded with its log tail, the runs that need
it are skipped and reported, the summary marks the missing numbers, and
`BenchmarkResult.ok` is False: a number is never silently missing.

The runner is injectable (`run_benchmark(..., runner=...)`) so the
orchestration is testable without training; the default `SubprocessRunner`
runs the real commands.
"""
import concurrent.futures
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from absl import logging
import numpy as np
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the runs execute: `code_version` hashes these files.
CODE_PATHS = ('train.py', 'configs', 'dataloaders', 'modeling', 'tasks',
              'tools')

# 2: `resumed_runs` and each run's `resumed` (`--resume`); 3:
# `pretrain_freeze_until`; 4: `code_version`, in the report and each run,
# and `tracking_learning_rate`; 5: `stage_overrides`; 6: the `track_frozen`
# stage and its two metrics.
SCHEMA_VERSION = 6

BACKBONES = ('random', 'cvrl', 'const_cl')
BACKBONE_LABELS = {'random': 'Random init', 'cvrl': 'CVRL',
                   'const_cl': 'ConST-CL'}

# Stages in dependency order. `track_eval` runs tools/track.py on the model
# of the `tracking` stage; `track_frozen` runs it on the pretraining's
# checkpoint (random initialization: none), with no tracker training: the
# frozen features and a SiamFC head at its constant initial values, the
# tracking counterpart of the linear probe.
PRETRAIN, LINEAR_EVAL, AVA, TRACKING, TRACK_EVAL, TRACK_FROZEN = (
    'pretrain', 'linear_eval', 'ava', 'tracking', 'track_eval',
    'track_frozen')
STAGES = (PRETRAIN, LINEAR_EVAL, AVA, TRACKING, TRACK_EVAL, TRACK_FROZEN)

EXPERIMENTS = {
    (PRETRAIN, 'const_cl'): 'const_cl_pretrain_toy',
    (PRETRAIN, 'cvrl'): 'const_cl_ablation_baseline_cvrl_toy',
    # The transfer probe (pairs world -> shapes world): the pairs class is not
    # learned by any backbone at this budget (docs/toy_benchmark_findings.md,
    # "Why the toy probe changed worlds").
    LINEAR_EVAL: 'const_cl_linear_eval_ucf101_toy',
    AVA: 'const_cl_ava_toy',
    TRACKING: 'const_cl_tracking_toy',
    TRACK_EVAL: 'const_cl_tracking_toy',
    TRACK_FROZEN: 'const_cl_tracking_toy',
}


@dataclasses.dataclass(frozen=True)
class Metric:
  """A reported number; `collect_result` reads it from its stage's run."""
  key: str
  label: str
  stage: str  # the stage whose run produces it
  field: str = ''  # the key in an OTB run's otb_metrics.json


METRICS = (
    # <run>/validation events, tag video_top_1_accuracy
    Metric('classification_top1', 'Linear-probe top-1', LINEAR_EVAL),
    # <run>/ava_eval_results.json, key mAP
    Metric('ava_map', 'AVA mAP', AVA),
    Metric('tracking_precision', 'OTB precision@20px', TRACK_EVAL,
           'precision'),
    Metric('tracking_success', 'OTB success AUC', TRACK_EVAL, 'success'),
    Metric('frozen_tracking_precision', 'Frozen OTB precision@20px',
           TRACK_FROZEN, 'precision'),
    Metric('frozen_tracking_success', 'Frozen OTB success AUC', TRACK_FROZEN,
           'success'),
)
METRIC_KEYS = tuple(m.key for m in METRICS)

# Learning-rate schedule type of each stage's registered experiment: its
# decay length is set to the run's steps.
_LR_SCHEDULE = {PRETRAIN: 'cosine', LINEAR_EVAL: 'cosine', AVA: 'cosine',
                TRACKING: 'exponential'}
# Warm-up as a fraction of the steps (the registered toy experiments: 30 of
# 300, 31 of 300, 30 of 300, 10 of 200) and in steps.
_WARMUP_FRACTION = {PRETRAIN: 0.1, LINEAR_EVAL: 0.1, AVA: 0.1,
                    TRACKING: 0.05}
_WARMUP_STEPS = {PRETRAIN: 30, LINEAR_EVAL: 30, AVA: 30, TRACKING: 10}
_LOG_TAIL_LINES = 40


@dataclasses.dataclass
class Budget:
  """Steps per stage and data sizes; the same for every backbone and seed."""
  pretrain_steps: int = 300
  linear_eval_steps: int = 300
  # With `AVA_SETTING` and 240 / 60 videos, random initialization learns the
  # toy actions at 1200 steps and still at 600, half the cost (seed 0: 32.6
  # mAP, "stand still" AP 0.83); the registered setting (2x2 res5 cells, 60
  # videos, 300 steps) is learned by no start
  # (docs/toy_benchmark_findings.md, "Why pretraining does not help the toy
  # AVA task").
  ava_steps: int = 600
  ava_train_videos: int = 240
  ava_validation_videos: int = 60
  tracking_steps: int = 200
  # Toy OTB sequences the trackers are evaluated on (the registered toy
  # config has 8; OTB-100 has 100). A sequence is mostly tracked or lost,
  # so few of them make a noisy mean: the v17 trackers' precision spread
  # over seeds 0-2 was 9.6 (random init) and 13.9 (ConST-CL) points on 24
  # sequences and 5.8 and 6.8 on 96 (docs/toy_benchmark_findings.md).
  tracking_eval_sequences: int = 96

  def steps(self, stage: str) -> int:
    return {PRETRAIN: self.pretrain_steps,
            LINEAR_EVAL: self.linear_eval_steps,
            AVA: self.ava_steps,
            TRACKING: self.tracking_steps}[stage]

  def validate(self):
    for f in dataclasses.fields(self):
      if getattr(self, f.name) < 1:
        raise ValueError(f'Budget.{f.name} must be >= 1, got '
                         f'{getattr(self, f.name)}')


# A few minutes on 2 quiet cores: the same pipeline with few steps.
QUICK_BUDGET = Budget(pretrain_steps=10, linear_eval_steps=10, ava_steps=10,
                      ava_train_videos=60, ava_validation_videos=20,
                      tracking_steps=10, tracking_eval_sequences=4)


def make_budget(quick: bool = False, **changes: Optional[int]) -> Budget:
  """`Budget()` (or `QUICK_BUDGET`) with the given fields changed.

  Args:
    quick: Start from `QUICK_BUDGET` instead of `Budget()`.
    **changes: Budget fields; a None value keeps the field (an unset flag).

  Returns:
    The validated budget.

  Raises:
    ValueError: for an unknown field or a value < 1.
  """
  names = {f.name for f in dataclasses.fields(Budget)}
  unknown = sorted(set(changes) - names)
  if unknown:
    raise ValueError(f'unknown budget fields {unknown}; known: '
                     f'{sorted(names)}')
  budget = dataclasses.replace(
      QUICK_BUDGET if quick else Budget(),
      **{k: v for k, v in changes.items() if v is not None})
  budget.validate()
  return budget


# The AVA runs read res5 with 8x8 cells per 64-px frame instead of 2x2
# (dilated res4/res5, no stride): with 2x2 cells the RoI features of a
# frame's 3-4 objects are mixes of the same four cells.
AVA_SETTING = {'task.model.backbone.resnet_3d_y.dilate_res4_res5': True}


# By default both pretrainings keep the stem at its random initialization
# (`task.model.freeze_until`). Trained on the toy world, the stem (the only
# temporal conv below res4) holds every downstream AVA run below random
# initialization (docs/toy_benchmark_findings.md, "Frozen early stages in
# pretraining"), while the trackers gain from the trained stages ("Where the
# tracking gain went"). With the stem alone fixed ConST-CL is above random
# initialization on the probe, AVA and tracking precision and level on
# success (v18, 5 seeds); '3', the earlier default, tracked below random
# initialization on v15's machine. '' trains every stage, as the paper does.
PRETRAIN_FREEZE_UNTIL = 'stem'
# The trackers' initial learning rate. At the registered 1e-2, 200 steps
# teach a tracker from random initialization as much as a pretraining gives
# one; at 1e-3 random initialization learns little and the tracker keeps
# what its start has (docs/toy_benchmark_findings.md, "Probe normalization,
# tracker learning rate, ..."). None: the registered rate.
TRACKING_LEARNING_RATE = 1e-3
# What each `freeze_until` keeps fixed. Its keys are
# configs.backbones.FREEZE_UNTIL (a test keeps them equal), not imported so
# that the driver process stays free of TensorFlow.
FROZEN_STAGES = {'': 'nothing (every stage trains)', 'stem': 'the stem',
                 '2': 'stem and res2', '3': 'stem, res2 and res3'}
FREEZE_UNTIL_CHOICES = tuple(FROZEN_STAGES)


# The config keys of the two `Setting` choices below.
_TRACKING_LR_KEY = (f'trainer.optimizer_config.learning_rate.'
                    f'{_LR_SCHEDULE[TRACKING]}.initial_learning_rate')
_FREEZE_KEY = 'task.model.freeze_until'


def tracking_overrides(learning_rate: Optional[float]) -> Dict[str, Any]:
  """The trackers' initial learning rate (none: the registered 1e-2).

  The exponential decay keeps its rate, so the run ends at a tenth of it.
  """
  if learning_rate is None:
    return {}
  if not (isinstance(learning_rate, (int, float)) and
          math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f'tracking learning rate must be a finite number > 0, '
                     f'got {learning_rate!r}')
  return {_TRACKING_LR_KEY: float(learning_rate)}


def pretrain_overrides(freeze_until: str) -> Dict[str, Any]:
  """The pretrainings' `freeze_until` override (none when '')."""
  if freeze_until not in FREEZE_UNTIL_CHOICES:
    raise ValueError(f'pretrain freeze_until must be one of '
                     f'{FREEZE_UNTIL_CHOICES}, got {freeze_until!r}')
  return {_FREEZE_KEY: freeze_until} if freeze_until else {}


# Stages a `Setting.stage_overrides` entry may name; 'all' is every training
# run. The OTB evaluations take their tracker's overrides; the frozen-
# feature ones without its `trainer.*` keys and checkpoint (`plan_runs`).
_TRAINING_STAGES = (PRETRAIN, LINEAR_EVAL, AVA, TRACKING)
OVERRIDE_STAGES = ('all',) + _TRAINING_STAGES
# Keys the `Setting` fields own even when they leave them unset ('' freezes
# nothing, None keeps the registered tracker rate): a stage override may
# not set them behind the report's back.
_SETTING_KEYS = {PRETRAIN: (_FREEZE_KEY,), TRACKING: (_TRACKING_LR_KEY,)}
# Model Garden's `--params_override` parser: a key is dotted names starting
# with a letter. Values are kept to plain tokens (numbers, words, paths):
# brackets, quotes, '#' or ':' are YAML to its parser, a comma separates
# entries.
_NAME = r'[A-Za-z][A-Za-z0-9_]*'
_OVERRIDE_KEY = re.compile(rf'^{_NAME}(\.{_NAME})+$')
_OVERRIDE_VALUE = re.compile(r'^[A-Za-z0-9_.+\-/]+$')


def parse_stage_override(text: str) -> Tuple[str, str, str]:
  """'STAGE:key=value' -> (stage, key, value), e.g. 'all:task.x.y=32'."""
  stage, sep, rest = text.partition(':')
  key, eq, value = rest.partition('=')
  if not sep or not eq:
    raise ValueError(f'stage override {text!r}: expected STAGE:key=value, '
                     f'STAGE one of {OVERRIDE_STAGES}')
  key, value = key.strip(), value.strip()
  _check_stage_override(stage, key, value)
  return stage, key, value


def _check_stage_override(stage: str, key: str, value: str) -> None:
  entry = f'stage override {stage}:{key}={value}'
  if stage not in OVERRIDE_STAGES:
    raise ValueError(f'{entry}: stage {stage!r} must be one of '
                     f'{OVERRIDE_STAGES}')
  if not _OVERRIDE_KEY.match(key):
    raise ValueError(f'{entry}: the key must be a dotted config path of '
                     'names starting with a letter (e.g. task.model.x)')
  if not _OVERRIDE_VALUE.match(value):
    raise ValueError(f'{entry}: the value must be a non-empty number, word '
                     'or path (letters, digits, _ . + - /)')


def _overlapping(key: str, keys) -> List[str]:
  """The keys among `keys` equal to `key`, inside it or containing it."""
  return sorted(k for k in keys if k == key or k.startswith(key + '.') or
                key.startswith(k + '.'))


@dataclasses.dataclass(frozen=True)
class Setting:
  """How the runs are set up beyond their steps; every seed alike.

  Attributes:
    pretrain_freeze_until: Backbone stages both pretrainings keep at their
      random initialization (`FREEZE_UNTIL_CHOICES`; '' trains every stage,
      as the paper does).
    tracking_learning_rate: The trackers' initial learning rate; None keeps
      the registered one (1e-2).
    stage_overrides: (stage, key, value) `--params_override` entries added
      to every run of a stage ('all': every training run, each backbone
      alike), after the benchmark's own. The OTB evaluations take their
      tracker's (the frozen-feature ones all but its `trainer.*` keys). A
      key the benchmark sets itself (steps, checkpoints, data
      sizes, the two settings above even when unset), or a key inside or
      above one, is refused (`plan_runs`).
  """
  pretrain_freeze_until: str = PRETRAIN_FREEZE_UNTIL
  tracking_learning_rate: Optional[float] = TRACKING_LEARNING_RATE
  stage_overrides: Tuple[Tuple[str, str, str], ...] = ()

  def validate(self) -> None:
    pretrain_overrides(self.pretrain_freeze_until)
    tracking_overrides(self.tracking_learning_rate)
    for stage, key, value in self.stage_overrides:
      _check_stage_override(stage, key, value)
    for stage in _TRAINING_STAGES:
      values = {}
      for s, key, value in self.stage_overrides:
        if s in ('all', stage) and values.setdefault(key, value) != value:
          raise ValueError(f'stage overrides give {stage} runs two values '
                           f'of {key}: {values[key]} and {value}')

  def overrides(self, stage: str) -> Dict[str, str]:
    """The stage overrides of a training stage's runs, sorted by key.

    Sorted, so that the order of the entries does not change a run's
    command line (which `--resume` compares).
    """
    return dict(sorted((key, value) for s, key, value in self.stage_overrides
                       if s in ('all', stage)))


def ava_overrides(budget: Budget) -> Dict[str, Any]:
  """The AVA runs' data and backbone setting (every backbone alike)."""
  out = dict(AVA_SETTING)
  out['task.toy_world.num_train_videos'] = budget.ava_train_videos
  out['task.toy_world.num_validation_videos'] = budget.ava_validation_videos
  return out


@dataclasses.dataclass
class RunIdentity:
  """What names a run: shared by its spec and its result."""
  name: str
  stage: str
  backbone: str
  seed: int
  experiment: str
  overrides: Dict[str, Any]
  argv: List[str]
  model_dir: str

  def identity(self) -> Dict[str, Any]:
    """The identity fields (copies of the containers)."""
    out = {f.name: getattr(self, f.name)
           for f in dataclasses.fields(RunIdentity)}
    out['overrides'] = dict(out['overrides'])
    out['argv'] = list(out['argv'])
    return out


@dataclasses.dataclass
class RunSpec(RunIdentity):
  """One subprocess of the benchmark."""
  log_path: str
  depends_on: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunResult(RunIdentity):
  """What one run produced; `status` is ok | failed | skipped."""
  status: str = 'ok'
  returncode: Optional[int] = None
  duration_s: float = 0.0  # wall clock
  cpu_s: Optional[float] = None  # the process's user + system CPU time
  config: Optional[Dict[str, Any]] = None
  final_train: Dict[str, float] = dataclasses.field(default_factory=dict)
  final_validation: Dict[str, float] = dataclasses.field(
      default_factory=dict)
  metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
  error: str = ''
  log_tail: str = ''
  # Taken from an earlier invocation's record (`--resume`), not run now.
  resumed: bool = False
  # `code_version()` of the code that made the run.
  code_version: str = ''


def code_version(root: str = REPO_ROOT) -> str:
  """A hash of the Python and YAML files under `root`'s CODE_PATHS.

  Records made by other code are not reused by `--resume`: a changed model,
  task or config would otherwise mix old and new runs in one table.
  """
  files = []
  for name in CODE_PATHS:
    path = os.path.join(root, name)
    if os.path.isfile(path):
      files.append(path)
    for dirpath, dirnames, filenames in os.walk(path):
      dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
      files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                   if f.endswith(('.py', '.yaml')))
  digest = hashlib.sha256()
  for path in files:
    digest.update(os.path.relpath(path, root).encode() + b'\0')
    with open(path, 'rb') as f:
      digest.update(hashlib.sha256(f.read()).digest())
  return digest.hexdigest()[:16]


# -- planning ---------------------------------------------------------------


def loop_size(steps: int, cap: int = 50) -> int:
  """Largest divisor of `steps` that is <= cap.

  Orbit needs the summary and checkpoint intervals to be multiples of
  `steps_per_loop`, and the run to end on a loop boundary.
  """
  for d in range(min(cap, steps), 0, -1):
    if steps % d == 0:
      return d
  return 1


def trainer_overrides(stage: str, steps: int) -> Dict[str, Any]:
  """Trainer overrides giving `stage` a run of `steps` steps.

  One evaluation and one checkpoint, at the end; the learning-rate decay and
  warm-up (`warmup_steps`) follow the run length.
  """
  loop = loop_size(steps)
  schedule = _LR_SCHEDULE[stage]
  return {
      'trainer.train_steps': steps,
      'trainer.steps_per_loop': loop,
      'trainer.summary_interval': loop,
      'trainer.validation_interval': steps,
      'trainer.checkpoint_interval': steps,
      f'trainer.optimizer_config.learning_rate.{schedule}.decay_steps': steps,
      'trainer.optimizer_config.warmup.linear.warmup_steps': warmup_steps(
          stage, steps),
  }


def warmup_steps(stage: str, steps: int) -> int:
  """The registered warm-up, scaled to `steps`, but at least half a short run.

  A short run with a 1-step warm-up jumps to the peak learning rate at once
  and blows the weights up (10-step pretraining: L2 norm 13k vs 1.7k), which
  then diverges the linear probe; half the run ramps up gently.
  """
  return max(1, int(round(steps * _WARMUP_FRACTION[stage])),
             min(steps // 2, _WARMUP_STEPS[stage]))


def backbone_overrides(stage: str, backbone: str,
                       pretrain_dir: Optional[str]) -> Dict[str, Any]:
  """How a downstream stage takes `backbone` (random, CVRL or ConST-CL)."""
  if stage not in (LINEAR_EVAL, AVA, TRACKING):
    raise ValueError(f'no backbone overrides for stage {stage!r}')
  if backbone not in BACKBONES:
    raise ValueError(f'backbone must be one of {BACKBONES}, got {backbone!r}')
  out = {}
  if backbone == 'random':
    if stage == LINEAR_EVAL:
      # The classification task refuses an empty init_checkpoint unless
      # asked for the random baseline.
      out['task.allow_random_init'] = True
    return out
  if not pretrain_dir:
    raise ValueError(f'{stage}/{backbone} needs a pretraining model dir')
  out['task.init_checkpoint'] = pretrain_dir
  if backbone == 'cvrl' and stage in (AVA, TRACKING):
    # CVRL's plain R3D has one res5: the instance tasks read it as 5g. (The
    # linear probe loads either kind of checkpoint by itself.)
    out['task.model.backbone.resnet_3d_y.duplicate_res5'] = False
    out['task.model.feature_endpoint'] = '5g'
  return out


def format_overrides(overrides: Mapping[str, Any]) -> str:
  """`--params_override` text: comma-separated key=value."""
  parts = []
  for k, v in overrides.items():
    if isinstance(v, bool):
      v = 'true' if v else 'false'
    text = str(v)
    if ',' in text:
      raise ValueError(f'override {k}={text!r} contains a comma')
    parts.append(f'{k}={text}')
  return ','.join(parts)


def _train_argv(experiment: str, model_dir: str, overrides, seed: int,
                python: str) -> List[str]:
  return [python, os.path.join(REPO_ROOT, 'train.py'),
          f'--experiment={experiment}', '--mode=train_and_eval',
          f'--model_dir={model_dir}',
          f'--params_override={format_overrides(overrides)}',
          f'--seed={seed}']


def _track_argv(stage: str, overrides, checkpoint: str, results_dir: str,
                python: str, seed: Optional[int] = None) -> List[str]:
  """`tools/track.py --evaluate` of an OTB evaluation stage."""
  return [python, os.path.join(REPO_ROOT, 'tools', 'track.py'),
          f'--experiment={EXPERIMENTS[stage]}',
          f'--params_override={format_overrides(overrides)}',
          f'--checkpoint={checkpoint}'] + (
              [] if seed is None else [f'--seed={seed}']) + [
                  f'--results_dir={results_dir}', '--evaluate']


def plan_runs(output_dir: str, seeds: Sequence[int], budget: Budget,
              python: str = sys.executable,
              setting: Setting = Setting()) -> List[RunSpec]:
  """Every run of the benchmark, in a valid execution order.

  Raises:
    ValueError: for an invalid budget or setting, or a stage override of a
      key the plan sets itself.
  """
  budget.validate()
  setting.validate()
  pretrain_setting = pretrain_overrides(setting.pretrain_freeze_until)
  tracking_setting = tracking_overrides(setting.tracking_learning_rate)

  def with_stage_overrides(stage, overrides):
    extra = setting.overrides(stage)
    owned = set(overrides) | set(_SETTING_KEYS.get(stage, ()))
    for key in extra:
      taken = _overlapping(key, owned)
      if taken:
        raise ValueError(
            f'stage override of {key} for {stage}: the benchmark sets '
            f'{taken} itself (budget flags, --pretrain_freeze_until, '
            '--tracking_learning_rate or its plan)')
    return {**overrides, **extra}
  runs = []
  for seed in seeds:
    root = os.path.join(output_dir, 'runs', f'seed{seed}')

    def spec(stage, backbone, experiment, overrides, depends_on=(),
             argv=None, model_dir=None, seed=seed, root=root):
      name = f'seed{seed}/{stage}/{backbone}'
      model_dir = model_dir or os.path.join(root, f'{stage}_{backbone}')
      if argv is None:
        argv = _train_argv(experiment, model_dir, overrides, seed, python)
      return RunSpec(name=name, stage=stage, backbone=backbone, seed=seed,
                     experiment=experiment, overrides=dict(overrides),
                     model_dir=model_dir, argv=argv,
                     log_path=os.path.join(root, f'{stage}_{backbone}.log'),
                     depends_on=list(depends_on))

    pretrain_dirs, trackers = {}, {}
    for backbone in ('cvrl', 'const_cl'):
      overrides = dict(pretrain_setting)
      overrides.update(trainer_overrides(PRETRAIN, budget.pretrain_steps))
      run = spec(PRETRAIN, backbone, EXPERIMENTS[(PRETRAIN, backbone)],
                 with_stage_overrides(PRETRAIN, overrides))
      pretrain_dirs[backbone] = run
      runs.append(run)
    for stage in (LINEAR_EVAL, AVA, TRACKING):
      for backbone in BACKBONES:
        pre = pretrain_dirs.get(backbone)
        overrides = backbone_overrides(stage, backbone,
                                       pre.model_dir if pre else None)
        overrides.update(trainer_overrides(stage, budget.steps(stage)))
        if stage == AVA:
          overrides.update(ava_overrides(budget))
        if stage == TRACKING:
          overrides['task.toy_world.num_eval_sequences'] = (
              budget.tracking_eval_sequences)
          overrides.update(tracking_setting)
        runs.append(spec(stage, backbone, EXPERIMENTS[stage],
                         with_stage_overrides(stage, overrides),
                         depends_on=[pre.name] if pre else []))
        if stage == TRACKING:
          trackers[backbone] = runs[-1]
    for backbone in BACKBONES:
      track = trackers[backbone]
      pre = pretrain_dirs.get(backbone)
      # The tracker must be built exactly as it was trained, so it gets the
      # training run's overrides.
      results_dir = os.path.join(track.model_dir, 'otb_results')
      argv = _track_argv(TRACK_EVAL, track.overrides, track.model_dir,
                         results_dir, python)
      runs.append(spec(TRACK_EVAL, backbone, EXPERIMENTS[TRACK_EVAL],
                       track.overrides, depends_on=[track.name], argv=argv,
                       model_dir=results_dir))
      # The tracker's model (endpoint, evaluation sequences, stage
      # overrides) without its training: no trainer keys, and the weights
      # come from --checkpoint; --seed draws random initialization's.
      overrides = {k: v for k, v in track.overrides.items()
                   if not k.startswith('trainer.') and
                   k != 'task.init_checkpoint'}
      results_dir = os.path.join(root, f'{TRACK_FROZEN}_{backbone}')
      argv = _track_argv(TRACK_FROZEN, overrides,
                         pre.model_dir if pre else '', results_dir, python,
                         seed=seed)
      runs.append(spec(TRACK_FROZEN, backbone, EXPERIMENTS[TRACK_FROZEN],
                       overrides, depends_on=[pre.name] if pre else [],
                       argv=argv, model_dir=results_dir))
  return runs


def check_stage_override_configs(runs: Sequence[RunSpec],
                                 setting: Setting) -> None:
  """Builds each run's config as train.py / track.py would, before any run.

  Only when `setting` has stage overrides (the benchmark's own keys are
  tested); one seed's runs are checked, the others differ in paths only.

  Raises:
    ValueError: naming the run and the stage overrides, when a run's config
      refuses its overrides (an unknown key, a wrong-typed value).
  """
  if not setting.stage_overrides or not runs:
    return
  # pylint: disable=g-import-not-at-top
  from official.core import exp_factory
  from official.modeling import hyperparams
  from tasks import registry_imports  # pylint: disable=unused-import
  # pylint: enable=g-import-not-at-top
  entries = ' '.join(f'{s}:{k}={v}' for s, k, v in setting.stage_overrides)
  checked = set()
  for run in runs:
    text = format_overrides(run.overrides)
    if run.seed != runs[0].seed or (run.experiment, text) in checked:
      continue
    checked.add((run.experiment, text))
    try:
      params = exp_factory.get_exp_config(run.experiment)
      params = hyperparams.override_params_dict(params, text, is_strict=True)
      params.validate()
    except (KeyError, ValueError, TypeError, AttributeError) as e:
      raise ValueError(f'{run.name} ({run.experiment}) refuses the stage '
                       f'overrides ({entries}): {type(e).__name__}: '
                       f'{e}') from e


# -- reading results --------------------------------------------------------


class _ParamsLoader(yaml.SafeLoader):
  """Safe YAML loader that also reads the `!!python/tuple` of params.yaml.

  Model Garden writes tuple fields (e.g. `feature_shape`) with PyYAML's
  python/tuple tag, which `yaml.safe_load` refuses; they become lists so the
  config is JSON-serializable.
  """


_ParamsLoader.add_constructor(
    'tag:yaml.org,2002:python/tuple',
    lambda loader, node: list(loader.construct_sequence(node, deep=True)))


def read_params(model_dir: str) -> Dict[str, Any]:
  """The run's params.yaml (as train.py saved it) as plain dicts and lists."""
  path = os.path.join(model_dir, 'params.yaml')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: missing (train.py writes it first)')
  with open(path) as f:
    try:
      # pylint: disable-next=no-value-for-parameter
      return yaml.load(f, Loader=_ParamsLoader)
    except yaml.YAMLError as e:
      raise ValueError(f'{path}: unreadable YAML: {e}') from e


def read_scalars(event_dir: str) -> Dict[str, List[List[float]]]:
  """{tag: [[step, value], ...]} of every scalar in a folder's event files.

  Reads TF1 `simple_value` summaries and TF2 scalar tensors alike.
  """
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.util import tensor_util
  out = {}
  for path in sorted(glob.glob(os.path.join(event_dir, 'events.out.*'))):
    for event in event_file_loader.EventFileLoader(path).Load():
      if not event.HasField('summary'):
        continue
      for value in event.summary.value:
        if value.HasField('simple_value'):
          x = float(value.simple_value)
        elif value.HasField('tensor'):
          array = tensor_util.make_ndarray(value.tensor)
          if array.size != 1 or array.dtype.kind not in 'fiu':
            continue
          x = float(array.reshape(()))
        else:
          continue
        out.setdefault(value.tag, []).append([int(event.step), x])
  for series in out.values():
    series.sort(key=lambda p: p[0])
  return out


def final_scalars(event_dir: str) -> Dict[str, float]:
  """The value at the last step of every scalar tag (empty if no events)."""
  return {tag: series[-1][1]
          for tag, series in read_scalars(event_dir).items()}


def _read_json(path: str) -> Dict[str, Any]:
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: missing')
  with open(path) as f:
    return json.load(f)


def _finite(value: Any, where: str) -> float:
  try:
    x = float(value)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: not a number: {value!r}') from e
  if not math.isfinite(x):
    raise ValueError(f'{where}: not finite: {x}')
  return x


def collect_result(spec: RunSpec, result: RunResult,
                   budget: Budget) -> None:
  """Fills `result` from the files of a finished run; raises if incomplete."""
  if spec.stage in (TRACK_EVAL, TRACK_FROZEN):
    path = os.path.join(spec.model_dir, 'otb_metrics.json')
    otb = _read_json(path)
    for m in METRICS:
      if m.stage == spec.stage:
        result.metrics[m.key] = _finite(otb.get(m.field),
                                        f'{path}:{m.field}')
    result.metrics['num_sequences'] = float(len(otb.get('per_sequence', {})))
    return
  result.config = read_params(spec.model_dir)
  result.final_train = final_scalars(os.path.join(spec.model_dir, 'train'))
  result.final_validation = final_scalars(
      os.path.join(spec.model_dir, 'validation'))
  steps = budget.steps(spec.stage)
  trained = result.config.get('trainer', {}).get('train_steps')
  if trained != steps:
    raise ValueError(f'{spec.model_dir}/params.yaml: trainer.train_steps is '
                     f'{trained}, expected {steps}')
  if not result.final_train:
    raise ValueError(f'{spec.model_dir}/train: no training summaries')
  for tag, value in result.final_train.items():
    if 'loss' in tag:
      _finite(value, f'{spec.model_dir}/train:{tag}')
  if spec.stage == LINEAR_EVAL:
    tag = 'video_top_1_accuracy'
    if tag not in result.final_validation:
      raise ValueError(
          f'{spec.model_dir}/validation: no {tag!r} summary (tags: '
          f'{sorted(result.final_validation)})')
    result.metrics['classification_top1'] = _finite(
        result.final_validation[tag], f'{spec.model_dir}/validation:{tag}')
  elif spec.stage == AVA:
    path = os.path.join(spec.model_dir, 'ava_eval_results.json')
    ava = _read_json(path)
    if ava.get('global_step') != steps:
      # A file of an earlier evaluation would give the wrong number.
      raise ValueError(f'{path}: global_step is {ava.get("global_step")}, '
                       f'expected the final step {steps}')
    result.metrics['ava_map'] = _finite(ava.get('mAP'), f'{path}:mAP')


_ERROR_LINE = re.compile(r'^\s*[\w.]*(Error|Exception): ')


def last_error_line(text: str) -> str:
  """The last `SomethingError: message` line of a log ('' if none)."""
  found = ''
  for line in text.splitlines():
    if _ERROR_LINE.match(line):
      found = line.strip()
  return found


def log_tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
  if not os.path.exists(path):
    return f'(no log at {path})'
  with open(path, errors='replace') as f:
    return ''.join(f.readlines()[-lines:])


# -- running ----------------------------------------------------------------


class SubprocessRunner:
  """Runs a `RunSpec`'s command; stdout and stderr go to its log file."""

  def __init__(self, env: Optional[Dict[str, str]] = None):
    self._env = dict(os.environ if env is None else env)
    self._env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
    self._live = set()
    self._lock = threading.Lock()

  def terminate_all(self) -> None:
    """Terminates the running children (the benchmark was interrupted)."""
    with self._lock:
      for proc in self._live:
        if proc.poll() is None:
          logging.warning('terminating run pid %d', proc.pid)
          proc.terminate()

  def __call__(self, spec: RunSpec) -> Tuple[int, Dict[str, float]]:
    """Returns the exit code and {'cpu_s': the child's user + system time}.

    CPU time is recorded beside wall time because on a shared machine the
    wall time says more about the other jobs than about the run.
    """
    with open(spec.log_path, 'w') as log:
      log.write('$ ' + ' '.join(spec.argv) + '\n')
      log.flush()
      proc = subprocess.Popen(spec.argv, stdout=log, stderr=subprocess.STDOUT,
                              cwd=REPO_ROOT, env=self._env)
      with self._lock:
        self._live.add(proc)
      try:
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in
        # the runs of other threads).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
      finally:
        with self._lock:
          self._live.discard(proc)
    return proc.returncode, {'cpu_s': usage.ru_utime + usage.ru_stime}


# `runner(spec)` returns the exit code, or (exit code, {'cpu_s': seconds}).
Runner = Callable[[RunSpec], Union[int, Tuple[int, Dict[str, float]]]]


def record_path(spec: RunSpec) -> str:
  """Where a successful run's `RunResult` is kept, for `--resume`."""
  return os.path.splitext(spec.log_path)[0] + '.result.json'


def load_reusable(spec: RunSpec, results: Mapping[str, RunResult],
                  code: str = '') -> Optional[RunResult]:
  """`spec`'s recorded result if `--resume` may reuse it, else None.

  Reusable: every run it depends on was reused too (a run made again
  leaves a new checkpoint), and the record is of a successful run with
  exactly this spec's command line, made by code of version `code`
  (`code_version`), whose model dir is still there.
  """
  if not all(results[d].resumed for d in spec.depends_on):
    return None
  path = record_path(spec)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      result = RunResult(**json.load(f))
  except (OSError, ValueError, TypeError) as e:
    logging.warning('--resume: cannot read %s (%s: %s); %s runs again', path,
                    type(e).__name__, e, spec.name)
    return None
  if result.code_version != code:
    logging.info('--resume: %s was made by code %s, this is %s; it runs '
                 'again', spec.name, result.code_version or '(unknown)', code)
    return None
  if (result.status != 'ok' or result.argv != spec.argv or
      not os.path.isdir(spec.model_dir)):
    return None
  result.resumed = True
  return result


def check_resumable(output_dir: str, runs: Sequence[RunSpec]) -> bool:
  """Whether `--resume` finds any earlier state; warns when it finds none.

  Earlier state is the record (`record_path`) of any of `runs`, the only
  thing `load_reusable` reuses. A job script may pass `--resume` to every
  invocation, so an output folder without any is not an error: the warning
  says that nothing was found to resume and that the benchmark starts
  fresh.

  Args:
    output_dir: The benchmark's `--output_dir` (named in the warning).
    runs: The planned runs (`plan_runs`).

  Returns:
    True when at least one run has a record, else False (and the warning
    was logged).
  """
  if any(os.path.exists(record_path(spec)) for spec in runs):
    return True
  logging.warning(
      '--resume: nothing to resume in %s (no run of this benchmark has a '
      'record runs/seed<S>/<stage>_<backbone>.result.json there); starting '
      'fresh', output_dir)
  return False


def execute_run(spec: RunSpec, runner: Runner, budget: Budget,
                code: str = '') -> RunResult:
  """Runs one spec from a clean model dir and reads its results.

  A successful run's result is recorded at `record_path(spec)` (the
  scheduler removed the earlier one, `_forget_records`), with `code` (the
  `code_version` it ran).
  """
  result = RunResult(**spec.identity(), code_version=code)
  # A stale checkpoint would make train.py resume instead of starting over.
  if os.path.isdir(spec.model_dir):
    shutil.rmtree(spec.model_dir)
  os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
  start = time.time()
  try:
    outcome = runner(spec)
    if isinstance(outcome, tuple):
      outcome, info = outcome
      result.cpu_s = info.get('cpu_s')
    result.returncode = outcome
  except Exception as e:  # pylint: disable=broad-except
    result.returncode = -1
    result.error = f'runner raised {type(e).__name__}: {e}'
  result.duration_s = time.time() - start
  if result.returncode != 0:
    result.status = 'failed'
    result.error = result.error or (
        f'exit code {result.returncode}; log: {spec.log_path}')
  else:
    try:
      collect_result(spec, result, budget)
    except Exception as e:  # pylint: disable=broad-except
      # Whatever is wrong with one run's files, the others still get run
      # and reported.
      result.status = 'failed'
      result.error = f'reading results: {type(e).__name__}: {e}'
  if result.status == 'failed':
    result.log_tail = log_tail(spec.log_path)
    if os.path.exists(spec.log_path):
      with open(spec.log_path, errors='replace') as f:
        cause = last_error_line(f.read())
      if cause:
        result.error += f' | {cause}'
    logging.error('run %s FAILED: %s\n%s', spec.name, result.error,
                  result.log_tail)
  else:
    logging.info('run %s ok in %.0f s: %s', spec.name, result.duration_s,
                 result.metrics)
    with open(record_path(spec), 'w') as f:
      json.dump(dataclasses.asdict(result), f, indent=2, sort_keys=True)
  return result


def _unrun_result(spec: RunSpec, status: str, error: str,
                  code: str = '') -> RunResult:
  return RunResult(**spec.identity(), status=status, error=error,
                   code_version=code)


@dataclasses.dataclass
class _PlanState:
  """One `execute_plan` call: its settings and the runs by state."""
  runner: Runner
  budget: Budget
  jobs: int
  resume: bool
  code: str  # the `code_version` runs are made and reused with
  pool: concurrent.futures.Executor
  pending: List[RunSpec]  # not started, in dependency order
  running: Dict[concurrent.futures.Future, RunSpec] = dataclasses.field(
      default_factory=dict)
  results: Dict[str, RunResult] = dataclasses.field(default_factory=dict)


def execute_plan(runs: Sequence[RunSpec], runner: Runner, budget: Budget,
                 jobs: int = 1, resume: bool = False,
                 code: str = '') -> List[RunResult]:
  """Runs every spec once its dependencies succeeded; up to `jobs` at once.

  A run whose dependency failed or was skipped is skipped, with the reason.
  With `resume`, a run that `load_reusable` finds recorded by code `code`
  is not run again. Returns results in the order of `runs`.
  """
  if jobs < 1:
    raise ValueError(f'jobs must be >= 1, got {jobs}')
  by_name = {r.name: r for r in runs}
  for r in runs:
    for d in r.depends_on:
      if d not in by_name:
        raise ValueError(f'run {r.name} depends on unknown run {d}')
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    state = _PlanState(runner=runner, budget=budget, jobs=jobs,
                       resume=resume, code=code, pool=pool,
                       pending=list(runs))
    try:
      _schedule(state)
    except BaseException:
      # Interrupted (Ctrl-C, SIGTERM): stop the children, or the pool would
      # wait for them to finish.
      if hasattr(runner, 'terminate_all'):
        runner.terminate_all()
      raise
  return [state.results[r.name] for r in runs]


def _forget_records(spec: RunSpec, pending: Sequence[RunSpec]) -> None:
  """Removes the records of `spec`, which starts, and of the pending runs
  that depend on it, directly or not (`pending` is in dependency order).

  An interrupted or failed run so leaves no record, and the runs that would
  read its new checkpoint none from an earlier invocation.
  """
  names, stale = {spec.name}, [spec]
  for p in pending:
    if names.intersection(p.depends_on):
      names.add(p.name)
      stale.append(p)
  for p in stale:
    if os.path.exists(record_path(p)):
      os.remove(record_path(p))


def _schedule(state: _PlanState) -> None:
  """The scheduling loop of `execute_plan` (updates `state`)."""
  pending, running, results = state.pending, state.running, state.results
  looked_up = set()  # runs whose record `load_reusable` has read
  while pending or running:
    reused_any = False
    for spec in list(pending):
      bad = [d for d in spec.depends_on
             if d in results and results[d].status != 'ok']
      if bad:
        pending.remove(spec)
        results[spec.name] = _unrun_result(
            spec, 'skipped', f'not run: {", ".join(bad)} did not succeed',
            state.code)
        continue
      if not all(d in results for d in spec.depends_on):
        continue
      reused = None
      if state.resume and spec.name not in looked_up:
        looked_up.add(spec.name)
        reused = load_reusable(spec, results, state.code)
      if reused is not None:
        pending.remove(spec)
        results[spec.name] = reused
        reused_any = True
        logging.info('reusing %s (--resume): %s', spec.name, reused.metrics)
        continue
      if len(running) >= state.jobs:
        continue
      pending.remove(spec)
      _forget_records(spec, pending)
      logging.info('starting %s: %s', spec.name, ' '.join(spec.argv))
      running[state.pool.submit(execute_run, spec, state.runner,
                                state.budget, state.code)] = spec
    if reused_any and not running:
      continue
    if not running:
      if pending:
        raise RuntimeError(f'unschedulable runs: {[s.name for s in pending]}')
      break
    done, _ = concurrent.futures.wait(
        running, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
      spec = running.pop(future)
      try:
        results[spec.name] = future.result()
      except Exception as e:  # pylint: disable=broad-except
        results[spec.name] = _unrun_result(
            spec, 'failed', f'{type(e).__name__}: {e}', state.code)


# -- summarizing ------------------------------------------------------------


def summarize_values(values: Sequence[float]) -> Dict[str, Any]:
  """Mean, sample std (None for one value), min, max, n of `values`."""
  values = [float(v) for v in values]
  n = len(values)
  if not n:
    return {'n': 0, 'mean': None, 'std': None, 'min': None, 'max': None,
            'values': []}
  a = np.asarray(values, np.float64)
  return {'n': n, 'mean': float(a.mean()),
          'std': float(a.std(ddof=1)) if n > 1 else None,
          'min': float(a.min()), 'max': float(a.max()), 'values': values}


def metric_values(results: Sequence[RunResult]
                  ) -> Dict[str, Dict[str, List[float]]]:
  """{metric: {backbone: [value per seed, in seed order]}} of ok runs."""
  out = {m.key: {b: [] for b in BACKBONES} for m in METRICS}
  for r in sorted(results, key=lambda r: r.seed):
    if r.status != 'ok':
      continue
    for key in METRIC_KEYS:
      if key in r.metrics:
        out[key][r.backbone].append(r.metrics[key])
  return out


def summarize(results: Sequence[RunResult],
              seeds: Sequence[int]) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """{metric: {backbone: summarize_values + 'complete'}}."""
  summary = {}
  for key, per_backbone in metric_values(results).items():
    summary[key] = {}
    for backbone, values in per_backbone.items():
      s = summarize_values(values)
      s['complete'] = len(values) == len(seeds)
      summary[key][backbone] = s
  return summary


def compare(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
  """Does summary `a` beat `b` by more than the spread across seeds?

  `beats_by_more_than_spread` is True when mean(a) - mean(b) > std(a) +
  std(b) (sample stds), None when either has fewer than 2 seeds or is
  incomplete (no spread to compare with). `separated` is min(a) > max(b).
  """
  if not (a.get('complete') and b.get('complete')) or not a['n'] or (
      not b['n']):
    return {'difference': None, 'spread': None,
            'beats_by_more_than_spread': None, 'separated': None}
  diff = a['mean'] - b['mean']
  if a['std'] is None or b['std'] is None:
    spread = None
    beats = None
  else:
    spread = a['std'] + b['std']
    beats = bool(diff > spread)
  return {'difference': diff, 'spread': spread,
          'beats_by_more_than_spread': beats,
          'separated': bool(a['min'] > b['max'])}


def comparisons(summary) -> Dict[str, Dict[str, Dict[str, Any]]]:
  return {key: {'const_cl_vs_random': compare(s['const_cl'], s['random']),
                'const_cl_vs_cvrl': compare(s['const_cl'], s['cvrl']),
                'cvrl_vs_random': compare(s['cvrl'], s['random'])}
          for key, s in summary.items()}


def durations(results: Sequence[RunResult]
              ) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
  """{stage: {backbone: {wall_s, cpu_s}}}: means over seeds of runs that ran.

  `cpu_s` is None when the runner did not report CPU time.
  """
  acc = {}
  for r in results:
    if r.status == 'skipped':
      continue
    acc.setdefault(r.stage, {}).setdefault(r.backbone, []).append(r)
  out = {}
  for stage, per in acc.items():
    out[stage] = {}
    for b, rs in per.items():
      cpu = [r.cpu_s for r in rs]
      out[stage][b] = {
          'wall_s': float(np.mean([r.duration_s for r in rs])),
          'cpu_s': (None if any(c is None for c in cpu) else
                    float(np.mean(cpu)))}
  return out


def format_cell(s: Dict[str, Any], scale: float = 100.0) -> str:
  """'mean ± std [min, max]' (x scale, 1 decimal); one value alone."""
  if not s['n']:
    return 'MISSING'
  text = f'{s["mean"] * scale:.1f}'
  if s['std'] is not None:
    text += (f' ± {s["std"] * scale:.1f} '
             f'[{s["min"] * scale:.1f}, {s["max"] * scale:.1f}]')
  if not s.get('complete', True):
    text += f' (only {s["n"]} seeds)'
  return text


def format_table(summary) -> str:
  """Markdown table: backbones x metrics, in percent."""
  header = '| Backbone | ' + ' | '.join(
      f'{m.label} (%)' for m in METRICS) + ' |'
  lines = [header, '|' + '---|' * (len(METRICS) + 1)]
  for b in BACKBONES:
    cells = [format_cell(summary[m.key][b]) for m in METRICS]
    lines.append(f'| {BACKBONE_LABELS[b]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def format_duration_table(durs) -> str:
  """Markdown table: stage x backbone, 'wall s (CPU s)'."""
  lines = ['| Stage | ' + ' | '.join(BACKBONE_LABELS[b] for b in BACKBONES)
           + ' |', '|' + '---|' * (len(BACKBONES) + 1)]
  for stage in STAGES:
    if stage not in durs:
      continue
    cells = []
    for b in BACKBONES:
      d = durs[stage].get(b)
      if d is None:
        cells.append('-')
      elif d['cpu_s'] is None:
        cells.append(f'{d["wall_s"]:.0f}')
      else:
        cells.append(f'{d["wall_s"]:.0f} ({d["cpu_s"]:.0f})')
    lines.append(f'| {stage} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _verdict(comps) -> List[str]:
  lines = []
  for m in METRICS:
    c = comps[m.key]['const_cl_vs_random']
    if c['difference'] is None:
      lines.append(f'- {m.label}: ConST-CL vs random: n/a (missing runs)')
      continue
    beats = c['beats_by_more_than_spread']
    verdict = ('n/a (one seed: no spread)' if beats is None else
               ('yes' if beats else 'NO'))
    spread = '-' if c['spread'] is None else f'{c["spread"] * 100:.1f}'
    v = comps[m.key]['const_cl_vs_cvrl']
    vs_cvrl = ('n/a (missing runs)' if v['difference'] is None else
               f'{v["difference"] * 100:+.1f}')
    lines.append(
        f'- {m.label}: ConST-CL - random = {c["difference"] * 100:+.1f} '
        f'(spread {spread}): beats by more than the spread: {verdict}; '
        f'ConST-CL - CVRL = {vs_cvrl}')
  return lines


def _resumed_text(report: Dict[str, Any]) -> str:
  n = len(report.get('resumed_runs', ()))
  if not n:
    return ''
  return (f' {n} of {len(report["runs"])} runs were reused from an earlier '
          'invocation (`--resume`); their durations are those of that '
          'invocation.')


def _frozen_text(report: Dict[str, Any]) -> str:
  value = report['pretrain_freeze_until']
  return f'{FROZEN_STAGES[value]} (`task.model.freeze_until={value}`)'


def _tracking_lr_text(report: Dict[str, Any]) -> str:
  value = report.get('tracking_learning_rate')
  if value is None:
    return 'Trackers: the registered learning rate.'
  return f'Trackers: initial learning rate {value:g}.'


def _stage_overrides_text(report: Dict[str, Any]) -> str:
  entries = report.get('stage_overrides') or []
  if not entries:
    return ''
  return ' Stage overrides: ' + ', '.join(
      f'`{stage}:{key}={value}`' for stage, key, value in entries) + '.'


def format_markdown(report: Dict[str, Any]) -> str:
  seeds = report['seeds']
  lines = [
      '# Toy-world benchmark',
      '',
      f'Command: `{" ".join(report["command"])}`  ',
      f'Seeds: {seeds}; budget (steps): {report["budget"]}; '
      f'{"quick" if report["quick"] else "full"} run; total '
      f'{report["total_duration_s"] / 60:.1f} min.' + _resumed_text(report)
      + '  ',
      f'Pretraining keeps fixed: {_frozen_text(report)}. '
      f'{_tracking_lr_text(report)}{_stage_overrides_text(report)} Code '
      f'version: {report.get("code_version") or "unknown"}.',
      '',
      'Cells: mean ± sample std [min, max] over seeds, in percent '
      '(one seed: the value).',
      '',
      format_table(report['summary']),
      '',
      '## ConST-CL vs random initialization and CVRL',
      '',
  ] + _verdict(report['comparisons']) + [
      '',
      '## Mean duration per run: wall-clock s (CPU s)',
      '',
      format_duration_table(report['durations']),
  ]
  failed = [r for r in report['runs'] if r['status'] != 'ok']
  if failed:
    lines += ['', '## FAILED OR SKIPPED RUNS', '']
    for r in failed:
      lines.append(f'- {r["name"]} ({r["status"]}): {r["error"]}')
      if r['log_tail']:
        lines += ['', '```', r['log_tail'].rstrip(), '```', '']
  return '\n'.join(lines) + '\n'


def plot(summary, path: str) -> None:
  """Bar chart: one group per metric, one bar per backbone, std error bars."""
  # pylint: disable=g-import-not-at-top
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(11, 4))
  width = 0.8 / len(BACKBONES)
  x = np.arange(len(METRICS))
  for i, b in enumerate(BACKBONES):
    # A missing number gets no bar and a 'missing' mark, not a 0 bar.
    means = [np.nan if summary[m.key][b]['mean'] is None else
             100 * summary[m.key][b]['mean'] for m in METRICS]
    errs = [100 * (summary[m.key][b]['std'] or 0.0) for m in METRICS]
    pos = x + (i - (len(BACKBONES) - 1) / 2) * width
    ax.bar(pos, means, width, yerr=errs, capsize=3, label=BACKBONE_LABELS[b])
    for p, mean in zip(pos, means):
      if np.isnan(mean):
        ax.text(p, 1, 'missing', rotation=90, ha='center', va='bottom',
                fontsize=8)
  ax.set_xticks(x)
  ax.set_xticklabels([textwrap.fill(m.label, 16) for m in METRICS])
  ax.set_ylabel('%')
  ax.set_title('Toy-world benchmark (mean ± std over seeds)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


@dataclasses.dataclass
class BenchmarkResult:
  report: Dict[str, Any]
  ok: bool


def build_report(results: Sequence[RunResult], seeds: Sequence[int],
                 budget: Budget, quick: bool, command: Sequence[str],
                 total_duration_s: float, setting: Setting = Setting(),
                 code: str = '') -> Dict[str, Any]:
  """The results.json content."""
  summary = summarize(results, seeds)
  missing = [f'{m}/{b}' for m, per in summary.items()
             for b, s in per.items() if not s['complete']]
  failures = [r.name for r in results if r.status != 'ok']
  return {
      'schema_version': SCHEMA_VERSION,
      'command': list(command),
      'quick': bool(quick),
      'seeds': list(seeds),
      'budget': dataclasses.asdict(budget),
      'pretrain_freeze_until': setting.pretrain_freeze_until,
      'tracking_learning_rate': setting.tracking_learning_rate,
      'stage_overrides': [list(o) for o in setting.stage_overrides],
      'code_version': code,
      'metrics': [dataclasses.asdict(m) for m in METRICS],
      'total_duration_s': float(total_duration_s),
      'runs': [dataclasses.asdict(r) for r in results],
      'summary': summary,
      'comparisons': comparisons(summary),
      'durations': durations(results),
      'failures': failures,
      'missing_metrics': missing,
      'resumed_runs': [r.name for r in results if r.resumed],
      'ok': not failures and not missing,
  }


def write_outputs(report: Dict[str, Any], output_dir: str) -> None:
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'results.json'), 'w') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  with open(os.path.join(output_dir, 'results.md'), 'w') as f:
    f.write(format_markdown(report))
  plot(report['summary'], os.path.join(output_dir, 'results.png'))


def run_benchmark(output_dir: str, seeds: Sequence[int], quick: bool = False,
                  budget: Optional[Budget] = None,
                  runner: Optional[Runner] = None, jobs: int = 1,
                  command: Sequence[str] = (),
                  resume: bool = False,
                  setting: Setting = Setting(),
                  code: Optional[str] = None) -> BenchmarkResult:
  """Plans, runs and reports the benchmark; writes results.{json,md,png}.

  Args:
    output_dir: Where runs (`runs/seed<S>/...`) and results go.
    seeds: Seeds; every run is repeated for each.
    quick: Use `QUICK_BUDGET` (unless `budget` is given).
    budget: Steps per stage; default `Budget()` (full) or `QUICK_BUDGET`.
    runner: `runner(spec) -> exit code`; default `SubprocessRunner()`.
    jobs: Runs executed concurrently.
    command: The command line, recorded in the report.
    resume: Reuse the runs an earlier invocation with this `output_dir`
      finished with the same command line (`load_reusable`); run the rest.
      With no earlier record at all, a warning says so (`check_resumable`)
      and every run is made.
    setting: What the runs freeze, the trackers' learning rate and extra
      overrides per stage (`Setting`; default: `PRETRAIN_FREEZE_UNTIL`,
      `TRACKING_LEARNING_RATE`, none).
    code: The code version recorded with each run and compared on
      `resume`; default `code_version()` of this checkout.

  Returns:
    The report (results.json content) and whether every number is there.
  """
  if not seeds:
    raise ValueError('seeds is empty: need at least one seed')
  budget = budget or (QUICK_BUDGET if quick else Budget())
  runner = runner or SubprocessRunner()
  output_dir = os.path.abspath(output_dir)
  started = time.time()
  code = code_version() if code is None else code
  runs = plan_runs(output_dir, seeds, budget, setting=setting)
  logging.info('toy benchmark: %d runs, seeds %s, budget %s, code %s, '
               'started %s', len(runs), list(seeds), budget, code,
               datetime.datetime.now().isoformat(timespec='seconds'))
  if resume:
    check_resumable(output_dir, runs)
  results = execute_plan(runs, runner, budget, jobs=jobs, resume=resume,
                         code=code)
  report = build_report(results, seeds, budget, quick, command,
                        time.time() - started, setting, code)
  write_outputs(report, output_dir)
  return BenchmarkResult(report=report, ok=report['ok'])
