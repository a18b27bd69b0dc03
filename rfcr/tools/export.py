"""``rfcr-export``: a detector's raw head outputs (or its neck alone) to the file of a
runtime (:data:`rfcr.deploy.runtime.EXPORT_FORMATS`: ONNX, an OpenVINO IR, ncnn, MNN, a
TensorRT engine where a CUDA GPU is present), optionally folded for inference and checked
against PyTorch with the runtime that runs it.

    rfcr-export CONFIG OUT [--format onnx|openvino|ncnn|mnn|tensorrt] [--checkpoint CKPT]
                [--shape H W] [--batch N] [--dynamic] [--deploy] [--verify] [--neck [I]]
                [--opset 17] [--end2end]

The graph's input is the preprocessed image batch (after mmdet's ``DetDataPreprocessor``:
BGR -> RGB, normalized, padded), its outputs the head's raw maps (no decoding, no NMS).
With ``--neck``, the inputs are the feature maps the neck receives. With ``--end2end``, the
whole detector (:mod:`rfcr.deploy.end2end`): uint8 images in, preprocessing, decoding and
NMS inside, ``num_dets, boxes, scores, labels`` out, the metadata ``rfcr-predict`` reads
(ONNX, OpenVINO, MNN, LiteRT; ncnn and TensorRT refuse, saying why).
"""
from __future__ import annotations

import argparse
import copy
import os
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from rfcr.deploy.runtime import EXPORT_FORMATS, verify_exported
from rfcr.utils.cli import CfgOptions, add_debug_arg, cli

TOLERANCE = 1e-3  # largest accepted |runtime - PyTorch| / max |PyTorch|


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='rfcr-export',
        description='Export a detector (raw head outputs) or its neck to ONNX or OpenVINO')
    parser.add_argument('config', help='model config file')
    parser.add_argument('out', help='the file to write: ' + ', '.join(
        f'{rt.suffixes[0]} for {rt.label}' for rt in EXPORT_FORMATS.values()))
    parser.add_argument('--format', choices=EXPORT_FORMATS, default='onnx',
                        help='the runtime to export for (default: onnx): ' + '; '.join(
                            f'{name}: {rt.how}' for name, rt in EXPORT_FORMATS.items()))
    parser.add_argument('--checkpoint', help='weights (state dict or mmengine checkpoint), '
                        'loaded strictly, NaN and inf refused; random weights without it')
    parser.add_argument('--shape', type=int, nargs=2, default=(320, 320), metavar=('H', 'W'),
                        help='input height and width (default: 320 320)')
    parser.add_argument('--batch', type=int, default=1, help='batch size (default: 1)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--deploy', action='store_true',
                        help='fold BN and RFCR fusion weights first (rfcr.deploy)')
    parser.add_argument('--verify', action='store_true',
                        help='compare the runtime with PyTorch on random inputs (several '
                        f'sizes with --dynamic); fail above {TOLERANCE:g} x max |output|')
    parser.add_argument('--neck', nargs='?', const='all', metavar='I',
                        help="export the config's neck alone, or module I of a list neck "
                        '(0: RFCR in the YOLO-ReT configs); its inputs are the feature maps '
                        'it receives')
    parser.add_argument('--end2end', action='store_true',
                        help='the whole detector (onnx, openvino, mnn, litert): uint8 images '
                        'in, the data preprocessing, decoding, thresholds and NMS in the graph, '
                        'outputs num_dets, boxes, scores, labels; the metadata rfcr-predict '
                        'reads (in the ONNX file, else in OUT.json beside it, e.g. m.mnn.json)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 17)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                        help='override settings of the config, key=value pairs')
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.batch <= 0:
        parser.error(f'--batch must be positive, got {args.batch}')
    if min(args.shape) < 32:
        parser.error(f'--shape must be at least 32 32, got {" ".join(map(str, args.shape))}')
    if args.opset < 17:
        parser.error(f'--opset must be >= 17, got {args.opset}')
    if args.neck not in (None, 'all') and not args.neck.isdigit():
        parser.error(f'--neck takes no value or a module index, got {args.neck!r}')
    if args.end2end and args.neck:
        parser.error(f'--end2end exports the whole detector, got --neck {args.neck}')
    suffix = EXPORT_FORMATS[args.format].suffixes[0]
    if not args.out.endswith(suffix):
        parser.error(f'--format {args.format} writes a {suffix} file, got {args.out!r}')
    return args


def verify_shapes(batch: int, height: int, width: int, dynamic: bool
                  ) -> list[tuple[int, int, int]]:
    """The (batch, height, width) image sizes ``--verify`` runs: the export shape, and with
    ``dynamic`` two more, of other batch sizes, parities and aspect ratios."""
    shapes = [(batch, height, width)]
    if dynamic:
        shapes += [(batch + 1, height + 33, max(width - 31, 33)),
                   (1, max(height - 15, 33), width + 17)]
    return shapes


class _Part:
    """What is exported of a detector: all of it, its neck, or module ``I`` of its list
    neck; and the inputs that part receives for an image batch."""

    def __init__(self, model: nn.Module, neck: Optional[str], config: str) -> None:
        self.neck = neck
        if neck is None:
            return
        necks = getattr(model, 'neck', None)
        if necks is None:
            raise SystemExit(f'rfcr-export: --neck, but {config} has no neck')
        if neck != 'all' and not (isinstance(necks, nn.Sequential)
                                  and int(neck) < len(necks)):
            count = len(necks) if isinstance(necks, nn.Sequential) else 'a single'
            raise SystemExit(f'rfcr-export: --neck {neck}, but {config} has {count} neck '
                             'module(s)')

    def module(self, model: nn.Module, deploy: bool = False) -> nn.Module:
        """The part to export; with ``deploy``, a folded copy of it. A part is folded on
        its own: folding the whole detector would compose its head into its neck."""
        from rfcr.deploy import switch_to_deploy
        from rfcr.deploy.export import detector_wrapper, neck_wrapper
        part = (model if self.neck is None else model.neck if self.neck == 'all'
                else model.neck[int(self.neck)])
        if deploy:
            part = switch_to_deploy(copy.deepcopy(part))
        return detector_wrapper(part) if self.neck is None else neck_wrapper(part)

    def inputs(self, model: nn.Module, images: Tensor) -> tuple[Tensor, ...]:
        if self.neck is None:
            return (images, )
        with torch.no_grad():
            feats = model.backbone(images)
            for m in (list(model.neck)[:int(self.neck)] if self.neck != 'all' else ()):
                feats = m(feats)
        return tuple(feats)

    def __str__(self) -> str:
        return ('detector head outputs' if self.neck is None
                else 'neck' if self.neck == 'all' else f'neck module {self.neck}')


def _end2end(args: argparse.Namespace, model: nn.Module) -> dict:
    """``--end2end``: the whole detector to the format's file (:mod:`rfcr.deploy.end2end`);
    ``--verify`` compares its runtime with PyTorch's ``End2End`` of the model as loaded."""
    from rfcr.deploy import switch_to_deploy
    from rfcr.deploy.end2end import (OUTPUT_NAMES, End2End, end2end_metadata, export_end2end,
                                     metadata_path, verify_end2end)
    from rfcr.utils.config import load_config

    runtime = EXPORT_FORMATS[args.format]
    module = End2End(switch_to_deploy(copy.deepcopy(model)) if args.deploy else model)
    metadata = end2end_metadata(load_config(args.config, args.cfg_options), module, args.shape)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    try:
        export_end2end(module, args.out, args.shape, args.batch, args.dynamic, metadata,
                       args.opset, runtime.name)
    except ValueError as e:  # what the format cannot run or hold (ncnn: NMS; LiteRT: dynamic)
        raise SystemExit(f'rfcr-export: --end2end: {e}') from None
    print(f'rfcr-export: wrote {args.out} ({runtime.label}, opset {args.opset}, end to end, '
          f'{"dynamic" if args.dynamic else "static"} shapes, '
          f'{"deploy-folded" if args.deploy else "unfolded"})')
    if args.format != 'onnx':
        print(f'  metadata: {metadata_path(args.out)}')
    print(f'  input:   images {args.batch}x3x{args.shape[0]}x{args.shape[1]} uint8 '
          f'{metadata["channel_order"].upper()}, letterbox {metadata["letterbox"]}')
    print(f'  outputs: {", ".join(OUTPUT_NAMES)} (max_per_img {metadata["max_per_img"]})')
    summary = dict(path=args.out, inputs=['images'], outputs=list(OUTPUT_NAMES),
                   metadata=metadata)
    if not args.verify:
        return summary
    batches = [torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8)
               for n, h, w in verify_shapes(args.batch, *args.shape, args.dynamic)]
    checks = verify_end2end(args.out, End2End(model), batches, runtime.name)
    print(f'  verify ({runtime.label} vs PyTorch, random images):')
    failed = False
    for c in checks:
        ok = c.same_num_dets and c.same_labels and c.max_box_diff <= TOLERANCE * c.max_box
        failed |= not ok
        same = {True: 'same', False: 'DIFFERENT'}
        print(f'    {"x".join(map(str, c.shape))}: num_dets {same[c.same_num_dets]}, labels '
              f'{same[c.same_labels]}, max box difference {c.max_box_diff:.2e} (boxes up to '
              f'{c.max_box:.3g})')
    summary['verify'] = checks
    if failed:
        raise SystemExit(f'rfcr-export: end-to-end verification failed (expected the same '
                         f'num_dets and labels, boxes within {TOLERANCE:g} x max |box|)')
    print('  verify: OK')
    return summary


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """Run ``rfcr-export`` and return what it did: ``path``, ``inputs`` and ``outputs``
    (names), ``op_counts`` and, with ``--verify``, ``verify``: the
    :class:`~rfcr.deploy.export.VerifyResult` per input shape, per PyTorch reference
    (``'PyTorch'``: the model as loaded; ``'PyTorch deploy'``: folded, with ``--deploy``).

    Raises:
        SystemExit: with a message when verification fails.
    """
    args = _parse_args(argv)
    if not EXPORT_FORMATS[args.format].available():
        raise SystemExit(f'rfcr-export: --format {args.format} needs '
                         f'{EXPORT_FORMATS[args.format].install}')
    from rfcr.deploy.export import odd_pyramid_size
    from rfcr.utils.config import build_model

    model = build_model(args.config, args.checkpoint, args.cfg_options)
    if args.checkpoint is None:
        print('rfcr-export: no --checkpoint, exporting random weights (their outputs carry '
              'little signal: verify a trained checkpoint)')
    if args.end2end:
        return _end2end(args, model)
    part = _Part(model, args.neck, args.config)
    original = exported = part.module(model)
    if args.deploy:
        exported = part.module(model, deploy=True)

    height, width = args.shape
    if args.dynamic:  # trace where every shape-dependent branch takes its general path
        height, width = odd_pyramid_size(height), odd_pyramid_size(width)
    example = part.inputs(model, torch.randn(args.batch, 3, height, width))
    input_names = [f'feat{i}' for i in range(len(example))] if args.neck else ['input']
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    runtime = EXPORT_FORMATS[args.format]
    try:
        input_names, output_names = runtime.export(exported, example, args.out,
                                                   input_names=input_names,
                                                   dynamic=args.dynamic, opset=args.opset)
    except ValueError as e:  # what the format cannot hold (e.g. ncnn: dynamic shapes)
        raise SystemExit(f'rfcr-export: {e}') from None
    op_counts = runtime.op_counts(args.out)
    print(f'rfcr-export: wrote {args.out} ({runtime.label}, opset {args.opset}, '
          f'{"dynamic" if args.dynamic else "static"} shapes, '
          f'{"deploy-folded" if args.deploy else "unfolded"}, {part})')
    print(f'  inputs:  {", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(input_names, example))}'
          + (' (traced; batch, height and width are dynamic)' if args.dynamic else ''))
    print(f'  outputs: {", ".join(output_names)}')
    print(f'  nodes:   {sum(op_counts.values())} ('
          + ', '.join(f'{op} {n}' for op, n in op_counts.most_common()) + ')')
    summary = dict(path=args.out, inputs=input_names, outputs=output_names,
                   op_counts=op_counts)
    if not args.verify:
        return summary

    input_sets = [part.inputs(model, torch.randn(n, 3, h, w))
                  for n, h, w in verify_shapes(args.batch, *args.shape, args.dynamic)]
    references = {'PyTorch': original}
    if args.deploy:
        references['PyTorch deploy'] = exported
    results = {name: verify_exported(args.out, module, input_sets, runtime.name)
               for name, module in references.items()}
    print(f'  verify (max |{runtime.label} - reference|, random inputs):')
    worst = 0.0  # the largest difference relative to the largest output, over every check
    for i, inputs in enumerate(input_sets):
        shapes = ' '.join('x'.join(map(str, x.shape)) for x in inputs)
        cells = [f'vs {name} {res[i].max_abs_diff:.2e}' for name, res in results.items()]
        scale = results['PyTorch'][i].max_abs_ref
        print(f'    {shapes}: {", ".join(cells)} (outputs up to {scale:.3g})')
        worst = max([worst] + [res[i].max_abs_diff / max(res[i].max_abs_ref, 1e-12)
                               for res in results.values()])
    summary['verify'] = results
    if not worst <= TOLERANCE:
        raise SystemExit(f'rfcr-export: verification failed, max abs difference {worst:.3g} x '
                         f'max |output| > {TOLERANCE:g} x max |output|')
    print(f'  verify: OK (max abs difference {worst:.2e} x max |output| <= {TOLERANCE:g})')
    return summary


def main(argv: Optional[Sequence[str]] = None) -> None:
    cli('rfcr-export', run, argv)


if __name__ == '__main__':
    main()
