"""Mixed precision on any device, CPU included, where the hardware runs it natively."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from ..utils.cpu import cpu_flags

# /proc/cpuinfo flags of x86 CPUs with bfloat16 arithmetic (AVX512-BF16, AMX-BF16).
_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


def cpu_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively, on the kernels PyTorch uses: ATen's
    CPU capability is AVX-512 (``torch.backends.cpu.get_cpu_capability()``, which
    ``ATEN_CPU_CAPABILITY=avx2`` lowers) and the CPU has AVX512-BF16 or AMX-BF16. Without
    them bfloat16 is emulated: a training step of the demo took 7.9 s in bf16 against
    0.85 s in fp32 on a 2-core AVX2-only AMD EPYC."""
    return (torch.backends.cpu.get_cpu_capability() == 'AVX512'
            and any(flag in cpu_flags() for flag in _BF16_FLAGS))


# Registered in mmengine's root registry, like mmengine's own optimizer wrappers.
@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` that runs the forward pass under ``torch.autocast``.

    mmengine's ``AmpOptimWrapper`` requires CUDA. This one autocasts on the device the
    model's parameters are on, so CPU training can use bfloat16. bfloat16 has float32's
    exponent range, so no loss scaling is needed; float16 is refused here for that reason
    (use ``AmpOptimWrapper`` on GPUs).

    On a CPU without native bfloat16 (:func:`cpu_native_bf16`), bfloat16 is many times
    slower than float32, so by default (``cpu='native'``) the forward runs in float32
    there, and the choice is logged once. ``cpu='always'`` autocasts anyway.

    Args:
        dtype: ``'bfloat16'``.
        cpu: ``'native'`` or ``'always'``: when to autocast on CPU.
        **kwargs: :class:`OptimWrapper` arguments.
    """

    def __init__(self, *args, dtype: str = 'bfloat16', cpu: str = 'native', **kwargs) -> None:
        if dtype != 'bfloat16':
            raise ValueError(f"dtype must be 'bfloat16' (no loss scaling here), got {dtype!r}")
        if cpu not in ('native', 'always'):
            raise ValueError(f"cpu must be 'native' or 'always', got {cpu!r}")
        super().__init__(*args, **kwargs)
        self.dtype = getattr(torch, dtype)
        self.cpu = cpu
        self._enabled: dict[str, bool] = {}

    def _autocast_on(self, device_type: str) -> bool:
        if device_type not in self._enabled:
            on = device_type != 'cpu' or self.cpu == 'always' or cpu_native_bf16()
            self._enabled[device_type] = on
            if device_type == 'cpu':
                print_log(
                    'AutocastOptimWrapper: ' + (
                        'bfloat16 autocast on CPU' if on else
                        'float32 on CPU: no native bfloat16 here (ATen capability '
                        f'{torch.backends.cpu.get_cpu_capability()}, no AVX512-BF16/AMX)'),
                    logger='current')
        return self._enabled[device_type]

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        device_type = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(
                device_type, dtype=self.dtype, enabled=self._autocast_on(device_type)):
            yield
