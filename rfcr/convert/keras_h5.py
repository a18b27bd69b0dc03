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

from ..utils.finite import non_finite

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


# The rank of each Keras weight: Conv2D kernels (kh, kw, in, out; 2: a Dense classifier's
# (in, out)), depthwise kernels, per-channel vectors, and RFCR's WeightedSum alpha (4, ).
_RANKS = {'kernel': (2, 4), 'depthwise_kernel': (4, ), 'bias': (1, ), 'gamma': (1, ),
          'beta': (1, ), 'moving_mean': (1, ), 'moving_variance': (1, ), 'alpha': (1, )}


def _names(node: h5py.HLObject, attribute: str, where: str) -> list[str]:
    """The attribute ``layer_names`` / ``weight_names`` of ``node``: a 1-D array of distinct
    strings (bytes, as Keras writes them, or str)."""
    values = node.attrs[attribute]
    if not (isinstance(values, np.ndarray) and values.ndim == 1
            and all(isinstance(v, (bytes, str)) for v in values)):
        shown = values.item() if isinstance(values, np.generic) else values
        found = (f'a {values.ndim}-D {values.dtype} array' if isinstance(values, np.ndarray)
                 else f'{type(values).__name__} {shown!r:.40}')
        raise ValueError(f'{where}: {attribute} is {found}, expected a 1-D array of names')
    try:
        names = [v.decode('utf8') if isinstance(v, bytes) else v for v in values]
    except UnicodeDecodeError as e:
        raise ValueError(f'{where}: {attribute} holds {e.object!r:.40}, expected UTF-8 '
                         'names') from e
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'{where}: {attribute} lists {twice[0]!r} twice, expected distinct names')
    return names


def _read_weight(group: h5py.Group, layer: str, weight_name: str, short: str, where: str
                 ) -> np.ndarray:
    """A layer's weight (``short``: ``'kernel'``, ...) as float32, checked: a dataset of
    floats, of its kind's rank, finite (after the cast: a float64 beyond float32 is inf)."""
    what = f'{where}: layer {layer!r} weight {weight_name!r}'
    node = group.get(weight_name)
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f'{what}: listed in weight_names, but the file has '
                         f'{"no such dataset" if node is None else "a group there"}')
    if node.dtype.kind != 'f':
        raise ValueError(f'{what}: expected float values, got dtype {node.dtype}')
    ranks = _RANKS.get(short)
    if ranks is not None and node.ndim not in ranks:
        raise ValueError(f'{what}: expected a {" or ".join(map(str, ranks))}-D array, got '
                         f'shape {node.shape}')
    try:  # float32, in this machine's byte order, as PyTorch takes it
        value = np.asarray(node[()], dtype=np.float32)
    except OSError as e:  # a file damaged inside the dataset
        raise ValueError(f'{what}: cannot be read ({str(e).splitlines()[0]})') from e
    found = non_finite(value)
    if found:
        raise ValueError(f'{what}: expected finite values, got {found}')
    return value


def read_keras_h5(path: str) -> list[KerasLayer]:
    """Every layer of a Keras HDF5 weights file (weights-only or a full saved model), in the
    file's graph order, layers without weights included. Each weight is checked: listed
    groups and datasets present, ``layer_names`` and ``weight_names`` arrays of distinct
    names, float values of the rank of their kind, no NaN or inf.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, an HDF5 file without Keras weights, or a damaged one,
            naming the layer and the weight.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: ' + ('a directory, expected a Keras HDF5 file'
                                               if os.path.isdir(path) else 'no such file'))
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
        for name in _names(group, 'layer_names', path):
            g = group.get(name)
            if not isinstance(g, h5py.Group):
                raise ValueError(f'{path}: layer {name!r} is listed in layer_names, but the '
                                 f'file has {"no such group" if g is None else "no group there"}')
            if 'weight_names' not in g.attrs:
                raise ValueError(f'{path}: layer {name!r} has no weight_names attribute, '
                                 'expected one (empty for a layer without weights)')
            weights = {}
            for weight_name in _names(g, 'weight_names', f'{path}: layer {name!r}'):
                short = weight_name.split('/')[-1].split(':')[0]
                if short in weights:
                    raise ValueError(f'{path}: layer {name!r} has two weights named {short!r}')
                weights[short] = _read_weight(g, name, weight_name, short, path)
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
        key = f'{prefix}.{_TO_TORCH[weight][0]}'
        if key not in target:
            raise ValueError(f'layer {layer.name!r} has a weight {weight!r} {tuple(value.shape)}, '
                             f'but {where} has no {key}')
        expected = keras_shape(weight, tuple(target[key].shape))
        if tuple(value.shape) != expected:
            raise ValueError(f'layer {layer.name!r} weight {weight!r}: expected {expected} for '
                             f'{key} of {where}, got {tuple(value.shape)}')
        state_dict[key] = to_torch(weight, value)[1]
