"""The authors' Keras YOLO-ReT checkpoints (prakharg24/yoloret: MobileNetV2 and
EfficientNet-B3 backbones) -> an mmdet checkpoint of the official-graph config
(``configs/official/``).

The file says which backbone it holds: Keras' MobileNetV2 names its layers (``Conv1``,
``block_3_expand``, ...), and those map by name. Every other layer has a Keras auto-name
(``conv2d_17``, ``batch_normalization_4``) whose number depends on what the session built
before, so those map by position: the file lists layers in the model's graph order
(``model.layers``: by depth from the outputs, deepest first, ties in the order a
depth-first walk from the outputs meets them). The authors' EfficientNet
(``code/yolo3/efficientnet.py``, auto-named) is a chain whose graph order is the order
mmdet's EfficientNet registers its layers (:func:`backbone_graph_order`); the neck after
either backbone is :data:`OFFICIAL_NECK_ORDER`. Each layer's kind and every shape are
checked.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.models.detectors import YOLOV3

from ..models import (RFCR, TruncatedEfficientNet, TruncatedMobileNetV2, YOLOReTHead,
                      YOLOReTNeck)
from ..models.keras_compat import KERAS_BN_EPS, KERAS_META_KEY, check_keras_numerics
from .keras_h5 import KerasLayer, assign, layer_kind, read_keras_h5
from .mobilenet_v2 import fill_missing, is_mobilenet_v2_name, keras_mobilenet_v2_names


def _node(prefix: str) -> list[tuple[str, str]]:
    """An MBConv node (``make_last_layers_efficientnet_lite``): 1x1 conv, BN, then the
    MBConv block: depthwise 3x3, BN, squeeze-excite reduce / expand (with biases), 1x1
    projection, BN."""
    block = f'{prefix}.1'
    return [('conv', f'{prefix}.0.conv'), ('bn', f'{prefix}.0.bn'),
            ('depthwise', f'{block}.depthwise_conv.conv'), ('bn', f'{block}.depthwise_conv.bn'),
            ('conv', f'{block}.se.conv1.conv'), ('conv', f'{block}.se.conv2.conv'),
            ('conv', f'{block}.linear_conv.conv'), ('bn', f'{block}.linear_conv.bn')]


def _conv_bn(prefix: str) -> list[tuple[str, str]]:
    return [('conv', f'{prefix}.conv'), ('bn', f'{prefix}.bn')]


_RFCR, _NECK = 'neck.0', 'neck.1'
# (kind, module) of every layer with weights outside MobileNetV2, in the official graph's
# order. RFCR's collect convs were built for strides 32, 16, 8, 4 (ours: 4, 8, 16, 32);
# Keras orders them 32, 8, 16, 4 by depth. The prediction convs come last, stride 32 first.
OFFICIAL_NECK_ORDER: list[tuple[str, str]] = (
    [('conv', f'{_RFCR}.collect_convs.{i}') for i in (3, 1, 2, 0)]
    + [('weighted_sum', f'{_RFCR}.fusion_weights'),
       ('depthwise', f'{_RFCR}.fuse_conv.0.conv'), ('bn', f'{_RFCR}.fuse_conv.0.bn'),
       ('conv', f'{_RFCR}.fuse_conv.1.conv'), ('bn', f'{_RFCR}.fuse_conv.1.bn')]
    # FPN top-down (block_20 / block_24 are the official names of the 1x1 reduce convs),
    + _node(f'{_NECK}.top_down_nodes.2') + _conv_bn(f'{_NECK}.top_down_reduce.1')
    + _node(f'{_NECK}.top_down_nodes.1') + _conv_bn(f'{_NECK}.top_down_reduce.0')
    + _node(f'{_NECK}.top_down_nodes.0')
    # then PAN bottom-up,
    + _node(f'{_NECK}.bottom_up_nodes.0') + _conv_bn(f'{_NECK}.bottom_up_reduce.0')
    + _node(f'{_NECK}.bottom_up_nodes.1') + _conv_bn(f'{_NECK}.bottom_up_reduce.1')
    + _node(f'{_NECK}.bottom_up_nodes.2')
    # and the bias-free prediction convs.
    + [('conv', f'bbox_head.convs_pred.{i}') for i in range(3)])


def backbone_graph_order(backbone: nn.Module, prefix: str = 'backbone.'
                         ) -> list[tuple[str, str]]:
    """``(kind, module)`` of every conv and BN of ``backbone`` in registration order, which
    for mmdet's blocks is the order they compute (expand conv, depthwise conv,
    squeeze-excite, projection; each conv before its BN): Keras' graph order of the same
    network built as a chain."""
    order = []
    for name, m in backbone.named_modules():
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            order.append(('depthwise' if depthwise else 'conv', f'{prefix}{name}'))
        elif isinstance(m, _BatchNorm):
            order.append(('bn', f'{prefix}{name}'))
    return order


def file_backbone(layers: list[KerasLayer]) -> str | None:
    """Which backbone a YOLO-ReT file holds, from its layers with weights: ``'MobileNetV2'``
    (Keras applications' names), ``'EfficientNet'`` (a stem conv and BN, then an MBConv
    block: depthwise conv, BN, squeeze-excite convs with biases), else ``None``."""
    if any(layer.name == 'Conv1' for layer in layers):
        return 'MobileNetV2'
    kinds = [layer_kind(layer) for layer in layers[:6]]
    if (kinds == ['conv', 'bn', 'depthwise', 'bn', 'conv', 'conv']
            and all('bias' in layer.weights for layer in layers[4:6])):
        return 'EfficientNet'
    return None


_BACKBONES = {'MobileNetV2': TruncatedMobileNetV2, 'EfficientNet': TruncatedEfficientNet}


def check_official_graph(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` is built like the official ``yolov3_body``:
    YOLOV3 with a TruncatedMobileNetV2 or TruncatedEfficientNet tapped at strides 4-32, a
    4-input RFCR, a YOLOReTNeck and a YOLOReTHead."""
    neck = getattr(model, 'neck', None)
    parts = list(neck) if isinstance(neck, nn.Sequential) else []
    if not isinstance(model, YOLOV3):
        problem = f'the detector is {type(model).__name__}, not YOLOV3'
    elif not (isinstance(model.backbone, tuple(_BACKBONES.values()))
              and model.backbone.strides == (4, 8, 16, 32)):
        problem = ('the backbone is not TruncatedMobileNetV2 or TruncatedEfficientNet with '
                   'out_strides=(4, 8, 16, 32)')
    elif not (len(parts) == 2 and isinstance(parts[0], RFCR) and parts[0].num_inputs == 4
              and isinstance(parts[1], YOLOReTNeck)):
        problem = 'the neck is not [RFCR with shortcut_channels, YOLOReTNeck]'
    elif not isinstance(model.bbox_head, YOLOReTHead):
        problem = f'the head is {type(model.bbox_head).__name__}, not YOLOReTHead'
    elif parts[0].fusion_norm is not None:
        problem = f'RFCR has fusion_norm={parts[0].fusion_norm!r}; the official sum is plain'
    else:
        return
    raise ValueError(f'the config does not build the official YOLO-ReT graph: {problem}')


def _describe(backbone: nn.Module) -> str:
    if isinstance(backbone, TruncatedEfficientNet):
        return f'EfficientNet-{backbone.arch.upper()}'
    return f'MobileNetV2 x{backbone.widen_factor}'


def convert_official_yoloret(path: str, model: nn.Module, dataset_meta: dict) -> dict:
    """Convert the authors' Keras YOLO-ReT HDF5 (weights-only, or a whole saved model; a
    MobileNetV2 or EfficientNet backbone, read from the file) to
    ``{'state_dict': ..., 'meta': {'dataset_meta': ..., ...}}`` for ``model``, which must be
    built from a config of the official graph (see :func:`check_official_graph`) with the
    file's backbone and Keras' numerics. The prediction convs' biases (Keras has none) are
    zero.

    Raises:
        ValueError: naming the layer, the shape expected and the shape found, for a file
            of another architecture, backbone, width or class count than ``model``.
    """
    check_official_graph(model)
    check_keras_numerics(model, path)
    classes = dataset_meta.get('classes', ())
    if len(classes) != model.bbox_head.num_classes:
        raise ValueError(f'the config\'s dataset has {len(classes)} classes, its head '
                         f'num_classes={model.bbox_head.num_classes}')
    layers = [layer for layer in read_keras_h5(path) if layer.weights]
    backbone = file_backbone(layers)
    if backbone is None:
        first = ', '.join(f'{layer.name!r} ({layer_kind(layer)})' for layer in layers[:3])
        raise ValueError(
            f"{path} is not a YOLO-ReT checkpoint of MobileNetV2 (it has no layer 'Conv1') or "
            f'EfficientNet (no stem conv, BN and squeeze-excite block first): its first layers '
            f'with weights are {first or "none"}')
    if not isinstance(model.backbone, _BACKBONES[backbone]):
        raise ValueError(
            f'{path} holds YOLO-ReT on {backbone}; the config\'s backbone is '
            f'{type(model.backbone).__name__}: convert it with a {backbone} config of '
            'configs/official/')
    target = model.state_dict()
    where = (f'the config\'s YOLO-ReT ({_describe(model.backbone)}, '
             f'{model.bbox_head.num_classes} classes)')

    state_dict: dict[str, torch.Tensor] = {}
    if backbone == 'MobileNetV2':
        keras_names, others = _mobilenet_v2_backbone(path, layers, model, target, where,
                                                     state_dict)
    else:
        keras_names, others = _efficientnet_backbone(path, layers, model, target, where,
                                                     state_dict)
    if len(others) != len(OFFICIAL_NECK_ORDER):
        raise ValueError(f'{path} has {len(others)} layers with weights outside {backbone}, '
                         f'the official YOLO-ReT graph {len(OFFICIAL_NECK_ORDER)}: another '
                         'architecture')
    for i, (layer, (kind, module)) in enumerate(zip(others, OFFICIAL_NECK_ORDER)):
        if layer_kind(layer) != kind:
            raise ValueError(
                f'{path}: layer {layer.name!r} (number {i} after the backbone in graph order) '
                f'holds {layer_kind(layer)}, the official graph has a {kind} there ({module}): '
                'another architecture')
        if kind == 'weighted_sum':
            _assign_fusion_weights(state_dict, target, layer, module, where)
        else:
            assign(state_dict, target, layer, module, where)
    for i in range(3):  # Keras' prediction convs have no bias
        key = f'bbox_head.convs_pred.{i}.bias'
        state_dict.setdefault(key, torch.zeros_like(target[key]))
    fill_missing(state_dict, target, keras_names, path, where)
    meta = {
        'dataset_meta': dataset_meta,
        KERAS_META_KEY: dict(pad_type='same', bn_eps=KERAS_BN_EPS),
        'source': os.path.basename(path),
        'architecture': 'official YOLO-ReT (prakharg24/yoloret yolov3_body), '
                        f'{_describe(model.backbone)}',
    }
    return dict(state_dict=state_dict, meta=meta)


def _mobilenet_v2_backbone(path: str, layers: list[KerasLayer], model: nn.Module,
                           target: dict, where: str, state_dict: dict
                           ) -> tuple[dict[str, str], list[KerasLayer]]:
    """Keras' MobileNetV2 layers into ``state_dict`` by name; returns the name map and the
    layers outside MobileNetV2."""
    names = {k: f'backbone.{v}' for k, v in keras_mobilenet_v2_names(
        num_stages=model.backbone.out_indices[-1], with_last_conv=False).items()}
    others = []
    for layer in layers:
        if layer.name in names:
            assign(state_dict, target, layer, names[layer.name], where)
        elif is_mobilenet_v2_name(layer.name):
            raise ValueError(f'{path}: layer {layer.name!r} is a MobileNetV2 layer that the '
                             'truncated backbone (up to block_15) does not have')
        else:
            others.append(layer)
    return names, others


def _efficientnet_backbone(path: str, layers: list[KerasLayer], model: nn.Module,
                           target: dict, where: str, state_dict: dict
                           ) -> tuple[dict[str, str], list[KerasLayer]]:
    """The EfficientNet layers (all before the neck's) into ``state_dict`` by graph order;
    returns the Keras name map and the neck's layers."""
    order = backbone_graph_order(model.backbone)
    count = len(layers) - len(OFFICIAL_NECK_ORDER)
    if count != len(order):
        raise ValueError(
            f'{path} has {count} layers with weights before the YOLO-ReT neck, the truncated '
            f'{_describe(model.backbone)} of the config {len(order)}: another depth or '
            'architecture')
    names = {}
    for i, (layer, (kind, module)) in enumerate(zip(layers[:count], order)):
        if layer_kind(layer) != kind:
            raise ValueError(
                f'{path}: layer {layer.name!r} (number {i} in graph order) holds '
                f'{layer_kind(layer)}, {where} has a {kind} there ({module}): another '
                'architecture')
        assign(state_dict, target, layer, module, where)
        names[layer.name] = module
    return names, layers[count:]


def _assign_fusion_weights(state_dict: dict, target: dict, layer: KerasLayer, module: str,
                           where: str) -> None:
    """WeightedSum's ``alpha`` weighs strides 32, 16, 8, 4; RFCR's fusion weights 4-32."""
    alpha = layer.weights['alpha']
    expected = tuple(target[module].shape)
    if alpha.shape != expected:
        raise ValueError(f'layer {layer.name!r} weight \'alpha\': expected {expected} for '
                         f'{module} of {where}, got {tuple(alpha.shape)}')
    state_dict[module] = torch.from_numpy(alpha[::-1].copy()).float()
