from .resize import max_pool_to, upsample_to

__all__ = ['max_pool_to', 'upsample_to']
