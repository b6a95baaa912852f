"""Tests of tasks/benchmark.py and tools/benchmark.py.

That the fast input path gives the same crops as the plain path for the same
random draws (same pixels up to JPEG tolerance) is tested where that code
lives: tests/dataloaders/test_augment.py::test_fast_equals_plain_geometry_blur_solarize
(geometry, flip, brightness/contrast, grayscale, blur, solarization) and
::test_fast_close_to_plain_full_jitter (the YIQ saturation/hue approximation).
"""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import task_factory

from dataloaders import video_records
from modeling.layers import blocks_3d
from tasks import benchmark


def test_profile_flops_matmul_and_conv3d_by_hand():
  a = tf.zeros([4, 8])
  b = tf.zeros([8, 16])
  # One matmul: 2 * M * K * N.
  assert benchmark.profile_flops(tf.matmul, a, b) == 2 * 4 * 8 * 16
  x = tf.zeros([1, 4, 8, 8, 2])
  k = tf.zeros([3, 3, 3, 2, 5])
  conv = lambda x, k: tf.nn.conv3d(x, k, [1] * 5, 'SAME')
  # 'SAME', stride 1: 1*4*8*8*5 outputs, each 3*3*3*2 multiply-adds.
  assert benchmark.profile_flops(conv, x, k) == 2 * (4 * 8 * 8 * 5) * 54


def test_records_are_readable_video_records(tmp_path):
  pattern = benchmark.write_benchmark_records(
      str(tmp_path), num_videos=3, num_frames=5, height=24, width=32,
      num_files=2)
  files = sorted(tf.io.gfile.glob(pattern))
  assert len(files) == 2
  videos = video_records.read_records(pattern)
  assert len(videos) == 3
  assert sorted(len(v['frames']) for v in videos) == [5, 5, 5]
  assert sorted(v['video_id'] for v in videos) == [
      'bench_0', 'bench_1', 'bench_2']
  frames = [tf.io.decode_jpeg(f).numpy() for f in videos[0]['frames']]
  assert frames[0].shape == (24, 32, 3)
  # The texture pans: consecutive frames differ.
  assert np.abs(frames[1].astype(int) - frames[0].astype(int)).mean() > 1


def test_quick_benchmark_writes_json_with_required_fields(tmp_path,
                                                         monkeypatch):
  # Two of the form variants (each costs a trace of the train step); the
  # next test checks what every variant builds.
  variants = (benchmark.FORM_VARIANTS[0], benchmark.FORM_VARIANTS[-1])
  monkeypatch.setattr(benchmark, 'FORM_VARIANTS', variants)
  settings = benchmark.quick_settings()
  settings.timed_steps = 1
  settings.scaling = ((settings.batch_size, settings.num_frames),)
  result = benchmark.run_benchmark(
      settings, sections=('models', 'pipeline', 'scaling', 'forms'))
  path = os.path.join(str(tmp_path), 'out', 'bench.json')
  benchmark.write_result(result, path)
  with open(path) as f:
    loaded = json.load(f)
  for key in ('step_ratio_vs_bare', 'mfu', 'pipeline_speedup_vs_video_ssl'):
    assert isinstance(loaded[key], float) and np.isfinite(loaded[key]), key
    assert loaded[key] > 0, key
  assert len(loaded['loadavg_start']) == 3
  assert loaded['onednn'] is benchmark.onednn_enabled()
  models = loaded['models']
  for name in ('const_cl', 'cvrl_video_ssl', 'bare_r3d50'):
    m = models[name]
    assert m['clips'] == 2 * settings.batch_size
    assert len(m['step_seconds']) == 1
    assert m['forward_gflops'] > 0 and m['peak_rss_mb'] > 0
  # The same step time and FLOPs give the MFU by its definition.
  ours = models['const_cl']
  np.testing.assert_allclose(
      ours['mfu'], 3 * ours['forward_gflops'] / ours['median_step_seconds']
      / loaded['matmul']['gflops'], rtol=1e-9)
  same = models['matmul_same_rounds']
  np.testing.assert_allclose(
      loaded['mfu'], 3 * ours['forward_gflops'] / ours['step_seconds'][0]
      / same['gflops'], rtol=1e-6)
  np.testing.assert_allclose(
      loaded['step_ratio_vs_bare'],
      ours['step_seconds'][0] / models['bare_r3d50']['step_seconds'][0],
      rtol=1e-9)
  # ConST-CL = bare backbone + second res5 + heads: more FLOPs, not fewer.
  assert models['flops_ratio_vs_bare'] > 1.0
  pipe = loaded['pipeline']
  for name in ('const_cl', 'video_ssl', 'decode_only'):
    assert pipe[f'{name}_videos_per_second'] > 0
  assert [r['batch'] for r in loaded['scaling']] == [settings.batch_size]
  forms = loaded['forms']
  assert list(forms) == ['all_forms', 'plain_conv3d']
  for name, row in forms.items():
    assert len(row['step_seconds']) == 1
    np.testing.assert_allclose(
        row['step_ratio_vs_all_forms'],
        row['step_seconds'][0] / forms['all_forms']['step_seconds'][0],
        rtol=1e-9)
  assert forms['all_forms']['step_ratio_vs_all_forms'] == 1.0


def test_form_variants_build_the_forms_they_name():
  """The `forms` section's variants differ in the conv classes they build."""
  settings = benchmark.quick_settings()
  config = benchmark.const_cl_config(settings.batch_size, settings.num_frames,
                                     settings.image_size, True)

  def conv_classes():
    model = task_factory.get_task(config.task).build_model()
    return {type(m) for m in model.submodules
            if isinstance(m, tf_keras.layers.Conv3D)}

  classes = {}
  for name, replaced in benchmark.FORM_VARIANTS:
    with blocks_3d.plain_conv3d_for(*replaced):
      classes[name] = conv_classes()
  forms = {blocks_3d.StackedFramesConv3D, blocks_3d.MatmulConv3D,
           blocks_3d.MatmulGradConv3D}
  assert classes['all_forms'] == forms
  assert classes['without_matmul_grad'] == (
      forms - {blocks_3d.MatmulGradConv3D} | {tf_keras.layers.Conv3D})
  assert classes['plain_conv3d'] == {tf_keras.layers.Conv3D}


def test_onednn_field_follows_the_environment_switch():
  """`onednn` reports what TF_ENABLE_ONEDNN_OPTS asked for, read in a fresh
  process (the switch acts when TensorFlow is imported)."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  code = ('import sys; sys.path.insert(0, %r); from tasks import benchmark; '
          'print(benchmark.onednn_enabled())' % repo)
  seen = {}
  for value in ('0', '1'):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value,
               TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    seen[value] = out.stdout.strip().splitlines()[-1]
  assert seen == {'0': 'False', '1': 'True'}


def test_tracker_section_times_both_ways_on_equal_boxes():
  settings = benchmark.quick_settings()
  assert (settings.tracker_sequences, settings.tracker_rounds) == (2, 1)
  result = benchmark.run_benchmark(settings, sections=('tracker',))
  tracker = result['tracker']
  assert tracker['sequences'] == 2
  # Two toy OTB sequences of the registered toy world (32 frames each).
  assert tracker['frames'] == 64
  per, shared = (tracker['seconds'][k] for k in ('per_sequence', 'shared'))
  assert len(per) == len(shared) == 1
  assert tracker['speedup_shared_vs_per_sequence'] == per[0] / shared[0]
  # The second sequence, tracked by the reused tracker, got the boxes a
  # fresh tracker gives it.
  assert tracker['boxes_equal'] is True


def test_tool_refuses_empty_sections_and_non_positive_timed_steps(tmp_path):
  """`--sections=` ran nothing and exited 0 with a JSON of no numbers;
  `--timed_steps=0` was silently the default (5) and a negative count went
  into the timing loop."""
  out = tmp_path / 'b.json'
  tool = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'tools', 'benchmark.py')
  for flag, message in (
      ('--sections=', "--sections must be among ['forms', 'models', "
       "'pipeline', 'scaling', 'tracker'], got []"),
      ('--timed_steps=0', 'flag --timed_steps=0: 0 is not a positive '
       'integer'),
      ('--timed_steps=-2', 'flag --timed_steps=-2: -2 is not a positive '
       'integer')):
    proc = subprocess.run(
        [sys.executable, tool, f'--output_json={out}', flag],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, (flag, proc.stderr[-2000:])
    assert message in proc.stderr, (flag, proc.stderr[-2000:])
    assert not out.exists()
