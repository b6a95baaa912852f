"""tools/otb_eval.py as a subprocess: writes JSON and PNG."""
import json
import os
import subprocess
import sys

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_otb_eval_tool(tmp_path):
  data_dir = tmp_path / 'otb'
  seq = data_dir / 'Car'
  (seq / 'img').mkdir(parents=True)
  for i in range(1, 5):
    (seq / 'img' / f'{i:04d}.jpg').write_bytes(b'')
  (seq / 'groundtruth_rect.txt').write_text('10,10,20,20\n' * 4)
  results = tmp_path / 'results'
  results.mkdir()
  (results / 'Car.txt').write_text('20,10,20,20\n' * 4)
  out_json, out_png = tmp_path / 'out' / 'm.json', tmp_path / 'out' / 'p.png'
  proc = subprocess.run(
      [sys.executable, 'tools/otb_eval.py', f'--dataset_dir={data_dir}',
       f'--results_dir={results}', f'--output_json={out_json}',
       f'--plot={out_png}'],
      cwd=_REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert 'success AUC: 0.3333' in proc.stdout
  result = json.loads(out_json.read_text())
  assert result['precision'] == 1.0
  assert result['success'] == pytest.approx(7 / 21)
  assert result['per_sequence']['Car']['success'] == pytest.approx(7 / 21)
  assert out_png.read_bytes()[:4] == b'\x89PNG'
