"""Read Keras 2 HDF5 weights with h5py, and turn Keras tensors into PyTorch's layout.

Keras saves ``model.save_weights('x.h5')`` as one group per layer, in the model's graph
order (``model.layers``), listed by the root attribute ``layer_names``; each group lists
its weights in ``weight_names`` (``'conv2d_17/kernel:0'``). ``model.save('x.h5')`` stores
the same under a ``model_weights`` group, next to the model's config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py
import numpy as np
import torch

# Keras weight name -> (PyTorch parameter suffix, axes that turn Keras' layout into PyTorch's).
# Conv2D kernels are (kh, kw, in, out) -> (out, in, kh, kw); depthwise kernels are
# (kh, kw, channels, 1) -> (channels, 1, kh, kw).
_TO_TORCH = {
    'kernel': ('weight', (3, 2, 0, 1)),
    'depthwise_kernel': ('weight', (2, 3, 0, 1)),
    'bias': ('bias', None),
    'gamma': ('weight', None),
    'beta': ('bias', None),
    'moving_mean': ('running_mean', None),
    'moving_variance': ('running_var', None),
}


@dataclass
class KerasLayer:
    """A Keras layer's weights: short weight name (``'kernel'``, ``'gamma'``) -> array."""
    name: str
    weights: dict[str, np.ndarray] = field(default_factory=dict)


def _strings(values) -> list[str]:
    return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str) -> list[KerasLayer]:
    """Every layer of a Keras HDF5 weights file (weights-only or a full saved model), in the
    file's graph order, layers without weights included.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, or an HDF5 file without Keras weights.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    try:
        f = h5py.File(path, 'r')
    except OSError as e:
        raise ValueError(f'{path} is not an HDF5 file ({str(e).splitlines()[0]})') from e
    with f:
        group = f['model_weights'] if 'model_weights' in f else f
        if 'layer_names' not in group.attrs:
            raise ValueError(f'{path} is an HDF5 file without Keras 2 weights (no layer_names '
                             'attribute; Keras 3 .weights.h5 files are not supported)')
        layers = []
        for name in _strings(group.attrs['layer_names']):
            g = group[name]
            weights = {}
            for weight_name in _strings(g.attrs.get('weight_names', [])):
                short = weight_name.split('/')[-1].split(':')[0]
                weights[short] = np.asarray(g[weight_name])
            layers.append(KerasLayer(name, weights))
    return layers


def keras_shape(weight: str, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Keras shape of a weight whose PyTorch tensor has ``torch_shape``."""
    axes = _TO_TORCH[weight][1]
    if axes is None:
        return tuple(torch_shape)
    return tuple(torch_shape[axes.index(i)] for i in range(len(axes)))


def to_torch(weight: str, value: np.ndarray) -> tuple[str, torch.Tensor]:
    """``(parameter suffix, tensor)`` of a Keras weight, in PyTorch's layout."""
    suffix, axes = _TO_TORCH[weight]
    if axes is not None:
        value = value.transpose(axes)
    return suffix, torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def layer_kind(layer: KerasLayer) -> str:
    """What a layer's weights say it is: conv, depthwise, bn, weighted_sum, or its names."""
    names = set(layer.weights)
    if names in ({'kernel'}, {'kernel', 'bias'}):
        return 'conv'
    if names == {'depthwise_kernel'}:
        return 'depthwise'
    if names == {'gamma', 'beta', 'moving_mean', 'moving_variance'}:
        return 'bn'
    if names == {'alpha'}:
        return 'weighted_sum'
    return 'weights ' + ', '.join(sorted(names))


def assign(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
           layer: KerasLayer, prefix: str, where: str) -> None:
    """Convert ``layer``'s weights into ``state_dict[prefix + suffix]``, checking each shape
    against ``target`` (a model's state dict); ``where`` names the model in errors."""
    for weight, value in layer.weights.items():
        if weight not in _TO_TORCH:
            raise ValueError(f'layer {layer.name!r} has a weight {weight!r} that '
                             f'{prefix} of {where} does not have')
        suffix, tensor = to_torch(weight, value)
        key = f'{prefix}.{suffix}'
        if key not in target:
            raise ValueError(f'layer {layer.name!r} has a weight {weight!r} {tuple(value.shape)}, '
                             f'but {where} has no {key}')
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise ValueError(
                f'layer {layer.name!r} weight {weight!r}: expected '
                f'{keras_shape(weight, tuple(target[key].shape))} for {key} of {where}, '
                f'got {tuple(value.shape)}')
        state_dict[key] = tensor
