"""Training-side additions: hooks, optimizer wrapper, CPU-aware DDP, safe checkpoint loading."""
from .checkpoint import mmengine_checkpoint_loading
from .distributed import CPUAwareDistributedDataParallel
from .hooks import ChannelsLastHook, FreezeBackboneHook
from .optim import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper', 'CPUAwareDistributedDataParallel', 'ChannelsLastHook',
           'FreezeBackboneHook', 'mmengine_checkpoint_loading']
