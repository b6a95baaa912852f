"""tools/model_stats.py as a command."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_non_pretraining_experiment_is_named():
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tools', 'model_stats.py'),
       '--experiment=const_cl_ava_toy', '--noflops'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: --experiment=const_cl_ava_toy is not a pretraining experiment '
      '(task config ActionLocalizationTask); this tool measures the ConST-CL '
      'and CVRL pretraining models')
