"""ConvAct: a folded ConvModule (padding, conv, optional sum, activation) computes what the
ConvModule computes, the same way with or without autograd and under tracing."""
import copy

import pytest
import torch
from mmcv.cnn import ConvModule
from torch import nn

from rfcr.deploy import ConvAct, switch_to_deploy
from tests.conftest import randomize_bn_stats

ACTS = [None, dict(type='ReLU6'), dict(type='SiLU'), dict(type='LeakyReLU', negative_slope=0.1),
        dict(type='HSwish'), dict(type='GELU')]


def _module(act_cfg, padding_mode='zeros', stride=1, groups=1):
    module = ConvModule(8, 8, 3, stride=stride, padding=1, groups=groups,
                        norm_cfg=dict(type='BN'), act_cfg=act_cfg, padding_mode=padding_mode)
    randomize_bn_stats(module)
    return module.eval()


def _reference(module, x, other=None):
    """The ConvModule's own layers, with ``other`` added before the activation."""
    if module.with_explicit_padding:
        x = module.padding_layer(x)
    y = module.norm(module.conv(x))
    y = y if other is None else y + other
    return module.activate(y) if module.with_activation else y


@pytest.mark.parametrize('act_cfg', ACTS, ids=lambda a: a and a['type'])
@pytest.mark.parametrize('padding_mode, stride, groups', [('zeros', 1, 1), ('zeros', 2, 8),
                                                          ('reflect', 1, 1)])
@pytest.mark.parametrize('with_other', [False, True])
def test_matches_the_conv_module(act_cfg, padding_mode, stride, groups, with_other):
    module = _module(act_cfg, padding_mode, stride, groups)
    folded = switch_to_deploy(copy.deepcopy(module))
    assert isinstance(folded, ConvAct) and type(folded.conv) is nn.Conv2d
    assert (folded.padding is None) == (padding_mode == 'zeros')
    assert (folded.act is None) == (act_cfg is None)
    x = torch.randn(2, 8, 13, 10)
    with torch.no_grad():
        other = torch.randn_like(module(x)) if with_other else None
        expected = _reference(module, x, other)
        got = folded(x, other)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_conv_it_cannot_fold_runs_as_it_is():
    """A ConvModule without norm keeps its conv whatever its class (ConvWS standardizes its
    weight at every call) and only takes its activation along."""
    module = ConvModule(6, 10, 3, padding=1, conv_cfg=dict(type='ConvWS'), norm_cfg=None,
                        act_cfg=dict(type='ReLU6')).eval()
    folded = switch_to_deploy(copy.deepcopy(module))
    assert isinstance(folded, ConvAct) and type(folded.conv) is type(module.conv)
    x = torch.randn(1, 6, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), module(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('channels_last', [False, True])
def test_one_code_path(channels_last):
    """The same values without autograd, with it, and exported: nothing routes on the
    mode."""
    folded = switch_to_deploy(_module(dict(type='ReLU6')))
    x = torch.randn(2, 8, 13, 10)
    other = torch.randn(2, 8, 13, 10)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = folded(x, other)
    x_grad = x.clone().requires_grad_()
    got = folded(x_grad, other)
    assert got.requires_grad
    assert torch.equal(got.detach(), expected)
    got.sum().backward()
    assert x_grad.grad is not None and x_grad.grad.shape == x.shape
    exported = torch.export.export(folded, (x, other)).module()
    with torch.no_grad():
        assert torch.equal(exported(x, other), expected)
