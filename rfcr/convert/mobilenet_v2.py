"""Keras applications' MobileNetV2 (ImageNet weights, any width) -> mmdet's MobileNetV2 keys.

Keras names its layers explicitly (``Conv1``, ``block_3_expand_BN``, ...), so the mapping
is by name; every shape is checked against mmdet's ``MobileNetV2`` at the file's width.
The result loads into :class:`~rfcr.models.TruncatedMobileNetV2` (which drops stage 7 and
the 1280-channel conv) and into mmdet's ``MobileNetV2`` through
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from mmdet.models.backbones import MobileNetV2

from ..models.backbones.truncated_mobilenet_v2 import MOBILENET_V2_ARCH
from ..models.keras_compat import KERAS_BN_EPS, KERAS_META_KEY, check_keras_numerics
from .keras_h5 import assign, layer_kind, read_keras_h5

# A block's Keras layer role -> mmdet InvertedResidual module.
_MODULES = {'expand': 'expand_conv', 'depthwise': 'depthwise_conv', 'project': 'linear_conv'}
# The classifier's name: 'Logits' in keras-applications (the published files), 'predictions'
# in tf.keras.
_CLASSIFIERS = ('Logits', 'predictions')
_NAME = re.compile(r'Conv1|bn_Conv1|Conv_1|Conv_1_bn|'
                   r'(?:expanded_conv|block_\d+)_(?:expand|depthwise|project)(?:_BN)?')


def is_mobilenet_v2_name(name: str) -> bool:
    """Whether ``name`` is one of the names Keras' MobileNetV2 gives its weighted layers."""
    return _NAME.fullmatch(name) is not None


def keras_mobilenet_v2_names(num_stages: int = len(MOBILENET_V2_ARCH),
                             with_last_conv: bool = True) -> dict[str, str]:
    """Keras layer name -> mmdet MobileNetV2 module, for the stem, the first ``num_stages``
    stages and (``with_last_conv``) the 1280-channel conv."""
    names = {'Conv1': 'conv1.conv', 'bn_Conv1': 'conv1.bn'}
    block = 0  # Keras numbers blocks through the network; block 0 is 'expanded_conv'
    for stage, (expand_ratio, _, num_blocks, _) in enumerate(MOBILENET_V2_ARCH[:num_stages]):
        roles = (('expand', ) if expand_ratio != 1 else ()) + ('depthwise', 'project')
        for j in range(num_blocks):
            keras = 'expanded_conv' if block == 0 else f'block_{block}'
            for role in roles:
                module = f'layer{stage + 1}.{j}.{_MODULES[role]}'
                names[f'{keras}_{role}'] = f'{module}.conv'
                names[f'{keras}_{role}_BN'] = f'{module}.bn'
            block += 1
    if with_last_conv:
        names.update({'Conv_1': 'conv2.conv', 'Conv_1_bn': 'conv2.bn'})
    return names


def fill_missing(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 keras_names: dict[str, str], path: str, where: str) -> None:
    """Add ``num_batches_tracked`` (Keras has no counter: 0); raise for any other key of
    ``target`` that ``state_dict`` lacks, naming the Keras layer it comes from."""
    for key, value in target.items():
        if key in state_dict:
            continue
        if key.endswith('num_batches_tracked'):
            state_dict[key] = torch.zeros_like(value)
            continue
        module = key.rsplit('.', 1)[0]
        layer = next((k for k, v in keras_names.items() if v == module), None)
        source = f' (Keras layer {layer!r})' if layer else ''
        raise ValueError(f'{path} has no weights for {key} of {where}{source}')


def convert_keras_mobilenet_v2(path: str) -> dict:
    """Convert Keras applications' MobileNetV2 weights (``mobilenet_v2_weights_tf_dim_
    ordering_tf_kernels_{alpha}_{rows}[_no_top].h5``, any alpha) to an mmdet MobileNetV2
    checkpoint, ``{'state_dict': ..., 'meta': ...}``. The width is read from the file.

    Raises:
        ValueError: naming the layer, for a file that is not Keras' MobileNetV2 or whose
            shapes do not fit MobileNetV2 at its width.
    """
    layers = [layer for layer in read_keras_h5(path) if layer.weights]
    by_name = {layer.name: layer for layer in layers}
    if 'Conv1' not in by_name:
        raise ValueError(f"{path} is not Keras' MobileNetV2: it has no layer 'Conv1' (its first "
                         f'layers with weights: {[layer.name for layer in layers[:3]]})')
    last = by_name.get('block_16_project')
    if last is None or 'kernel' not in last.weights:
        raise ValueError(f"{path} is not a whole Keras MobileNetV2: it has no layer "
                         "'block_16_project' (a YOLO-ReT checkpoint? rfcr-convert "
                         'official-yoloret converts those)')
    # block_16_project has 320 * alpha channels, rounded to 8 (exact for Keras' widths).
    alpha = round(last.weights['kernel'].shape[-1] / 320, 4)
    where = f"MobileNetV2 at alpha {alpha} (block_16_project's channels / 320)"
    target = MobileNetV2(widen_factor=alpha, out_indices=(7, )).state_dict()
    names = keras_mobilenet_v2_names()
    state_dict, dropped = {}, []
    for layer in layers:
        if layer.name in _CLASSIFIERS and layer.weights['kernel'].ndim == 2:
            dropped.append(layer.name)  # the ImageNet classifier of the files with a top
            continue
        if layer.name not in names:
            raise ValueError(f'{path}: layer {layer.name!r} ({layer_kind(layer)}) is not a '
                             "layer of Keras' MobileNetV2")
        assign(state_dict, target, layer, names[layer.name], where)
    fill_missing(state_dict, target, names, path, where)
    meta = {
        KERAS_META_KEY: dict(pad_type='same', bn_eps=KERAS_BN_EPS),
        'source': os.path.basename(path),
        'architecture': f"Keras applications' MobileNetV2, alpha {alpha}",
        'alpha': alpha,
        'dropped': dropped,
    }
    return dict(state_dict=state_dict, meta=meta)


def check_fits_backbone(checkpoint: dict, backbone: nn.Module, where: str) -> None:
    """Raise ``ValueError`` unless ``backbone`` (``where``: the config's) computes Keras'
    numerics and has every one of its keys, shaped alike, in ``checkpoint['state_dict']``."""
    state_dict = checkpoint['state_dict']
    check_keras_numerics(backbone, checkpoint['meta']['source'], where)
    described = f'{type(backbone).__name__}(widen_factor={getattr(backbone, "widen_factor", "?")})'
    for key, value in backbone.state_dict().items():
        if key not in state_dict:
            raise ValueError(f'{where} is {described}, which has {key}; the converted '
                             'checkpoint has not')
        if state_dict[key].shape != value.shape:
            raise ValueError(
                f"alpha {checkpoint['meta']['alpha']} does not fit {where}, {described}: {key} is "
                f'{tuple(state_dict[key].shape)} in the checkpoint, {tuple(value.shape)} there')
