"""benchmarks/gpu.sh and gpu.py without a GPU: the script parses, --dry-run builds the
detectors group and writes tables in which every cell says "not measured" (no estimates),
and the GPU run refuses to start without CUDA."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPU_PY = ROOT / 'benchmarks' / 'gpu.py'
GPU_SH = ROOT / 'benchmarks' / 'gpu.sh'


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_shell_script_parses():
    result = run('bash', '-n', str(GPU_SH))
    assert result.returncode == 0, result.stderr


def test_help_names_the_dry_run():
    result = run(sys.executable, str(GPU_PY), '--help')
    assert result.returncode == 0, result.stderr
    assert '--dry-run' in result.stdout and '--budget' in result.stdout


def test_dry_run_measures_nothing(tmp_path):
    result = run(sys.executable, str(GPU_PY), '--dry-run', '--models', 'YOLO-ReT-M0.75',
                 '--out-dir', str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / 'gpu.json').read_text())
    cells = report['cells']
    # the baseline comes along for the ratios; 2 models x 2 forms x 6 runtimes
    assert {c['model'] for c in cells} == {'yolov3_mobilenetv2_320', 'YOLO-ReT-M0.75'}
    assert len(cells) == 24
    for cell in cells:
        assert cell['reason'], cell
        assert (cell['ms'], cell['ratio'], cell['rel_diff']) == (None, None, None), cell
    assert report['status'] == 'dry run'
    md = (tmp_path / 'gpu.md').read_text()
    rows = [line.split(' | ')[2:] for line in md.splitlines()
            if line.startswith(('| yolov3_mobilenetv2_320 |', '| YOLO-ReT-M0.75 |'))]
    assert len(rows) == 3 * 4  # latency, ratio and check tables, 4 rows each
    for row in rows:
        assert all(c.strip(' |').startswith('not measured') for c in row), row
    assert '--dry-run: no GPU used, nothing timed' in md


@pytest.mark.skipif(torch.cuda.is_available(), reason='with a GPU the script would run')
def test_gpu_run_refuses_without_cuda(tmp_path):
    result = run('bash', str(GPU_SH), '--models', 'YOLO-ReT-M0.75',
                 env={'PYTHON': sys.executable, 'OUT': str(tmp_path)})
    assert result.returncode != 0
    assert 'needs a CUDA GPU' in result.stdout + result.stderr
    assert not (tmp_path / 'gpu.md').exists()
    assert 'needs a CUDA GPU' in (tmp_path / 'gpu.log').read_text()
