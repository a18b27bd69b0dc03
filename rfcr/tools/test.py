"""``rfcr-test``: mmdet's ``tools/test.py`` with rfcr imported, safe and strict checkpoint
loading (:func:`rfcr.utils.config.load_weights`: a checkpoint of another model, or holding
NaN or inf, is refused in one line), ``--deploy`` (the model folded for inference), and
exported models: give a ``.onnx`` or OpenVINO ``.xml`` file (``rfcr-export``,
``rfcr-quantize``) instead of a checkpoint and it runs in ONNX Runtime or OpenVINO, its raw
outputs decoded by the config's head and scored by the config's evaluator
(:class:`rfcr.deploy.ExportedDetector`).

    rfcr-test CONFIG CHECKPOINT [--deploy]
    rfcr-test CONFIG MODEL.onnx|MODEL.xml [--runtime onnxruntime|openvino] [--threads N]
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from rfcr.deploy.runtime import FILE_RUNTIMES, FILE_SUFFIXES
from rfcr.utils.cli import cli
from rfcr.utils.config import load_weights
from rfcr.utils.model import unwrap_model

from .train import add_common_args, build_runner, load_config

EXPORTED_SUFFIXES = FILE_SUFFIXES  # .onnx, .xml


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` like mmdet's ``tools/test.py``, test, and return the metrics."""
    parser = argparse.ArgumentParser(
        prog='rfcr-test', description='Test a detector (mmdet tools/test.py + rfcr)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or an exported model (.onnx, '
                        'OpenVINO .xml) to evaluate in its runtime')
    parser.add_argument('--out', help='dump predictions to this pickle file')
    parser.add_argument(
        '--deploy', action='store_true',
        help='fold the model for inference after loading the checkpoint (BN into convs, '
        "RFCR's fusion weights, YOLO-ReT's linear maps; rfcr.deploy.switch_to_deploy), as "
        "mmdet's --fuse-conv-bn does")
    parser.add_argument('--runtime', choices=FILE_RUNTIMES,
                        help='with an exported model: the runtime that runs it (default: '
                        'the one that writes such files: onnxruntime for .onnx, openvino for '
                        '.xml)')
    parser.add_argument('--threads', type=int,
                        help="with an exported model: the runtime's threads (default: its own)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    exported = args.checkpoint.lower().endswith(EXPORTED_SUFFIXES)
    if not exported and (args.runtime or args.threads is not None):
        parser.error('--runtime and --threads run an exported model '
                     f'({"/".join(EXPORTED_SUFFIXES)}), got the checkpoint {args.checkpoint!r}')
    if exported and args.deploy:
        parser.error('--deploy folds a PyTorch checkpoint; export with rfcr-export --deploy '
                     'instead')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out!r}')
    if args.threads is not None and args.threads <= 0:
        parser.error(f'--threads must be a positive int, got {args.threads}')
    if exported and not os.path.isfile(args.checkpoint):
        parser.error(f'exported model {args.checkpoint!r}: no such file')
    cfg = load_config(args, 'test')
    if exported:
        cfg.model = dict(type='ExportedDetector', detector=cfg.model, path=args.checkpoint,
                         runtime=args.runtime, threads=args.threads)
    cfg.load_from = None  # loaded below, strictly, before the runner reads the dataset
    # One pass over the test set: persistent workers would only outlive this call (and,
    # forked from a process that goes on running OpenVINO and ONNX Runtime, have crashed it
    # at exit).
    cfg.test_dataloader.persistent_workers = False
    if args.deploy:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='SwitchToDeployHook')]

    runner = build_runner(cfg)
    if not exported:
        load_weights(unwrap_model(runner.model), args.checkpoint, f'the model of {args.config}')
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner.test()


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-test', run, argv)  # the metrics are logged; main returns nothing (exit status 0)


if __name__ == '__main__':
    main()
