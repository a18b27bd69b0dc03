"""The authors' Keras YOLO-ReT checkpoints (prakharg24/yoloret, MobileNetV2 backbones) ->
an mmdet checkpoint of the official-graph config (``configs/official/``).

The backbone's layers carry Keras applications' names and map by name. Every other layer
has a Keras auto-name (``conv2d_17``, ``batch_normalization_4``) whose number depends on
what the session built before, so those map by position: the file lists layers in the
model's graph order (``model.layers``: by depth from the outputs, deepest first, ties in
the order a depth-first walk from the outputs meets them), which for ``yolov3_body`` is
:data:`OFFICIAL_NECK_ORDER`. Each layer's kind and every shape are checked.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from mmdet.models.detectors import YOLOV3

from ..models import RFCR, TruncatedMobileNetV2, YOLOReTHead, YOLOReTNeck
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


def check_official_graph(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` is built like the official ``yolov3_body`` with
    a MobileNetV2 backbone: YOLOV3 with a TruncatedMobileNetV2 tapped at strides 4-32, a
    4-input RFCR, a YOLOReTNeck and a YOLOReTHead."""
    neck = getattr(model, 'neck', None)
    parts = list(neck) if isinstance(neck, nn.Sequential) else []
    if not isinstance(model, YOLOV3):
        problem = f'the detector is {type(model).__name__}, not YOLOV3'
    elif not (isinstance(model.backbone, TruncatedMobileNetV2)
              and model.backbone.strides == (4, 8, 16, 32)):
        problem = 'the backbone is not TruncatedMobileNetV2 with out_strides=(4, 8, 16, 32)'
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


def convert_official_yoloret(path: str, model: nn.Module, dataset_meta: dict) -> dict:
    """Convert the authors' Keras YOLO-ReT HDF5 (weights-only, or a whole saved model) to
    ``{'state_dict': ..., 'meta': {'dataset_meta': ..., ...}}`` for ``model``, which must
    be built from a config of the official graph (see :func:`check_official_graph`) with
    Keras' numerics. The prediction convs' biases (Keras has none) are zero.

    Raises:
        ValueError: naming the layer, the shape expected and the shape found, for a file
            of another architecture, width or class count than ``model``.
    """
    check_official_graph(model)
    check_keras_numerics(model, path)
    classes = dataset_meta.get('classes', ())
    if len(classes) != model.bbox_head.num_classes:
        raise ValueError(f'the config\'s dataset has {len(classes)} classes, its head '
                         f'num_classes={model.bbox_head.num_classes}')
    layers = [layer for layer in read_keras_h5(path) if layer.weights]
    target = model.state_dict()
    where = (f'the config\'s YOLO-ReT (widen_factor={model.backbone.widen_factor}, '
             f'{model.bbox_head.num_classes} classes)')
    backbone_names = {k: f'backbone.{v}' for k, v in keras_mobilenet_v2_names(
        num_stages=model.backbone.out_indices[-1], with_last_conv=False).items()}
    if 'Conv1' not in {layer.name for layer in layers}:
        raise ValueError(f"{path} is not a MobileNetV2 YOLO-ReT checkpoint: it has no layer "
                         "'Conv1' (Keras' MobileNetV2 stem)")

    state_dict: dict[str, torch.Tensor] = {}
    others: list[KerasLayer] = []
    for layer in layers:
        if layer.name in backbone_names:
            assign(state_dict, target, layer, backbone_names[layer.name], where)
        elif is_mobilenet_v2_name(layer.name):
            raise ValueError(f'{path}: layer {layer.name!r} is a MobileNetV2 layer that the '
                             'truncated backbone (up to block_15) does not have')
        else:
            others.append(layer)
    if len(others) != len(OFFICIAL_NECK_ORDER):
        raise ValueError(f'{path} has {len(others)} layers with weights outside MobileNetV2, '
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
    fill_missing(state_dict, target, backbone_names, path, where)
    meta = {
        'dataset_meta': dataset_meta,
        KERAS_META_KEY: dict(pad_type='same', bn_eps=KERAS_BN_EPS),
        'source': os.path.basename(path),
        'architecture': 'official YOLO-ReT (prakharg24/yoloret yolov3_body), MobileNetV2 '
                        f'x{model.backbone.widen_factor}',
    }
    return dict(state_dict=state_dict, meta=meta)


def _assign_fusion_weights(state_dict: dict, target: dict, layer: KerasLayer, module: str,
                           where: str) -> None:
    """WeightedSum's ``alpha`` weighs strides 32, 16, 8, 4; RFCR's fusion weights 4-32."""
    alpha = layer.weights['alpha']
    expected = tuple(target[module].shape)
    if alpha.shape != expected:
        raise ValueError(f'layer {layer.name!r} weight \'alpha\': expected {expected} for '
                         f'{module} of {where}, got {tuple(alpha.shape)}')
    state_dict[module] = torch.from_numpy(alpha[::-1].copy()).float()
