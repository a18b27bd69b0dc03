"""rfcr-convert on damaged Keras HDF5 files: a small Keras-layout MobileNetV2 (alpha 0.35,
written with h5py as ``model.save_weights`` lays it out) converts, and every way of
damaging a copy of it is refused with one ``rfcr-convert: error:`` line naming the layer
and the weight, exit status 1, no DST written and an existing DST left byte for byte."""
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mmdet.models.backbones import MobileNetV2

from rfcr.convert.keras_h5 import _TO_TORCH, keras_shape
from rfcr.convert.mobilenet_v2 import keras_mobilenet_v2_names
from rfcr.tools import convert

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_CONFIG = str(
    ROOT / 'configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py')

ALPHA = 0.35  # the smallest Keras width: 0.4 M parameters
# Keras weight names of each layer kind, in the order Keras lists them.
WEIGHTS = {'conv': ('kernel', ), 'depthwise': ('depthwise_kernel', ),
           'bn': ('gamma', 'beta', 'moving_mean', 'moving_variance')}


def write_keras_mobilenet_v2(path, alpha: float = ALPHA) -> None:
    """Keras applications' MobileNetV2 (no top) as ``save_weights`` writes it: root attribute
    ``layer_names``, a group per layer with ``weight_names`` and datasets
    ``<layer>/<layer>/<weight>:0`` in Keras' layout; random weights, positive variances."""
    target = MobileNetV2(widen_factor=alpha, out_indices=(7, )).state_dict()
    rng = np.random.default_rng(0)
    modules = keras_mobilenet_v2_names()
    names = ['input_1'] + list(modules)  # input_1: a layer without weights
    with h5py.File(path, 'w') as f:
        f.attrs['layer_names'] = np.array([n.encode() for n in names])
        for name in names:
            module = modules.get(name)
            weights = () if module is None else WEIGHTS[
                'bn' if module.endswith('.bn') else
                'depthwise' if 'depthwise_conv' in module else 'conv']
            group = f.create_group(name)
            group.attrs['weight_names'] = np.array([f'{name}/{w}:0'.encode() for w in weights],
                                                   dtype='S64')
            for w in weights:
                shape = keras_shape(w, tuple(target[f'{module}.{_TO_TORCH[w][0]}'].shape))
                value = rng.uniform(0.5, 1.5, shape) if w == 'moving_variance' else \
                    rng.normal(0, 0.1, shape)
                group.create_dataset(f'{name}/{w}:0', data=value.astype(np.float32))


@pytest.fixture(scope='module')
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('keras') / 'mobilenet_v2_0.35.h5'
    write_keras_mobilenet_v2(path)
    return path


def _set(path, value):
    """A damage: the dataset at ``path`` replaced by one holding ``value``."""
    def damage(f):
        del f[path]
        f.create_dataset(path, data=value)
    return damage


def _attr(group, name, value):
    """A damage: the attribute ``name`` of ``group`` set to ``value``."""
    def damage(f):
        f[group].attrs[name] = value
    return damage


def _values(path, change):
    """A damage: the values of the dataset at ``path`` changed in place (dtype and shape
    kept)."""
    def damage(f):
        data = f[path][()]
        change(data.reshape(-1))
        f[path][...] = data
    return damage


KERNEL = 'block_3_expand/block_3_expand/kernel:0'  # (1, 1, 8, 48) at alpha 0.35
# (id, damage of the h5py file, fragment of the one-line error)
DAMAGES = [
    ('group missing', lambda f: f.__delitem__('block_3_expand'),
     "layer 'block_3_expand' is listed in layer_names, but the file has no such group"),
    ('group is a dataset', lambda f: (f.__delitem__('block_3_expand'),
                                      f.create_dataset('block_3_expand', data=[1.0])),
     "layer 'block_3_expand' is listed in layer_names, but the file has no group there"),
    ('dataset missing', lambda f: f.__delitem__(KERNEL),
     "layer 'block_3_expand' weight 'block_3_expand/kernel:0': listed in weight_names, but "
     'the file has no such dataset'),
    ('dataset is a group', lambda f: (f.__delitem__(KERNEL), f.create_group(KERNEL)),
     "weight 'block_3_expand/kernel:0': listed in weight_names, but the file has a group"),
    ('layer_names a string', _attr('/', 'layer_names', 'Conv1'),
     "layer_names is str 'Conv1', expected a 1-D array of names"),
    ('layer_names an int', _attr('/', 'layer_names', 3),
     'layer_names is int64 3, expected a 1-D array of names'),
    ('layer_names nested', _attr('/', 'layer_names', np.array([[b'Conv1', b'bn_Conv1']])),
     'layer_names is a 2-D |S8 array, expected a 1-D array of names'),
    ('layer_names numbers', _attr('/', 'layer_names', np.arange(3)),
     'layer_names is a 1-D int64 array, expected a 1-D array of names'),
    ('layer_names twice', _attr('/', 'layer_names', np.array([b'Conv1', b'bn_Conv1', b'Conv1'])),
     "layer_names lists 'Conv1' twice, expected distinct names"),
    ('layer_names not UTF-8', _attr('/', 'layer_names', np.array([b'Conv1', b'\xff\xfe'])),
     "layer_names holds b'\\xff\\xfe', expected UTF-8 names"),
    ('weight_names missing', lambda f: f['Conv1'].attrs.__delitem__('weight_names'),
     "layer 'Conv1' has no weight_names attribute, expected one"),
    ('weight_names a string', _attr('Conv1', 'weight_names', 'Conv1/kernel:0'),
     "layer 'Conv1': weight_names is str 'Conv1/kernel:0', expected a 1-D array of names"),
    ('weight_names nested', _attr('Conv1', 'weight_names', np.array([[b'Conv1/kernel:0']])),
     "layer 'Conv1': weight_names is a 2-D |S14 array, expected a 1-D array of names"),
    ('weight_names twice', _attr('Conv1', 'weight_names',
                                 np.array([b'Conv1/kernel:0', b'Conv1/kernel:0'])),
     "layer 'Conv1': weight_names lists 'Conv1/kernel:0' twice"),
    ('two kernels', lambda f: (f['Conv1'].create_dataset('Conv1/kernel:1', data=f[
        'Conv1/Conv1/kernel:0'][()]), f['Conv1'].attrs.__setitem__('weight_names', np.array(
            [b'Conv1/kernel:0', b'Conv1/kernel:1']))),
     "layer 'Conv1' has two weights named 'kernel'"),
    ('strings', _set(KERNEL, np.array([b'abc', b'def'])),
     "weight 'block_3_expand/kernel:0': expected float values, got dtype |S3"),
    ('ints', _set(KERNEL, np.ones((1, 1, 8, 48), np.int32)),
     "weight 'block_3_expand/kernel:0': expected float values, got dtype int32"),
    ('kernel of rank 3', _set(KERNEL, np.ones((1, 8, 48), np.float32)),
     "weight 'block_3_expand/kernel:0': expected a 2 or 4-D array, got shape (1, 8, 48)"),
    ('kernel of rank 2', _set(KERNEL, np.ones((8, 48), np.float32)),  # a Dense kernel
     "layer 'block_3_expand' weight 'kernel': expected (1, 1, 8, 48) for "
     'layer3.0.expand_conv.conv.weight of MobileNetV2 at alpha 0.35'),
    ('gamma of rank 2', _set('bn_Conv1/bn_Conv1/gamma:0', np.ones((16, 1), np.float32)),
     "layer 'bn_Conv1' weight 'bn_Conv1/gamma:0': expected a 1-D array, got shape (16, 1)"),
    ('scalar beta', _set('bn_Conv1/bn_Conv1/beta:0', np.float32(1)),
     "weight 'bn_Conv1/beta:0': expected a 1-D array, got shape ()"),
    ('NaN', _values(KERNEL, lambda v: v.__setitem__(slice(0, 3), np.nan)),
     "layer 'block_3_expand' weight 'block_3_expand/kernel:0': expected finite values, got "
     '3 NaN of 384 values'),
    ('+inf variance', _values('bn_Conv1/bn_Conv1/moving_variance:0',
                              lambda v: v.__setitem__(5, np.inf)),
     "layer 'bn_Conv1' weight 'bn_Conv1/moving_variance:0': expected finite values, got "
     '1 +inf of 16 values'),
    ('NaN and -inf', _values('bn_Conv1/bn_Conv1/beta:0',
                             lambda v: v.__setitem__(slice(0, 3), [np.nan, -np.inf, -np.inf])),
     "weight 'bn_Conv1/beta:0': expected finite values, got 1 NaN, 2 -inf of 16 values"),
    ('float64 beyond float32', _set('bn_Conv1/bn_Conv1/gamma:0', np.full(16, 1e300)),
     "weight 'bn_Conv1/gamma:0': expected finite values, got 16 +inf of 16 values"),
    ('no layer_names', lambda f: f.attrs.__delitem__('layer_names'),
     'is an HDF5 file without Keras 2 weights (no layer_names attribute'),
]


def _damaged(keras_file, tmp_path, damage):
    src = tmp_path / 'damaged.h5'
    shutil.copy(keras_file, src)
    with h5py.File(src, 'r+') as f:
        damage(f)
    return src


def _bytes_damaged(keras_file, tmp_path, kind):
    src = tmp_path / 'damaged.h5'
    data = keras_file.read_bytes()
    src.write_bytes({'truncated': data[:len(data) // 2], 'cut at the end': data[:-100],
                     'empty': b'', 'text': b'not hdf5\n'}[kind])
    return src


def _check(src, dst, match, convert_fails, capsys, command='keras-mobilenetv2'):
    """Refused in one line with status 1, writing nothing; an existing DST stays as it was."""
    argv = [command, str(src), str(dst)]
    if command == 'official-yoloret':
        argv += ['--config', OFFICIAL_CONFIG]
    line = convert_fails(argv, match, str(dst))
    dst.write_bytes(b'an existing checkpoint')
    with pytest.raises(SystemExit) as e:
        convert.main(argv)
    assert e.value.code == 1 and capsys.readouterr().err == line
    assert dst.read_bytes() == b'an existing checkpoint'
    assert [p for p in os.listdir(dst.parent) if p.endswith('.tmp')] == []
    dst.unlink()


def test_the_undamaged_file_converts(keras_file, tmp_path):
    checkpoint = convert.run(['keras-mobilenetv2', str(keras_file), str(tmp_path / 'ok.pth')])
    assert checkpoint['meta']['alpha'] == ALPHA
    with h5py.File(keras_file) as f:
        kernel = f[KERNEL][()]  # (kh, kw, in, out) -> (out, in, kh, kw)
    assert torch.equal(checkpoint['state_dict']['layer3.0.expand_conv.conv.weight'],
                       torch.from_numpy(kernel.transpose(3, 2, 0, 1)))


def test_big_endian_floats_convert_alike(keras_file, tmp_path):
    """A file written by another tool in big-endian floats holds the same weights."""
    src = tmp_path / 'big_endian.h5'
    shutil.copy(keras_file, src)
    with h5py.File(src, 'r+') as f:
        data = f[KERNEL][()]
        del f[KERNEL]
        f.create_dataset(KERNEL, data=data.astype('>f4'))
    ours = convert.run(['keras-mobilenetv2', str(src), str(tmp_path / 'be.pth')])['state_dict']
    reference = convert.run(['keras-mobilenetv2', str(keras_file),
                             str(tmp_path / 'le.pth')])['state_dict']
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


@pytest.mark.parametrize('damage, match', [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES])
def test_damaged_file_is_refused_in_one_line(keras_file, tmp_path, damage, match, convert_fails,
                                             capsys):
    _check(_damaged(keras_file, tmp_path, damage), tmp_path / 'out.pth', match, convert_fails,
           capsys)


@pytest.mark.parametrize('kind, match', [
    ('truncated', 'is not an HDF5 file (Unable to synchronously open file (truncated file'),
    ('cut at the end', 'is not an HDF5 file (Unable to synchronously open file (truncated'),
    ('empty', 'is not an HDF5 file'),
    ('text', 'is not an HDF5 file (Unable to synchronously open file (file signature not '
     'found))'),
])
def test_cut_or_foreign_bytes_are_refused(keras_file, tmp_path, kind, match, convert_fails,
                                          capsys):
    _check(_bytes_damaged(keras_file, tmp_path, kind), tmp_path / 'out.pth', match,
           convert_fails, capsys)


def test_missing_file_and_directory(tmp_path, convert_fails, capsys):
    dst = tmp_path / 'out.pth'
    _check(tmp_path / 'nope.h5', dst, 'nope.h5: no such file', convert_fails, capsys)
    _check(tmp_path, dst, ': a directory, expected a Keras HDF5 file', convert_fails, capsys)


@pytest.mark.parametrize('name', ['group missing', 'layer_names nested', 'strings', 'NaN'])
def test_official_yoloret_reads_the_same_way(keras_file, tmp_path, name, convert_fails, capsys):
    """official-yoloret reads the file with the same checks (after its config's)."""
    damage, match = next(d[1:] for d in DAMAGES if d[0] == name)
    _check(_damaged(keras_file, tmp_path, damage), tmp_path / 'out.pth', match, convert_fails,
           capsys, 'official-yoloret')
