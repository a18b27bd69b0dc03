from .folded import FoldedInference, own_layers
from .fused import ConvAct, FusedConv, fold_bn, fold_conv_module
from .resize import max_pool_to, upsample_to

__all__ = ['ConvAct', 'FoldedInference', 'FusedConv', 'fold_bn', 'fold_conv_module',
           'max_pool_to', 'upsample_to', 'own_layers']
