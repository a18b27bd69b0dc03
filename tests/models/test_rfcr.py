import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfcr.models import RFCR
from rfcr.models.layers import max_pool_to, upsample_to
from tests.conftest import randomize_bn_stats
from tests.reference import nearest_up, rfcr_reference, window_max


def _pyramid(size, channels=(24, 72, 120), shortcut=None, batch=2):
    """Maps of the sizes a stride-2 conv chain (3x3, padding 1) produces from `size`."""
    h, w = size
    sizes = []
    for _ in range(5):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    feats = [torch.randn(batch, c, *s) for c, s in zip(channels, sizes[2:])]
    if shortcut:
        feats.insert(0, torch.randn(batch, shortcut, *sizes[1]))
    return feats


def _neck(shortcut=None, fusion_norm=None, **kwargs):
    neck = RFCR((24, 72, 120), shortcut_channels=shortcut, fusion_norm=fusion_norm, **kwargs)
    neck.init_weights()
    randomize_bn_stats(neck)
    with torch.no_grad():
        neck.fusion_weights.uniform_(-1.5, 1.5)  # negative weights too
    return neck.eval()


@pytest.mark.parametrize('shortcut', [None, 16])
@pytest.mark.parametrize('size', [(320, 320), (321, 321), (333, 250), (97, 64)])
def test_matches_reference(shortcut, size):
    neck = _neck(shortcut)
    feats = _pyramid(size, shortcut=shortcut)
    with torch.no_grad():
        outs = neck(feats)
        refs = rfcr_reference(feats, neck.state_dict(), shortcut=bool(shortcut))
    assert len(outs) == len(refs) == 3
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_raw_inputs_come_first_in_outputs():
    neck = _neck()
    feats = _pyramid((128, 96))
    with torch.no_grad():
        outs = neck(feats)
    for f, o in zip(feats, outs):
        torch.testing.assert_close(o[:, :f.shape[1]], f, rtol=0, atol=0)
    assert neck.out_channels == (120, 168, 216)
    assert [o.shape[1] for o in outs] == list(neck.out_channels)


def test_collect_resize_order():
    """Stride 8: conv then pool. Stride 4: pool then conv. They do not commute, so a
    neck with the order swapped would differ from the reference."""
    neck = _neck(shortcut=16)
    feats = _pyramid((64, 64), shortcut=16)
    size16 = feats[2].shape[-2:]
    with torch.no_grad():
        conv_then_pool = window_max(neck.collect_convs[1](feats[1]), size16)
        pool_then_conv = neck.collect_convs[1](window_max(feats[1], size16))
        assert not torch.allclose(conv_then_pool, pool_then_conv, atol=1e-3)
        # With only the stride-8 weight non-zero, the fused map is built from conv->pool.
        neck.fusion_weights.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
        fused = neck(feats)[1][:, 72:]
        expected = neck.fuse_conv(conv_then_pool)
    torch.testing.assert_close(fused, expected)


def test_fusion_weights_start_at_one():
    neck = RFCR((8, 8, 8), shortcut_channels=8)
    neck.init_weights()
    assert torch.equal(neck.fusion_weights.data, torch.ones(4))
    assert neck.fusion_weights.requires_grad


@pytest.mark.parametrize('fusion_norm', ['softmax', 'fast'])
def test_normalized_fusion(fusion_norm):
    neck = _neck(fusion_norm=fusion_norm)
    w = neck.normalized_fusion_weights()
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0), atol=1e-3, rtol=0)
    feats = _pyramid((64, 48))
    with torch.no_grad():
        outs = neck(feats)
        # The same module with the normalized weights as raw weights and no normalization.
        plain = _neck()
        plain.load_state_dict(neck.state_dict())
        plain.fusion_weights.copy_(w)
        for a, b in zip(outs, plain(feats)):
            torch.testing.assert_close(a, b)


def test_norm_act_and_conv_cfg():
    neck = RFCR((8, 16, 32), collect_channels=8, fuse_channels=12,
                norm_cfg=dict(type='GN', num_groups=4), act_cfg=dict(type='ReLU'))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in neck.modules())
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ReLU6)) for m in neck.modules())
    outs = neck([torch.rand(1, 8, 8, 8), torch.rand(1, 16, 4, 4), torch.rand(1, 32, 2, 2)])
    assert [o.shape[1] for o in outs] == [20, 28, 44]


def test_default_init_is_xavier_on_convs():
    neck = RFCR((24, 72, 120))
    neck.init_weights()
    w = neck.collect_convs[0].weight
    bound = (6 / (24 + 48)) ** 0.5
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.5 * bound


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=(24, 72)), r'in_channels must list .* \(3 ints\), got \(24, 72\)'),
    (dict(in_channels=(24, 72, 120, 4)), r'in_channels must list .*got \(24, 72, 120, 4\)'),
    (dict(in_channels=(24, 0, 120)), r'in_channels\[1\] must be a positive int, got 0'),
    (dict(in_channels=(24, 72, -1)), r'in_channels\[2\] must be a positive int, got -1'),
    (dict(in_channels=(24, 7.5, 120)), r'in_channels\[1\] must be a positive int, got 7\.5'),
    (dict(in_channels=(24, 72, 120), collect_channels=0),
     r'collect_channels must be a positive int, got 0'),
    (dict(in_channels=(24, 72, 120), fuse_channels=-96),
     r'fuse_channels must be a positive int, got -96'),
    (dict(in_channels=(24, 72, 120), shortcut_channels=0),
     r'shortcut_channels must be a positive int, got 0'),
    (dict(in_channels=(24, 72, 120), fusion_norm='relu'),
     r"fusion_norm must be one of \(None, 'softmax', 'fast'\), got 'relu'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RFCR(**kwargs)


def test_wrong_number_of_inputs():
    neck = RFCR((24, 72, 120))
    feats = _pyramid((64, 64))
    with pytest.raises(ValueError, match=r'RFCR expects 3 inputs \(stride 8, 16, 32\), got 2'):
        neck(feats[:2])
    with pytest.raises(ValueError, match=r'RFCR expects 4 inputs \(stride 4, stride 8, 16, 32\)'
                                         r', got 3'):
        RFCR((24, 72, 120), shortcut_channels=16)(feats)


def test_channel_mismatch():
    neck = RFCR((24, 72, 120))
    feats = _pyramid((64, 64), channels=(24, 64, 120))
    with pytest.raises(ValueError, match=r'RFCR input 1 has shape \(2, 64, 4, 4\), but '
                                         r'in_channels\[1\]=72 expects \(N, 72, H, W\)'):
        neck(feats)
    neck = RFCR((24, 72, 120), shortcut_channels=16)
    feats = _pyramid((64, 64), shortcut=8)
    with pytest.raises(ValueError, match=r'input 0 .* but shortcut_channels=16'):
        neck(feats)


def test_not_a_pyramid():
    neck = RFCR((24, 72, 120))
    feats = [torch.rand(1, 24, 40, 40), torch.rand(1, 72, 20, 20), torch.rand(1, 120, 20, 20)]
    with pytest.raises(ValueError, match=r'stride-32 input: cannot resize a 20x20 map to '
                                         r'20x20; expected between 39x39 and 41x41'):
        neck(feats)
    feats = [torch.rand(1, 24, 40, 40), torch.rand(1, 72, 10, 10), torch.rand(1, 120, 5, 5)]
    with pytest.raises(ValueError, match=r'stride-8 input: cannot resize a 40x40 map to 10x10; '
                                         r'expected 20x20 \('):
        neck(feats)


# --- the resize helpers, against the reference gathers, over many sizes -----------------

@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), factor=st.sampled_from([2, 4]),
       ceil_h=st.booleans(), ceil_w=st.booleans())
def test_max_pool_to_any_size(h, w, factor, ceil_h, ceil_w):
    x = torch.randn(1, 3, h, w)
    size = (-(-h // factor) if ceil_h else h // factor, -(-w // factor) if ceil_w else w // factor)
    assume(0 not in size)
    torch.testing.assert_close(max_pool_to(x, size, factor), window_max(x, size, factor))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), dh=st.integers(-1, 1), dw=st.integers(-1, 1))
def test_upsample_to_any_size(h, w, dh, dw):
    x = torch.randn(1, 3, h, w)
    size = (2 * h + dh, 2 * w + dw)
    torch.testing.assert_close(upsample_to(x, size), nearest_up(x, size))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(17, 260), w=st.integers(17, 260), shortcut=st.booleans())
def test_any_input_size_matches_reference(h, w, shortcut):
    torch.manual_seed(h * 1000 + w)
    neck = RFCR((8, 16, 24), collect_channels=8, fuse_channels=8,
                shortcut_channels=4 if shortcut else None)
    neck.init_weights()
    randomize_bn_stats(neck)
    neck.eval()
    feats = _pyramid((h, w), channels=(8, 16, 24), shortcut=4 if shortcut else None, batch=1)
    with torch.no_grad():
        outs = neck(feats)
        refs = rfcr_reference(feats, neck.state_dict(), shortcut=shortcut)
    assert len(outs) == len(refs) == 3
    for f, o, r in zip(feats[-3:], outs, refs):
        assert o.shape[-2:] == f.shape[-2:]
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
