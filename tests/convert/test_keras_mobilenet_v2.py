"""rfcr-convert keras-mobilenetv2 against Keras applications' MobileNetV2 itself (random
weights and BN statistics): the backbone taps equal Keras', and a missing backbone
checkpoint names the command that makes it."""
import os

import pytest
import torch
from mmengine.config import Config

from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from rfcr.models import TruncatedMobileNetV2
from rfcr.tools import convert, train
from tests.convert.keras_reference import (ALPHAS, MOBILENET_SIZES, TAPS, assert_close_to_max,
                                           mobilenet_v2_file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERAS_BN = dict(type='BN', eps=1e-3)


@pytest.fixture(scope='module')
def converted(keras_refs, tmp_path_factory):
    """alpha -> (the Keras file, its conversion), converted once."""
    out = {}
    folder = tmp_path_factory.mktemp('keras_mobilenet_v2')
    for alpha in ALPHAS:
        src = keras_refs.dir / mobilenet_v2_file(alpha)
        dst = folder / f'mobilenet_v2_x{alpha}.pth'
        convert.run(['keras-mobilenetv2', str(src), str(dst)])
        out[alpha] = src, dst
    return out


def _nchw(x):
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def _nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


def _backbone(alpha, checkpoint):
    model = TruncatedMobileNetV2(alpha, out_strides=(4, 8, 16, 32), pad_type='same',
                                 norm_cfg=KERAS_BN)
    model.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('alpha', ALPHAS)
def test_taps_equal_keras(keras_refs, converted, alpha):
    model = _backbone(alpha, converted[alpha][1])
    refs = keras_refs.mobilenet_v2
    for size in MOBILENET_SIZES:
        with torch.no_grad():
            ours = model(_nchw(refs[f'x{size}']))
        for name, mine in zip(TAPS, ours):
            assert_close_to_max(_nhwc(mine), refs[f'{alpha}_{size}_{name}'],
                                what=f'alpha {alpha} at {size}: {name}')


def test_checkpoint_contents(converted):
    checkpoint = torch.load(converted[0.75][1], weights_only=True)
    assert checkpoint['meta']['alpha'] == 0.75
    assert checkpoint['meta']['keras_numerics'] == dict(pad_type='same', bn_eps=1e-3)
    sd = checkpoint['state_dict']
    # mmdet's MobileNetV2 layout, the whole network (the 1280-channel conv2 included).
    assert set(sd) == set(MobileNetV2(widen_factor=0.75, out_indices=(7, )).state_dict())
    assert sd['conv2.conv.weight'].shape == (1280, 240, 1, 1)


def test_symmetric_padding_is_refused(converted):
    dst = str(converted[0.75][1])
    with pytest.raises(ValueError, match=r"holds Keras weights, which need Keras' numerics, but "
                       r'TruncatedMobileNetV2\.conv1\.conv is a stride-2 Conv2d with symmetric'):
        TruncatedMobileNetV2(0.75, norm_cfg=KERAS_BN, init_cfg=dict(
            type='Pretrained', checkpoint=dst)).init_weights()
    with pytest.raises(ValueError, match=r'conv1\.bn has BN eps=1e-05 \(Keras: 0\.001\)'):
        TruncatedMobileNetV2(0.75, pad_type='same', init_cfg=dict(
            type='Pretrained', checkpoint=dst)).init_weights()


def test_mmdet_mobilenet_v2_with_keras_numerics_loads_it(keras_refs, converted):
    """The full-backbone ablation rows: mmdet's MobileNetV2 with Conv2dAdaptivePadding convs,
    up to Keras' last layer (the 1280-channel conv, out_relu)."""
    model = MODELS.build(dict(type='MobileNetV2', widen_factor=0.75, out_indices=(5, 7),
                              conv_cfg=dict(type='Conv2dAdaptivePadding'), norm_cfg=KERAS_BN,
                              init_cfg=dict(type='Pretrained', checkpoint=str(converted[0.75][1]))))
    model.init_weights()
    model.eval()
    refs = keras_refs.mobilenet_v2
    with torch.no_grad():
        ours = model(_nchw(refs['x320']))
    for name, mine in zip(('block_15_add', 'out_relu'), ours):
        assert_close_to_max(_nhwc(mine), refs[f'0.75_320_{name}'], what=name)


def test_file_with_top(keras_refs, tmp_path):
    src = keras_refs.dir / mobilenet_v2_file(1.0, include_top=True)
    checkpoint = convert.run(['keras-mobilenetv2', str(src), str(tmp_path / 'top.pth')])
    assert checkpoint['meta']['dropped'] == ['predictions']  # tf.keras' name ('Logits' before)
    refs = keras_refs.mobilenet_v2
    with torch.no_grad():
        ours = _backbone(1.0, tmp_path / 'top.pth')(_nchw(refs['x224']))
    for name, mine in zip(TAPS, ours):
        assert_close_to_max(_nhwc(mine), refs[f'top_224_{name}'], what=name)


def test_config_check(converted, tmp_path, convert_fails):
    src = converted[0.75][0]
    ok = tmp_path / 'ok.pth'
    convert.run(['keras-mobilenetv2', str(src), str(ok), '--config', os.path.join(
        ROOT, 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py')])
    assert ok.is_file()
    bad = str(tmp_path / 'bad.pth')
    convert_fails(['keras-mobilenetv2', str(src), bad, '--config', os.path.join(
        ROOT, 'configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py')],
        'alpha 0.75 does not fit the backbone of', bad)
    err = convert_fails(['keras-mobilenetv2', str(src), bad, '--config', os.path.join(
        ROOT, 'configs/swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py')],
        "which need Keras' numerics, but the backbone of", bad)
    assert 'conv1.conv is a stride-2 Conv2d with symmetric padding' in err


def test_bad_files(keras_refs, tmp_path, convert_fails):
    dst = str(tmp_path / 'out.pth')
    text = tmp_path / 'weights.h5'
    text.write_text('not hdf5')
    convert_fails(['keras-mobilenetv2', str(text), dst], 'is not an HDF5 file', dst)
    convert_fails(['keras-mobilenetv2', str(tmp_path / 'nope.h5'), dst], 'no such file', dst)
    convert_fails(['keras-mobilenetv2', str(keras_refs.dir / 'other.h5'), dst],
           "is not Keras' MobileNetV2: it has no layer 'Conv1'", dst)


def test_missing_backbone_checkpoint_names_the_command(converted, tmp_path, monkeypatch, capsys):
    """A real-data config without its backbone file fails at build with one line naming the
    file and the rfcr-convert command; that command, run, makes the file it needs."""
    monkeypatch.chdir(tmp_path)  # checkpoints/ is relative: absent here
    configs = {
        'yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py':
            'TruncatedMobileNetV2',
        'ablation/yoloret_mobilenetv2-0.75-full_fpnpan_2xb8-320-250e_voc0712.py': 'MobileNetV2',
    }
    command = ('rfcr-convert keras-mobilenetv2 mobilenet_v2_weights_tf_dim_ordering_tf_kernels_'
               '0.75_224_no_top.h5 checkpoints/mobilenet_v2_x0.75_imagenet.pth')
    for config, backbone in configs.items():
        path = os.path.join(ROOT, 'configs', config)
        with pytest.raises(SystemExit) as e:  # rfcr-train stops before building anything
            train.main([path, '--work-dir', str(tmp_path / 'work')])
        message = str(e.value.code)
        assert '\n' not in message and command in message, message
        assert "init_cfg.checkpoint='checkpoints/mobilenet_v2_x0.75_imagenet.pth': no such " \
            'file' in message
        assert not (tmp_path / 'work').exists()
    # The same line from the backbone itself (mmdet's tools/train.py path).
    register_all_modules()
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', next(iter(configs))))
    model = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError) as e:
        model.init_weights()
    assert '\n' not in str(e.value) and command in str(e.value)

    os.symlink(converted[0.75][0], tmp_path / mobilenet_v2_file(0.75))
    convert.main(command.split()[1:])
    capsys.readouterr()
    model = MODELS.build(cfg.model)
    model.init_weights()
    sd = torch.load(tmp_path / 'checkpoints/mobilenet_v2_x0.75_imagenet.pth',
                    weights_only=True)['state_dict']
    torch.testing.assert_close(model.backbone.conv1.conv.weight, sd['conv1.conv.weight'])
