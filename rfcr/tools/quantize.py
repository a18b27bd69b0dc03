"""``rfcr-quantize``: INT8 post-training quantization of a trained detector, calibrated on
images of its config's own dataset.

    rfcr-quantize CONFIG CHECKPOINT OUT.onnx|OUT.xml|OUT.mnn|OUT.tflite
                  [--runtime onnxruntime|openvino|mnn|litert] [--calib N]
                  [--split val|test|train] [--cfg-options ...]

The model is folded (``rfcr.deploy.switch_to_deploy``) and exported like ``rfcr-export
--dynamic --deploy`` (input: the preprocessed batch; outputs: the head's raw maps). The
first N images of the split (default: 100 of the validation split) go through the
config's pipeline and the model's data preprocessor, and calibrate:

- ``--runtime onnxruntime`` (default): ONNX Runtime static quantization, QDQ format,
  INT8 per-channel weights, UINT8 activations -> ``OUT.onnx``;
- ``--runtime openvino``: NNCF post-training quantization -> OpenVINO IR ``OUT.xml`` +
  ``OUT.bin``;
- ``--runtime mnn``: MNN's post-training quantization (mnnquant) -> ``OUT.mnn``, static
  at the first calibration image's size;
- ``--runtime litert``: LiteRT's full-integer INT8 -> ``OUT.tflite``, static at the
  calibration images' size (they must share one).

ncnn's Python package has no INT8 calibration tool, and TensorRT builds INT8 engines on a
GPU: neither quantizes here. Score the result with ``rfcr-test CONFIG OUT``. Bad input (a
checkpoint that does not fit the config or holds NaN or inf, an empty split, N <= 0, an OUT
its runtime does not write, a missing folder, a runtime that does not quantize or is not
installed) stops with one line, and nothing is written.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from rfcr.deploy.runtime import QUANTIZE_RUNTIMES, RUNTIMES
from rfcr.utils.cli import CfgOptions, add_debug_arg, cli, positive_int

SPLITS = ('val', 'test', 'train')
# The op types that mark quantization in each runtime's op counts (ONNX Runtime's QDQ,
# OpenVINO's FakeQuantize, LiteRT's input QUANTIZE); MNN's INT8 ops end with '(INT8)'.
QUANTIZE_OPS = ('QuantizeLinear', 'FakeQuantize', 'QUANTIZE')


def _quantize_runtime(name: str) -> str:
    if name in QUANTIZE_RUNTIMES:
        return name
    known = 'does not quantize here' if name in RUNTIMES else 'is not a runtime'
    raise argparse.ArgumentTypeError(f'{name!r} {known}; the runtimes that quantize: '
                                     f'{", ".join(QUANTIZE_RUNTIMES)}')


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='rfcr-quantize', description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained weights (mmengine checkpoint or state '
                        'dict), loaded strictly, NaN and inf refused')
    parser.add_argument('out', help='the quantized model: ' + ' or '.join(
        f'{RUNTIMES[rt].suffixes[0]} ({rt})' for rt in QUANTIZE_RUNTIMES))
    parser.add_argument('--runtime', type=_quantize_runtime, default='onnxruntime',
                        metavar='{' + ','.join(QUANTIZE_RUNTIMES) + '}',
                        help='the runtime to quantize for (default: onnxruntime)')
    parser.add_argument('--calib', type=positive_int, default=100, metavar='N',
                        help='calibration images, the first N of the split (default: 100)')
    parser.add_argument('--split', choices=SPLITS, default='val',
                        help="the config's dataloader the images come from (default: val)")
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                        help='override settings of the config, key=value pairs')
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    runtime = RUNTIMES[args.runtime]
    if not runtime.available():
        parser.error(f'--runtime {args.runtime} needs {runtime.install}')
    suffix = runtime.suffixes[0]
    if not args.out.endswith(suffix):
        parser.error(f'--runtime {args.runtime} writes a {suffix} file, got OUT={args.out!r}')
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        parser.error(f'OUT={args.out!r}: the folder {folder} does not exist')
    return args


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """Run ``rfcr-quantize``; return what :func:`rfcr.deploy.quantize.quantize_detector`
    returns, plus ``calib`` (the number of images) and ``input_shapes``."""
    args = _parse_args(argv)
    from rfcr.deploy.quantize import calibration_batches, quantize_detector
    from rfcr.utils.config import build_model, load_config

    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg, args.checkpoint)  # one line naming what does not fit
    try:
        batches = calibration_batches(cfg, model.data_preprocessor, args.calib, args.split)
    except ValueError as e:
        raise SystemExit(f'rfcr-quantize: --calib {args.calib} --split {args.split}: {e}'
                         ) from None
    shapes = sorted({tuple(b.shape) for b in batches})
    print(f'rfcr-quantize: calibrating on {len(batches)} images of the {args.split} split '
          f'(preprocessed shapes {", ".join("x".join(map(str, s)) for s in shapes)})')
    result = quantize_detector(model, batches, args.out, args.runtime)
    ops = result['op_counts']
    quantized = sum(n for op, n in ops.items() if op in QUANTIZE_OPS or op.endswith('(INT8)'))
    shape = 'x'.join('?' if d is None else str(d) for d in result['input_shape'])
    print(f'rfcr-quantize: wrote {args.out} (INT8 for {args.runtime}, {quantized} quantize '
          f'or INT8 nodes, {sum(ops.values())} nodes in all; input {shape})')
    print(f'  evaluate: rfcr-test {args.config} {args.out}')
    return dict(result, calib=len(batches), input_shapes=shapes)


def main(argv: Optional[Sequence[str]] = None) -> None:
    cli('rfcr-quantize', run, argv)


if __name__ == '__main__':
    main()
