"""The registered modules run their own layers in every mode: whatever is done to their
weights, eval output equals that of a fresh module loaded with the same state dict, and
forward hooks see each call once."""
import pytest
import torch
from torch import nn

from mmdet.registry import MODELS
from tests.conftest import randomize_bn_stats
from tests.reference import rfcr_reference

CFGS = {
    'backbone': dict(type='TruncatedMobileNetV2', widen_factor=0.5, out_strides=(4, 8, 16, 32)),
    'efficientnet': dict(type='TruncatedEfficientNet', arch='b0', out_strides=(4, 8, 16, 32)),
    'rfcr': dict(type='RFCR', in_channels=(24, 72, 120)),
    'rfcr-shortcut': dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=16),
    'yoloret-neck': dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=33),
    'head': dict(type='YOLOReTHead', num_classes=6, in_channels=(33, 33, 33)),
}


def _inputs(name):
    h, w = 41, 37  # odd: the ceil path of every resize
    pyramid = [torch.randn(2, 24, h, w), torch.randn(2, 72, -(-h // 2), -(-w // 2)),
               torch.randn(2, 120, -(-h // 4), -(-w // 4))]
    return {
        'backbone': (torch.randn(2, 3, 97, 75), ),
        'efficientnet': (torch.randn(1, 3, 65, 47), ),
        'rfcr': (pyramid, ),
        'rfcr-shortcut': ([torch.randn(2, 16, 2 * h, 2 * w)] + pyramid, ),
        'yoloret-neck': ([torch.randn(2, 120, 21, 19), torch.randn(2, 168, 11, 10),
                          torch.randn(2, 216, 6, 5)], ),
        'head': ([torch.randn(2, 33, 6, 5), torch.randn(2, 33, 11, 10),
                  torch.randn(2, 33, 21, 19)], ),
    }[name]


def _build(name):
    model = MODELS.build(CFGS[name])
    model.init_weights()
    randomize_bn_stats(model)
    if hasattr(model, 'fusion_weights'):
        with torch.no_grad():
            model.fusion_weights.uniform_(-1.5, 1.5)
    model.eval()
    return model


def _flat(outputs):
    return [outputs] if torch.is_tensor(outputs) else [t for o in outputs for t in _flat(o)]


def _assert_equals_fresh(model, name, inputs):
    fresh = MODELS.build(CFGS[name])
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        got, expected = _flat(model(*inputs)), _flat(fresh(*inputs))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def _first_conv(model):
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def _ema_step(model, name):  # mmengine's EMAHook writes p.data in place
    for p in model.parameters():
        p.data.mul_(0.9).add_(0.05)


def _new_parameter(model, name):
    conv = _first_conv(model)
    conv.weight = nn.Parameter(conv.weight.detach() * -0.5)


def _load_assign(model, name):
    model.load_state_dict(_build(name).state_dict(), assign=True)


def _replace_bn_buffer(model, name):
    bn = next((m for m in model.modules() if isinstance(m, nn.BatchNorm2d)), None)
    if bn is None:  # the head has no BN: replace a conv bias instead
        conv = _first_conv(model)
        conv.bias = nn.Parameter(conv.bias.detach() + 1)
        return
    bn.running_var = bn.running_var * 3.0


CHANGES = {'p.data.mul_': _ema_step, 'new nn.Parameter': _new_parameter,
           'load_state_dict(assign=True)': _load_assign, 'BN buffer replaced': _replace_bn_buffer}


@pytest.mark.parametrize('change', CHANGES)
@pytest.mark.parametrize('name', CFGS)
def test_eval_output_follows_every_weight_change(name, change):
    model, inputs = _build(name), _inputs(name)
    with torch.no_grad():
        before = _flat(model(*inputs))  # any cache a module kept would be built here
    _assert_equals_fresh(model, name, inputs)
    CHANGES[change](model, name)
    _assert_equals_fresh(model, name, inputs)
    with torch.no_grad():
        after = _flat(model(*inputs))
    assert any(not torch.allclose(a, b) for a, b in zip(before, after)), 'nothing changed'


@pytest.mark.parametrize('name', CFGS)
def test_forward_hooks_fire_once_per_call_and_never_after_removal(name):
    model, inputs = _build(name), _inputs(name)
    calls = {'module': 0, 'conv': 0}
    handles = [
        model.register_forward_hook(lambda *a: calls.__setitem__('module', calls['module'] + 1)),
        _first_conv(model).register_forward_hook(
            lambda *a: calls.__setitem__('conv', calls['conv'] + 1)),
    ]
    with torch.no_grad():
        model(*inputs)
    assert calls == {'module': 1, 'conv': 1}
    for h in handles:
        h.remove()
    with torch.no_grad():
        model(*inputs)
    assert calls == {'module': 1, 'conv': 1}


@pytest.mark.parametrize('name', ['rfcr', 'rfcr-shortcut'])
def test_rfcr_eval_output_is_the_official_function(name):
    """Against an independent re-statement of the official rfcr_module, at an odd size,
    without autograd and with it (the same layers run either way)."""
    model, inputs = _build(name), _inputs(name)
    refs = rfcr_reference(inputs[0], model.state_dict(), shortcut=name == 'rfcr-shortcut')
    with torch.no_grad():
        outs = model(*inputs)
    grad_outs = model(*inputs)
    assert grad_outs[0].requires_grad
    assert len(outs) == len(grad_outs) == len(refs)
    for out, grad_out, ref in zip(outs, grad_outs, refs):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        assert torch.equal(out, grad_out.detach())


def test_modules_hold_nothing_beyond_their_layers():
    for name in CFGS:
        model, inputs = _build(name), _inputs(name)
        state = set(model.__dict__)
        with torch.no_grad():
            model(*inputs)
        assert set(model.__dict__) == state, f'{name} kept {set(model.__dict__) - state}'
