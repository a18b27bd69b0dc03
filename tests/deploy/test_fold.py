"""switch_to_deploy: folded modules compute what the originals compute in eval mode."""
import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmcv.cnn import ConvModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rfcr.deploy import (ConvAct, DeployInvertedResidual, DeployRFCR, DeploySE,
                         DeployYOLOReTNeck, deploy_refusals, fold_bn, fold_with_report,
                         switch_to_deploy)
from rfcr.deploy.compose import _Node
from rfcr.deploy.conv import TFSamePad
from rfcr.models import RFCR, TruncatedMobileNetV2, YOLOReTHead, YOLOReTNeck
from rfcr.utils.config import build_model
from tests.conftest import randomize_bn_stats

CONFIG = (Path(__file__).resolve().parents[2] / 'configs' / 'yoloret' /
          'yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py')


def randomize(model, fusion_weights=None):
    """Random BN statistics and affine parameters; signed RFCR fusion weights."""
    randomize_bn_stats(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RFCR):
                if fusion_weights is None:
                    m.fusion_weights.uniform_(-1.5, 1.5)
                else:
                    m.fusion_weights.copy_(torch.tensor(fusion_weights))
    return model.eval()


def pyramid(size, channels, batch=2, floor=False):
    """Maps at strides 8, 16, 32 (4, 8, 16, 32 with 4 channels) of a ``size`` image, as
    padded stride-2 convs (ceil) or unpadded ones (``floor``) make them."""
    strides = (4, 8, 16, 32)[-len(channels):]
    halve = (lambda n, s: n // s) if floor else (lambda n, s: -(-n // s))
    return [torch.randn(batch, c, halve(size[0], s), halve(size[1], s))
            for c, s in zip(channels, strides)]


def assert_same_outputs(original, folded, *args, atol=1e-4):
    with torch.no_grad():
        expected, got = original(*args), folded(*args)
    expected = expected if isinstance(expected, (tuple, list)) else (expected, )
    got = got if isinstance(got, (tuple, list)) else (got, )
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert (g - e).abs().max() <= atol, float((g - e).abs().max())


def assert_inference_only(model):
    assert not any(isinstance(m, (_BatchNorm, ConvModule, RFCR)) for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert not any('fusion_weights' in name for name, _ in model.named_parameters())


def test_fold_bn_matches_conv_then_bn():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, bias=True, padding_mode='reflect')
    bn = randomize(nn.Sequential(conv, nn.BatchNorm2d(8)))[1]
    x = torch.randn(2, 6, 15, 16)
    assert_same_outputs(lambda t: bn(conv(t)), fold_bn(conv, bn), x, atol=1e-5)


def test_fold_bn_refuses_what_it_cannot_fold():
    with pytest.raises(ValueError, match=r'has no running statistics'):
        fold_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r'bn.num_features=5 does not match '
                                         r'conv.out_channels=4'):
        fold_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))


@pytest.mark.parametrize('kwargs, folded', [
    (dict(), True),
    (dict(norm_cfg=None, act_cfg=dict(type='SiLU')), True),
    (dict(act_cfg=None), True),
    (dict(padding_mode='reflect'), True),
    (dict(norm_cfg=dict(type='GN', num_groups=2)), False),
    (dict(order=('norm', 'conv', 'act')), False),
    (dict(order=('conv', 'act', 'norm')), False),
    (dict(with_spectral_norm=True), False),
])
def test_conv_module(kwargs, folded):
    module = randomize(ConvModule(4, 4, 3, padding=1, **{'norm_cfg': dict(type='BN'),
                                                         **kwargs}))
    deployed = switch_to_deploy(copy.deepcopy(module))
    assert isinstance(deployed, ConvAct) == folded
    assert_same_outputs(module, deployed, torch.randn(2, 4, 9, 7))


@pytest.mark.parametrize('shortcut', [None, 16])
@pytest.mark.parametrize('fusion_norm', [None, 'softmax', 'fast'])
@pytest.mark.parametrize('size, floor', [((97, 75), False), ((64, 64), False),
                                         ((83, 101), True)])
def test_rfcr(shortcut, fusion_norm, size, floor):
    neck = RFCR((24, 72, 120), shortcut_channels=shortcut, fusion_norm=fusion_norm)
    neck.init_weights()
    randomize(neck)
    folded = switch_to_deploy(copy.deepcopy(neck))
    assert isinstance(folded, DeployRFCR)
    assert folded.out_channels == neck.out_channels
    assert_inference_only(folded)
    feats = pyramid(size, ((shortcut, ) if shortcut else ()) + (24, 72, 120), floor=floor)
    assert_same_outputs(neck, folded, feats)


@settings(max_examples=20, deadline=None)
@given(weights=st.lists(st.floats(-2, 2, width=32), min_size=4, max_size=4),
       h=st.integers(20, 140), w=st.integers(20, 140), shortcut=st.booleans(),
       out_indices=st.sampled_from([(0, 1, 2), (1, 2), (0, )]))
def test_rfcr_any_signed_weights(weights, h, w, shortcut, out_indices):
    """Negative weights included: max-pool after a negative scale is a min-pool."""
    channels = (4, 8, 16, 24) if shortcut else (8, 16, 24)
    neck = RFCR(channels[-3:], collect_channels=8, fuse_channels=8, out_indices=out_indices,
                shortcut_channels=4 if shortcut else None)
    neck.init_weights()
    randomize(neck, weights[-len(channels):])
    folded = DeployRFCR(neck)
    assert folded.subtract_stride8 == (weights[-3] < 0)
    assert_same_outputs(neck, folded, pyramid((h, w), channels, batch=1))


def test_rfcr_negative_stride8_weight_is_not_a_max_pool_of_the_scaled_map():
    """Guard of the test above: folding w < 0 naively into conv -> max-pool would differ."""
    neck = randomize(RFCR((8, 16, 24), collect_channels=8, fuse_channels=8), [-1.0, 1.0, 1.0])
    feats = pyramid((64, 64), (8, 16, 24))
    naive = DeployRFCR(neck)
    naive.subtract_stride8 = False
    with torch.no_grad():
        naive.collect_convs[0].conv.weight.neg_()
        assert not torch.allclose(naive(feats)[1], neck(feats)[1], atol=1e-3)
    assert_same_outputs(neck, DeployRFCR(neck), feats)


def test_rfcr_is_read_not_modified():
    neck = randomize(RFCR((8, 16, 24), collect_channels=8, fuse_channels=8))
    state = {k: v.clone() for k, v in neck.state_dict().items()}
    DeployRFCR(neck)
    assert all(torch.equal(v, state[k]) for k, v in neck.state_dict().items())
    assert isinstance(neck.fuse_conv[0], ConvModule)


@pytest.mark.parametrize('out_strides', [(8, 16, 32), (4, 8, 16, 32)])
def test_truncated_mobilenet_v2(out_strides):
    backbone = TruncatedMobileNetV2(widen_factor=0.5, out_strides=out_strides, with_cp=True)
    backbone.init_weights()
    randomize(backbone)
    folded = switch_to_deploy(copy.deepcopy(backbone))
    assert folded.__class__ is TruncatedMobileNetV2  # same class, attributes and forward
    assert isinstance(folded.layer3[0], DeployInvertedResidual)
    assert_inference_only(folded)
    assert_same_outputs(backbone, folded, torch.randn(2, 3, 97, 75))
    folded.train()  # still a valid module: frozen stages, norm_eval have nothing to do
    assert_same_outputs(backbone, folded, torch.randn(1, 3, 64, 64))


def test_yoloret_neck_and_head():
    neck = randomize(YOLOReTNeck((40, 48, 56), out_channels=21, widths=(16, 24, 32)))
    head = YOLOReTHead(num_classes=2, in_channels=(21, 21, 21)).eval()
    feats = pyramid((99, 67), (40, 48, 56))
    folded_neck = switch_to_deploy(copy.deepcopy(neck))
    assert isinstance(folded_neck, DeployYOLOReTNeck)  # outputs: the neck's, not predictions
    assert_inference_only(folded_neck)
    assert_same_outputs(neck, folded_neck, feats)
    folded_head = switch_to_deploy(head)  # nothing to fold: 1x1 convs with bias
    assert folded_head is head
    with torch.no_grad():
        maps = neck(feats)
    assert_same_outputs(lambda x: head(x)[0], lambda x: folded_head(x)[0], maps)


@pytest.fixture(scope='module')
def detector():
    torch.manual_seed(0)
    return randomize(build_model(CONFIG))


@pytest.mark.parametrize('channels_last', [False, True])
def test_yoloret_detector(detector, channels_last):
    folded = switch_to_deploy(copy.deepcopy(detector))
    assert_inference_only(folded.backbone)
    assert_inference_only(folded.neck)
    # RFCR, the aggregation path and the prediction convs become one composed module.
    assert isinstance(folded.neck, DeployYOLOReTNeck)
    assert isinstance(folded.neck.rfcr, DeployRFCR)
    assert all(isinstance(c, nn.Identity) for c in folded.bbox_head.convs_pred)
    assert folded.neck.compose_top_down == (True, True, False)
    assert folded.neck.compose_bottom_up == (True, True, True)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    for size in ((128, 128), (97, 161)):
        x = torch.randn(1, 3, *size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        assert_same_outputs(lambda t: detector(t, mode='tensor')[0],
                            lambda t: folded(t, mode='tensor')[0], x)


def _flat(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for o in outputs for t in _flat(o)]


def test_folded_yoloret_detector_is_plain_modules_with_one_code_path(detector):
    folded = switch_to_deploy(copy.deepcopy(detector))
    # The detector's own shells (detector, backbone, head with its losses, preprocessor)
    # keep their classes; everything inside is standard layers and the deploy containers.
    shells = {type(detector), type(detector.backbone), type(detector.bbox_head),
              type(detector.data_preprocessor)}
    shells |= {type(m) for name, m in detector.bbox_head.named_children()
               if name.startswith('loss')}
    plain = {nn.Conv2d, nn.Linear, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Identity, nn.Sequential,
             nn.ModuleList, ConvAct, TFSamePad, DeployInvertedResidual, DeploySE, DeployRFCR,
             DeployYOLOReTNeck, _Node}
    types = {type(m) for m in folded.modules()}
    assert types - shells - plain == set()
    assert {ConvAct, DeployInvertedResidual, DeployRFCR, DeployYOLOReTNeck} <= types
    assert not any(isinstance(m, _BatchNorm) for m in folded.modules())
    # The same values whether autograd is off or records the graph.
    x = torch.randn(1, 3, 97, 129)
    with torch.no_grad():
        expected = _flat(folded(x, mode='tensor'))
    got = _flat(folded(x.clone().requires_grad_(), mode='tensor'))
    assert len(got) == len(expected) == 3 and all(g.requires_grad for g in got)
    assert all(torch.equal(g.detach(), e) for g, e in zip(got, expected))


def test_yoloret_detector_still_predicts(detector):
    from mmdet.structures import DetDataSample
    detector = copy.deepcopy(detector)
    detector.bbox_head.test_cfg.update(score_thr=0.0, conf_thr=0.0, max_per_img=20)
    folded = switch_to_deploy(copy.deepcopy(detector))
    meta = dict(img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1.0, 1.0),
                pad_shape=(96, 128))
    data = dict(inputs=[torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)],
                data_samples=[DetDataSample(metainfo=meta)])
    with torch.no_grad():
        (expected, ), (got, ) = detector.test_step(data), folded.test_step(data)
    expected, got = expected.pred_instances, got.pred_instances
    assert len(expected) == len(got) == 20
    torch.testing.assert_close(got.scores, expected.scores, atol=1e-5, rtol=1e-4)
    # Random weights give near-tied scores (1e-7 apart), whose order float rounding may
    # swap: match every detection to an expected one of the same label and box, but those
    # tied with the last one kept (max_per_img cuts through the tie).
    unmatched = list(range(len(expected)))
    kept = got.scores > expected.scores.min() + 1e-5
    assert kept.sum() >= 3
    for score, label, box in zip(got.scores[kept], got.labels[kept], got.bboxes[kept]):
        match = next(i for i in unmatched if expected.labels[i] == label
                     and (expected.scores[i] - score).abs() <= 1e-5
                     and (expected.bboxes[i] - box).abs().max() <= 1e-3)
        unmatched.remove(match)


def test_switch_to_deploy_twice_is_a_no_op():
    model = randomize(nn.Sequential(TruncatedMobileNetV2(widen_factor=0.5),
                                    RFCR((16, 48, 80), collect_channels=8, fuse_channels=8)))
    once = switch_to_deploy(copy.deepcopy(model))
    modules = list(once.modules())
    twice = switch_to_deploy(once)
    assert twice is once and list(twice.modules()) == modules
    assert_same_outputs(model, twice, torch.randn(1, 3, 65, 65))


def test_switch_to_deploy_needs_a_module():
    with pytest.raises(TypeError, match=r'module must be a torch.nn.Module, got dict'):
        switch_to_deploy({})


@pytest.mark.parametrize('config', ['mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py',
                                    'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'])
def test_mmdet_detectors_fold(config):
    """rfcr-bench's BN-folded mmdet rows: mmdet's MobileNetV2 (whose train() returns None),
    ConvModules with LeakyReLU, depthwise-separable heads."""
    detector = randomize(build_model(config))
    folded = switch_to_deploy(copy.deepcopy(detector))
    assert folded.backbone is not None
    assert not any(isinstance(m, _BatchNorm) for m in folded.modules())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, got = detector(x, mode='tensor'), folded(x, mode='tensor')
    flat = [t for level in expected for t in level], [t for level in got for t in level]
    for e, g in zip(*flat):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


# Folding is exact or it does not happen: conv subclasses whose forward is not conv2d of
# their weight (ConvWS) and BNs in train mode stay; TF-"SAME" convs fold as pad + conv.


def test_weight_standardized_convs_stay_unfolded():
    module = randomize(ConvModule(4, 6, 3, stride=2, padding=1, conv_cfg=dict(type='ConvWS'),
                                  norm_cfg=dict(type='BN')))
    deployed = switch_to_deploy(copy.deepcopy(module))
    assert type(deployed) is ConvModule and isinstance(deployed.norm, nn.BatchNorm2d)
    assert deploy_refusals(deployed) == [
        ': ConvWS2d is not a plain nn.Conv2d (its forward is not conv2d of its weight)']
    for size in ((9, 7), (10, 8)):
        assert_same_outputs(module, deployed, torch.randn(2, 4, *size), atol=1e-5)


@pytest.mark.parametrize('kernel, stride, dilation', [(1, 1, 1), (3, 1, 1), (3, 2, 1),
                                                      (5, 2, 1), (3, 1, 2), (2, 1, 1)])
def test_tf_same_padding_convs_fold_exactly(kernel, stride, dilation):
    """mmcv's Conv2dAdaptivePadding (mmdet's EfficientNet, Keras weights): its padding
    depends on the input size; the folded conv pads the same way at every size."""
    module = randomize(ConvModule(4, 6, kernel, stride=stride, dilation=dilation,
                                  conv_cfg=dict(type='Conv2dAdaptivePadding'),
                                  norm_cfg=dict(type='BN'), act_cfg=dict(type='SiLU')))
    deployed = switch_to_deploy(copy.deepcopy(module))
    assert isinstance(deployed, ConvAct) and type(deployed.conv) is nn.Conv2d
    assert (deployed.padding is None) == (stride == 1 and kernel % 2 == 1)
    for size in ((9, 7), (10, 8), (11, 12), (1, 2)):
        assert_same_outputs(module, deployed, torch.randn(2, 4, *size), atol=1e-5)


def test_models_with_conv_subclasses_fold_everything_else():
    conv_cfg = dict(type='ConvWS')
    backbone = TruncatedMobileNetV2(widen_factor=0.5, conv_cfg=conv_cfg)
    backbone.init_weights()
    randomize(backbone)
    neck = randomize(RFCR((16, 48, 80), collect_channels=8, fuse_channels=8,
                          conv_cfg=conv_cfg))
    model = nn.Sequential(backbone, neck).eval()
    folded, refusals = fold_with_report(copy.deepcopy(model))
    # RFCR's collect convs take no fusion weight: it stays an RFCR, its BNs stay too.
    assert type(folded[1]) is RFCR
    assert refusals[0].startswith('1: collect_convs[0] is a ConvWS2d, not a plain nn.Conv2d')
    assert all('not a plain nn.Conv2d' in r for r in refusals)
    assert_same_outputs(model, folded, torch.randn(1, 3, 66, 98), atol=1e-4)
    # With TF-"SAME" convs everything folds.
    conv_cfg = dict(type='Conv2dAdaptivePadding')
    backbone = TruncatedMobileNetV2(widen_factor=0.5, conv_cfg=conv_cfg)
    backbone.init_weights()
    neck = RFCR((16, 48, 80), collect_channels=8, fuse_channels=8, conv_cfg=conv_cfg)
    model = randomize(nn.Sequential(backbone, neck))
    folded, refusals = fold_with_report(copy.deepcopy(model))
    assert refusals == [] and type(folded[1]) is DeployRFCR
    assert_inference_only(folded)
    for size in ((66, 98), (65, 97)):
        assert_same_outputs(model, folded, torch.randn(1, 3, *size), atol=1e-4)


def test_bns_in_train_mode_stay_unfolded():
    module = randomize(ConvModule(4, 6, 3, padding=1, norm_cfg=dict(type='BN')))
    module.train()
    deployed = switch_to_deploy(copy.deepcopy(module))
    assert type(deployed) is ConvModule
    module.eval()  # switch_to_deploy returns the model in eval mode, unfolded BN included
    assert not deployed.training and not deployed.norm.training
    assert_same_outputs(module, deployed, torch.randn(2, 4, 9, 7), atol=1e-5)
    # Half a model in train mode: the rest folds.
    backbone = TruncatedMobileNetV2(widen_factor=0.5)
    backbone.init_weights()
    randomize(backbone)
    backbone.layer6.train()
    folded, refusals = fold_with_report(copy.deepcopy(backbone))
    assert refusals and all(r.startswith('layer6.') and 'in train mode' in r
                            for r in refusals)
    assert isinstance(folded.layer5[0], DeployInvertedResidual)
    backbone.eval()
    folded.eval()
    assert_same_outputs(backbone, folded, torch.randn(1, 3, 64, 64))


def test_plain_sequentials_fold_conv_bn_act_runs():
    """The seed port's layers: nn.Sequential(Conv2d, BatchNorm2d, ReLU6)."""
    seq = randomize(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(6), nn.ReLU6(inplace=True),
                                  nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8),
                                  nn.BatchNorm2d(8)))  # a BN after a BN does not fold
    folded = switch_to_deploy(copy.deepcopy(seq))
    assert [type(m).__name__ for m in folded] == ['ConvAct', 'Identity', 'Identity', 'ConvAct',
                                                  'Identity', 'BatchNorm2d']
    assert deploy_refusals(folded) == ['5: a BatchNorm2d not right after a conv']
    assert_same_outputs(seq, folded, torch.randn(2, 4, 9, 7), atol=1e-5)
