"""Toy-world benchmark: random init vs CVRL vs ConST-CL on three tasks.

Pretrains ConST-CL and CVRL on the toy world with the same budget and seed,
then trains and evaluates a linear probe (classification top-1), the AVA head
(mAP) and a SiamFC tracker (OTB precision / success AUC) on each of the
three backbones, and scores each backbone's frozen features as a tracker
with no tracker training (the same two OTB metrics), every run through
`train.py` (and `tools/track.py`) in a subprocess. Writes results.md
(table), results.json (every run and the summary) and results.png (bar
chart) into --output_dir. See tasks/toy_benchmark.py and the README section
"Toy-world benchmark".

Usage (from the repo root):
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench --quick
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench --seeds=3
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench \
      --pretrain_steps=600 --jobs=2
  # the paper's pretraining (every stage trains):
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench_paper \
      --seeds=3 --jobs=2 --pretrain_freeze_until=
  # the default of v11-v15 (stem to res3 fixed, the registered tracker):
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench_fz3 \
      --seeds=3 --jobs=2 --pretrain_freeze_until=3 \
      --tracking_learning_rate=0.01
  # a wider stem on every run (any config field, per stage or 'all'):
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench_sf32 \
      --seeds=3 --jobs=2 \
      --stage_override=all:task.model.backbone.resnet_3d_y.stem_filters=32
  # after an interruption, or with one budget flag changed:
  python tools/toy_benchmark.py --output_dir=/tmp/toy_bench --seeds=3 \
      --jobs=2 --resume

Exits non-zero if any run failed or any number is missing (the failed runs
and their log tails are in results.md and results.json).
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging

from tasks import toy_benchmark

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None,
                                  'Where runs and results go.', required=True)
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Run everything with seeds '
                              '0..seeds-1.', lower_bound=1)
_QUICK = flags.DEFINE_bool('quick', False, 'Few steps everywhere (smoke/CI).')
_JOBS = flags.DEFINE_integer('jobs', 1, 'Runs executed concurrently.',
                             lower_bound=1)
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', None,
                                       'Override the pretraining steps.')
_LINEAR_EVAL_STEPS = flags.DEFINE_integer('linear_eval_steps', None,
                                          'Override the linear-probe steps.')
_AVA_STEPS = flags.DEFINE_integer('ava_steps', None,
                                  'Override the AVA steps.')
_TRACKING_STEPS = flags.DEFINE_integer('tracking_steps', None,
                                       'Override the tracking steps.')
_PRETRAIN_FREEZE_UNTIL = flags.DEFINE_enum(
    'pretrain_freeze_until', toy_benchmark.PRETRAIN_FREEZE_UNTIL,
    list(toy_benchmark.FREEZE_UNTIL_CHOICES),
    "Backbone stages both pretrainings keep at their random initialization: "
    "'stem' the stem (default), '2' stem and res2, '3' stem to res3, '' "
    "none (the paper's setting; --pretrain_freeze_until=).")
_TRACKING_EVAL_SEQUENCES = flags.DEFINE_integer(
    'tracking_eval_sequences', None,
    'Override the number of toy OTB sequences the trackers are evaluated on.')
_TRACKING_LEARNING_RATE = flags.DEFINE_float(
    'tracking_learning_rate', toy_benchmark.TRACKING_LEARNING_RATE,
    "The trackers' initial learning rate (the registered toy tracker's is "
    '1e-2; the decay keeps its rate).')
_STAGE_OVERRIDE = flags.DEFINE_multi_string(
    'stage_override', [],
    'STAGE:key=value, repeatable: a --params_override entry added to every '
    "run of STAGE (pretrain, linear_eval, ava, tracking; 'all': every "
    'training run, each backbone alike; the OTB evaluations take their '
    "tracker's, the frozen-feature ones without its trainer keys), after "
    "the benchmark's own. Keys the benchmark sets itself (and keys inside "
    'or above them), keys a run\'s experiment does not have and '
    'wrong-typed values are refused before any run.')
_RESUME = flags.DEFINE_bool(
    'resume', False, 'Reuse each run that an earlier invocation with this '
    '--output_dir finished with the same train.py / track.py command line '
    'and the same code version; run the others, and again every run '
    'downstream of a run that runs. With nothing to reuse in --output_dir, '
    'a warning says so and every run is made.')


def _interrupt(signum, frame):
  del frame
  # Unwinds run_benchmark, which terminates the running train.py children.
  raise KeyboardInterrupt(f'signal {signum}')


def main(argv):
  del argv
  signal.signal(signal.SIGTERM, _interrupt)
  seeds = list(range(_SEEDS.value))
  try:
    setting = toy_benchmark.Setting(
        pretrain_freeze_until=_PRETRAIN_FREEZE_UNTIL.value,
        tracking_learning_rate=_TRACKING_LEARNING_RATE.value,
        stage_overrides=tuple(toy_benchmark.parse_stage_override(t)
                              for t in _STAGE_OVERRIDE.value))
    budget = toy_benchmark.make_budget(
        _QUICK.value, pretrain_steps=_PRETRAIN_STEPS.value,
        linear_eval_steps=_LINEAR_EVAL_STEPS.value,
        ava_steps=_AVA_STEPS.value, tracking_steps=_TRACKING_STEPS.value,
        tracking_eval_sequences=_TRACKING_EVAL_SEQUENCES.value)
    # The plan checks the setting against the keys it sets, and the runs'
    # configs take the stage overrides, before any run.
    toy_benchmark.check_stage_override_configs(
        toy_benchmark.plan_runs(_OUTPUT_DIR.value, seeds, budget,
                                setting=setting), setting)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  result = toy_benchmark.run_benchmark(
      _OUTPUT_DIR.value, seeds=seeds, quick=_QUICK.value,
      budget=budget, jobs=_JOBS.value, command=sys.argv,
      resume=_RESUME.value, setting=setting)
  out = os.path.abspath(_OUTPUT_DIR.value)
  print(toy_benchmark.format_table(result.report['summary']))
  print(f'results: {out}/results.md, results.json, results.png')
  if not result.ok:
    logging.error('failed runs: %s; missing numbers: %s',
                  result.report['failures'],
                  result.report['missing_metrics'])
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
