"""Training-side additions: hooks, optimizer wrapper, CPU-aware DDP."""
from .distributed import CPUAwareDistributedDataParallel
from .hooks import ChannelsLastHook, FreezeBackboneHook
from .optim import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper', 'CPUAwareDistributedDataParallel', 'ChannelsLastHook',
           'FreezeBackboneHook']
