"""Keras numerics: what a model must compute to run weights trained in Keras exactly.

Keras (TensorFlow) differs from PyTorch's defaults in two places that change a trained
network's output: BatchNormalization's epsilon is 1e-3 (PyTorch: 1e-5), and a stride-2
conv with "SAME" padding pads the bottom/right more than the top/left (PyTorch pads
symmetrically). mmcv's ``Conv2dAdaptivePadding`` is TensorFlow's "SAME".
"""
from __future__ import annotations

import os

from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

KERAS_BN_EPS = 1e-3
# A converted checkpoint's ``meta[KERAS_META_KEY]`` says its weights expect Keras numerics.
KERAS_META_KEY = 'keras_numerics'
# Keras applications publish MobileNetV2 ImageNet weights at these widths (``alpha``).
KERAS_MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
KERAS_MOBILENET_V2_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/'
                          'mobilenet_v2/')


def keras_mobilenet_v2_file(alpha: float, rows: int = 224, include_top: bool = False) -> str:
    """The file name of Keras applications' MobileNetV2 ImageNet weights."""
    return (f'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}'
            f'{"" if include_top else "_no_top"}.h5')


def missing_checkpoint_error(checkpoint: str, widen_factor: float) -> FileNotFoundError:
    """The one-line error for a backbone checkpoint that is not there, with the command that
    makes it where Keras publishes that width."""
    message = f'init_cfg.checkpoint={checkpoint!r}: no such file'
    alpha = next((a for a in KERAS_MOBILENET_V2_ALPHAS if abs(a - widen_factor) < 1e-9), None)
    if alpha is not None:
        source = keras_mobilenet_v2_file(alpha)
        message += (f'. Make it from Keras\' ImageNet weights ({KERAS_MOBILENET_V2_URL}{source}): '
                    f'rfcr-convert keras-mobilenetv2 {source} {checkpoint}')
    return FileNotFoundError(message)


def is_missing_local_file(checkpoint: str) -> bool:
    """``checkpoint`` is a local path (no ``scheme://``) with no file behind it."""
    return '://' not in checkpoint and not os.path.isfile(checkpoint)


def keras_numerics_mismatch(model: nn.Module) -> str | None:
    """The first layer of ``model`` that does not compute as Keras would, described; ``None``
    if every BN has epsilon 1e-3 and every strided conv pads TensorFlow's "SAME"."""
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and m.eps != KERAS_BN_EPS:
            return f'{name} has BN eps={m.eps:g} (Keras: {KERAS_BN_EPS:g})'
        if (isinstance(m, nn.Conv2d) and max(m.stride) > 1 and max(m.kernel_size) > 1
                and not isinstance(m, Conv2dAdaptivePadding)):
            return (f'{name} is a stride-{max(m.stride)} {type(m).__name__} with symmetric '
                    'padding (Keras: TensorFlow "SAME")')
    return None


def check_keras_numerics(model: nn.Module, source: str, name: str | None = None) -> None:
    """Raise ``ValueError`` naming the first layer of ``model`` (called ``name``) that would
    not compute Keras' numerics; ``source`` names where the Keras weights come from."""
    problem = keras_numerics_mismatch(model)
    if problem is not None:
        raise ValueError(
            f"{source} holds Keras weights, which need Keras' numerics, but "
            f"{name or type(model).__name__}.{problem}: build TruncatedMobileNetV2 with "
            "pad_type='same' (mmdet's MobileNetV2: conv_cfg=dict(type='Conv2dAdaptivePadding'); "
            "TruncatedEfficientNet and mmdet's EfficientNet pad so by default) and every "
            "norm_cfg=dict(type='BN', eps=1e-3)")
