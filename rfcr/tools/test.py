"""``rfcr-test``: mmdet's ``tools/test.py`` with rfcr imported, safe checkpoint loading and
``--deploy`` (the model folded for inference)."""
from __future__ import annotations

import argparse
from typing import Sequence

from .train import add_common_args, build_runner, load_config


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` like mmdet's ``tools/test.py``, test, and return the metrics."""
    parser = argparse.ArgumentParser(description='Test a detector (mmdet tools/test.py + rfcr)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to this pickle file')
    parser.add_argument(
        '--deploy', action='store_true',
        help='fold the model for inference after loading the checkpoint (BN into convs, '
        "RFCR's fusion weights, YOLO-ReT's linear maps; rfcr.deploy.switch_to_deploy), as "
        "mmdet's --fuse-conv-bn does")
    add_common_args(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.deploy:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='SwitchToDeployHook')]

    from rfcr.engine.checkpoint import mmengine_checkpoint_loading
    runner = build_runner(cfg)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out!r}')
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    with mmengine_checkpoint_loading():
        return runner.test()


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)  # the metrics are logged; a console script's return value is its exit status


if __name__ == '__main__':
    main()
