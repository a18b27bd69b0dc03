"""GPU latency of rfcr-bench's detectors group (benchmarks/suite.py) at batch 1: PyTorch
eager FP32 and FP16, torch.compile, TensorRT FP32, FP16 and INT8, each timed on the GPU.

    bash benchmarks/gpu.sh                       # on a GPU machine: sets up, runs this
    python benchmarks/gpu.py --out-dir docs/bench/gpu [--rounds 200] [--budget 330]
    python benchmarks/gpu.py --dry-run --out-dir DIR   # no GPU: builds the models only

Every model of the group (COCO heads, random weights, ``--size`` square input) runs as
built and folded (``rfcr.deploy.switch_to_deploy``) in eager FP32 and FP16 (``.half()``);
the folded form also through ``torch.compile`` (``rfcr.deploy.runtime.compiled_runner``)
and TensorRT engines built from rfcr's ONNX export (INT8 calibrated on random images) and
run on CUDA tensors (``rfcr.deploy.edge`` builds FP32 engines only, and its
``TensorRTModel`` copies numpy arrays in and out: :func:`tensorrt_engine` and
:class:`TensorRTRunner` are what it would need for FP16, INT8 and on-GPU timing).
Eager FP32 is IEEE FP32 (TF32 off for convs and matmuls), as the TensorRT FP32 engine.
All variants of all models are timed in one interleaved run
(:func:`rfcr.analysis.latency.interleaved_timings`, the clock read after
``torch.cuda.synchronize``): medians with p10-p90, and ratios (with 95 % intervals) vs ``yolov3_mobilenetv2_320``
on the same runtime and form, paired per round. Each GPU variant's outputs are checked
against eager FP32 of the same form: ``max|diff| / max|out|`` over the raw head outputs.

What could not be measured (no TensorRT, a build that failed, time budget spent, no GPU
with ``--dry-run``) says "not measured" and why; nothing is estimated. Writes ``gpu.md``
and ``gpu.json`` to ``--out-dir``: first before timing (every row "not measured"), again
when done.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from rfcr.analysis.latency import Stats, interleaved_timings, ratio_ci, synchronizer
from rfcr.analysis.report import interval
from rfcr.deploy import switch_to_deploy
from rfcr.deploy.export import detector_wrapper, export_onnx, flatten_outputs
from rfcr.deploy.runtime import compiled_runner, eager_runner
from suite import detectors_group  # this file's folder is on sys.path when run

FORMS = ('as built', 'folded')
# (key, label, forms it runs on): compile and TensorRT time the deploy form only.
RUNTIMES = (
    ('eager-fp32', 'eager FP32', FORMS),
    ('eager-fp16', 'eager FP16', FORMS),
    ('compile', 'torch.compile', ('folded', )),
    ('trt-fp32', 'TensorRT FP32', ('folded', )),
    ('trt-fp16', 'TensorRT FP16', ('folded', )),
    ('trt-int8', 'TensorRT INT8', ('folded', )),
)
REFERENCE = 'eager-fp32'
# max|diff| / max|out| vs eager FP32 that a variant must stay within (INT8: reported only,
# random weights say nothing of INT8 accuracy). FP16's unit roundoff is 2^-11 ~ 5e-4 per
# op; through the ~80 layers of these detectors it reaches 1e-3 to 1e-2.
TOLERANCE = {'eager-fp16': 2e-2, 'trt-fp32': 1e-4, 'trt-fp16': 2e-2}
FOLDED_ONLY = 'folded form only (compile and TensorRT run the deploy form)'


@dataclass
class Cell:
    """One model x form x runtime: its timing, ratio vs the baseline, check vs FP32."""
    model: str
    form: str
    runtime: str
    reason: str = ''  # why not measured; '' when measured
    ms: Optional[dict] = None  # median, p10, p90
    ratio: Optional[dict] = None  # vs the baseline model, same runtime and form
    rel_diff: Optional[float] = None  # max|diff| / max|out| vs eager FP32, same form
    within: Optional[bool] = None  # rel_diff <= TOLERANCE[runtime]
    runner: Optional[Callable[[], object]] = field(default=None, repr=False)

    @property
    def measured(self) -> bool:
        return self.ms is not None


def tensorrt_engine(module: nn.Module, inputs: Sequence[Tensor], precision: str,
                    calib: Sequence[Tensor] = ()) -> tuple[bytes, list[str]]:
    """A serialized TensorRT engine (``precision`` ``fp32``, ``fp16`` or ``int8``; TF32
    off) of ``module``'s ONNX graph, INT8 calibrated on ``calib`` (entropy calibrator), and
    the graph's output names in order."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'model.onnx')
        # TensorRT folds the traced size arithmetic itself: no onnxslim needed there.
        _, output_names = export_onnx(module, inputs, path, simplify=False)
        if not parser.parse_from_file(path):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f'TensorRT could not parse the ONNX graph: {errors}')
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ('fp16', 'int8'):
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot run fall back to FP16
    if precision == 'int8':
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = int8_calibrator(trt, calib)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f'TensorRT could not build a {precision} engine')
    return bytes(engine), output_names


def int8_calibrator(trt, batches: Sequence[Tensor]):
    """TensorRT's entropy calibrator fed ``batches`` (contiguous float32 CUDA tensors)."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches, self.current = iter(batches), None

        def get_batch_size(self) -> int:
            return batches[0].shape[0]

        def get_batch(self, names):
            self.current = next(self.batches, None)  # kept alive: TensorRT reads the pointer
            return None if self.current is None else [int(self.current.data_ptr())]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            pass

    return Calibrator()


class TensorRTRunner:
    """A TensorRT engine run on fixed CUDA inputs into preallocated CUDA outputs, on
    PyTorch's current stream (no host copies in the timed call)."""

    def __init__(self, engine: bytes, output_names: Sequence[str], inputs: Sequence[Tensor]):
        import tensorrt as trt

        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine)
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        input_names = [n for n in names
                       if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._inputs = [x.float().contiguous() for x in inputs]
        for name, x in zip(input_names, self._inputs):
            self._context.set_input_shape(name, tuple(x.shape))
            self._context.set_tensor_address(name, x.data_ptr())
        self.outputs = []
        for name in output_names:  # the ONNX graph's order, as eager's outputs
            if self._engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(f'engine output {name!r} is '
                                   f'{self._engine.get_tensor_dtype(name)}, expected float32')
            out = torch.empty(tuple(self._context.get_tensor_shape(name)), device='cuda')
            self._context.set_tensor_address(name, out.data_ptr())
            self.outputs.append(out)
        self._stream = torch.cuda.current_stream().cuda_stream

    def __call__(self) -> list[Tensor]:
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError('TensorRT could not run the engine')
        return self.outputs


def relative_diff(outputs: object, reference: object) -> float:
    """``max|a - b| / max|b|`` over all outputs, in FP32."""
    a = [t.float() for t in flatten_outputs(list(outputs))]
    b = [t.float() for t in flatten_outputs(list(reference))]
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError(f'outputs {[tuple(x.shape) for x in a]} do not match the reference '
                         f'{[tuple(y.shape) for y in b]}')
    diff = max((x - y).abs().max().item() for x, y in zip(a, b))
    return diff / max(y.abs().max().item() for y in b)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0][:160] if text else ""}'.rstrip(': ')


class Plan:
    """The cells of every model, form and runtime, and a deadline for preparing them."""

    def __init__(self, models: dict[str, nn.Module], baseline: str, budget: float) -> None:
        self.models, self.baseline = models, baseline
        self.deadline = time.monotonic() + budget
        self.cells = {(m, f, rt): Cell(m, f, rt, reason='' if f in forms else FOLDED_ONLY)
                      for m in models for f in FORMS for rt, _, forms in RUNTIMES}

    def todo(self, runtime: str) -> list[Cell]:
        return [c for c in self.cells.values() if c.runtime == runtime and not c.reason]

    def skip(self, runtime: str, reason: str) -> None:
        for cell in self.todo(runtime):
            cell.reason = reason

    def prepare(self, cell: Cell, make: Callable[[], Callable[[], object]]) -> None:
        """``cell.runner = make()``, or the reason it is not measured."""
        if time.monotonic() > self.deadline:
            cell.reason = 'time budget spent before this variant was prepared'
            return
        try:
            cell.runner = make()
            cell.runner()  # fails here, not in the timed loop
        except Exception as error:  # noqa: BLE001 (any failure is reported, not raised)
            cell.runner, cell.reason = None, first_line(error)
        torch.cuda.synchronize()


def build_models(names: Optional[Sequence[str]]) -> tuple[dict[str, nn.Module], str, list]:
    """The detectors group's models (random weights, eval mode), its baseline and inputs."""
    group = detectors_group()
    known = [c.name for c in group.candidates]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f'--models: {unknown} not in the detectors group {known}')
    if names and group.baseline not in names:
        names = [group.baseline, *names]  # the ratios' reference
    torch.manual_seed(0)
    models = {c.name: detector_wrapper(c.build().eval()) for c in group.candidates
              if not names or c.name in names}
    return models, group.baseline, [c for c in group.candidates if c.name in models]


def machine_info(dry_run: bool) -> dict:
    info = {'torch': torch.__version__, 'python': platform.python_version(),
            'date': time.strftime('%Y-%m-%d %H:%M %Z')}
    if not dry_run:
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    try:
        import tensorrt
        info['tensorrt'] = tensorrt.__version__
    except ImportError as error:
        info['tensorrt'] = f'not importable ({first_line(error)})'
    return info


def measure(plan: Plan, inputs: tuple, size: int, rounds: int, warmup: int,
            calib_batches: int, report: Callable[[], None]) -> None:
    """Prepare every cell's runner (within the plan's deadline), write a first report,
    time all runners interleaved, then check each against eager FP32."""
    fp16 = tuple(x.half() for x in inputs)
    folded = {m: switch_to_deploy(copy.deepcopy(module)) for m, module in plan.models.items()}
    forms = {(m, 'as built'): module for m, module in plan.models.items()}
    forms.update({(m, 'folded'): module for m, module in folded.items()})
    for cell in plan.todo('eager-fp32'):
        plan.prepare(cell, lambda c=cell: eager_runner(forms[c.model, c.form], inputs))
    for cell in plan.todo('eager-fp16'):
        plan.prepare(cell, lambda c=cell: eager_runner(
            copy.deepcopy(forms[c.model, c.form]).half(), fp16))
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        for rt in ('trt-fp32', 'trt-fp16', 'trt-int8'):
            plan.skip(rt, f'tensorrt not importable ({first_line(error)})')
    calib = [torch.rand(1, 3, size, size, device=inputs[0].device)
             for _ in range(calib_batches if plan.todo('trt-int8') else 0)]
    for rt in ('trt-fp32', 'trt-fp16', 'trt-int8'):
        for cell in plan.todo(rt):
            module = forms[cell.model, cell.form]
            plan.prepare(cell, lambda m=module, p=rt[4:]: TensorRTRunner(
                *tensorrt_engine(m, inputs, p, calib), inputs))
    for cell in plan.todo('compile'):
        plan.prepare(cell, lambda c=cell: compiled_runner(forms[c.model, c.form], inputs))
    report()

    ready = {key: c.runner for key, c in plan.cells.items() if c.runner is not None}
    times = interleaved_timings({' | '.join(k): fn for k, fn in ready.items()},
                                repeats=rounds, warmup=warmup, sync=synchronizer('cuda'))
    for key, cell in plan.cells.items():
        if key not in ready:
            continue
        ts = times[' | '.join(key)]
        s = Stats.of([t * 1e3 for t in ts])
        cell.ms = {'median': s.median, 'p10': s.p10, 'p90': s.p90, 'n': s.n}
        base = ' | '.join((plan.baseline, ) + key[1:])
        if base in times:
            cell.ratio = ratio_ci(ts, times[base]).as_dict()  # median, 95 % interval
        ref = plan.cells[key[0], key[1], REFERENCE]
        if cell.runtime != REFERENCE and ref.runner is not None:
            with torch.inference_mode():
                cell.rel_diff = relative_diff(cell.runner(), ref.runner())
            if cell.runtime in TOLERANCE:
                cell.within = cell.rel_diff <= TOLERANCE[cell.runtime]
    for cell in plan.cells.values():
        cell.runner = None  # frees the GPU memory the engines and compiled graphs hold


def fmt_ms(d: Optional[dict]) -> str:
    return f'{d["median"]:.3f} [{d["p10"]:.3f}-{d["p90"]:.3f}]'


def fmt_ratio(d: Optional[dict]) -> str:
    """The median ratio and its 95 % interval (rfcr.analysis.report's format)."""
    return interval(d)


def write_report(out_dir: Path, plan: Plan, info: dict, settings: dict, status: str) -> None:
    """``gpu.md`` (latency, ratio and check tables; every unmeasured cell "not measured" with
    a footnote saying why) and ``gpu.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: dict[str, str] = {}

    def missing(cell: Cell) -> str:
        reason = cell.reason or 'not timed (the run stopped before its timing)'
        mark = notes.setdefault(reason, chr(ord('a') + len(notes)))
        return f'not measured ({mark})'

    def table(value: Callable[[Cell], str], runtimes: Sequence[str]) -> list[str]:
        labels = dict((k, label) for k, label, _ in RUNTIMES)
        lines = ['| model | form | ' + ' | '.join(labels[rt] for rt in runtimes) + ' |',
                 '|---|---|' + '---:|' * len(runtimes)]
        for m in plan.models:
            for f in FORMS:
                cells = [plan.cells[m, f, rt] for rt in runtimes]
                lines.append(f'| {m} | {f} | ' + ' | '.join(
                    value(c) if c.measured else missing(c) for c in cells) + ' |')
        return lines

    def check(cell: Cell) -> str:
        if cell.rel_diff is None:
            return 'not checked (eager FP32 not measured)'
        verdict = {True: ' ok', False: ' OVER', None: ''}[cell.within]
        return f'{cell.rel_diff:.1e}{verdict}'

    keys = [k for k, _, _ in RUNTIMES]
    where = ', '.join(f'{k} {v}' for k, v in info.items())
    md = [f'# GPU latency: detectors group, batch {settings["batch"]}, '
          f'{settings["size"]}x{settings["size"]}', '',
          f'Run: {status}. {where}.', '',
          'Generated by `bash benchmarks/gpu.sh` (benchmarks/gpu.py; its docstring says how). '
          'COCO heads, random weights. Each cell: median ms [p10-p90] over '
          f'{settings["rounds"]} interleaved rounds, the clock read after '
          '`torch.cuda.synchronize()`.', '',
          '## Latency (ms)', '', *table(lambda c: fmt_ms(c.ms), keys), '',
          f'## Ratio vs {plan.baseline} (same runtime and form, paired per round; in '
          'brackets its 95 % confidence interval, docs/benchmarks.md)', '',
          *table(lambda c: fmt_ratio(c.ratio) if c.ratio else 'not measured (baseline)', keys),
          '', '## Check vs eager FP32 of the same form (max|diff| / max|out|)', '',
          'Tolerances: ' + ', '.join(f'{k} <= {v:g}' for k, v in TOLERANCE.items())
          + '; TensorRT INT8 reported only (random weights say nothing of INT8 accuracy).', '',
          *table(check, keys[1:]), '']
    if notes:
        md += ['## Not measured', '', *(f'- ({mark}) {reason}' for reason, mark in notes.items()),
               '']
    (out_dir / 'gpu.md').write_text('\n'.join(md))
    cells = [{f.name: getattr(c, f.name) for f in fields(c) if f.name != 'runner'}
             for c in plan.cells.values()]
    (out_dir / 'gpu.json').write_text(json.dumps(
        {'status': status, 'machine': info, 'settings': settings, 'baseline': plan.baseline,
         'tolerance': TOLERANCE, 'cells': cells}, indent=1) + '\n')


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default='docs/bench/gpu', help='where gpu.md/json go')
    parser.add_argument('--size', type=int, default=320, help='square input side')
    parser.add_argument('--rounds', type=int, default=200, help='interleaved timed rounds')
    parser.add_argument('--warmup', type=int, default=20, help='untimed calls of each first')
    parser.add_argument('--budget', type=float, default=330,
                        help='seconds for building runners (later ones are not measured); '
                        'timing all of them takes about a minute more')
    parser.add_argument('--calib-batches', type=int, default=16,
                        help='random images that calibrate the INT8 engines')
    parser.add_argument('--models', nargs='+', help='some models of the group (and its '
                        'baseline); default: all')
    parser.add_argument('--dry-run', action='store_true',
                        help='no GPU: build the models, write the tables, time nothing')
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit('benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is '
                         'False); --dry-run checks the script without one')
    settings = {'batch': 1, 'size': args.size, 'rounds': args.rounds, 'warmup': args.warmup,
                'budget_s': args.budget, 'calib_batches': args.calib_batches}
    models, baseline, candidates = build_models(args.models)
    info = machine_info(args.dry_run)
    out = Path(args.out_dir)
    if args.dry_run:
        plan = Plan(models, baseline, args.budget)
        for module in models.values():
            switch_to_deploy(copy.deepcopy(module))  # every model folds
        for rt, _, _ in RUNTIMES:
            plan.skip(rt, '--dry-run: no GPU used, nothing timed')
        write_report(out, plan, info, settings, 'dry run')
        print(f'dry run: {len(models)} models built and folded -> {out}/gpu.md')
        return
    torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest algorithms
    torch.backends.cudnn.conv.fp32_precision = 'ieee'  # FP32 means FP32 (no TF32)
    torch.backends.cuda.matmul.fp32_precision = 'ieee'
    plan = Plan({m: module.cuda() for m, module in models.items()}, baseline, args.budget)
    (x, ) = candidates[0].make_inputs(1, (args.size, args.size))
    inputs = (x.cuda(), )
    measure(plan, inputs, args.size, args.rounds, args.warmup, args.calib_batches,
            lambda: write_report(out, plan, info, settings, 'incomplete (runners built, '
                                 'timing under way or stopped)'))
    write_report(out, plan, info, settings, 'complete')
    print((out / 'gpu.md').read_text())


if __name__ == '__main__':
    main()
