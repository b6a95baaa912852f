"""Tests of the toy-world benchmark (tasks/toy_benchmark.py).

The orchestration is tested with a stub runner that writes the files a real
run writes (params.yaml, TensorBoard scalars, ava_eval_results.json,
otb_metrics.json), with numbers chosen here; a real `--quick` run takes far
more than a few minutes on the shared 2-core machine (17 train.py/track.py
processes), so it is not run in the tests.
"""
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

from tasks import toy_benchmark as tb


def _result(backbone, seed, stage, metrics, status='ok'):
  return tb.RunResult(name=f'seed{seed}/{stage}/{backbone}', stage=stage,
                      backbone=backbone, seed=seed, experiment='e',
                      overrides={}, argv=[], model_dir='/x', status=status,
                      metrics=dict(metrics))


def test_make_budget_changes_only_the_given_fields():
  b = tb.make_budget(tracking_eval_sequences=8, ava_steps=None)
  assert b == tb.Budget(tracking_eval_sequences=8)
  assert b.ava_steps == 600 and b.tracking_eval_sequences == 8
  q = tb.make_budget(quick=True, pretrain_steps=12)
  assert q == tb.dataclasses.replace(tb.QUICK_BUDGET, pretrain_steps=12)
  with pytest.raises(ValueError, match=r"unknown budget fields \['steps'\]"):
    tb.make_budget(steps=3)
  with pytest.raises(ValueError, match='tracking_eval_sequences must be >= 1'):
    tb.make_budget(tracking_eval_sequences=0)


def test_summarize_values_by_hand():
  s = tb.summarize_values([0.2, 0.6, 0.4])
  # mean 0.4; deviations -0.2, 0.2, 0: sample variance 0.08 / 2 = 0.04.
  assert s['n'] == 3
  assert s['mean'] == pytest.approx(0.4)
  assert s['std'] == pytest.approx(0.2)
  assert (s['min'], s['max']) == (0.2, 0.6)
  assert s['values'] == [0.2, 0.6, 0.4]
  one = tb.summarize_values([0.25])
  assert one['mean'] == 0.25 and one['std'] is None
  assert one['min'] == one['max'] == 0.25
  assert tb.summarize_values([])['mean'] is None


def test_format_cell_by_hand():
  s = dict(tb.summarize_values([0.2, 0.6, 0.4]), complete=True)
  assert tb.format_cell(s) == '40.0 ± 20.0 [20.0, 60.0]'
  assert tb.format_cell(dict(tb.summarize_values([0.123]),
                             complete=True)) == '12.3'
  s2 = dict(tb.summarize_values([0.5, 0.7]), complete=False)
  # std of (0.5, 0.7): sqrt(2 * 0.01 / 1) = 0.1414.
  assert tb.format_cell(s2) == '60.0 ± 14.1 [50.0, 70.0] (only 2 seeds)'
  assert tb.format_cell(dict(tb.summarize_values([]),
                             complete=False)) == 'MISSING'


def _two_seed_results():
  # (top-1, mAP, precision, success, frozen precision, frozen success) per
  # backbone for seeds 0 and 1.
  table = {
      'random': [(0.10, 0.20, 0.30, 0.20, 0.20, 0.10),
                 (0.20, 0.30, 0.40, 0.30, 0.30, 0.10)],
      'cvrl': [(0.50, 0.30, 0.50, 0.35, 0.40, 0.20),
               (0.60, 0.40, 0.50, 0.35, 0.40, 0.20)],
      'const_cl': [(0.50, 0.50, 0.70, 0.50, 0.60, 0.30),
                   (0.70, 0.60, 0.80, 0.60, 0.80, 0.30)],
  }
  results = []
  for backbone, rows in table.items():
    for seed, (top1, map_, prec, succ, fprec, fsucc) in enumerate(rows):
      results.append(_result(backbone, seed, tb.LINEAR_EVAL,
                             {'classification_top1': top1}))
      results.append(_result(backbone, seed, tb.AVA, {'ava_map': map_}))
      results.append(_result(backbone, seed, tb.TRACK_EVAL,
                             {'tracking_precision': prec,
                              'tracking_success': succ}))
      results.append(_result(backbone, seed, tb.TRACK_FROZEN,
                             {'frozen_tracking_precision': fprec,
                              'frozen_tracking_success': fsucc}))
  return results


def test_summary_table_and_comparisons_by_hand():
  summary = tb.summarize(_two_seed_results(), seeds=[0, 1])
  r = summary['classification_top1']['random']
  # (0.1, 0.2): mean 0.15, sample std sqrt(2 * 0.05^2) = 0.070711.
  assert r['mean'] == pytest.approx(0.15)
  assert r['std'] == pytest.approx(math.sqrt(0.005))
  assert r['complete']
  c = summary['tracking_success']['cvrl']
  assert c['mean'] == pytest.approx(0.35) and c['std'] == pytest.approx(0.0)
  table = tb.format_table(summary)
  lines = table.splitlines()
  assert lines[0] == ('| Backbone | Linear-probe top-1 (%) | AVA mAP (%) | '
                      'OTB precision@20px (%) | OTB success AUC (%) | '
                      'Frozen OTB precision@20px (%) | '
                      'Frozen OTB success AUC (%) |')
  assert lines[1] == '|---|---|---|---|---|---|---|'
  assert lines[2] == ('| Random init | 15.0 ± 7.1 [10.0, 20.0] | '
                      '25.0 ± 7.1 [20.0, 30.0] | 35.0 ± 7.1 [30.0, 40.0] | '
                      '25.0 ± 7.1 [20.0, 30.0] | 25.0 ± 7.1 [20.0, 30.0] | '
                      '10.0 ± 0.0 [10.0, 10.0] |')
  assert lines[4] == ('| ConST-CL | 60.0 ± 14.1 [50.0, 70.0] | '
                      '55.0 ± 7.1 [50.0, 60.0] | 75.0 ± 7.1 [70.0, 80.0] | '
                      '55.0 ± 7.1 [50.0, 60.0] | 70.0 ± 14.1 [60.0, 80.0] | '
                      '30.0 ± 0.0 [30.0, 30.0] |')

  comps = tb.comparisons(summary)
  top1 = comps['classification_top1']['const_cl_vs_random']
  # 0.60 - 0.15 = 0.45 > 0.1414 + 0.0707 = 0.2121; min 0.5 > max 0.2.
  assert top1['difference'] == pytest.approx(0.45)
  assert top1['spread'] == pytest.approx(math.sqrt(0.02) + math.sqrt(0.005))
  assert top1['beats_by_more_than_spread'] is True
  assert top1['separated'] is True
  vs_cvrl = comps['classification_top1']['const_cl_vs_cvrl']
  # 0.60 - 0.55 = 0.05 < 0.1414 + 0.0707; min 0.5 == max 0.6? no: 0.5 < 0.6.
  assert vs_cvrl['difference'] == pytest.approx(0.05)
  assert vs_cvrl['beats_by_more_than_spread'] is False
  assert vs_cvrl['separated'] is False
  frozen = comps['frozen_tracking_success']['const_cl_vs_random']
  # 0.30 - 0.10 = 0.20 > 0 + 0 (no spread); min 0.3 > max 0.1.
  assert frozen['difference'] == pytest.approx(0.2)
  assert frozen['beats_by_more_than_spread'] is True


def test_duration_table_by_hand():
  results = [_result('cvrl', 0, tb.PRETRAIN, {}),
             _result('cvrl', 1, tb.PRETRAIN, {}),
             _result('random', 0, tb.AVA, {}),
             _result('cvrl', 0, tb.AVA, {}, status='skipped')]
  for r, wall, cpu in zip(results, (100.0, 200.0, 30.0, 999.0),
                          (50.0, 70.0, None, 1.0)):
    r.duration_s, r.cpu_s = wall, cpu
  durs = tb.durations(results)
  assert durs == {'pretrain': {'cvrl': {'wall_s': 150.0, 'cpu_s': 60.0}},
                  'ava': {'random': {'wall_s': 30.0, 'cpu_s': None}}}
  assert tb.format_duration_table(durs).splitlines() == [
      '| Stage | Random init | CVRL | ConST-CL |',
      '|---|---|---|---|',
      '| pretrain | - | 150 (60) | - |',
      '| ava | 30 | - | - |']


def test_compare_needs_two_complete_seeds():
  one = dict(tb.summarize_values([0.5]), complete=True)
  zero = dict(tb.summarize_values([0.1]), complete=True)
  c = tb.compare(one, zero)
  assert c['difference'] == pytest.approx(0.4)
  assert c['beats_by_more_than_spread'] is None and c['separated'] is True
  incomplete = dict(tb.summarize_values([0.5]), complete=False)
  assert tb.compare(incomplete, zero)['difference'] is None


def test_failed_runs_are_not_counted():
  results = _two_seed_results()
  results[0].status = 'failed'  # random, seed 0, linear eval
  summary = tb.summarize(results, seeds=[0, 1])
  s = summary['classification_top1']['random']
  assert s['n'] == 1 and s['mean'] == pytest.approx(0.2)
  assert not s['complete']


def test_loop_size_and_trainer_overrides():
  assert [tb.loop_size(n) for n in (300, 200, 10, 75, 53, 1)] == [
      50, 50, 10, 25, 1, 1]
  o = tb.trainer_overrides(tb.TRACKING, 200)
  assert o == {
      'trainer.train_steps': 200,
      'trainer.steps_per_loop': 50,
      'trainer.summary_interval': 50,
      'trainer.validation_interval': 200,
      'trainer.checkpoint_interval': 200,
      'trainer.optimizer_config.learning_rate.exponential.decay_steps': 200,
      'trainer.optimizer_config.warmup.linear.warmup_steps': 10,
  }
  o = tb.trainer_overrides(tb.PRETRAIN, 10)
  assert o['trainer.optimizer_config.learning_rate.cosine.decay_steps'] == 10
  # Half of a short run, not round(0.1 * 10) = 1.
  assert o['trainer.optimizer_config.warmup.linear.warmup_steps'] == 5
  # The registered 30 of 300; 10% of a longer run.
  assert [tb.warmup_steps(tb.PRETRAIN, n) for n in (300, 40, 1000, 1)] == [
      30, 20, 100, 1]
  assert [tb.warmup_steps(tb.TRACKING, n) for n in (200, 10, 60)] == [
      10, 5, 10]


def test_last_error_line():
  log = ('I0 start\nTraceback (most recent call last):\n  File "x"\n'
         'ValueError: first\n    raise ValueError(\n'
         'tensorflow.python.framework.errors_impl.InvalidArgumentError: shape '
         'mismatch\nW1 warning after\n')
  assert tb.last_error_line(log) == (
      'tensorflow.python.framework.errors_impl.InvalidArgumentError: shape '
      'mismatch')
  assert tb.last_error_line('all fine\n') == ''


def test_format_overrides():
  assert tb.format_overrides({'a.b': True, 'c': 3, 'd': '5g'}) == (
      'a.b=true,c=3,d=5g')
  with pytest.raises(ValueError, match='comma'):
    tb.format_overrides({'x': 'a,b'})


def test_plan_runs(tmp_path):
  runs = tb.plan_runs(str(tmp_path), seeds=[0, 1], budget=tb.QUICK_BUDGET,
                      python='py')
  assert len(runs) == 2 * (2 + 3 * 3 + 3 + 3)
  by_name = {r.name: r for r in runs}
  # Every dependency comes earlier in the plan.
  seen = set()
  for r in runs:
    assert set(r.depends_on) <= seen, r.name
    seen.add(r.name)
  pre = by_name['seed1/pretrain/cvrl']
  assert pre.experiment == 'const_cl_ablation_baseline_cvrl_toy'
  assert '--seed=1' in pre.argv and '--mode=train_and_eval' in pre.argv
  assert by_name['seed1/pretrain/const_cl'].experiment == (
      'const_cl_pretrain_toy')
  # Same budget for both pretrainings, both with the stem frozen.
  assert pre.overrides == by_name['seed1/pretrain/const_cl'].overrides
  assert pre.overrides['task.model.freeze_until'] == 'stem'
  assert not [r.name for r in runs if r.stage != tb.PRETRAIN and
              'task.model.freeze_until' in r.overrides]
  ava = by_name['seed1/ava/cvrl']
  assert ava.depends_on == ['seed1/pretrain/cvrl']
  assert ava.overrides['task.init_checkpoint'] == pre.model_dir
  assert ava.overrides['task.model.backbone.resnet_3d_y.duplicate_res5'] is (
      False)
  assert ava.overrides['task.model.feature_endpoint'] == '5g'
  assert 'task.model.feature_endpoint' not in by_name[
      'seed1/ava/const_cl'].overrides
  # Every AVA run, whatever its start, has the dilated res4/res5 and the
  # budget's toy AVA videos.
  for backbone in tb.BACKBONES:
    o = by_name[f'seed1/ava/{backbone}'].overrides
    assert o['task.model.backbone.resnet_3d_y.dilate_res4_res5'] is True
    assert (o['task.toy_world.num_train_videos'],
            o['task.toy_world.num_validation_videos']) == (60, 20)
  assert tb.ava_overrides(tb.Budget()) == {
      'task.model.backbone.resnet_3d_y.dilate_res4_res5': True,
      'task.toy_world.num_train_videos': 240,
      'task.toy_world.num_validation_videos': 60}
  assert tb.Budget().ava_steps == 600
  assert not [k for r in runs if r.stage != tb.AVA for k in r.overrides
              if 'dilate' in k or 'num_train_videos' in k]
  # Every run is reproducible per seed without op determinism (stateless
  # per-example seeds in all parsers), so no run pays for it.
  assert not [r.name for r in runs if '--deterministic' in r.argv]
  assert all(f'--seed={r.seed}' in r.argv for r in runs
             if r.argv[1].endswith('train.py'))
  lin = by_name['seed0/linear_eval/random']
  # The probe is the transfer one: pairs-world pretraining, shapes-world eval.
  assert lin.experiment == 'const_cl_linear_eval_ucf101_toy'
  assert lin.depends_on == [] and lin.overrides['task.allow_random_init']
  assert 'task.init_checkpoint' not in lin.overrides
  ev = by_name['seed0/track_eval/cvrl']
  track = by_name['seed0/tracking/cvrl']
  assert track.overrides['task.toy_world.num_eval_sequences'] == 4
  assert tb.Budget().tracking_eval_sequences == 96
  assert ev.depends_on == [track.name]
  assert ev.argv[1].endswith(os.path.join('tools', 'track.py'))
  assert f'--checkpoint={track.model_dir}' in ev.argv
  assert f'--params_override={tb.format_overrides(track.overrides)}' in (
      ev.argv)
  # Frozen-feature tracking: the pretraining's checkpoint (random: none,
  # drawn with the seed), the tracker's model keys, no trainer keys.
  fz = by_name['seed1/track_frozen/cvrl']
  assert fz.depends_on == ['seed1/pretrain/cvrl']
  assert fz.argv[1].endswith(os.path.join('tools', 'track.py'))
  assert fz.overrides == {
      'task.model.backbone.resnet_3d_y.duplicate_res5': False,
      'task.model.feature_endpoint': '5g',
      'task.toy_world.num_eval_sequences': 4}
  assert fz.argv[2:] == [
      '--experiment=const_cl_tracking_toy',
      '--params_override=task.model.backbone.resnet_3d_y.duplicate_res5='
      'false,task.model.feature_endpoint=5g,'
      'task.toy_world.num_eval_sequences=4',
      f'--checkpoint={pre.model_dir}', '--seed=1',
      f'--results_dir={fz.model_dir}', '--evaluate']
  assert fz.model_dir == os.path.join(str(tmp_path), 'runs', 'seed1',
                                      'track_frozen_cvrl')
  fz_random = by_name['seed0/track_frozen/random']
  assert fz_random.depends_on == []
  assert fz_random.overrides == {'task.toy_world.num_eval_sequences': 4}
  assert '--checkpoint=' in fz_random.argv and '--seed=0' in fz_random.argv
  assert by_name['seed0/track_frozen/const_cl'].overrides == (
      fz_random.overrides)


def test_overrides_apply_to_registered_experiments(tmp_path):
  """Every planned override is a real field of its registered experiment."""
  # pylint: disable=g-import-not-at-top
  from official.core import exp_factory
  from official.modeling import hyperparams
  from tasks import registry_imports  # pylint: disable=unused-import
  # With the stage override of tools/toy_benchmark.py's usage example.
  setting = tb.Setting(tracking_learning_rate=1e-3, stage_overrides=(
      tb.parse_stage_override(
          'all:task.model.backbone.resnet_3d_y.stem_filters=32'),))
  runs = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                      setting=setting)
  for run in runs:
    params = exp_factory.get_exp_config(run.experiment)
    params = hyperparams.override_params_dict(
        params, tb.format_overrides(run.overrides), is_strict=True)
    params.validate()
    backbone = params.task.model.backbone
    assert getattr(backbone, backbone.type).stem_filters == 32, run.name
    if run.stage == tb.TRACK_FROZEN:
      continue  # no training
    assert params.trainer.train_steps == 10, run.name
    if run.stage in (tb.TRACKING, tb.TRACK_EVAL):
      lr = params.trainer.optimizer_config.learning_rate.exponential
      # The registered toy tracker decays 1e-2 to 1e-3 (rate 0.1): from
      # 1e-3 the run ends at 1e-4.
      assert (lr.initial_learning_rate, lr.decay_rate) == (
          1e-3, pytest.approx(0.1)), run.name


class StubRunner:
  """Writes what a real run writes; numbers depend on backbone and seed."""

  VALUES = {'random': 0.1, 'cvrl': 0.3, 'const_cl': 0.5}

  def __init__(self, fail=()):
    self.fail = set(fail)
    self.calls = []

  def __call__(self, spec):
    self.calls.append(spec.name)
    with open(spec.log_path, 'w') as f:
      f.write('line 1\nTraceback: boom\nRuntimeError: boom\nW1 a warning\n'
              if spec.name in self.fail
              else 'fine\n')
    if spec.name in self.fail:
      return 3
    v = self.VALUES[spec.backbone] + 0.1 * spec.seed
    if spec.stage == tb.TRACKING:
      # Exercises the (exit code, info) form of a runner's return value.
      return self._write(spec, v), {'cpu_s': 12.5}
    return self._write(spec, v)

  def _write(self, spec, v):
    os.makedirs(spec.model_dir, exist_ok=True)
    if spec.stage in (tb.TRACK_EVAL, tb.TRACK_FROZEN):
      if spec.stage == tb.TRACK_FROZEN:
        v -= 0.05
      with open(os.path.join(spec.model_dir, 'otb_metrics.json'), 'w') as f:
        json.dump({'precision': v + 0.2, 'success': v,
                   'per_sequence': {'a': {}, 'b': {}}}, f)
      return 0
    steps = spec.overrides['trainer.train_steps']
    with open(os.path.join(spec.model_dir, 'params.yaml'), 'w') as f:
      # yaml.dump, as Model Garden: tuples get the python/tuple tag.
      yaml.dump({'trainer': {'train_steps': steps},
                 'task': {'seed_marker': spec.seed,
                          'feature_shape': (8, 64, 64, 3)}}, f)
    for sub, tags in (('train', {'training_loss': 2.0 - v}),
                      ('validation', {'video_top_1_accuracy': v,
                                      'validation_loss': 1.0})):
      writer = tf.summary.create_file_writer(
          os.path.join(spec.model_dir, sub))
      with writer.as_default():
        for tag, value in tags.items():
          tf.summary.scalar(tag, 9.0, step=steps // 2)  # superseded
          tf.summary.scalar(tag, value, step=steps)
      writer.close()
    if spec.stage == tb.AVA:
      with open(os.path.join(spec.model_dir, 'ava_eval_results.json'),
                'w') as f:
        json.dump({'mAP': v + 0.05, 'global_step': steps}, f)
    return 0


def test_freeze_choices_are_the_configs():
  from configs import backbones  # pylint: disable=g-import-not-at-top
  assert tb.FREEZE_UNTIL_CHOICES == backbones.FREEZE_UNTIL


@pytest.mark.parametrize('value,expected', [
    ('3', 'task.model.freeze_until=3'), ('2', 'task.model.freeze_until=2'),
    ('stem', 'task.model.freeze_until=stem'), ('', None)])
def test_pretrain_freeze_until_reaches_both_pretrainings_only(
    tmp_path, value, expected):
  runs = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                      python='py',
                      setting=tb.Setting(pretrain_freeze_until=value))
  for run in runs:
    (override,) = [a for a in run.argv if a.startswith('--params_override=')]
    present = [o for o in override.split('=', 1)[1].split(',')
               if o.startswith('task.model.freeze_until')]
    if run.stage == tb.PRETRAIN and expected:
      assert present == [expected], run.name
      assert run.overrides['task.model.freeze_until'] == value
    else:
      # Downstream runs keep their experiments' own setting.
      assert present == [], run.name
      assert 'task.model.freeze_until' not in run.overrides, run.name
  with pytest.raises(ValueError, match="freeze_until .*got 'res4'"):
    tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                 setting=tb.Setting(pretrain_freeze_until='res4'))


def test_tracking_learning_rate_reaches_the_trackers_only(tmp_path):
  key = 'trainer.optimizer_config.learning_rate.exponential'
  runs = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                      python='py',
                      setting=tb.Setting(tracking_learning_rate=1e-3))
  for run in runs:
    (override,) = [a for a in run.argv if a.startswith('--params_override=')]
    present = [o for o in override.split('=', 1)[1].split(',')
               if o.startswith(f'{key}.initial_learning_rate')]
    if run.stage in (tb.TRACKING, tb.TRACK_EVAL):
      # The OTB evaluation builds the tracker from the same overrides.
      assert present == [f'{key}.initial_learning_rate=0.001'], run.name
    else:
      assert present == [], run.name
  default = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                         python='py')
  assert [r.overrides[f'{key}.initial_learning_rate'] for r in default
          if f'{key}.initial_learning_rate' in r.overrides] == [1e-3] * 6
  registered = tb.plan_runs(str(tmp_path), seeds=[0],
                            budget=tb.QUICK_BUDGET, python='py',
                            setting=tb.Setting(tracking_learning_rate=None))
  assert all(f'{key}.initial_learning_rate' not in r.overrides
             for r in registered)
  for bad in (0.0, -1e-3, float('nan'), '0.01'):
    with pytest.raises(ValueError, match='tracking learning rate must be'):
      tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                   setting=tb.Setting(tracking_learning_rate=bad))


def test_run_benchmark_records_the_tracking_learning_rate(tmp_path):
  out = tmp_path / 'bench'
  result = tb.run_benchmark(str(out), seeds=[0], quick=True,
                            runner=StubRunner(),
                            setting=tb.Setting(tracking_learning_rate=1e-3))
  assert result.report['tracking_learning_rate'] == 1e-3
  md = (out / 'results.md').read_text()
  assert 'Trackers: initial learning rate 0.001.' in md
  out = tmp_path / 'registered'
  result = tb.run_benchmark(str(out), seeds=[0], quick=True,
                            runner=StubRunner(),
                            setting=tb.Setting(tracking_learning_rate=None))
  assert result.report['tracking_learning_rate'] is None
  md = (out / 'results.md').read_text()
  assert 'Trackers: the registered learning rate.' in md


def test_run_benchmark_records_the_pretrain_setting(tmp_path):
  out = tmp_path / 'bench'
  result = tb.run_benchmark(str(out), seeds=[0], quick=True,
                            runner=StubRunner(),
                            setting=tb.Setting(pretrain_freeze_until=''))
  assert result.report['pretrain_freeze_until'] == ''
  md = (out / 'results.md').read_text()
  assert ('Pretraining keeps fixed: nothing (every stage trains) '
          '(`task.model.freeze_until=`).') in md


STEM = 'task.model.backbone.resnet_3d_y.stem_filters'


def test_parse_stage_override():
  assert tb.parse_stage_override(f'all:{STEM}=32') == ('all', STEM, '32')
  assert tb.parse_stage_override('ava:task.a.b = 0.5') == (
      'ava', 'task.a.b', '0.5')
  assert tb.parse_stage_override('pretrain:task.p=/data/x-1.tfrecord') == (
      'pretrain', 'task.p', '/data/x-1.tfrecord')
  value = 'must be a non-empty number, word or path'
  for bad, match in (
      (f'{STEM}=32', 'expected STAGE:key=value'),
      (f'all:{STEM}', 'expected STAGE:key=value'),
      (f'probe:{STEM}=32', "stage 'probe' must be one of .*'linear_eval'"),
      ('track_eval:task.a=1', "stage 'track_eval' must be one of"),
      ('track_frozen:task.a=1', "stage 'track_frozen' must be one of"),
      (' all:task.a=1', "stage ' all' must be one of"),
      ('all:stem_filters=32', 'dotted config path'),
      ('all:task.a b=1', 'dotted config path'),
      ('all:_task.a=1', 'dotted config path'),
      ('all:task.a=', value), ('all:task.a=1,2', value),
      ('all:task.a=[1', value), ('all:task.a={a', value),
      ("all:task.a='x", value), ('all:task.a=x: y', value),
      ('all:task.a=#c', value)):
    with pytest.raises(ValueError, match=match):
      tb.parse_stage_override(bad)


def test_stage_overrides_reach_their_stages(tmp_path):
  setting = tb.Setting(stage_overrides=(
      ('all', STEM, '32'), ('ava', 'task.model.head.dropout_rate', '0.2'),
      ('tracking', 'task.train_data.max_frame_gap', '20')))
  runs = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                      python='py', setting=setting)
  assert len(runs) == 17
  for run in runs:
    assert run.overrides[STEM] == '32', run.name
    assert f'{STEM}=32' in tb.format_overrides(run.overrides)
    assert ('task.model.head.dropout_rate' in run.overrides) == (
        run.stage == tb.AVA), run.name
    # The OTB evaluations rebuild their tracker with the tracker's
    # overrides.
    assert ('task.train_data.max_frame_gap' in run.overrides) == (
        run.stage in (tb.TRACKING, tb.TRACK_EVAL, tb.TRACK_FROZEN)), run.name
  plain = tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                       python='py')
  assert [r.name for r in plain] == [r.name for r in runs]
  for a, b in zip(runs, plain):
    extra = {k: v for k, v in a.overrides.items() if k not in b.overrides}
    assert extra and {k: a.overrides[k] for k in b.overrides} == b.overrides


def test_stage_overrides_refuse_the_benchmarks_keys_and_conflicts(tmp_path):
  lr = 'trainer.optimizer_config.learning_rate'
  for setting, stage, key in (
      (tb.Setting(), 'pretrain', 'trainer.train_steps'),
      (tb.Setting(), 'pretrain', 'task.model.freeze_until'),
      (tb.Setting(), 'ava', 'task.init_checkpoint'),
      (tb.Setting(), 'tracking', 'task.toy_world.num_eval_sequences'),
      # Owned by the setting also when it leaves them unset.
      (tb.Setting(pretrain_freeze_until=''), 'pretrain',
       'task.model.freeze_until'),
      (tb.Setting(pretrain_freeze_until=''), 'all', 'task.model.freeze_until'),
      (tb.Setting(tracking_learning_rate=None), 'tracking',
       f'{lr}.exponential.initial_learning_rate'),
      # A key above one the plan sets would replace it.
      (tb.Setting(), 'pretrain', f'{lr}.cosine'),
      (tb.Setting(), 'all', 'trainer.optimizer_config')):
    setting = dataclasses.replace(setting,
                                  stage_overrides=((stage, key, '7'),))
    with pytest.raises(ValueError, match=f'override of {key} .*sets '):
      tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                   setting=setting)
  # Below the tracker's own keys, not above: free.
  assert len(tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                          setting=tb.Setting(stage_overrides=(
                              ('ava', f'{lr}.cosine.alpha', '0.1'),)))) == 17
  conflict = tb.Setting(stage_overrides=(('all', STEM, '32'),
                                         ('ava', STEM, '16')))
  with pytest.raises(ValueError, match=f'ava runs two values of {STEM}'):
    conflict.validate()
  # The same value twice is no conflict.
  tb.Setting(stage_overrides=(('all', STEM, '32'),
                              ('ava', STEM, '32'))).validate()


def test_stage_override_order_keeps_the_command_lines(tmp_path):
  a = ('all', STEM, '32')
  b = ('ava', 'task.model.head.dropout_rate', '0.2')
  runs = [tb.plan_runs(str(tmp_path), seeds=[0], budget=tb.QUICK_BUDGET,
                       python='py', setting=tb.Setting(stage_overrides=o))
          for o in ((a, b), (b, a))]
  assert [r.argv for r in runs[0]] == [r.argv for r in runs[1]]


def test_run_benchmark_records_the_stage_overrides(tmp_path):
  out = tmp_path / 'bench'
  setting = tb.Setting(stage_overrides=(('all', STEM, '32'),))
  result = tb.run_benchmark(str(out), seeds=[0], quick=True,
                            runner=StubRunner(), setting=setting)
  assert result.report['stage_overrides'] == [['all', STEM, '32']]
  assert all(r['overrides'][STEM] == '32' for r in result.report['runs'])
  md = (out / 'results.md').read_text()
  assert f'Stage overrides: `all:{STEM}=32`.' in md
  plain = tb.run_benchmark(str(tmp_path / 'plain'), seeds=[0], quick=True,
                           runner=StubRunner())
  assert plain.report['stage_overrides'] == []
  assert 'Stage overrides' not in (tmp_path / 'plain' / 'results.md'
                                   ).read_text()


def test_run_benchmark_with_stub_runner(tmp_path):
  runner = StubRunner()
  out = tmp_path / 'bench'
  result = tb.run_benchmark(str(out), seeds=[0, 1], quick=True, runner=runner,
                            jobs=2, command=['tools/toy_benchmark.py'])
  assert result.ok
  assert len(runner.calls) == 34
  report = json.loads((out / 'results.json').read_text())
  assert report == json.loads(json.dumps(result.report))
  assert set(report) == {
      'schema_version', 'command', 'quick', 'seeds', 'budget', 'metrics',
      'total_duration_s', 'runs', 'summary', 'comparisons', 'durations',
      'failures', 'missing_metrics', 'resumed_runs', 'ok',
      'pretrain_freeze_until', 'code_version', 'tracking_learning_rate',
      'stage_overrides'}
  assert report['code_version'] == tb.code_version()
  assert report['tracking_learning_rate'] == 1e-3
  assert report['resumed_runs'] == []
  assert report['pretrain_freeze_until'] == 'stem'
  assert report['seeds'] == [0, 1] and report['quick'] is True
  assert report['budget'] == {'pretrain_steps': 10, 'linear_eval_steps': 10,
                              'ava_steps': 10, 'ava_train_videos': 60,
                              'ava_validation_videos': 20, 'tracking_steps': 10,
                              'tracking_eval_sequences': 4}
  run_keys = {'name', 'stage', 'backbone', 'seed', 'experiment', 'overrides',
              'argv', 'model_dir', 'status', 'returncode', 'duration_s',
              'cpu_s', 'config', 'final_train', 'final_validation', 'metrics',
              'error', 'log_tail', 'resumed', 'code_version'}
  for run in report['runs']:
    assert set(run) == run_keys
    assert run['code_version'] == report['code_version']
    assert run['status'] == 'ok' and run['returncode'] == 0
    assert run['duration_s'] >= 0
  runs = {r['name']: r for r in report['runs']}
  pre = runs['seed1/pretrain/const_cl']
  assert pre['config'] == {'trainer': {'train_steps': 10},
                           'task': {'seed_marker': 1,
                                    'feature_shape': [8, 64, 64, 3]}}
  # The last step's value, not the earlier one.
  assert pre['final_train'] == {'training_loss': pytest.approx(1.4)}
  lin = runs['seed0/linear_eval/cvrl']
  assert lin['metrics'] == {'classification_top1': pytest.approx(0.3)}
  assert lin['final_validation']['validation_loss'] == pytest.approx(1.0)
  assert runs['seed1/ava/random']['metrics'] == {
      'ava_map': pytest.approx(0.25)}
  assert runs['seed0/track_eval/const_cl']['metrics'] == {
      'tracking_precision': pytest.approx(0.7),
      'tracking_success': pytest.approx(0.5), 'num_sequences': 2.0}
  assert runs['seed1/track_frozen/const_cl']['metrics'] == {
      'frozen_tracking_precision': pytest.approx(0.75),
      'frozen_tracking_success': pytest.approx(0.55), 'num_sequences': 2.0}
  assert runs['seed1/track_frozen/const_cl']['config'] is None
  s = report['summary']['frozen_tracking_success']['random']
  # Seeds 0, 1: 0.05, 0.15.
  assert s['values'] == [pytest.approx(0.05), pytest.approx(0.15)]
  s = report['summary']['ava_map']['const_cl']
  # Seeds 0, 1: 0.55, 0.65 -> mean 0.60, std 0.0707.
  assert s['mean'] == pytest.approx(0.6)
  assert s['std'] == pytest.approx(math.sqrt(0.005))
  assert s['values'] == [pytest.approx(0.55), pytest.approx(0.65)]
  c = report['comparisons']['ava_map']['const_cl_vs_random']
  assert c['difference'] == pytest.approx(0.4)
  assert c['beats_by_more_than_spread'] is True
  assert set(report['durations']) == set(tb.STAGES)
  assert report['durations']['tracking']['cvrl']['cpu_s'] == 12.5
  assert report['durations']['ava']['cvrl']['cpu_s'] is None
  assert runs['seed1/tracking/cvrl']['cpu_s'] == 12.5
  md = (out / 'results.md').read_text()
  assert tb.format_table(result.report['summary']) in md
  assert ('Pretraining keeps fixed: the stem '
          '(`task.model.freeze_until=stem`). Trackers: initial learning rate '
          f'0.001. Code version: {report["code_version"]}.') in md
  assert 'FAILED' not in md
  png = (out / 'results.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n'


def _metrics(report):
  return {r['name']: r['metrics'] for r in report['runs']}


def test_resume_reuses_finished_runs_and_reruns_what_changed(tmp_path):
  out = str(tmp_path / 'bench')
  first = tb.run_benchmark(out, seeds=[0], quick=True, runner=StubRunner())
  assert first.ok
  names = [r['name'] for r in first.report['runs']]
  assert len(names) == 17

  # Everything finished with the same command lines: nothing runs again.
  again = StubRunner()
  second = tb.run_benchmark(out, seeds=[0], quick=True, runner=again,
                            resume=True)
  assert second.ok and again.calls == []
  assert second.report['resumed_runs'] == names
  assert _metrics(second.report) == _metrics(first.report)
  assert second.report['summary'] == first.report['summary']
  assert all(r['resumed'] for r in second.report['runs'])
  assert '17 of 17 runs were reused' in (
      tmp_path / 'bench' / 'results.md').read_text()

  # One pretraining's record gone: it runs again, and so does every run that
  # reads its checkpoint; the others are reused.
  spec = next(r for r in tb.plan_runs(out, [0], tb.QUICK_BUDGET)
              if r.name == 'seed0/pretrain/cvrl')
  os.remove(tb.record_path(spec))
  third_runner = StubRunner()
  third = tb.run_benchmark(out, seeds=[0], quick=True, runner=third_runner,
                           resume=True)
  assert third.ok
  assert third_runner.calls == [
      'seed0/pretrain/cvrl', 'seed0/linear_eval/cvrl', 'seed0/ava/cvrl',
      'seed0/tracking/cvrl', 'seed0/track_eval/cvrl',
      'seed0/track_frozen/cvrl']
  assert len(third.report['resumed_runs']) == 11
  assert _metrics(third.report) == _metrics(first.report)

  # The trackers' budget changes the trackers and their OTB evaluations,
  # not the frozen-feature ones (no trainer keys).
  budget = tb.dataclasses.replace(tb.QUICK_BUDGET, tracking_steps=12)
  tracker_runner = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, budget=budget,
                   runner=tracker_runner, resume=True)
  assert tracker_runner.calls == [
      f'seed0/{stage}/{b}' for stage in ('tracking', 'track_eval')
      for b in tb.BACKBONES]

  # A changed budget changes the AVA command lines only.
  budget = tb.dataclasses.replace(budget, ava_steps=12)
  fourth_runner = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, budget=budget,
                   runner=fourth_runner, resume=True)
  assert fourth_runner.calls == [
      'seed0/ava/random', 'seed0/ava/cvrl', 'seed0/ava/const_cl']

  # Without --resume every run is made again.
  fifth_runner = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, runner=fifth_runner)
  assert fifth_runner.calls == names


_NOTHING_TO_RESUME = '--resume: nothing to resume in {}'


def test_resume_without_earlier_records_warns_and_starts_fresh(
    tmp_path, caplog):
  out = str(tmp_path / 'bench')
  # A job script that always passes --resume: the first invocation warns
  # once, naming the folder, and makes every run.
  first_runner = StubRunner()
  with caplog.at_level(logging.WARNING):
    first = tb.run_benchmark(out, seeds=[0], quick=True, runner=first_runner,
                             resume=True)
  assert first.ok and len(first_runner.calls) == 17
  assert first.report['resumed_runs'] == []
  records = [r for r in caplog.records
             if 'nothing to resume' in r.getMessage()]
  assert len(records) == 1 and records[0].levelno == logging.WARNING
  assert records[0].getMessage().startswith(_NOTHING_TO_RESUME.format(out))
  assert records[0].getMessage().endswith('; starting fresh')
  # The next one reuses the runs, without the warning.
  caplog.clear()
  again = StubRunner()
  with caplog.at_level(logging.WARNING):
    second = tb.run_benchmark(out, seeds=[0], quick=True, runner=again,
                              resume=True)
  assert again.calls == [] and len(second.report['resumed_runs']) == 17
  assert 'nothing to resume' not in caplog.text

  # The function that decides: one record left is earlier state.
  runs = tb.plan_runs(out, [0], tb.QUICK_BUDGET)
  for spec in runs[1:]:
    os.remove(tb.record_path(spec))
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert tb.check_resumable(out, runs)
  assert 'nothing to resume' not in caplog.text
  os.remove(tb.record_path(runs[0]))
  with caplog.at_level(logging.WARNING):
    assert not tb.check_resumable(out, runs)
  assert _NOTHING_TO_RESUME.format(out) in caplog.text


class _Stopping(StubRunner):
  """Stops the benchmark (as Ctrl-C) when run `stop_at` starts, after
  writing part of its model dir, as a real run does before it is stopped."""

  def __init__(self, stop_at):
    super().__init__()
    self.stop_at = stop_at

  def __call__(self, spec):
    if spec.name == self.stop_at:
      os.makedirs(os.path.join(spec.model_dir, 'train'))
      raise KeyboardInterrupt('stop')
    return super().__call__(spec)


def test_resume_after_a_stop_between_a_pretraining_and_its_runs(tmp_path):
  """A pretraining that runs again makes the records downstream of it stale
  at once: stopped before those runs, a later --resume still runs them."""
  out = str(tmp_path / 'bench')
  tb.run_benchmark(out, seeds=[0], quick=True, runner=StubRunner())
  plan = {r.name: r for r in tb.plan_runs(out, [0], tb.QUICK_BUDGET)}
  budget = tb.dataclasses.replace(tb.QUICK_BUDGET, pretrain_steps=12)

  stopping = _Stopping('seed0/linear_eval/cvrl')
  with pytest.raises(KeyboardInterrupt):
    tb.run_benchmark(out, seeds=[0], quick=True, budget=budget,
                     runner=stopping, resume=True)
  assert stopping.calls == ['seed0/pretrain/cvrl', 'seed0/pretrain/const_cl']
  # The run that was starting removed its own old record too.
  assert not os.path.exists(tb.record_path(plan['seed0/linear_eval/cvrl']))
  assert os.path.exists(tb.record_path(plan['seed0/linear_eval/random']))

  runner = StubRunner()
  result = tb.run_benchmark(out, seeds=[0], quick=True, budget=budget,
                            runner=runner, resume=True, jobs=2)
  assert result.ok
  # Both pretrainings (done before the stop) and the random-init runs are
  # reused; everything on a pretrained checkpoint runs.
  assert sorted(runner.calls) == sorted(
      f'seed0/{stage}/{backbone}' for backbone in ('cvrl', 'const_cl')
      for stage in ('linear_eval', 'ava', 'tracking', 'track_eval',
                    'track_frozen'))
  assert sorted(result.report['resumed_runs']) == sorted(
      ['seed0/pretrain/cvrl', 'seed0/pretrain/const_cl'] +
      [f'seed0/{stage}/random' for stage in (
          'linear_eval', 'ava', 'tracking', 'track_eval', 'track_frozen')])


def test_a_run_that_starts_removes_its_own_record(tmp_path):
  """Stopped while it runs, a run with an unchanged command line must not
  be taken from its earlier record by a later --resume."""
  out = str(tmp_path / 'bench')
  tb.run_benchmark(out, seeds=[0], quick=True, runner=StubRunner())

  with pytest.raises(KeyboardInterrupt):
    tb.run_benchmark(out, seeds=[0], quick=True,
                     runner=_Stopping('seed0/linear_eval/random'))
  runner = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, runner=runner, resume=True)
  assert 'seed0/linear_eval/random' in runner.calls


def test_resume_runs_again_what_failed_or_lost_its_model_dir(tmp_path):
  out = str(tmp_path / 'bench')
  failed = tb.run_benchmark(out, seeds=[0], quick=True,
                            runner=StubRunner(fail={'seed0/tracking/random'}))
  assert not failed.ok
  plan = {r.name: r for r in tb.plan_runs(out, [0], tb.QUICK_BUDGET)}
  # A failed run leaves no record (nor does the skipped one after it).
  assert not os.path.exists(tb.record_path(plan['seed0/tracking/random']))
  assert not os.path.exists(tb.record_path(plan['seed0/track_eval/random']))
  # A record whose model dir is gone is not reused.
  tb.shutil.rmtree(plan['seed0/linear_eval/const_cl'].model_dir)
  runner = StubRunner()
  result = tb.run_benchmark(out, seeds=[0], quick=True, runner=runner,
                            resume=True)
  assert result.ok
  assert runner.calls == ['seed0/linear_eval/const_cl',
                          'seed0/tracking/random', 'seed0/track_eval/random']


def test_resume_runs_again_what_other_code_made(tmp_path):
  out = str(tmp_path / 'bench')
  first = tb.run_benchmark(out, seeds=[0], quick=True, runner=StubRunner(),
                           code='aaaa')
  assert {r['code_version'] for r in first.report['runs']} == {'aaaa'}
  same = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, runner=same, resume=True,
                   code='aaaa')
  assert same.calls == []
  other = StubRunner()
  second = tb.run_benchmark(out, seeds=[0], quick=True, runner=other,
                            resume=True, code='bbbb')
  assert other.calls == [r['name'] for r in first.report['runs']]
  assert second.report['resumed_runs'] == []
  assert {r['code_version'] for r in second.report['runs']} == {'bbbb'}


def test_code_version_follows_the_code_files(tmp_path):
  root = tmp_path / 'repo'
  (root / 'modeling' / '__pycache__').mkdir(parents=True)
  (root / 'configs' / 'yaml').mkdir(parents=True)
  (root / 'train.py').write_text('print(1)\n')
  (root / 'modeling' / 'm.py').write_text('x = 1\n')
  (root / 'configs' / 'yaml' / 'e.yaml').write_text('task: {}\n')
  base = tb.code_version(str(root))
  assert len(base) == 16 and int(base, 16) >= 0
  # Caches, notes and files outside CODE_PATHS do not count.
  (root / 'modeling' / '__pycache__' / 'm.cpython-311.pyc').write_bytes(b'1')
  (root / 'modeling' / 'NOTES.md').write_text('notes')
  (root / 'docs').mkdir()
  (root / 'docs' / 'd.py').write_text('y = 2\n')
  assert tb.code_version(str(root)) == base
  # A changed module, config or entry point does.
  (root / 'modeling' / 'm.py').write_text('x = 2\n')
  changed = tb.code_version(str(root))
  assert changed != base
  (root / 'modeling' / 'm.py').write_text('x = 1\n')
  assert tb.code_version(str(root)) == base
  (root / 'configs' / 'yaml' / 'e.yaml').write_text('task: {a: 1}\n')
  assert tb.code_version(str(root)) not in (base, changed)
  # A file moved to another package is another code.
  (root / 'configs' / 'yaml' / 'e.yaml').write_text('task: {}\n')
  (root / 'modeling' / 'm.py').rename(root / 'configs' / 'm.py')
  assert tb.code_version(str(root)) != base


def test_unreadable_record_is_run_again(tmp_path):
  out = str(tmp_path / 'bench')
  tb.run_benchmark(out, seeds=[0], quick=True, runner=StubRunner())
  spec = next(r for r in tb.plan_runs(out, [0], tb.QUICK_BUDGET)
              if r.name == 'seed0/ava/random')
  with open(tb.record_path(spec), 'w') as f:
    f.write('{"name": "seed0/ava/random", "truncat')
  runner = StubRunner()
  tb.run_benchmark(out, seeds=[0], quick=True, runner=runner, resume=True)
  assert runner.calls == ['seed0/ava/random']


def test_failure_is_reported_and_dependents_skipped(tmp_path):
  runner = StubRunner(fail={'seed0/pretrain/cvrl'})
  out = tmp_path / 'bench'
  result = tb.run_benchmark(str(out), seeds=[0], quick=True, runner=runner)
  assert not result.ok
  report = result.report
  runs = {r['name']: r for r in report['runs']}
  failed = runs['seed0/pretrain/cvrl']
  assert failed['status'] == 'failed' and failed['returncode'] == 3
  assert failed['error'].endswith(' | RuntimeError: boom')
  assert 'Traceback: boom' in failed['log_tail']
  for stage in (tb.LINEAR_EVAL, tb.AVA, tb.TRACKING, tb.TRACK_EVAL,
                tb.TRACK_FROZEN):
    skipped = runs[f'seed0/{stage}/cvrl']
    assert skipped['status'] == 'skipped', stage
    assert f'seed0/{stage}/cvrl' not in runner.calls
  assert runs['seed0/ava/const_cl']['status'] == 'ok'
  assert sorted(report['missing_metrics']) == sorted(
      f'{m}/cvrl' for m in tb.METRIC_KEYS)
  assert len(report['failures']) == 6
  md = (out / 'results.md').read_text()
  assert '| CVRL |' + ' MISSING |' * 6 in md
  assert 'Traceback: boom' in md and 'FAILED OR SKIPPED RUNS' in md


class _Editing(StubRunner):
  """Exit code 0, but `edit(path)` changes `filename` in the runs `which`
  selects after they wrote it."""

  def __init__(self, which, filename, edit):
    super().__init__()
    self.which, self.filename, self.edit = which, filename, edit

  def __call__(self, spec):
    rc = super().__call__(spec)
    if self.which(spec):
      self.edit(os.path.join(spec.model_dir, self.filename))
    return rc


def _removing(which, filename):
  """Exit code 0, but the runs `which(spec)` selects lose `filename`."""
  return _Editing(which, filename, os.remove)


def test_missing_metric_file_fails_the_run(tmp_path):
  """Exit code 0 but no ava_eval_results.json: the run is failed, not 0."""

  result = tb.run_benchmark(
      str(tmp_path), seeds=[0], quick=True,
      runner=_removing(lambda spec: spec.stage == tb.AVA,
                       'ava_eval_results.json'))
  assert not result.ok
  runs = {r['name']: r for r in result.report['runs']}
  assert runs['seed0/ava/random']['status'] == 'failed'
  assert 'ava_eval_results.json: missing' in runs['seed0/ava/random']['error']
  assert result.report['summary']['ava_map']['random']['n'] == 0


def test_missing_frozen_tracking_file_fails_only_that_run(tmp_path):

  result = tb.run_benchmark(
      str(tmp_path), seeds=[0], quick=True,
      runner=_removing(
          lambda spec: spec.name == 'seed0/track_frozen/const_cl',
          'otb_metrics.json'))
  assert not result.ok
  runs = {r['name']: r for r in result.report['runs']}
  run = runs['seed0/track_frozen/const_cl']
  assert run['status'] == 'failed'
  assert run['error'] == (
      'reading results: FileNotFoundError: ' + os.path.join(
          str(tmp_path), 'runs', 'seed0', 'track_frozen_const_cl',
          'otb_metrics.json') + ': missing')
  assert sorted(result.report['missing_metrics']) == [
      'frozen_tracking_precision/const_cl', 'frozen_tracking_success/const_cl']
  # The fine-tuned tracker's evaluation of the same backbone is unaffected.
  assert runs['seed0/track_eval/const_cl']['metrics']['tracking_success'] == (
      pytest.approx(0.5))


def _drop_success(path):
  with open(path) as f:
    otb = json.load(f)
  del otb['success']
  with open(path, 'w') as f:
    json.dump(otb, f)


def test_otb_metric_without_its_field_names_the_file_and_field(tmp_path):
  result = tb.run_benchmark(
      str(tmp_path), seeds=[0], quick=True,
      runner=_Editing(lambda spec: spec.name == 'seed0/track_eval/cvrl',
                      'otb_metrics.json', _drop_success))
  runs = {r['name']: r for r in result.report['runs']}
  assert runs['seed0/track_eval/cvrl']['error'] == (
      'reading results: ValueError: ' + os.path.join(
          str(tmp_path), 'runs', 'seed0', 'tracking_cvrl', 'otb_results',
          'otb_metrics.json') + ':success: not a number: None')
  assert [m.field for m in tb.METRICS if m.stage in (
      tb.TRACK_EVAL, tb.TRACK_FROZEN)] == ['precision', 'success'] * 2


def test_stale_ava_results_are_rejected(tmp_path):

  class StaleAva(StubRunner):

    def __call__(self, spec):
      rc = super().__call__(spec)
      if spec.stage == tb.AVA:
        with open(os.path.join(spec.model_dir, 'ava_eval_results.json'),
                  'w') as f:
          json.dump({'mAP': 0.9, 'global_step': 5}, f)
      return rc

  result = tb.run_benchmark(str(tmp_path), seeds=[0], quick=True,
                            runner=StaleAva())
  runs = {r['name']: r for r in result.report['runs']}
  assert 'global_step is 5, expected the final step 10' in runs[
      'seed0/ava/const_cl']['error']


def test_runner_exception_is_a_failed_run(tmp_path):

  class Raises(StubRunner):

    def __call__(self, spec):
      if spec.name == 'seed0/tracking/random':
        raise RuntimeError('no such binary')
      return super().__call__(spec)

  result = tb.run_benchmark(str(tmp_path), seeds=[0], quick=True,
                            runner=Raises())
  runs = {r['name']: r for r in result.report['runs']}
  assert runs['seed0/tracking/random']['status'] == 'failed'
  assert runs['seed0/tracking/random']['error'] == (
      'runner raised RuntimeError: no such binary')
  assert runs['seed0/track_eval/random']['status'] == 'skipped'
  assert result.report['missing_metrics'] == [
      'tracking_precision/random', 'tracking_success/random']
  assert not result.ok


def test_interrupt_terminates_running_children(tmp_path):
  """Ctrl-C / SIGTERM while runs are going: the children are terminated."""

  class Interrupting(StubRunner):
    terminated = False

    def __call__(self, spec):
      raise KeyboardInterrupt('stop')

    def terminate_all(self):
      Interrupting.terminated = True

  with pytest.raises(KeyboardInterrupt):
    tb.execute_plan(tb.plan_runs(str(tmp_path), [0], tb.QUICK_BUDGET),
                    Interrupting(), tb.QUICK_BUDGET)
  assert Interrupting.terminated


def test_tool_refuses_a_bad_stage_override_before_any_run(tmp_path):
  out = tmp_path / 'bench'
  for flag, message in (
      ('probe:task.a=1', "stage override probe:task.a=1: stage 'probe'"),
      ('pretrain:trainer.train_steps=7',
       "stage override of trainer.train_steps for pretrain: the benchmark "
       "sets ['trainer.train_steps'] itself")):
    proc = subprocess.run(
        [sys.executable,
         os.path.join(tb.REPO_ROOT, 'tools', 'toy_benchmark.py'),
         f'--output_dir={out}', f'--stage_override={flag}'],
        capture_output=True, text=True, timeout=120, check=False)
    # absl's usage error: the message and the flags' help, no traceback.
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not out.exists()


def test_stage_override_the_configs_refuse_stops_before_any_run(tmp_path):
  """An unknown key or a wrong-typed value failed every run, one train.py
  start-up each (17 runs per seed), and the command exited 1 at the end."""
  unknown = tb.Setting(stage_overrides=(
      tb.parse_stage_override('all:task.model.no_such_key=3'),))
  runs = tb.plan_runs(str(tmp_path), [0, 1], tb.QUICK_BUDGET,
                      setting=unknown)
  with pytest.raises(ValueError, match=(
      r"^seed0/pretrain/cvrl \(const_cl_ablation_baseline_cvrl_toy\) "
      r'refuses the stage overrides \(all:task.model.no_such_key=3\): '
      r"KeyError: .*'no_such_key' does not exist")):
    tb.check_stage_override_configs(runs, unknown)
  # The README's example passes.
  good = tb.Setting(stage_overrides=(tb.parse_stage_override(
      f'all:{STEM}=32'),))
  tb.check_stage_override_configs(
      tb.plan_runs(str(tmp_path), [0], tb.QUICK_BUDGET, setting=good), good)
  out = tmp_path / 'bench'
  proc = subprocess.run(
      [sys.executable,
       os.path.join(tb.REPO_ROOT, 'tools', 'toy_benchmark.py'),
       f'--output_dir={out}', f'--stage_override=ava:{STEM}=abc'],
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.rstrip().endswith(
      'seed0/ava/random (const_cl_ava_toy) refuses the stage overrides '
      f'(ava:{STEM}=abc): ConfigTypeError: {STEM} must be int, got '
      "'abc' (str)")
  assert not out.exists()
