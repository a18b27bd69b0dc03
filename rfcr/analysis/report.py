"""Benchmark results as a markdown table, CSV, JSON and a latency-vs-MACs plot."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..deploy.runtime import EXPORTED_RUNTIMES, RUNTIMES
from ..utils.cpu import cpu_flags, cpu_name, isa_summary

MACS_NOTE = ('MACs: multiply-accumulates of everything that runs (conv/matmul: one per '
             'multiply-add; element-wise ops, activations, pooling windows and resizes: one '
             'per element; concat and copies: 0).')
RATIO_NOTE = ('x ref: median over rounds of (this row / its reference row), both timed in '
              'the same interleaved rounds on the same runtime (eager: each in its faster '
              'memory format); in brackets its 95 % confidence interval (distribution-free: '
              'order statistics of the per-round ratios; docs/benchmarks.md). Below 1: '
              'faster than the reference. A difference whose interval holds 1 is not one.')
VERDICT_NOTE = ('Verdicts read the interval, not the median: met when the whole 95 % '
                'interval is on the wanted side of the threshold, not met when it is wholly '
                'on the other side, undecided when it straddles it. MAC ratio: the same two '
                'models\' ratio of multiply-accumulates, what a purely compute-bound runtime '
                'would reach; a claim beyond it is out of reach by arithmetic and is judged '
                'at the MAC ratio + 0.03 instead (the paper\'s threshold beside it).')
# The runtime table's labels, and how each runtime gets the model (the first table of its
# group holds the model as built).
RUNTIME_NAMES = {name: rt.label for name, rt in RUNTIMES.items()}
RUNTIME_HOW = {name: rt.how for name, rt in RUNTIMES.items()}


@dataclass
class BenchRow:
    """One measured candidate: what bench.json, bench.csv and bench.md hold per row.

    Latencies are ``{median, p10, p90, n, ci_lo, ci_hi}`` in ms, ratios ``{median,
    ci_lo, ci_hi, p10, p90, n, confidence}``: the median per-round ratio to the row ``ref``
    (same group, same runtime), its confidence interval, and the per-round spread. A
    candidate that failed to build or run has ``error`` and no measurements.
    """
    group: str
    name: str
    family: str
    source: str
    ref: str
    params: dict[str, int] = field(default_factory=dict)  # total (+ backbone/neck/head)
    macs: dict[str, int] = field(default_factory=dict)  # likewise
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # op -> calls not counted
    memory_format: Optional[str] = None  # eager's faster one
    latency_ms: Optional[dict[str, float]] = None  # eager, in memory_format
    latency_ms_by_format: dict[str, dict[str, float]] = field(default_factory=dict)
    channels_last_speedup: Optional[dict[str, float]] = None  # contiguous / channels_last
    ratio_vs_ref: Optional[dict[str, float]] = None  # eager
    # runtime -> {latency_ms, speedup_vs_eager, ratio_vs_ref (if the ref ran there)}
    runtimes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    runtime_errors: dict[str, str] = field(default_factory=dict)
    runtimes_not_run: dict[str, str] = field(default_factory=dict)  # runtime -> why not
    best_runtime: Optional[str] = None  # 'eager' or the runtime with the lowest median
    peak_memory_mib: Optional[float] = None
    error: Optional[str] = None


def machine_info(device: str, threads: int) -> dict:
    """What the numbers were measured on (CPU model, cores, versions, load)."""
    import mmcv
    import mmdet
    import mmengine
    flags = cpu_flags()
    info = dict(cpu=cpu_name(), isa=isa_summary(), logical_cpus=os.cpu_count(),
                threads=threads, device=device,
                aten_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                aten_cpu_capability_env=os.environ.get('ATEN_CPU_CAPABILITY'),
                vnni=bool({'avx512_vnni', 'avx_vnni'} & flags), amx='amx_tile' in flags,
                avx512_bf16='avx512_bf16' in flags,
                python=platform.python_version(), torch=torch.__version__,
                mmcv=mmcv.__version__, mmdet=mmdet.__version__, mmengine=mmengine.__version__,
                platform=platform.platform(),
                date=time.strftime('%Y-%m-%d %H:%M:%S %z'))
    if hasattr(os, 'getloadavg'):
        info['load_average_start'] = [round(x, 2) for x in os.getloadavg()]
    if torch.device(device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info


def _macs(value: Optional[float]) -> str:
    if value is None:
        return '-'
    return f'{value / 1e9:.3f} G' if value >= 1e8 else f'{value / 1e6:.2f} M'


def _split(d: dict, fmt: Callable[[float], str]) -> str:
    """``total`` and, for a detector, ``(backbone/neck/head)``, each through ``fmt``."""
    total = fmt(d['total'])
    if 'backbone' not in d:
        return total
    return f'{total} ({"/".join(fmt(d[k]) for k in ("backbone", "neck", "head"))})'


def _format_abbrev(row: BenchRow) -> str:
    return {'channels_last': 'CL', 'contiguous': 'CF'}.get(row.memory_format, '-')


def _format_cell(row: BenchRow) -> str:
    fmt = _format_abbrev(row)
    if row.channels_last_speedup is not None:
        fmt += f' ({interval(row.channels_last_speedup, 2)})'
    return fmt


def interval(ratio: dict, digits: int = 3) -> str:
    """``median [ci_lo-ci_hi]``; ``[n < 6]`` where the rounds were too few for an
    interval."""
    lo, hi = ratio.get('ci_lo'), ratio.get('ci_hi')
    if lo is None or hi is None:
        return f'{ratio["median"]:.{digits}f} [too few rounds]'
    return f'{ratio["median"]:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]'


def _ratio_cell(ratio: Optional[dict], is_ref: bool) -> str:
    if not ratio:
        return '-'
    if is_ref:
        return '1 (ref)'
    return interval(ratio)


def _runtime_table(group: str, rows: Sequence[BenchRow]) -> list[str]:
    """Each model's latency per runtime, its ratio to the group's reference on the same
    runtime, and its fastest runtime; nothing if no runtime besides eager ran."""
    runtimes = [rt for rt in EXPORTED_RUNTIMES
                if any(rt in r.runtimes or rt in r.runtime_errors or rt in r.runtimes_not_run
                       for r in rows)]
    if not runtimes:
        return []
    names = ', '.join(RUNTIME_NAMES.get(rt, rt) for rt in runtimes)
    how = '; '.join(f'{RUNTIME_NAMES.get(rt, rt)}: {RUNTIME_HOW.get(rt, rt)}'
                    for rt in runtimes)
    lines = [f'{group} on {names}: each model as above, run on CPU in the same rounds as '
             f'eager ({how}); x ref against the reference on the same runtime.', '',
             '| model | eager ms (format) | ' + ' | '.join(
                 f'{RUNTIME_NAMES.get(rt, rt)} ms | x ref [95% CI]' for rt in runtimes)
             + ' | best runtime |',
             '|---|---:|' + '---:|---:|' * len(runtimes) + ':---:|']
    for r in rows:
        if r.error is not None:
            continue
        cells = [f'{r.latency_ms["median"]:.2f} ({_format_abbrev(r)})']
        for rt in runtimes:
            entry = r.runtimes.get(rt)
            if entry is None:
                cells += [f'not run: {r.runtimes_not_run[rt]}' if rt in r.runtimes_not_run
                          else f'failed: {r.runtime_errors.get(rt, "not run")[:80]}', '-']
                continue
            cells += [f'{entry["latency_ms"]["median"]:.2f}',
                      _ratio_cell(entry.get('ratio_vs_ref'), r.ref == r.name)]
        best = RUNTIME_NAMES.get(r.best_runtime, r.best_runtime or '-')
        lines.append(f'| {r.name} | ' + ' | '.join(cells) + f' | {best} |')
    arm = [RUNTIME_NAMES.get(rt, rt) for rt in runtimes if RUNTIMES[rt].arm]
    if arm:
        lines += ['', f'{", ".join(arm)}: runtimes made for ARM CPUs, run here on this '
                  'machine\'s CPU (see the line under the tables): x86 numbers of ARM '
                  'runtimes, not ARM numbers.']
    return lines + ['']


def markdown(rows: Sequence[BenchRow], groups: Sequence[dict], targets: Sequence[dict],
             meta: dict) -> str:
    """The results as markdown: one table per group, then the targets and the notes."""
    lines = []
    for g in groups:
        lines += [f'**{g["name"]}**: {g["note"]}' if g.get('note') else f'**{g["name"]}**', '',
                  _rounds_line(g), '',
                  '| model | params M (bb/neck/head) | MACs (bb/neck/head) | format (CL gain) '
                  '| median ms | p90 ms | x ref [95% CI] | ref | peak MiB |',
                  '|---|---:|---:|:---:|---:|---:|---:|---|---:|']
        group_rows = [r for r in rows if r.group == g['name']]
        for r in group_rows:
            if r.error is not None:
                lines.append(f'| {r.name} | failed: {r.error[:120]} |||||||')
                continue
            lat = r.latency_ms
            ratio_cell = _ratio_cell(r.ratio_vs_ref, r.ref == r.name)
            peak = '-' if r.peak_memory_mib is None else f'{r.peak_memory_mib:.1f}'
            lines.append(f'| {r.name} | {_split(r.params, lambda v: f"{v / 1e6:.2f}")} | '
                         f'{_split(r.macs, _macs)} | '
                         f'{_format_cell(r)} | {lat["median"]:.2f} | {lat["p90"]:.2f} | '
                         f'{ratio_cell} | {r.ref} | {peak} |')
        lines.append('')
        lines += _runtime_table(g['name'], group_rows)
    if targets:
        lines += targets_table(targets) + ['']
    lines += [
        machine_line(meta),
        f'Input {meta["batch_size"]}x3x{meta["input_size"][0]}x{meta["input_size"][1]}, eager '
        'PyTorch, eval mode, torch.inference_mode(), random weights; latency of one forward '
        'pass (detectors: tensor mode, no pre/post-processing unless the group says so), '
        f'median and p90 over the interleaved rounds each group says, after {meta["warmup"]} warm-up rounds. '
        'format: the faster memory format (CL channels_last, CF contiguous) and, in brackets, '
        'how many times faster channels_last ran than contiguous. peak MiB: memory allocated '
        'during the forward pass beyond weights and input.',
        MACS_NOTE, RATIO_NOTE] + ([VERDICT_NOTE] if targets else [])
    return '\n'.join(lines)


def _rounds_line(group: dict) -> str:
    """How many rounds a group took and why it stopped."""
    rounds = group.get('rounds')
    if not rounds:
        return f'Rounds: {group.get("repeats", "-")}.'
    why = {'rounds': 'a fixed count',
           'precision': 'every interval within the precision asked',
           'time': 'its share of --max-time spent first'}[rounds['stopped']]
    widest = rounds.get('widest')
    return (f'Rounds: {rounds["rounds"]} ({why}; {rounds["seconds"]:.0f} s)'
            + (f'; widest interval: {widest["ratio"]}, +-{100 * widest["half_width"]:.1f} %'
               if widest and math.isfinite(widest['half_width']) else '') + '.')


def _wanted(t: dict) -> str:
    wanted = f'{t["measure"]} {t["op"]} {t["threshold"]:.3g}'
    if t.get('restated'):
        wanted += (f' (MAC ratio {"+" if t["op"] in ("<", "<=") else "-"} 0.03; the paper\'s '
                   f'{t["op"]} {t["paper_threshold"]:g} is out of reach by arithmetic)')
    return wanted


def targets_table(targets: Sequence[dict]) -> list[str]:
    """The targets with their measured ratio, 95 % interval, MAC ratio and verdict."""
    lines = ['**Targets** (ratios from this run, both sides on the same runtime)', '',
             '| target | runtime | measured [95% CI] | MAC ratio | wanted | verdict |',
             '|---|---|---:|---:|---|:---:|']
    for t in targets:
        value = '-' if t.get('value') is None else interval(
            dict(median=t['value'], ci_lo=t['ci_lo'], ci_hi=t['ci_hi']))
        mac = '-' if t.get('mac_ratio') is None else f'{t["mac_ratio"]:.3f}'
        verdict = t.get('verdict') or 'not measured'
        if verdict == 'not met':
            verdict = '**not met**'
        elif verdict == 'not applicable here':
            verdict += f' ({t["why"]})'
        runtime = RUNTIME_NAMES.get(t['runtime'], t['runtime'])
        if t.get('runtimes'):  # 'best': each row on its own fastest runtime
            runtime = 'best: ' + ' / '.join(RUNTIME_NAMES.get(rt, rt) for rt in t['runtimes'])
        lines.append(f'| {t["name"]} | {runtime} | {value} | {mac} | {_wanted(t)} | '
                     f'{verdict} |')
    return lines


def machine_line(meta: dict) -> str:
    """What the numbers were measured on, for under a table."""
    load = meta.get('load_average_start'), meta.get('load_average_end')
    forced = meta.get('aten_cpu_capability_env')
    return (f'Measured on {meta["cpu"]} ({meta.get("isa", "ISA not recorded")}'
            + (f', forced by ATEN_CPU_CAPABILITY={forced}' if forced else '') + '; '
            f'{meta["logical_cpus"]} logical CPUs), {meta["threads"]} thread(s), device '
            f'{meta.get("gpu", meta["device"])}, torch {meta["torch"]}, mmdet '
            f'{meta["mmdet"]}, mmcv {meta["mmcv"]}; {meta["date"]}'
            + (f'; load average {load[0][0]} at start, {load[1][0]} at end'
               if all(load) else '') + '.')


def files_markdown(rows: Sequence[dict], meta: dict) -> str:
    """``rfcr-bench --models``: exported model files side by side, per runtime."""
    lines = ['| model file | runtime | median ms | p90 ms | x ref [95% CI] | ref |',
             '|---|---|---:|---:|---:|---|']
    for r in rows:
        lat = r['latency_ms']
        lines.append(f'| {Path(r["path"]).name} | {RUNTIME_NAMES.get(r["runtime"], r["runtime"])} '
                     f'| {lat["median"]:.2f} | {lat["p90"]:.2f} | '
                     f'{_ratio_cell(r["ratio_vs_ref"], r["ref"] == r["name"])} | '
                     f'{r["ref"]} |')
    lines += ['', machine_line(meta),
              f'Input {meta["batch_size"]}x3x{meta["input_size"][0]}x{meta["input_size"][1]} '
              f'(random), median and p90 over {meta["repeats_note"]} interleaved rounds after '
              f'{meta["warmup"]} warm-up rounds. ' + RATIO_NOTE]
    return '\n'.join(lines)


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in _flat(f'{prefix}_{key}', item).items()}
    return {} if value is None else {prefix: value}


def csv_table(rows: Sequence[BenchRow]) -> tuple[list[str], list[dict[str, Any]]]:
    """bench.csv's columns and records: every :class:`BenchRow` field, nested entries
    joined by ``_`` (``params_total``, ``runtimes_onnxruntime_ratio_vs_ref_median``); the
    columns any row has, in field order.

    Example:
        >>> row = BenchRow('g', 'a', 'toy', '', 'a', params={'total': 3},
        ...                ratio_vs_ref={'median': 1.0, 'ci_lo': 1.0, 'ci_hi': 1.0})
        >>> columns, records = csv_table([row, BenchRow('g', 'b', 'toy', '', 'a', error='E')])
        >>> columns  # doctest: +NORMALIZE_WHITESPACE
        ['group', 'name', 'family', 'source', 'ref', 'params_total', 'ratio_vs_ref_median',
         'ratio_vs_ref_ci_lo', 'ratio_vs_ref_ci_hi', 'error']
        >>> records[1]
        {'group': 'g', 'name': 'b', 'family': 'toy', 'source': '', 'ref': 'a', 'error': 'E'}
    """
    fields = [f.name for f in dataclasses.fields(BenchRow)]
    parts = [[_flat(name, getattr(r, name)) for name in fields] for r in rows]
    columns = list(dict.fromkeys(k for i in range(len(fields)) for p in parts for k in p[i]))
    return columns, [{k: v for part in p for k, v in part.items()} for p in parts]


def _json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f'{type(obj).__name__} is not JSON serializable')


def write_outputs(out_dir: Path, result: dict, table: str) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.csv`` and ``bench.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {'json': out_dir / 'bench.json', 'csv': out_dir / 'bench.csv',
             'md': out_dir / 'bench.md'}
    paths['json'].write_text(json.dumps(result, indent=1, default=_json) + '\n')
    columns, records = csv_table(result['rows'])
    with open(paths['csv'], 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
    paths['md'].write_text(table + '\n')
    return paths


def plot(rows: Sequence[BenchRow], path: Path, title: str = '') -> Path:
    """Latency vs MACs, marker area by parameters, one colour per family; detectors and
    necks (rows without a backbone) in separate panels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.latency_ms is not None]
    panels = [('detectors', [r for r in measured if 'backbone' in r.macs]),
              ('necks', [r for r in measured if 'backbone' not in r.macs])]
    panels = [(t, rs) for t, rs in panels if rs]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6), squeeze=False)
    families = sorted({r.family for r in measured})
    colours = {f: plt.get_cmap('tab10')(i % 10) for i, f in enumerate(families)}
    for ax, (panel, rs) in zip(axes[0], panels):
        biggest = max(max(r.params['total'] for r in rs), 1)
        for r in rs:
            macs = r.macs['total'] / (1e9 if panel == 'detectors' else 1e6)
            lat = r.latency_ms
            ax.scatter(macs, lat['median'], s=40 + 600 * r.params['total'] / biggest,
                       alpha=0.6, color=colours[r.family], edgecolors='k', linewidths=0.5)
            if 'ci_lo' in lat:  # the median's 95 % interval
                ax.errorbar(macs, lat['median'], yerr=[[lat['median'] - lat['ci_lo']],
                                                       [lat['ci_hi'] - lat['median']]],
                            fmt='none', ecolor='k', elinewidth=0.8, capsize=2)
            ax.annotate(r.name, (macs, r.latency_ms['median']), fontsize=7,
                        xytext=(4, 4), textcoords='offset points')
        ax.set_xlabel('GMACs' if panel == 'detectors' else 'MMACs')
        ax.set_ylabel('median latency (ms), bars: 95 % interval')
        ax.set_title(f'{panel} (marker area ~ parameters)')
        ax.grid(alpha=0.3)
        handles = [plt.Line2D([], [], marker='o', ls='', color=colours[f], label=f)
                   for f in families if any(r.family == f for r in rs)]
        ax.legend(handles=handles, fontsize=7, loc='best')
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def crosscheck_table(checks: Sequence[dict]) -> str:
    """``rfcr-bench --crosscheck``: benchmark_app's ratio of each OpenVINO pair beside
    rfcr's interval."""
    lines = ["**Cross-check** of the OpenVINO rows by OpenVINO's own benchmark_app (the same "
             'IR files, threads, latency hint and one stream, in its own process and loop, '
             'each file alone for 1 s, in couples a b then b a; rows of 5 ms or more): the '
             'median of its couples\' '
             "ratios against rfcr's interval of the same ratio. Agrees: within the interval "
             'widened by 5 % on each side (rfcr\'s calls also pass the arrays in and out '
             'through Python, about 0.3 ms that benchmark_app does not count: rfcr\'s ratios '
             'sit a little closer to 1).', '',
             "| model | ref | rfcr x ref [95% CI] | benchmark_app x ref | benchmark_app ms "
             '(model / ref) | agrees |', '|---|---|---:|---:|---:|:---:|']
    for c in checks:
        lines.append(f'| {c["name_a"]} | {c["name_b"]} | {interval(c["rfcr"])} | '
                     f'{c["ratio"]:.3f} | {c["median_ms_a"]:.2f} / {c["median_ms_b"]:.2f} '
                     f'| {"yes" if c["agrees"] else "**no**"} |')
    return '\n'.join(lines)
