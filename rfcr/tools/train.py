"""``rfcr-train``: mmdet's ``tools/train.py`` with rfcr imported, safe checkpoint loading and
distributed training that also works on CPU (gloo)."""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Sequence

from mmengine.config import Config

from rfcr.utils.cli import CfgOptions, add_debug_arg, cli

LAUNCHERS = ('none', 'pytorch', 'slurm')
# What the config must define for each command (mmengine's Runner builds them).
NEEDS = {'train': ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper'),
         'test': ('model', 'test_dataloader', 'test_cfg', 'test_evaluator')}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptions,
        help='override settings of the config, key=value pairs merged into it, e.g. '
        'model.backbone.init_cfg.checkpoint=/path/to/mobilenet_v2.pth')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_arg(parser)


def load_config(args: argparse.Namespace, command: str = 'train') -> Config:
    """The config with CLI overrides, a work dir and the launcher, as mmdet's tools do;
    ``ValueError`` unless it defines what ``command`` (:data:`NEEDS`) needs."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    from rfcr.utils.config import load_config as load
    cfg = load(args.config, args.cfg_options)
    missing = [k for k in NEEDS[command] if k not in cfg]
    if missing:
        raise ValueError(f'config {args.config} defines no {", ".join(missing)}, which '
                         f'rfcr-{command} needs')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def check_backbone_checkpoint(cfg: Config) -> None:
    """Raise ``FileNotFoundError`` (one line, naming the ``rfcr-convert`` command that makes
    it) when the backbone's ``Pretrained`` checkpoint is a local file that is not there."""
    from rfcr.models.keras_compat import is_missing_local_file, missing_checkpoint_error
    from rfcr.utils.checkpoint import is_pretrained_init
    backbone = cfg.model.get('backbone') or {}
    init_cfg = backbone.get('init_cfg')
    if is_pretrained_init(init_cfg) and is_missing_local_file(init_cfg['checkpoint']):
        raise missing_checkpoint_error(init_cfg['checkpoint'], backbone.get('widen_factor', 1.0))


def build_runner(cfg: Config):
    """Build mmengine's Runner; on CPU, distributed runs use gloo and a CPU-aware DDP."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from rfcr.engine.distributed import init_cpu_distributed
    from rfcr.models.utils import check_channels

    if init_cpu_distributed(cfg.launcher):
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
        wrapper['type'] = 'CPUAwareDistributedDataParallel'
        cfg.model_wrapper_cfg = wrapper
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_channels(runner.model)
    return runner


def run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog='rfcr-train', description='Train a detector (mmdet tools/train.py + rfcr)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (float16 AMP on CUDA, bfloat16 autocast on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale LR by batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or (no value) from the latest in the work dir')
    add_common_args(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        import torch
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:  # mmengine's AmpOptimWrapper needs CUDA; bfloat16 autocast works on CPU
            cfg.optim_wrapper.type = 'AutocastOptimWrapper'
            cfg.optim_wrapper.dtype = 'bfloat16'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    try:  # before the datasets are read: the backbone's weights must be there
        check_backbone_checkpoint(cfg)
    except FileNotFoundError as e:
        sys.exit(f'rfcr-train: {e}')

    from rfcr.utils.checkpoint import mmengine_checkpoint_loading
    runner = build_runner(cfg)
    with mmengine_checkpoint_loading():
        runner.train()


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-train', run, argv)


if __name__ == '__main__':
    main()
