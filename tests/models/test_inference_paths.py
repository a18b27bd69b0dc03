"""The no-grad fast paths of the resize helpers, alone and inside RFCR and YOLOReTNeck,
against the reference ops: the same values, for every memory format, odd sizes included;
never taken while tracing."""
import copy
import pickle

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfcr.models import RFCR, TruncatedMobileNetV2, YOLOReTNeck
from rfcr.models.layers import max_pool_to, upsample_to
from rfcr.models.layers.folded import own_layers
from rfcr.models.layers.resize import eager_inference
from tests.conftest import randomize_bn_stats
from tests.reference import nearest_up, rfcr_reference, window_max

FORMATS = [torch.contiguous_format, torch.channels_last]


def test_eager_inference_only_without_autograd_and_tracers():
    assert not eager_inference()
    with torch.no_grad():
        assert eager_inference()
    with torch.inference_mode():
        assert eager_inference()

    seen = []

    def probe(x):
        seen.append(eager_inference())
        return x + 1

    with torch.no_grad():
        torch.jit.trace(probe, torch.rand(2), check_trace=False)
    assert seen == [False]


@pytest.mark.parametrize('memory_format', FORMATS)
@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), factor=st.sampled_from([2, 4]),
       ceil_h=st.booleans(), ceil_w=st.booleans())
def test_max_pool_to_fast_path_is_exact(memory_format, h, w, factor, ceil_h, ceil_w):
    size = (-(-h // factor) if ceil_h else h // factor, -(-w // factor) if ceil_w else w // factor)
    assume(0 not in size)
    x = torch.randn(2, 5, h, w).to(memory_format=memory_format)
    with torch.no_grad():
        out = max_pool_to(x, size, factor)
    assert torch.equal(out, window_max(x, size, factor))


@pytest.mark.parametrize('memory_format', FORMATS)
@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), dh=st.integers(-1, 1), dw=st.integers(-1, 1))
def test_upsample_to_fast_path_is_exact(memory_format, h, w, dh, dw):
    x = torch.randn(2, 5, h, w).to(memory_format=memory_format)
    size = (2 * h + dh, 2 * w + dw)
    with torch.no_grad():
        out = upsample_to(x, size)
    assert torch.equal(out, nearest_up(x, size))


def test_fast_paths_refuse_what_the_reference_refuses():
    with torch.no_grad(), pytest.raises(ValueError, match=r'cannot resize a 9x9 map to 3x3'):
        max_pool_to(torch.rand(1, 1, 9, 9), (3, 3))
    with torch.no_grad(), pytest.raises(ValueError, match=r'cannot resize a 4x4 map to 10x8'):
        upsample_to(torch.rand(1, 1, 4, 4), (10, 8))


def _pyramid(size, channels, shortcut=None):
    h, w = size
    sizes = []
    for _ in range(5):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    feats = [torch.randn(2, c, *s) for c, s in zip(channels, sizes[2:])]
    if shortcut:
        feats.insert(0, torch.randn(2, shortcut, *sizes[1]))
    return feats


@pytest.mark.parametrize('memory_format', FORMATS)
@pytest.mark.parametrize('shortcut', [None, 8])
@pytest.mark.parametrize('size', [(320, 320), (321, 321), (333, 250)])
@pytest.mark.parametrize('fusion_norm', [None, 'fast'])
def test_rfcr_inference_path_matches_autograd_path(memory_format, shortcut, size, fusion_norm):
    neck = RFCR((16, 24, 32), collect_channels=16, fuse_channels=24, shortcut_channels=shortcut,
                fusion_norm=fusion_norm)
    neck.init_weights()
    randomize_bn_stats(neck)
    with torch.no_grad():
        neck.fusion_weights.uniform_(-1.5, 1.5)
    neck.eval().to(memory_format=memory_format)
    feats = [f.to(memory_format=memory_format) for f in _pyramid(size, (16, 24, 32), shortcut)]
    autograd_outs = neck(feats)  # parameters require grad: the reference path
    assert autograd_outs[0].requires_grad
    with torch.inference_mode():
        fast_outs = neck(feats)
        refs = rfcr_reference(feats, neck.state_dict(), shortcut=bool(shortcut))
    for fast, slow, ref in zip(fast_outs, autograd_outs, refs):
        torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-5)
        if fusion_norm is None:
            torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_rfcr_inference_path_leaves_inputs_alone():
    neck = RFCR((16, 24, 32), collect_channels=16, fuse_channels=24).eval()
    feats = _pyramid((64, 64), (16, 24, 32))
    copies = [f.clone() for f in feats]
    with torch.no_grad():
        neck(feats)
    for f, c in zip(feats, copies):
        assert torch.equal(f, c)


@pytest.mark.parametrize('memory_format', FORMATS)
def test_yoloret_neck_inference_path_matches_autograd_path(memory_format):
    neck = YOLOReTNeck((40, 48, 56), out_channels=30, widths=(16, 24, 32))
    neck.init_weights()
    randomize_bn_stats(neck)
    neck.eval().to(memory_format=memory_format)
    feats = [f.to(memory_format=memory_format) for f in _pyramid((161, 97), (40, 48, 56))]
    slow = neck(feats)
    with torch.inference_mode():
        fast = neck(feats)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


def _trained_like_rfcr(shortcut=None):
    neck = RFCR((24, 72, 120), shortcut_channels=shortcut)
    neck.init_weights()
    randomize_bn_stats(neck)
    with torch.no_grad():
        neck.fusion_weights.uniform_(-1.5, 1.5)  # negative weights too
    return neck.eval()


def _rfcr_feats(shortcut=None, size=(41, 37)):
    h, w = size
    feats = [torch.randn(2, 24, h, w), torch.randn(2, 72, -(-h // 2), -(-w // 2)),
             torch.randn(2, 120, -(-h // 4), -(-w // 4))]
    if shortcut:
        feats.insert(0, torch.randn(2, shortcut, 2 * h, 2 * w))
    return feats


def _backbone():
    model = TruncatedMobileNetV2(widen_factor=0.5, out_strides=(4, 8, 16, 32))
    model.init_weights()
    randomize_bn_stats(model)
    return model.eval(), (torch.randn(2, 3, 97, 75), )


def _rfcr(shortcut=None):
    return _trained_like_rfcr(shortcut), (_rfcr_feats(shortcut), )


def _yoloret_neck():
    model = YOLOReTNeck(in_channels=(120, 168, 216), out_channels=33)
    model.init_weights()
    randomize_bn_stats(model)
    return model.eval(), ([torch.randn(2, 120, 21, 19), torch.randn(2, 168, 11, 10),
                           torch.randn(2, 216, 6, 5)], )


FAST_PATH_MODULES = {'backbone': _backbone, 'rfcr': _rfcr,
                     'rfcr-shortcut': lambda: _rfcr(16), 'yoloret-neck': _yoloret_neck}


def _some_weight(model):
    return next(p for n, p in model.named_parameters() if 'weight' in n)


@pytest.mark.parametrize('name', FAST_PATH_MODULES)
def test_eval_fast_path_follows_the_weights(name):
    """Eval without autograd runs a folded copy (BN, fusion weights and linear maps folded):
    the values of the module's own layers (run with autograd on), rebuilt whenever a weight
    or BN statistic changes in place or by load_state_dict."""
    model, inputs = FAST_PATH_MODULES[name]()

    def check():
        reference = model(*inputs)  # autograd on: the module's own layers
        with torch.no_grad():
            fast = model(*inputs)
        assert len(fast) == len(reference)
        for out, ref in zip(fast, reference):
            torch.testing.assert_close(out, ref.detach(), rtol=1e-4, atol=1e-4)

    check()
    folded = model.__dict__['_folded_cache']['folded']  # the fast path ran, on a copy
    assert folded is not None and folded is not model
    with torch.no_grad():
        _some_weight(model).mul_(-0.5)  # in place, as an optimizer step does
    check()
    assert model.__dict__['_folded_cache']['folded'] is not folded  # rebuilt
    other, _ = FAST_PATH_MODULES[name]()
    model.load_state_dict(other.state_dict())
    check()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(2.0)  # a BN statistic
    check()
    assert not any('folded' in key for key in model.state_dict())
    assert not any('folded' in n for n, _ in model.named_modules())
    assert '_folded_cache' not in copy.deepcopy(model).__dict__
    assert '_folded_cache' not in pickle.loads(pickle.dumps(model)).__dict__


@pytest.mark.parametrize('name', FAST_PATH_MODULES)
def test_fast_path_follows_replaced_submodules_and_yields_to_hooks(name):
    model, inputs = FAST_PATH_MODULES[name]()

    def check():
        reference = model(*inputs)  # autograd on: the module's own layers
        with torch.no_grad():
            fast = model(*inputs)
        for out, ref in zip(fast, reference):
            torch.testing.assert_close(out, ref.detach(), rtol=1e-4, atol=1e-4)

    check()
    # Replace a conv-holding submodule by a copy with other weights, after the cache exists.
    parent, attr = next((m, n) for m in model.modules() for n, c in m.named_children()
                        if any(isinstance(x, torch.nn.Conv2d) for x in c.modules()))
    replacement = copy.deepcopy(getattr(parent, attr))
    with torch.no_grad():
        for p in replacement.parameters():
            p.mul_(0.5)
    setattr(parent, attr, replacement)
    check()
    # A forward hook on a submodule sees the submodule run, in eval without autograd too.
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        model(*inputs)
    handle.remove()
    assert len(seen) == 1
    check()


@pytest.mark.parametrize('name', FAST_PATH_MODULES)
def test_fast_path_not_taken_while_training_or_with_autograd(name):
    model, inputs = FAST_PATH_MODULES[name]()
    outs = model(*inputs)  # eval, autograd on: the module's own layers, differentiable
    assert all(out.requires_grad for out in outs)
    assert '_folded_cache' not in model.__dict__
    with own_layers(), torch.no_grad():
        model(*inputs)
    assert '_folded_cache' not in model.__dict__
    model.train()
    with torch.no_grad():
        model(*inputs)
    assert '_folded_cache' not in model.__dict__


@pytest.mark.parametrize('name', FAST_PATH_MODULES)
def test_modules_built_under_inference_mode_run_their_own_layers(name):
    with torch.inference_mode():  # inference tensors keep no version counter
        model, inputs = FAST_PATH_MODULES[name]()
        outs = model(*inputs)
    assert model.__dict__['_folded_cache']['tensors'] is None
    with torch.no_grad(), own_layers():
        for out, ref in zip(outs, model(*inputs)):
            torch.testing.assert_close(out, ref)


def test_switch_to_deploy_marks_folded_modules():
    from rfcr.deploy import switch_to_deploy
    model, (x, ) = _backbone()
    with torch.no_grad():
        expected = model(x)
        folded = switch_to_deploy(copy.deepcopy(model))
        outs = folded(x)
    assert '_folded_cache' not in folded.__dict__  # no second copy of a folded model
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
