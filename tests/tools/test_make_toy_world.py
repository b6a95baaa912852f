"""tools/make_toy_world.py: --num_frames 0 is an error, unset is the default."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _run(output_dir, *extra):
  cmd = [sys.executable, os.path.join(REPO, 'tools', 'make_toy_world.py'),
         f'--output_dir={output_dir}', '--kind=tracking_otb', '--num=1',
         '--size=16', *extra]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        cwd=REPO)


def _frames(output_dir):
  return len(os.listdir(os.path.join(output_dir, 'Toy001', 'img')))


def test_zero_num_frames_is_an_error_not_the_default(tmp_path):
  # It used to be read as "not given" and write 32-frame sequences.
  out = str(tmp_path / 'zero')
  proc = _run(out, '--num_frames=0')
  assert proc.returncode == 1
  assert 'ToyWorldSpec: num_frames (0) < 2' in proc.stderr
  assert not os.path.exists(out)


def test_unset_num_frames_is_32_and_a_given_one_is_used(tmp_path):
  assert _run(str(tmp_path / 'unset')).returncode == 0
  assert _frames(str(tmp_path / 'unset')) == 32
  assert _run(str(tmp_path / 'five'), '--num_frames=5').returncode == 0
  assert _frames(str(tmp_path / 'five')) == 5
