"""Benchmarks the ConST-CL train step and input pipeline against baselines.

In one process, on identical inputs: our ConST-CL train step, CVRL
(Model Garden video_ssl), a bare ResNet3D-50 and the fp32 matmul peak; then
the input pipelines (ours vs video_ssl's) on the same JPEG TFRecords; then how
our step scales with batch and frames. See tasks/benchmark.py for what is
measured and how, and the README section "Performance" for a run.

Usage (from the repo root):
  python tools/benchmark.py --output_json /tmp/bench.json          # ~15 min
  python tools/benchmark.py --output_json /tmp/bench.json --quick  # ~2 min
  python tools/benchmark.py --output_json /tmp/b.json --sections=models
  python tools/benchmark.py --output_json /tmp/f.json --sections=forms
  python tools/benchmark.py --output_json /tmp/t.json --sections=tracker
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from tasks import benchmark

FLAGS = flags.FLAGS
flags.DEFINE_string('output_json', None, 'Where to write the results (JSON).')
flags.DEFINE_bool('quick', False, 'Tiny backbone, small inputs, few steps.')
flags.DEFINE_list('sections', ['models', 'pipeline', 'scaling'],
                  'Which parts to run: models, pipeline, scaling, forms '
                  '(the conv forms vs plain Conv3D), tracker (toy OTB '
                  'tracking, one tracker vs one per sequence); the last two '
                  'are not in the default.')
flags.DEFINE_integer('timed_steps', None, 'Override the timed steps.',
                     lower_bound=1)
flags.mark_flag_as_required('output_json')


def main(argv):
  del argv
  allowed = {'models', 'pipeline', 'scaling', 'forms', 'tracker'}
  if not FLAGS.sections or not set(FLAGS.sections) <= allowed:
    raise app.UsageError(f'--sections must be among {sorted(allowed)}, got '
                         f'{FLAGS.sections}')
  settings = (benchmark.quick_settings() if FLAGS.quick
              else benchmark.full_settings())
  if FLAGS.timed_steps is not None:
    settings.timed_steps = FLAGS.timed_steps
  result = benchmark.run_benchmark(settings, sections=FLAGS.sections)
  benchmark.write_result(result, FLAGS.output_json)
  logging.info('wrote %s', FLAGS.output_json)
  print(json.dumps({k: result[k] for k in (
      'step_ratio_vs_bare', 'mfu', 'pipeline_speedup_vs_video_ssl',
      'loadavg_start', 'wall_seconds')}, indent=2))
  if 'tracker' in result:
    print(json.dumps({'tracker': result['tracker']}, indent=2))


if __name__ == '__main__':
  app.run(main)
