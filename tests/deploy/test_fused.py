"""FusedConv: the oneDNN route gives the reference values, and only runs where it may."""
import copy
import pickle

import pytest
import torch
from torch import nn

from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from mmcv.cnn.bricks.conv_ws import ConvWS2d

from rfcr.deploy import fused
from rfcr.deploy.fused import FusedConv, fused_activation

ACTS = [None, nn.ReLU(), nn.ReLU6(inplace=True), nn.SiLU(), nn.Sigmoid(), nn.LeakyReLU(0.1),
        nn.Hardswish(), nn.Hardtanh(-1.0, 2.0)]
requires_onednn = pytest.mark.skipif(not fused.onednn_available(),
                                     reason='no oneDNN fused conv op')


def _conv(cin=6, cout=10, k=3, stride=1, groups=1):
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)
    return conv.requires_grad_(False)


def _reference(conv, act, x, other=None):
    y = nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding,
                             conv.dilation, conv.groups)
    y = y if other is None else y + other
    return y if act is None else copy.deepcopy(act)(y)


@requires_onednn
@pytest.mark.parametrize('act', ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize('conv_args', [(6, 10, 1, 1, 1), (6, 10, 3, 2, 1), (8, 8, 3, 1, 8),
                                       (8, 8, 5, 1, 8)])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('with_other', [False, True])
def test_matches_reference(act, conv_args, channels_last, with_other, monkeypatch):
    monkeypatch.setattr(fused, 'MIN_FUSED_1X1_OUTPUT', 0)  # small 1x1 convs too, any threads
    monkeypatch.setattr(fused, 'MAX_MATMUL_1X1_OUTPUT', 0)  # the oneDNN route only
    conv = _conv(*conv_args)
    module = FusedConv(conv, copy.deepcopy(act))
    x = torch.randn(2, conv.in_channels, 13, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    other = None
    if with_other:
        other = torch.randn_like(_reference(conv, None, x))
    with torch.no_grad():
        expected = _reference(conv, act, x, other)
        got = module(x, other)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert module._packed.entries  # the fused route ran


@pytest.mark.parametrize('act', ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize('bias', [False, True])
@pytest.mark.parametrize('other', [None, 'channels_last', 'contiguous'])
def test_small_1x1_convs_on_channels_last_run_as_a_matrix_product(act, bias, other):
    conv = nn.Conv2d(6, 10, 1, bias=bias).requires_grad_(False)
    module = FusedConv(conv, copy.deepcopy(act))
    x = torch.randn(2, 6, 13, 10).contiguous(memory_format=torch.channels_last)
    if other is not None:
        other = torch.randn(2, 10, 13, 10).contiguous(
            memory_format=getattr(torch, other + '_format' if other == 'contiguous' else other))
    with torch.no_grad():
        assert module._matmul(x)
        got = module(x, other)
        expected = _reference(conv, act, x, other)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert not module._packed.entries  # not the oneDNN route
    with torch.no_grad():  # contiguous inputs, and outputs above the threshold, do not
        assert not module._matmul(x.contiguous())
        assert not module._matmul(torch.randn(1, 6, 200, 200).contiguous(
            memory_format=torch.channels_last))
    assert not module._matmul(x)  # autograd on


def test_reference_route_under_autograd_and_tracing():
    conv = _conv(k=1)
    module = FusedConv(conv, nn.ReLU6())
    x = torch.randn(1, 6, 7, 7)
    out = module(x)  # grad mode: the reference route
    assert not module._packed.entries
    torch.testing.assert_close(out, _reference(conv, nn.ReLU6(), x))
    with torch.no_grad():
        traced = torch.jit.trace(module, x, check_trace=False)
    assert 'mkldnn' not in str(traced.graph) and not module._packed.entries


@pytest.mark.parametrize('conv_cls', [ConvWS2d, Conv2dAdaptivePadding])
@pytest.mark.parametrize('channels_last', [False, True])
def test_conv_subclasses_run_their_own_forward(conv_cls, channels_last, monkeypatch):
    """mmcv's weight-standardized and TF-"SAME" convs are not conv2d of their weight: no
    fast route may replace their forward, whatever the thresholds."""
    monkeypatch.setattr(fused, 'MIN_FUSED_1X1_OUTPUT', 0)
    for k, stride in ((1, 1), (3, 2)):
        conv = conv_cls(6, 10, k, stride, bias=True).requires_grad_(False)
        module = FusedConv(conv, nn.ReLU6())
        x = torch.randn(1, 6, 12, 10)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got, expected = module(x), conv(x).clamp(0, 6)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
        assert not module._packed.entries and module._attr is None


@requires_onednn
def test_small_1x1_convs_stay_on_thnn_at_one_thread():
    module = FusedConv(_conv(k=1), nn.ReLU6())
    previous = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            module(torch.randn(1, 6, 8, 8))  # 640 output elements
            assert not module._packed.entries
            module(torch.randn(1, 6, 100, 100))  # 100,000
            assert len(module._packed.entries) == 1
            torch.set_num_threads(2)
            module(torch.randn(1, 6, 8, 8))
            assert len(module._packed.entries) == 2
    finally:
        torch.set_num_threads(previous)


def test_unfusable_convs_take_the_reference_route():
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode='reflect').requires_grad_(False)
    module = FusedConv(conv, nn.GELU())  # reflect padding, an activation without a twin
    assert module._attr is None
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(module(x), nn.GELU()(conv(x)))
    assert fused_activation(nn.GELU()) is None
    assert fused_activation(nn.ReLU6()) == ('hardtanh', [0.0, 6.0])


@requires_onednn
def test_packed_weights_follow_the_weight_and_the_input_shape(monkeypatch):
    monkeypatch.setattr(fused, 'MIN_FUSED_1X1_OUTPUT', 0)
    conv = _conv(k=1)
    module = FusedConv(conv)
    with torch.no_grad():
        for size in (5, 7, 5):
            x = torch.randn(1, 6, size, size)
            torch.testing.assert_close(module(x), conv(x), atol=1e-5, rtol=1e-5)
        assert len(module._packed.entries) == 2
        conv.weight.mul_(2)  # in place: the version counter moves, the cache is rebuilt
        torch.testing.assert_close(module(x), conv(x), atol=1e-5, rtol=1e-5)
        assert len(module._packed.entries) == 1
        # Copies and pickles drop the oneDNN tensors, which cannot be copied.
        for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            assert not clone._packed.entries
            torch.testing.assert_close(clone(x), conv(x), atol=1e-5, rtol=1e-5)


def test_weights_made_under_inference_mode_take_the_reference_route():
    with torch.inference_mode():  # inference tensors keep no version counter
        conv = _conv(k=3)
        module = FusedConv(conv, nn.ReLU6())
        x = torch.randn(1, conv.in_channels, 9, 9)
        out = module(x)
    assert not module._packed.entries
    torch.testing.assert_close(out, _reference(conv, nn.ReLU6(), x))
