"""What CPU this is: its model name and the instruction sets that decide kernel speed."""
from __future__ import annotations

import functools
import platform

import torch

__all__ = ['cpu_flags', 'cpu_name', 'isa_summary']

# /proc/cpuinfo flag -> the name benchmarks report, in the order they are listed.
ISA_FLAGS = (('avx2', 'AVX2'), ('avx512f', 'AVX-512'), ('avx512_vnni', 'AVX512-VNNI'),
             ('avx_vnni', 'AVX-VNNI'), ('avx512_bf16', 'AVX512-BF16'), ('amx_tile', 'AMX'),
             ('asimd', 'NEON'), ('sve', 'SVE'))


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    name, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and name == (platform.processor() or platform.machine()):
                    name = value.strip()
                elif key in ('flags', 'Features') and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return name, flags


def cpu_name() -> str:
    """The CPU model, e.g. ``'AMD EPYC'`` (``/proc/cpuinfo``; else ``platform``)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty elsewhere)."""
    return _cpuinfo()[1]


def isa_summary() -> str:
    """The vector instruction sets this CPU has and the one ATen's kernels use, e.g.
    ``'AVX2; ATen kernels: AVX2'`` or ``'AVX2, AVX-512, AVX512-VNNI, AVX512-BF16, AMX;
    ATen kernels: AVX512'`` (``ATEN_CPU_CAPABILITY=avx2`` lowers the latter)."""
    flags = cpu_flags()
    have = [name for flag, name in ISA_FLAGS if flag in flags] or ['unknown']
    return f'{", ".join(have)}; ATen kernels: {torch.backends.cpu.get_cpu_capability()}'
