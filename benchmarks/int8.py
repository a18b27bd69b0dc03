"""FP32 vs INT8 of a trained checkpoint (by default the demo's, after ``make demo``):
accuracy on the config's validation set and latency, per runtime. ``make int8`` runs it.

    python benchmarks/int8.py [--config CONFIG] [--checkpoint CKPT] [--calib 100]
                              [--work-dir work_dirs/int8] [--out-dir docs/bench/int8]

The runtimes: every one of the runtime table that quantizes
(:data:`rfcr.deploy.runtime.QUANTIZE_RUNTIMES`: ONNX Runtime, OpenVINO, MNN, LiteRT) and
is installed here. Steps, each one of rfcr's commands (run in this process), per runtime:

1. ``rfcr-quantize``, calibrated on the first ``--calib`` images of the validation split
   (ONNX Runtime QDQ, OpenVINO NNCF, MNN mnnquant, LiteRT full-integer);
2. ``rfcr-export --deploy --verify`` of the FP32 file with the INT8 file's input: dynamic
   where it is (ONNX Runtime, OpenVINO), else its static size (MNN and LiteRT fix it at
   the calibration images');

then ``rfcr-test`` on the checkpoint (PyTorch) and on every file: COCO mAP and mAP@0.5
from mmdet's CocoMetric on the whole validation split; and ``rfcr-bench --models``: the
files' latency on a ``--input-size`` image (the static files' size), FP32 and INT8
interleaved, INT8 / FP32 on the same runtime.

The latency claim, per runtime: INT8 at most 0.8x FP32, judged on the ratio's 95 %
interval (met / not met / undecided) only where the CPU has 8-bit dot-product
instructions (VNNI or AMX on x86, dot product on ARM), which INT8 kernels need to beat
FP32; elsewhere it says "not applicable here".

Writes ``int8.md`` (the tables) and ``int8.json`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rfcr.analysis.benchmark import Target
from rfcr.analysis.report import targets_table
from rfcr.deploy.runtime import QUANTIZE_RUNTIMES, RUNTIMES, default_runtime
from rfcr.tools import bench, export, quantize, test
from rfcr.utils.cpu import cpu_name, isa_summary

ROOT = Path(__file__).resolve().parents[1]
DEMO = 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py'
KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')
# /proc/cpuinfo flags of 8-bit dot-product instructions: x86 VNNI (AVX-512 or AVX), AMX,
# ARM's dot product (asimddp).
INT8_ISA = ('avx512_vnni', 'avx_vnni', 'amx_int8', 'asimddp')
INT8_WANTED = 0.8  # INT8 latency at most this times FP32's


def int8_targets(rows: list[dict], times: dict[str, list[float]]) -> list[dict]:
    """Per runtime, INT8 <= INT8_WANTED x FP32 (rfcr-bench --models' rows and timings),
    checked where the CPU has INT8_ISA."""
    by_runtime = {'int8': {r['name']: {r['runtime']: times[r['name']]} for r in rows}}
    out = []
    for r in rows:
        if r['name'] != r['ref'] and Path(r['path']).stem == 'int8':
            target = Target(f'INT8 <= {INT8_WANTED}x FP32 ({RUNTIMES[r["runtime"]].label})',
                            'int8', r['name'], r['ref'], '<=', INT8_WANTED,
                            runtime=r['runtime'], isa=INT8_ISA)
            out.append(target.check(by_runtime))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEMO)
    parser.add_argument('--checkpoint', default='work_dirs/demo/epoch_3.pth')
    parser.add_argument('--calib', type=int, default=100, help='calibration images')
    parser.add_argument('--threads', type=int, default=None,
                        help='latency threads (default: all cores)')
    parser.add_argument('--work-dir', default='work_dirs/int8')
    parser.add_argument('--out-dir', default='docs/bench/int8')
    parser.add_argument('--input-size', type=int, default=320, help='latency input side')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides of the config (passed to every command)')
    args = parser.parse_args()
    options = ['--cfg-options', *args.cfg_options] if args.cfg_options else []
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'{args.checkpoint} not found: train it first (make demo)')
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    runtimes = [name for name in QUANTIZE_RUNTIMES if RUNTIMES[name].available()]
    files = {}
    for name in runtimes:
        rt = RUNTIMES[name]
        fp32, int8 = (str(work / f'{kind}{rt.suffixes[0]}') for kind in ('fp32', 'int8'))
        shape = quantize.run([args.config, args.checkpoint, int8, '--runtime', name,
                              '--calib', str(args.calib)] + options)['input_shape']
        size = ['--dynamic'] if None in shape else ['--shape', str(shape[2]), str(shape[3])]
        export.run([args.config, fp32, '--checkpoint', args.checkpoint, *size, '--deploy',
                    '--verify', '--format', rt.format] + options)
        files.update({Path(fp32).name: fp32, Path(int8).name: int8})

    accuracy = {}
    for name, model in [('PyTorch (checkpoint)', args.checkpoint)] + list(files.items()):
        metrics = test.run([args.config, model, '--work-dir', str(work / 'test')] + options)
        accuracy[name] = {k: float(metrics[k]) for k in KEYS}

    threads = ['--threads', str(args.threads)] if args.threads else []
    timing = bench.run(['--models', *files.values(), '--input-size', str(args.input_size),
                        '--repeats', '50',
                        '--out-dir', str(work / 'bench'), '--no-progress'] + threads)

    targets = int8_targets(timing['rows'], timing['timings_s'])
    base = accuracy['PyTorch (checkpoint)']
    lines = ['| model | runtime | mAP | mAP@0.5 | delta vs PyTorch FP32 (mAP / mAP@0.5) |',
             '|---|---|---:|---:|---:|']
    for name, m in accuracy.items():
        runtime = ('PyTorch' if name.startswith('PyTorch') else
                   RUNTIMES[default_runtime(name)].label)
        lines.append(f'| {name} | {runtime} | {m[KEYS[0]]:.3f} | {m[KEYS[1]]:.3f} | '
                     f'{100 * (m[KEYS[0]] - base[KEYS[0]]):+.1f} / '
                     f'{100 * (m[KEYS[1]] - base[KEYS[1]]):+.1f} points |')
    lines += ['', f'{args.config}, {args.checkpoint}; INT8 calibrated on the first '
              f'{args.calib} validation images; scored on the whole validation split '
              '(CocoMetric).', '']
    table = ('\n'.join(lines) + '\n' + Path(work / 'bench' / 'models.md').read_text() + '\n'
             + '\n'.join(targets_table(targets)) + '\n')
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'int8.md').write_text(table)
    (out / 'int8.json').write_text(json.dumps(dict(
        accuracy=accuracy, latency=timing['rows'], targets=targets, cpu=cpu_name(),
        isa=isa_summary(),
        command=' '.join(['python', 'benchmarks/int8.py'] + sys.argv[1:])), indent=1) + '\n')
    print(table)


if __name__ == '__main__':
    main()
