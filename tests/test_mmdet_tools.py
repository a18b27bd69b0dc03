"""mmdet's own scripts on rfcr's configs: ``tools/train.py`` then ``tools/test.py`` (the
checkpoint mmengine wrote loads under torch's default ``weights_only=True``, because the
config's ``custom_imports`` imports rfcr) and ``tools/analysis_tools/get_flops.py``; and
the process-wide allow-list that ``import rfcr`` registers: exactly mmengine's objects."""
import argparse
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer

import mmdet
from rfcr.analysis.flops import count_macs
from rfcr.datasets.synthetic import generate
from rfcr.utils.checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from rfcr.utils.config import build_model

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py'
TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'
# mmengine's FlopAnalyzer (get_flops.py) counts these ops; rfcr's count all that run.
MMENGINE_COUNTED = ('conv', 'batch_norm', 'upsample_nearest2d', 'adaptive_avg_pool2d')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp('synthetic'), num_train=4, num_val=2, size=160,
                    seed=1)


def _options(data: Path) -> list:
    ann = data / 'annotations' / 'instances_val.json'
    options = [f'{split}_dataloader.{key}' for split in ('train', 'val', 'test')
               for key in (f'dataset.data_root={data}/', 'num_workers=0',
                           'persistent_workers=False')]
    return options + [
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',  # no validation
        'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=1',
        'param_scheduler.0.end=2',
        # One epoch from scratch scores below the demo's thresholds: keep every box, so
        # that CocoMetric has predictions to score.
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.conf_thr=0.0']


def _run(script: str, *args, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(TOOLS / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{script} failed:\n{out[-4000:]}'
    return out


@pytest.mark.slow
def test_mmdet_train_then_test(tiny_data, tmp_path):
    _run('train.py', DEMO, '--work-dir', 'work', '--cfg-options', *_options(tiny_data),
         cwd=tmp_path)
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    assert ckpt.is_file()
    # What mmengine wrote needs the allow-list: without rfcr, torch's default refuses it.
    # Importing rfcr adds mmengine_checkpoint_globals() and nothing else but torch's own
    # (torch registers its DTensor classes when torch.distributed.tensor is imported), and
    # then it loads.
    code = ('import sys, torch\n'
            'try:\n'
            '    torch.load(sys.argv[1])\n'
            '    print("plain: loaded")\n'
            'except Exception as e:\n'
            '    print("plain: refused", "HistoryBuffer" in str(e))\n'
            'before = set(torch.serialization.get_safe_globals())\n'
            'import rfcr\n'
            'from rfcr.utils.checkpoint import mmengine_checkpoint_globals\n'
            'added = set(torch.serialization.get_safe_globals()) - before\n'
            'ours = set(mmengine_checkpoint_globals())\n'
            'others = {g.__module__ for g in added - ours\n'
            '          if not g.__module__.startswith("torch.")}\n'
            'print("added the list", ours <= added, sorted(others))\n'
            'print("epoch", torch.load(sys.argv[1])["meta"]["epoch"])\n')
    proc = subprocess.run([sys.executable, '-c', code, str(ckpt)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ['plain: refused True', 'added the list True []', 'epoch 1']

    out = _run('test.py', DEMO, ckpt, '--work-dir', 'test', '--cfg-options',
               *_options(tiny_data), cwd=tmp_path)
    metrics = dict(re.findall(r'(coco/bbox_mAP\w*): (-?[\d.]+)', out))
    assert 'Epoch(test)' in out
    assert set(metrics) == {'coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75',
                            'coco/bbox_mAP_s', 'coco/bbox_mAP_m', 'coco/bbox_mAP_l'}
    assert 0.0 <= float(metrics['coco/bbox_mAP_50']) <= 1.0


@pytest.mark.slow
def test_mmdet_get_flops_against_rfcr_macs(tiny_data, tmp_path):
    out = _run('analysis_tools/get_flops.py', DEMO, '--num-images', '1', '--cfg-options',
               *_options(tiny_data), cwd=tmp_path)
    # 160x160 images resized to 320x320 by the config's test pipeline.
    assert 'Input shape: (320, 320)' in out, out[-2000:]
    flops = float(re.search(r'Flops: ([\d.]+)G', out).group(1))
    macs = count_macs(build_model(DEMO), torch.rand(1, 3, 320, 320))
    assert not macs.unsupported
    counted = sum(macs.by_operator[op] for op in MMENGINE_COUNTED)
    # mmengine's "flops" are multiply-accumulates of convs, BN, resizes and global pools:
    # rfcr's count of those ops, to get_flops' three decimals.
    assert flops == pytest.approx(counted / 1e9, abs=5e-4)
    # rfcr counts what mmengine skips too: ReLU6/SiLU/sigmoid, RFCR's weighted sum and the
    # SE scaling (mul, add), max-pools.
    skipped = {op: n for op, n in macs.by_operator.items() if op not in MMENGINE_COUNTED}
    assert {'hardtanh', 'silu', 'sigmoid', 'mul', 'add', 'max_pool2d'} <= set(skipped)
    assert macs.total == counted + sum(skipped.values()) > flops * 1e9 + 1e7


class _Getattr:
    """Pickles as ``builtins.getattr(HistoryBuffer, name)``, as mmengine's buffers do."""

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


def test_import_rfcr_allows_mmengine_objects_only(tmp_path):
    # Registered once: calling again adds nothing.
    before = set(torch.serialization.get_safe_globals())
    assert set(mmengine_checkpoint_globals()) <= before
    allow_mmengine_checkpoints()
    assert set(torch.serialization.get_safe_globals()) == before

    buffer = HistoryBuffer()
    buffer.update(0.5)
    good = tmp_path / 'good.pth'
    torch.save({'meta': {'buffer': buffer, 'mean': _Getattr('mean')}}, good)
    loaded = torch.load(good, weights_only=True)
    assert loaded['meta']['buffer'].current() == 0.5
    assert loaded['meta']['mean'] == HistoryBuffer.mean

    # The check stays on: another object, or getattr of anything but a statistic, fails.
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': argparse.Namespace(cmd='rm -rf /')}, evil)
    with pytest.raises(pickle.UnpicklingError, match=r'argparse\.Namespace'):
        torch.load(evil)
    sneaky = tmp_path / 'sneaky.pth'
    torch.save({'meta': _Getattr('update')}, sneaky)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing getattr\(type, 'update'\)"):
        torch.load(sneaky)
