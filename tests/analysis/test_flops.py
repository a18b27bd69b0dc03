"""MAC counts against arithmetic done by hand, and the ops a plain jit trace loses."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from rfcr.analysis.flops import count_macs, trace_ops
from rfcr.deploy import DeployRFCR, switch_to_deploy
from rfcr.models import RFCR, TruncatedMobileNetV2
from rfcr.utils.config import build_model
from tests.conftest import randomize_bn_stats
from tests.deploy.test_fold import CONFIG

# Conventions (rfcr.analysis.flops): a conv costs out_elements * in_channels / groups *
# k * k multiply-accumulates; eval BN with affine 2 per element (mmengine's); ReLU6,
# element-wise mul/add 1 per output element; a k x k max-pool k * k per output element;
# nearest upsampling 1 per output element; concatenation 0.


def _macs(model, *inputs):
    model.eval()  # mmdet's MobileNetV2.train() returns None
    with torch.no_grad():
        return count_macs(model, inputs)


def test_rfcr_macs_by_hand():
    neck = RFCR((4, 6, 8), collect_channels=5, fuse_channels=7)
    feats = [torch.rand(1, 4, 16, 16), torch.rand(1, 6, 8, 8), torch.rand(1, 8, 4, 4)]
    s16 = 8 * 8  # pixels of the stride-16 map, where the fusion happens
    collect = (5 * 4 * 16 * 16  # stride 8: 1x1 conv at 16x16 ...
               + 4 * 5 * s16  # ... then 2x2 max-pool to 8x8
               + 5 * 6 * s16  # stride 16: 1x1 conv
               + 5 * 8 * 4 * 4  # stride 32: 1x1 conv at 4x4 ...
               + 5 * s16)  # ... then nearest x2 to 8x8
    weighted_sum = (3 + 2) * 5 * s16  # w0*c0 + w1*c1 + w2*c2: 3 mul, 2 add
    fuse = (5 * 25 * s16 + 2 * 5 * s16 + 5 * s16  # depthwise 5x5, BN, ReLU6
            + 7 * 5 * s16 + 2 * 7 * s16 + 7 * s16)  # pointwise 5 -> 7, BN, ReLU6
    redistribute = (7 * 16 * 16  # nearest x2 of the fused map to stride 8
                    + 4 * 7 * 4 * 4)  # 2x2 max-pool to stride 32; the concats are free
    macs = _macs(neck, feats)
    assert macs.total == collect + weighted_sum + fuse + redistribute == 25664
    assert not macs.unsupported
    assert macs.by_operator['max_pool2d'] == 4 * 5 * s16 + 4 * 7 * 16
    assert macs.by_operator['mul'] == 3 * 5 * s16 and macs.by_operator['add'] == 2 * 5 * s16
    assert macs.of('fuse_conv') == fuse
    assert macs.of('collect_convs.0') == 5 * 4 * 16 * 16


def test_folded_rfcr_macs_by_hand():
    """Folded, the fusion weights are in the collect convs (two sums, no products) and the
    BNs in the fuse convs: what remains is counted, op by op."""
    neck = RFCR((4, 6, 8), collect_channels=5, fuse_channels=7)
    feats = [torch.rand(1, 4, 16, 16), torch.rand(1, 6, 8, 8), torch.rand(1, 8, 4, 4)]
    s16 = 8 * 8
    products, bns = 3 * 5 * s16, 2 * 5 * s16 + 2 * 7 * s16
    macs = _macs(DeployRFCR(neck.eval()), feats)
    assert macs.total == 25664 - products - bns == 23168
    assert not macs.unsupported
    assert macs.by_operator['add'] == 2 * 5 * s16  # conv16(x16) + up(c32), + pool(c8)
    assert 'mul' not in macs.by_operator and 'batch_norm' not in macs.by_operator
    assert macs.by_operator['hardtanh'] == (5 + 7) * s16


def test_folded_detector_counts_every_op():
    torch.manual_seed(0)
    detector = build_model(CONFIG)
    randomize_bn_stats(detector)
    x = torch.rand(1, 3, 96, 128)
    before = _macs(detector, x)
    after = _macs(switch_to_deploy(detector), x)
    assert not before.unsupported and not after.unsupported
    assert 'batch_norm' not in after.by_operator
    # Composing the linear maps removes about a third (0.71 of 1.06 GMACs at 320x320).
    assert 0.6 * before.total < after.total < 0.75 * before.total


def test_rfcr_shortcut_macs_by_hand():
    plain = RFCR((4, 6, 8), collect_channels=5, fuse_channels=7)
    shortcut = RFCR((4, 6, 8), collect_channels=5, fuse_channels=7, shortcut_channels=3)
    feats = [torch.rand(1, 4, 16, 16), torch.rand(1, 6, 8, 8), torch.rand(1, 8, 4, 4)]
    extra = (16 * 3 * 8 * 8  # 4x4 max-pool of the stride-4 map to 8x8, first ...
             + 5 * 3 * 8 * 8  # ... then its 1x1 conv
             + 2 * 5 * 8 * 8)  # one more product and one more sum in the weighted sum
    assert (_macs(shortcut, [torch.rand(1, 3, 32, 32)] + feats).total
            == _macs(plain, feats).total + extra)


def _inverted_residual(c_in, c_out, t, stride, h):
    """MACs of an InvertedResidual at input h x h (3x3 convs, padding 1)."""
    mid, out = c_in * t, -(-h // stride)
    macs = 0
    if t != 1:
        macs += mid * c_in * h * h + 2 * mid * h * h + mid * h * h  # expand, BN, ReLU6
    macs += mid * 9 * out * out + 2 * mid * out * out + mid * out * out  # dw 3x3, BN, ReLU6
    macs += c_out * mid * out * out + 2 * c_out * out * out  # linear 1x1, BN
    if stride == 1 and c_in == c_out:
        macs += c_out * out * out  # residual add
    return macs, out


def test_truncated_mobilenet_v2_macs_by_hand():
    # MobileNetV2 x0.75 (Sandler et al. Table 2, channels x0.75 rounded to multiples of 8),
    # without stage 7 (320 channels) and the 1280-channel conv. Columns: t, c, n, s.
    stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 24, 3, 2), (6, 48, 4, 2), (6, 72, 3, 1),
              (6, 120, 3, 2)]
    h = 64 // 2
    total = 24 * 3 * 9 * h * h + 2 * 24 * h * h + 24 * h * h  # stem 3x3 s2, BN, ReLU6
    c_in = 24
    for t, c, n, s in stages:
        for i in range(n):
            macs, h = _inverted_residual(c_in, c, t, s if i == 0 else 1, h)
            total += macs
            c_in = c
    backbone = TruncatedMobileNetV2(widen_factor=0.75)
    assert _macs(backbone, torch.rand(1, 3, 64, 64)).total == total == 16042880


@pytest.mark.parametrize('width', [0.75, 1.4])
def test_truncation_costs_strictly_less(width):
    register_all_modules()
    truncated = TruncatedMobileNetV2(widen_factor=width)
    full = MODELS.build(dict(type='MobileNetV2', widen_factor=width, out_indices=(2, 4, 7)))
    x = torch.rand(1, 3, 96, 96)
    assert _macs(truncated, x).total < _macs(full, x).total
    assert (sum(p.numel() for p in truncated.parameters())
            < sum(p.numel() for p in full.parameters()))


def test_layers_whose_outputs_are_unused_still_count():
    """mmdet's MobileNetV2 runs its 1280-channel conv2 even when no out_index returns it;
    a plain jit trace drops it, this count keeps it."""
    register_all_modules()
    x = torch.rand(1, 3, 64, 64)
    unused = MODELS.build(dict(type='MobileNetV2', out_indices=(2, 4, 6)))
    used = MODELS.build(dict(type='MobileNetV2', out_indices=(2, 4, 7)))
    unused.eval()
    conv2 = 1280 * 320 * 2 * 2 + 2 * 1280 * 2 * 2 + 1280 * 2 * 2  # 1x1 conv, BN, ReLU6 at 2x2
    assert _macs(unused, x).total == _macs(used, x).total
    with torch.no_grad():
        stock = FlopAnalyzer(unused, (x, )).unsupported_ops_warnings(False)
        stock.uncalled_modules_warnings(False)
        assert _macs(unused, x).of('conv2') == conv2
        assert stock.total('conv2') == 0  # what mmengine alone reports


def test_unknown_ops_are_reported_not_dropped():
    class Erf(nn.Module):
        def forward(self, x):
            return torch.erf(x) * 2

    macs = _macs(Erf(), torch.rand(2, 3))
    assert macs.unsupported == {'erf': 1}
    assert macs.total == 6  # the multiplication


def test_trace_ops_names_the_module_of_each_op():
    neck = RFCR((4, 6, 8), collect_channels=5, fuse_channels=7)
    feats = [torch.rand(1, 4, 16, 16), torch.rand(1, 6, 8, 8), torch.rand(1, 8, 4, 4)]
    with torch.no_grad():
        ops = trace_ops(neck.eval(), [feats])  # RFCR.train() returns the module
    pools = [op for op in ops if op.name == 'max_pool2d']
    assert [(op.scope, op.output_shapes[0]) for op in pools] == [('', (1, 5, 8, 8)),
                                                                 ('', (1, 7, 4, 4))]
    convs = [op.scope for op in ops if op.name == 'conv']
    assert convs[:3] == ['collect_convs.0', 'collect_convs.1', 'collect_convs.2']
