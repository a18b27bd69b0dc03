import argparse
import re

import pytest
import timm
import torch
import torchvision

from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS
from rfcr.models import TruncatedMobileNetV2
from tests.conftest import randomize_bn_stats

# torchvision `features` indices whose outputs are the stride 4/8/16/32 taps.
TV_TAPS = {4: 3, 8: 6, 16: 13, 32: 16}


def _torchvision(width):
    model = torchvision.models.mobilenet_v2(width_mult=width)
    randomize_bn_stats(model)
    return model.eval()


def _load(model, path, **kwargs):
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path), **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('width', [0.75, 1.0, 1.4])
def test_torchvision_parity(width, tmp_path):
    tv = _torchvision(width)
    path = tmp_path / 'mobilenet_v2.pth'
    torch.save(tv.state_dict(), path)
    model = _load(TruncatedMobileNetV2(width, out_strides=(4, 8, 16, 32)), path)

    x = torch.randn(2, 3, 97, 131)
    expected, y = {}, x
    with torch.no_grad():
        for i, layer in enumerate(tv.features):
            y = layer(y)
            expected[i] = y
        outs = model(x)
    assert model.strides == (4, 8, 16, 32)
    assert len(outs) == 4
    for stride, out in zip(model.strides, outs):
        ref = expected[TV_TAPS[stride]]
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('width, channels', [(0.75, (24, 72, 120)), (1.0, (32, 96, 160)),
                                             (1.4, (48, 136, 224))])
def test_out_channels_and_strides(width, channels):
    model = TruncatedMobileNetV2(width).eval()
    assert model.out_channels == channels
    assert model.strides == (8, 16, 32)
    outs = model(torch.rand(1, 3, 64, 64))
    assert tuple(o.shape[1] for o in outs) == channels
    assert tuple(o.shape[-1] for o in outs) == (8, 4, 2)
    assert TruncatedMobileNetV2(width, out_strides=(4, 8, 16, 32)).out_channels[0] == \
        torchvision.models.mobilenet_v2(width_mult=width).features[3].out_channels


@pytest.mark.parametrize('width', [0.35, 0.75, 1.0, 1.4])
def test_parameter_count_equals_torchvision_features_17(width):
    model = TruncatedMobileNetV2(width)
    tv = torchvision.models.mobilenet_v2(width_mult=width)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in tv.features[:17].parameters())
    assert count < sum(p.numel() for p in tv.features.parameters())


def test_truncated_layers_are_not_built():
    model = TruncatedMobileNetV2()
    assert not hasattr(model, 'layer7') and not hasattr(model, 'conv2')
    assert {name.split('.')[0] for name, _ in model.named_children()} == \
        {'conv1', *(f'layer{i}' for i in range(1, 7))}
    # No module computes with 320 or 1280 channels.
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert 320 not in (m.in_channels, m.out_channels)
            assert 1280 not in (m.in_channels, m.out_channels)


def test_stride4_tap_only_when_asked():
    assert len(TruncatedMobileNetV2()(torch.rand(1, 3, 64, 64))) == 3
    model = TruncatedMobileNetV2(out_strides=(4, 8, 16, 32))
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    assert model.out_channels == (24, 32, 96, 160)


def test_mmdet_layout_checkpoint(tmp_path):
    mm = MobileNetV2(widen_factor=0.75, out_indices=(1, 2, 4, 5))
    randomize_bn_stats(mm)
    mm.eval()
    path = tmp_path / 'mmdet.pth'
    torch.save(mm.state_dict(), path)
    model = _load(TruncatedMobileNetV2(0.75, out_strides=(4, 8, 16, 32)), path)
    x = torch.randn(1, 3, 75, 64)
    with torch.no_grad():
        for a, b in zip(model(x), mm(x)):
            torch.testing.assert_close(a, b)


def _mmpretrain_layout(mmdet_state_dict):
    """mmpretrain names a block's ConvModules conv.0 / conv.1 / conv.2 (in order) and
    wraps the backbone of an ImageClassifier under ``backbone.`` next to ``head.fc``."""
    out = {}
    for key, value in mmdet_state_dict.items():
        m = re.match(r'(layer\d+\.\d+)\.(expand_conv|depthwise_conv|linear_conv)\.(.*)', key)
        if m:
            has_expand = f'{m.group(1)}.expand_conv.conv.weight' in mmdet_state_dict
            order = (['expand_conv'] if has_expand else []) + ['depthwise_conv', 'linear_conv']
            key = f'{m.group(1)}.conv.{order.index(m.group(2))}.{m.group(3)}'
        out[f'backbone.{key}'] = value
    out['head.fc.weight'] = torch.zeros(1000, 1280)
    out['head.fc.bias'] = torch.zeros(1000)
    return {'meta': {'epoch': 100}, 'state_dict': out}


def test_mmpretrain_layout_checkpoint(tmp_path):
    mm = MobileNetV2(widen_factor=1.0, out_indices=(2, 4, 5))
    randomize_bn_stats(mm)
    mm.eval()
    path = tmp_path / 'mmpretrain.pth'
    torch.save(_mmpretrain_layout(mm.state_dict()), path)
    model = _load(TruncatedMobileNetV2(1.0), path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), mm(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('prefix', ['backbone.', 'backbone'])  # mmengine's spelling too
def test_detector_checkpoint_with_prefix(tmp_path, mmengine_messages, prefix):
    tv = _torchvision(1.0)
    path = tmp_path / 'det.pth'
    sd = {f'backbone.{k}': v for k, v in tv.state_dict().items()}
    sd['bbox_head.conv.weight'] = torch.zeros(3)
    torch.save({'state_dict': sd}, path)
    model = _load(TruncatedMobileNetV2(1.0), path, prefix=prefix)
    torch.testing.assert_close(model.conv1.conv.weight, tv.features[0][0].weight)
    (message, ) = [m for m in mmengine_messages if m.startswith('TruncatedMobileNetV2')]
    assert 'bbox_head.conv.weight' in message and 'backbone.features.18.0.weight' in message
    with pytest.raises(ValueError, match=r"det\.pth': the checkpoint has no key starting with "
                       r"prefix='neck\.'"):
        _load(TruncatedMobileNetV2(1.0), path, prefix='neck')


def test_dropped_keys_are_logged_by_name(tmp_path, mmengine_messages):
    tv = _torchvision(1.0)
    path = tmp_path / 'tv.pth'
    torch.save(tv.state_dict(), path)
    _load(TruncatedMobileNetV2(1.0), path)
    message = '\n'.join(mmengine_messages)
    for key in ('features.17.conv.0.0.weight', 'features.18.0.weight',
                'features.18.1.running_var', 'classifier.1.weight', 'classifier.1.bias'):
        assert key in message
    assert 'features.16.conv.0.0.weight' not in message


def test_unexpected_and_missing_keys_are_errors(tmp_path):
    tv = _torchvision(1.0)
    sd = tv.state_dict()
    sd['features.5.extra'] = torch.zeros(1)
    del sd['features.4.conv.1.1.running_mean']
    path = tmp_path / 'bad.pth'
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r'(?s)missing \(1\): layer3\.0\.depthwise_conv\.bn\.'
                       r'running_mean.*unexpected'):
        _load(TruncatedMobileNetV2(1.0), path)


def test_width_mismatch_is_an_error(tmp_path):
    path = tmp_path / 'tv.pth'
    torch.save(torchvision.models.mobilenet_v2(width_mult=1.0).state_dict(), path)
    with pytest.raises(ValueError, match=r'shape mismatch.*conv1\.conv\.weight: checkpoint '
                       r'\(32, 3, 3, 3\) vs model \(24, 3, 3, 3\)'):
        _load(TruncatedMobileNetV2(0.75), path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'features.0.0.weight': argparse.Namespace(payload=1)}, path)
    with pytest.raises(ValueError, match='weights_only'):
        _load(TruncatedMobileNetV2(1.0), path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file'):
        _load(TruncatedMobileNetV2(1.0), tmp_path / 'nope.pth')


@pytest.mark.parametrize('frozen', [0, 3, 6])
def test_frozen_stages(frozen):
    model = TruncatedMobileNetV2(frozen_stages=frozen)
    model.train()
    frozen_modules = [model.conv1] + [getattr(model, f'layer{i}') for i in range(1, frozen + 1)]
    for m in frozen_modules:
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not b.training for b in m.modules())
    for i in range(frozen + 1, 7):
        layer = getattr(model, f'layer{i}')
        assert all(p.requires_grad for p in layer.parameters())
        assert all(b.training for b in layer.modules())


def test_frozen_stage_statistics_do_not_move():
    model = TruncatedMobileNetV2(frozen_stages=2).train()
    before = model.layer2[0].depthwise_conv.bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.layer2[0].depthwise_conv.bn.running_mean, before)
    assert model.layer3[0].depthwise_conv.bn.running_mean.abs().sum() > 0  # not frozen: moved


def test_norm_eval():
    model = TruncatedMobileNetV2(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(p.requires_grad for p in model.parameters())


def test_norm_and_act_cfg():
    model = TruncatedMobileNetV2(norm_cfg=dict(type='GN', num_groups=8),
                                 act_cfg=dict(type='ReLU'))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    assert model(torch.rand(1, 3, 32, 32))[-1].shape == (1, 160, 1, 1)


def test_with_cp_matches_plain():
    plain = TruncatedMobileNetV2(0.75).train()
    cp = TruncatedMobileNetV2(0.75, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    a, b = plain(x), cp(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    sum(o.sum() for o in b).backward()
    assert x.grad is not None


def test_default_init_is_kaiming_and_bn_ones():
    model = TruncatedMobileNetV2()
    model.init_weights()
    assert torch.all(model.conv1.bn.weight == 1)
    assert model.layer1[0].depthwise_conv.conv.weight.std() > 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(widen_factor=0), r'widen_factor must be a positive number, got 0'),
    (dict(widen_factor=-0.5), r'widen_factor must be a positive number, got -0\.5'),
    (dict(widen_factor='1.0'), r"widen_factor must be a positive number, got '1\.0'"),
    (dict(widen_factor=float('nan')), r'widen_factor must be a positive number, got nan'),
    (dict(frozen_stages=7), r'frozen_stages must be an int in \[-1, 6\].*got 7'),
    (dict(frozen_stages=-2), r'frozen_stages must be an int in \[-1, 6\].*got -2'),
    (dict(frozen_stages=1.5), r'frozen_stages must be an int in \[-1, 6\].*got 1\.5'),
    (dict(out_strides=(8, 16, 64)), r'out_strides must be .*\(2, 4, 8, 16, 32\), got \(8, 16, 64\)'),
    (dict(out_strides=(16, 8)), r'out_strides must be a non-empty increasing'),
    (dict(out_strides=()), r'out_strides must be a non-empty increasing'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TruncatedMobileNetV2(**kwargs)


def test_registered_name_does_not_clash():
    assert MODELS.get('TruncatedMobileNetV2') is TruncatedMobileNetV2
    assert MODELS.get('MobileNetV2') is MobileNetV2


def test_weights_only_loading_is_used(tmp_path, monkeypatch):
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    path = tmp_path / 'tv.pth'
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    _load(TruncatedMobileNetV2(), path)
    assert calls == [True]


def test_same_padding_only_on_the_stride2_convs():
    from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
    model = TruncatedMobileNetV2(0.75, pad_type='same')
    same = [n for n, m in model.named_modules() if isinstance(m, Conv2dAdaptivePadding)]
    assert same == ['conv1.conv'] + [f'layer{i}.0.depthwise_conv.conv' for i in (2, 3, 4, 6)]
    strided = [n for n, m in model.named_modules()
               if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    assert strided == same
    plain = TruncatedMobileNetV2(0.75).eval()
    plain.load_state_dict(model.state_dict())  # the same parameters
    model.eval()
    # Odd at every stride-2 conv (65, 33, 17, 9, 5 and 33, 17, 9, 5, 3): "SAME" pads 1 and 1
    # there, as symmetric padding does. Even sizes pad the bottom/right only: a shift.
    x = torch.randn(1, 3, 65, 33)
    outs, plain_outs = model(x), plain(x)
    assert len(outs) == len(plain_outs) == 3
    for a, b in zip(outs, plain_outs):
        torch.testing.assert_close(a, b)
    x = torch.randn(1, 3, 64, 64)
    outs, plain_outs = model(x), plain(x)
    assert len(outs) == len(plain_outs) == 3
    for a, b in zip(outs, plain_outs):
        assert a.shape == b.shape and not torch.allclose(a, b)


def test_same_padding_is_tensorflow_same():
    """A stride-2 3x3 conv pads 0 at the top/left and 1 at the bottom/right on even sizes,
    1 and 1 on odd sizes."""
    model = TruncatedMobileNetV2(0.75, pad_type='same').eval()
    conv = model.conv1.conv
    for h, w, pads in [(8, 10, (0, 1, 0, 1)), (9, 7, (1, 1, 1, 1)), (8, 7, (1, 1, 0, 1))]:
        x = torch.randn(1, 3, h, w)
        expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pads), conv.weight,
                                              stride=2)
        torch.testing.assert_close(conv(x), expected)


def _timm(name):
    model = timm.create_model(name, pretrained=False)
    randomize_bn_stats(model)
    return model.eval()


@pytest.mark.parametrize('name, width', [('mobilenetv2_100', 1.0), ('mobilenetv2_140', 1.4)])
def test_timm_layout(name, width, tmp_path):
    tm = _timm(name)
    path = tmp_path / f'{name}.pth'
    torch.save(tm.state_dict(), path)
    model = _load(TruncatedMobileNetV2(width, out_strides=(4, 8, 16, 32)), path)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        y = tm.bn1(tm.conv_stem(x))
        expected = []
        for i, stage in enumerate(tm.blocks[:6]):
            y = stage(y)
            if i in (1, 2, 4, 5):  # strides 4, 8, 16, 32
                expected.append(y)
        outs = model(x)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_timm_depth_variants_are_refused(tmp_path):
    path = tmp_path / 'mobilenetv2_110d.pth'
    torch.save(_timm('mobilenetv2_110d').state_dict(), path)
    with pytest.raises(ValueError, match=r"mobilenetv2_110d\.pth'?: the timm checkpoint has "
                       r'\(1, 3, 4, 5, 4, 4, 1\) blocks per stage, MobileNetV2 has '
                       r'\(1, 2, 3, 4, 3, 3, 1\): depth-multiplied variants'):
        _load(TruncatedMobileNetV2(1.0), path)


def test_keras_checkpoint_needs_keras_numerics(tmp_path):
    """A checkpoint marked as Keras' (rfcr-convert) loads only where it computes as Keras."""
    path = tmp_path / 'keras.pth'
    state_dict = MobileNetV2(widen_factor=0.75).state_dict()
    torch.save({'state_dict': state_dict,
                'meta': {'keras_numerics': dict(pad_type='same', bn_eps=1e-3)}}, path)
    with pytest.raises(ValueError, match=r"keras\.pth' holds Keras weights, which need Keras' "
                       r'numerics, but TruncatedMobileNetV2\.conv1\.conv is a stride-2 Conv2d'):
        _load(TruncatedMobileNetV2(0.75), path)
    model = _load(TruncatedMobileNetV2(0.75, pad_type='same', norm_cfg=dict(type='BN', eps=1e-3)),
                  path)
    torch.testing.assert_close(model.conv1.conv.weight, state_dict['conv1.conv.weight'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(pad_type='SAME'), r"pad_type must be '' \(symmetric\) or 'same' \(TensorFlow\), "
                            r"got 'SAME'"),
    (dict(pad_type='same', conv_cfg=dict(type='ConvWS')),
     r"pad_type='same' builds mmcv's Conv2dAdaptivePadding .* needs conv_cfg=None"),
])
def test_bad_pad_type(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TruncatedMobileNetV2(**kwargs)
