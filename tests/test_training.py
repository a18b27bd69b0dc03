"""Train, evaluate, save, resume and test the demo config through mmengine's real Runner."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rfcr.datasets.synthetic import generate
from rfcr.utils.checkpoint import mmengine_checkpoint_loading
from rfcr.tools import test as rfcr_test
from rfcr.tools import train as rfcr_train

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py'


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp('synthetic'), num_train=8, num_val=4, seed=1)


def _options(data: Path, epochs: int = 2, batch: int = 4) -> list:
    ann = data / 'annotations'
    return [
        f'train_dataloader.dataset.data_root={data}/', f'val_dataloader.dataset.data_root={data}/',
        f'test_dataloader.dataset.data_root={data}/',
        f'val_evaluator.ann_file={ann}/instances_val.json',
        f'test_evaluator.ann_file={ann}/instances_val.json',
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'train_dataloader.batch_size={batch}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=2',
        # A few iterations from scratch score below the demo's thresholds: keep every box
        # so that CocoMetric has predictions to score.
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.conf_thr=0.0',
    ]


def _runner(argv, extra_hooks=()):
    args = rfcr_train_parser().parse_args(argv)
    cfg = rfcr_train.load_config(args)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + list(extra_hooks)
    if args.resume:
        cfg.resume = True
        cfg.load_from = args.resume
    return rfcr_train.build_runner(cfg)


def rfcr_train_parser():
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--resume')
    rfcr_train.add_common_args(parser)
    return parser


def test_train_eval_save_resume_test(tiny_data, tmp_path):
    work = tmp_path / 'work'
    # Validation during training runs a folded copy of the weights (SwitchToDeployHook).
    runner = _runner([str(DEMO), '--work-dir', str(work), '--cfg-options', *_options(tiny_data)],
                     extra_hooks=[dict(type='SwitchToDeployHook')])
    with mmengine_checkpoint_loading():
        runner.train()
    assert runner.epoch == 2 and runner.iter == 4
    assert type(runner.model.neck).__name__ == 'Sequential'  # training model restored
    assert any(type(m).__name__ == 'RFCR' for m in runner.model.modules())
    assert (work / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_2.pth']  # max_keep_ckpts=1
    scalars = runner.message_hub.log_scalars
    assert 0.0 <= scalars['val/coco/bbox_mAP_50'].current() <= 1.0  # CocoMetric ran

    # torch's default weights_only=True loads mmengine's checkpoint (HistoryBuffer, numpy):
    # importing rfcr allowed exactly those objects (tests/test_mmdet_tools.py: without rfcr,
    # it is refused).
    ckpt = torch.load(work / 'epoch_2.pth')
    assert ckpt['meta']['epoch'] == 2

    # Resume from epoch 2 and train one more epoch: the loop continues, not restarts.
    resumed = _runner([str(DEMO), '--work-dir', str(tmp_path / 'resumed'),
                       '--resume', str(work / 'epoch_2.pth'),
                       '--cfg-options', *_options(tiny_data, epochs=3)])
    with mmengine_checkpoint_loading():
        resumed.train()
    assert resumed.epoch == 3 and resumed.iter == 6
    step = resumed.optim_wrapper.optimizer.state[
        next(p for p in resumed.model.parameters() if p.requires_grad)]['step']
    assert int(step) == 6  # Adam's state came back from the checkpoint

    # rfcr-test from the checkpoint: real CocoMetric numbers, the same unfolded, folded
    # (--deploy) and as the folded validation during training found them. (Up to 2e-3:
    # an untrained model's boxes are near-ties, which 1e-6 of float rounding in the raw
    # maps may swap in NMS.)
    results = rfcr_test.run([str(DEMO), str(work / 'epoch_2.pth'), '--work-dir',
                              str(tmp_path / 'test'), '--cfg-options', *_options(tiny_data)])
    assert 0.0 <= results['coco/bbox_mAP_50'] <= 1.0
    deployed = rfcr_test.run([str(DEMO), str(work / 'epoch_2.pth'), '--deploy', '--work-dir',
                              str(tmp_path / 'test-deploy'), '--cfg-options',
                              *_options(tiny_data)])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert deployed[key] == pytest.approx(results[key], abs=2e-3), key
        assert scalars[f'val/{key}'].current() == pytest.approx(results[key], abs=2e-3), key


def test_rfcr_test_leaves_no_worker_processes(tiny_data, tmp_path):
    # The demo config's test loader has 2 persistent workers; a test run is one pass, so
    # rfcr-test (also called in-process, e.g. by benchmarks/int8.py) must not leave them
    # behind. Run in a fresh interpreter, as benchmarks/int8.py is: forking loader
    # workers from this pytest process, which holds ONNX Runtime and OpenVINO state from
    # other tests, is not what is being tested.
    work = tmp_path / 'work'
    rfcr_train.main([str(DEMO), '--work-dir', str(work), '--cfg-options',
                     *_options(tiny_data, epochs=1)])
    argv = [str(DEMO), str(work / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test'),
            '--cfg-options', *_options(tiny_data), 'test_dataloader.num_workers=2',
            'test_dataloader.persistent_workers=True']
    code = ('import multiprocessing, sys\n'
            'from rfcr.tools import test\n'
            'metrics = test.run(sys.argv[1:])\n'
            'print("mAP50", metrics["coco/bbox_mAP_50"])\n'
            'print("children", len(multiprocessing.active_children()))\n')
    out = subprocess.run([sys.executable, '-c', code, *argv], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(' ', 1) for line in out.stdout.splitlines()
                 if line.startswith(('mAP50 ', 'children ')))
    assert 0.0 <= float(lines['mAP50']) <= 1.0
    assert lines['children'] == '0'


def test_checkpoint_with_foreign_objects_is_refused(tiny_data, tmp_path):
    import argparse
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'payload': argparse.Namespace(cmd='rm -rf /')}}, evil)
    with pytest.raises(ValueError, match=r'checkpoint refused.*argparse\.Namespace'):
        rfcr_test.run([str(DEMO), str(evil), '--work-dir', str(tmp_path / 'w'),
                        '--cfg-options', *_options(tiny_data)])


def test_wrong_in_channels_fails_at_build(tiny_data, tmp_path):
    options = _options(tiny_data) + ['model.neck.0.in_channels=(24,72,121)']
    with pytest.raises(ValueError, match=r'RFCR.*in_channels=\(24, 72, 121\).*backbone '
                                         r'TruncatedMobileNetV2 outputs out_channels='
                                         r'\(24, 24, 72, 120\)'):
        _runner([str(DEMO), '--work-dir', str(tmp_path), '--cfg-options', *options])
    options = _options(tiny_data) + ['model.bbox_head.in_channels=[33,33,32]']
    with pytest.raises(ValueError, match=r'channel check failed in bbox_head YOLOReTHead.*'
                                         r'input 2 has 33 channels, but in_channels\[2\]=32'):
        _runner([str(DEMO), '--work-dir', str(tmp_path), '--cfg-options', *options])


@pytest.mark.skipif(shutil.which('torchrun', path=os.path.dirname(sys.executable)) is None,
                    reason='torchrun not installed')
def test_torchrun_two_cpu_processes(tiny_data, tmp_path):
    """rfcr-train --launcher pytorch on CPU: gloo group, CPU-aware DDP, one checkpoint."""
    work = tmp_path / 'ddp'
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [torchrun, '--nproc_per_node=2', '--master_port=29517', '--max-restarts=0',
         '-m', 'rfcr.tools.train', str(DEMO), '--launcher', 'pytorch', '--work-dir', str(work),
         '--cfg-options', *_options(tiny_data, epochs=1, batch=2), 'train_cfg.val_interval=10'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # torchrun exits 0 only if every rank did.
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # world size 2
    assert log.count('CPUAwareDistributedDataParallel') >= 1
    # 8 images split over 2 ranks at batch 2: 2 iterations each (one process would run 4).
    assert 'Epoch(train) [1][2/2]' in log
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']  # rank 0 saves
