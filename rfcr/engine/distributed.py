"""Distributed training on CPU: gloo process groups and a DDP wrapper without device_ids.

mmengine 0.10.7 assumes CUDA when distributed: ``init_dist`` calls
``torch.cuda.set_device`` and ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
DDP, which DDP refuses for a CPU module. Here the process group is created before the
Runner (which then skips ``init_dist``) and the model is wrapped by
:class:`CPUAwareDistributedDataParallel`, which drops ``device_ids`` for CPU modules.
Nothing in mmengine is patched.
"""
from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from mmengine.registry import MODEL_WRAPPERS


# Registered in mmengine's root registry: Runner.wrap_model looks the type up there.
@MODEL_WRAPPERS.register_module()
class CPUAwareDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper; ``device_ids``/``output_device`` are dropped for CPU modules."""

    def __init__(self, module: torch.nn.Module, **kwargs) -> None:
        if not any(p.is_cuda for p in module.parameters()):
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)


def _slurm_env() -> None:
    """The env:// variables from SLURM's, as mmengine's ``_init_dist_slurm`` sets them."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))


def init_cpu_distributed(launcher: str, timeout_s: int = 1800) -> bool:
    """Create a gloo process group for ``launcher`` when no GPU is available.

    Returns whether it did; with a GPU mmengine's own ``init_dist`` (NCCL) is used.
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return False
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise ValueError(f"launcher must be 'none', 'pytorch' or 'slurm' on CPU, got {launcher!r}")
    dist.init_process_group(backend='gloo', timeout=timedelta(seconds=timeout_s))
    return True
