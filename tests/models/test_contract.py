"""One contract for backbone + neck: every declared channel, stride and size holds."""
import pytest
import torch

from mmdet.registry import MODELS


def _expected_size(n, stride):
    for _ in range(stride.bit_length() - 1):  # a 3x3 stride-2 conv with padding 1 per halving
        n = -(-n // 2)
    return n


@pytest.mark.parametrize('width', [0.5, 0.75, 1.4])
@pytest.mark.parametrize('shortcut', [False, True])
@pytest.mark.parametrize('size', [(64, 64), (97, 75), (129, 33)])
def test_backbone_neck_contract(width, shortcut, size):
    backbone = MODELS.build(dict(type='TruncatedMobileNetV2', widen_factor=width,
                                 out_strides=(4, 8, 16, 32) if shortcut else (8, 16, 32)))
    in_channels = backbone.out_channels[-3:]
    neck = MODELS.build(dict(type='RFCR', in_channels=in_channels, collect_channels=16,
                             fuse_channels=24,
                             shortcut_channels=backbone.out_channels[0] if shortcut else None))
    backbone.init_weights()
    neck.init_weights()
    model = torch.nn.Sequential(backbone, neck).train()

    x = torch.randn(2, 3, *size)
    feats = backbone(x)
    assert len(feats) == len(backbone.strides) == len(backbone.out_channels)
    for f, c, s in zip(feats, backbone.out_channels, backbone.strides):
        assert f.shape == (2, c, _expected_size(size[0], s), _expected_size(size[1], s))

    outs = neck(feats)
    assert len(outs) == 3
    for o, f, c in zip(outs, feats[-3:], neck.out_channels):
        assert o.shape == (2, c, *f.shape[-2:])
        assert c == f.shape[1] + 24
        assert torch.isfinite(o).all()

    # A random projection of every output: sum(BN(x)) alone would have zero gradients.
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    loss.backward()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert 'fusion_weights' in {n.split('.')[-1] for n in params}
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f'parameters without gradient: {no_grad}'
