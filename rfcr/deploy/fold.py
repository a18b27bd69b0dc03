"""Inference-time folding: BN into the convs before it, RFCR's fusion scalars into its
collect convs, YOLO-ReT's consecutive linear maps into one, training-only machinery
(checkpointing, drop-path, BN statistics) dropped.

:func:`switch_to_deploy` rewrites a model in place, top-down, replacing every module whose
exact type has a deploy form (:data:`DEPLOY_FORMS`)::

    YOLO-ReT detector (RFCR + YOLOReTNeck + YOLOReTHead)
                                       ->  one DeployYOLOReTNeck returning the predictions
    RFCR                               ->  DeployRFCR (fusion scalars in the collect convs)
    YOLOReTNeck                        ->  DeployYOLOReTNeck (linear maps composed,
                                           :mod:`rfcr.deploy.compose`)
    mmcv ConvModule (conv - BN - act)  ->  ConvAct (conv with BN folded in - act)
    mmdet InvertedResidual             ->  DeployInvertedResidual (its convs folded, the
                                           residual added by the last ConvAct)
    mmdet SELayer (1x1 convs)          ->  DeploySE (two nn.Linear)
    nn.Sequential(Conv2d, BN[, act])   ->  ConvAct, Identity[, Identity]

The rewritten modules compute, in eval mode, what the originals compute, up to float
rounding. Folding is exact or it does not happen: only a plain ``nn.Conv2d`` followed by a
BatchNorm in eval mode is folded (a conv subclass such as mmcv's ``ConvWS`` or
``Conv2dAdaptivePadding`` computes something else than conv2d of its weight; a BN in train
mode normalizes with batch statistics). Everything else is left as it is, and
:func:`deploy_refusals` says what and why; :func:`switch_to_deploy` logs it.

The models under ``rfcr/models`` are not touched: folding reads their public structure and
builds new modules from it. The folded modules are plain PyTorch (convs, activations,
sums, the exact-size resizes of :mod:`rfcr.models.layers`) with one code path: they compute
the same with or without autograd, eager, traced or exported. Fast kernels for them are the
runtimes' job (``torch.compile``, ONNX Runtime, OpenVINO: :mod:`rfcr.deploy.runtime`).
"""
from __future__ import annotations

from typing import Callable

from mmcv.cnn import ConvModule
from mmengine.logging import print_log
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from mmdet.models.layers import InvertedResidual, SELayer

from ..models.necks import RFCR, YOLOReTNeck
from .bricks import DeployInvertedResidual, fold_se, fold_sequential
from .compose import DeployYOLOReTNeck, fold_yoloret_detector
from .conv import conv_bn_refusal, conv_module_refusal, fold_conv_module
from .rfcr import DeployRFCR

__all__ = ['DEPLOY_FORMS', 'deploy_refusals', 'fold_with_report', 'switch_to_deploy']

# Exact module type -> its deploy form (built from the module, which it does not modify).
DEPLOY_FORMS: dict[type, Callable[[nn.Module], nn.Module]] = {
    RFCR: DeployRFCR,
    YOLOReTNeck: DeployYOLOReTNeck,
    ConvModule: fold_conv_module,
    InvertedResidual: DeployInvertedResidual,
    SELayer: fold_se,
}


def _fold(module: nn.Module, name: str, refused: list[str]) -> nn.Module:
    try:  # a YOLO-ReT detector: its neck and prediction convs, composed
        fold_yoloret_detector(module)
    except (TypeError, ValueError) as e:
        refused.append(f'{name or type(module).__name__} (neck and head composed): {e}')
    form = DEPLOY_FORMS.get(type(module))
    if form is not None:
        try:
            return form(module)
        except (TypeError, ValueError) as e:  # not foldable as a whole: fold its parts
            refused.append(f'{name or type(module).__name__}: {e}')
    for child_name, child in list(module.named_children()):
        folded = _fold(child, f'{name}.{child_name}' if name else child_name, refused)
        if folded is not child:
            setattr(module, child_name, folded)
    return fold_sequential(module)


def switch_to_deploy(module: nn.Module) -> nn.Module:
    """Fold ``module`` for inference, in place, and return it in eval mode.

    Every module inside ``module`` whose exact type has a deploy form (see
    :mod:`rfcr.deploy.fold`) is replaced by it, top-down; a YOLO-ReT detector's RFCR, neck
    and prediction convs become one ``DeployYOLOReTNeck`` returning the prediction maps
    (the head's convs become identities, :func:`~rfcr.deploy.compose.fold_yoloret_detector`).
    Everything else is kept, so a :class:`~rfcr.models.TruncatedMobileNetV2`,
    :class:`~rfcr.models.YOLOReTHead` or a whole mmdet detector keeps its class, attributes
    and ``forward`` (a detector still ``predict``\\ s, and exports). The outputs equal those
    of the original in eval mode, up to float rounding. What could not be folded exactly is
    left as it is and logged (:func:`deploy_refusals`). Calling it again is a no-op. The
    result is for inference only: it has no BN to train and no fusion weights.

    Args:
        module: A model or any part of one. Put it in eval mode first: a BN in train mode
            is not folded.

    Returns:
        ``module`` itself, or its replacement when ``module`` is itself one of the folded
        types (an ``RFCR`` becomes a ``DeployRFCR``): always use the return value.

    Example:
        >>> import torch
        >>> from rfcr.models import RFCR, TruncatedMobileNetV2
        >>> from rfcr.deploy import switch_to_deploy
        >>> model = torch.nn.Sequential(TruncatedMobileNetV2(widen_factor=0.5),
        ...                             RFCR(in_channels=(16, 48, 80))).eval()
        >>> x = torch.rand(1, 3, 97, 97)
        >>> with torch.no_grad():
        ...     expected = model(x)
        ...     model = switch_to_deploy(model)
        ...     outs = model(x)
        >>> type(model[1]).__name__
        'DeployRFCR'
        >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        False
        >>> max(float((a - b).abs().max()) for a, b in zip(outs, expected)) < 1e-4
        True
    """
    module, refused = fold_with_report(module)
    if refused:
        print_log('switch_to_deploy left these unfolded (they run as they are, exactly):\n  '
                  + '\n  '.join(refused), logger='current', level=30)  # WARNING
    module.eval()  # not `return module.eval()`: mmdet's MobileNetV2.train() returns None
    return module


def fold_with_report(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """:func:`switch_to_deploy` without the final ``eval()`` and the log: the folded
    module and ``'name: reason'`` for every part left unfolded."""
    if not isinstance(module, nn.Module):
        raise TypeError(f'module must be a torch.nn.Module, got {type(module).__name__}')
    refused: list[str] = []
    module = _fold(module, '', refused)
    return module, refused + deploy_refusals(module)


def deploy_refusals(module: nn.Module) -> list[str]:
    """``'name: reason'`` for every BN left in ``module`` that folding would not remove:
    those of ConvModules that do not fold, and BNs not right after a plain conv."""
    reasons = []
    explained: set[int] = set()
    for name, m in module.named_modules():
        if isinstance(m, ConvModule) and m.with_norm:
            reason = (conv_module_refusal(m) if type(m) is ConvModule
                      else f'{type(m).__name__} is a ConvModule subclass')
            reasons.append(f'{name}: {reason}')
            explained.add(id(m.norm))
        elif isinstance(m, nn.Sequential):
            children = list(m.children())
            for prev, bn in zip(children, children[1:]):
                if (isinstance(bn, _BatchNorm) and isinstance(prev, _ConvNd)
                        and id(bn) not in explained):
                    explained.add(id(bn))
                    reason = conv_bn_refusal(prev, bn) or f'{type(m).__name__} is not a plain ' \
                        'nn.Sequential'
                    prefix = f'{name}.' if name else ''
                    reasons.append(f'{prefix}{_child_name(m, bn)}: {reason}')
    for name, m in module.named_modules():
        if isinstance(m, _BatchNorm) and id(m) not in explained:
            reasons.append(f'{name}: a {type(m).__name__} not right after a conv')
    return reasons


def _child_name(parent: nn.Module, child: nn.Module) -> str:
    return next(n for n, c in parent.named_children() if c is child)
