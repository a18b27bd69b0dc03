"""Training-side additions: hooks, CPU-aware distributed wrapper, safe checkpoint loading."""
from .distributed import CPUAwareDistributedDataParallel
from .hooks import FreezeBackboneHook

__all__ = ['CPUAwareDistributedDataParallel', 'FreezeBackboneHook']
