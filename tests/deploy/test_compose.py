"""DeployYOLOReTNeck: the composed linear maps compute what the neck (and head) compute."""
import copy

import pytest
import torch
from torch import nn

from rfcr.deploy import DeployRFCR, DeployYOLOReTNeck, switch_to_deploy
from rfcr.deploy.compose import _compose_all, fold_yoloret_detector
from rfcr.models import RFCR, YOLOReTHead, YOLOReTNeck
from tests.deploy.test_fold import assert_inference_only, assert_same_outputs, pyramid, randomize

# (RFCR inputs, neck out_channels, widths): COCO-like, VOC-like, and a residual node
# (width 16 == out_channels: the block adds its input, so that node stays materialized).
CASES = {
    'coco': ((8, 16, 24), 33, (16, 32, 64)),  # COCO's 255, (128, 256, 512) over 8
    'voc': ((8, 16, 24), 18, (16, 32, 64)),
    'residual': ((8, 16, 24), 18, (18, 24, 32)),
}


def _parts(case, shortcut=None):
    raw, out, widths = CASES[case]
    rfcr = RFCR(raw, collect_channels=8, fuse_channels=8, shortcut_channels=shortcut)
    neck = YOLOReTNeck(rfcr.out_channels, out_channels=out, widths=widths)
    head = YOLOReTHead(num_classes=out // 3 - 5, in_channels=(out, ) * 3)
    for m in (rfcr, neck, head):
        m.init_weights()
        randomize(m)
    return rfcr, neck, head.eval()


def test_compose_rule():
    # COCO: 128 -> 255 -> (128): composing is cheaper; 512 -> 255 -> (256 + 512): not.
    assert _compose_all(128, 255, [128], output_needed=False)
    assert not _compose_all(512, 255, [256, 512], output_needed=False)
    assert _compose_all(512, 255, [255], output_needed=False)  # the prediction conv alone
    # With the output needed anyway, a consumer is composed iff the hidden state is narrower.
    assert _compose_all(128, 255, [255, 128], output_needed=True)
    assert not _compose_all(256, 75, [75, 256], output_needed=True)


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('with_preds', [False, True])
@pytest.mark.parametrize('with_rfcr, shortcut', [(False, None), (True, None), (True, 4)])
@pytest.mark.parametrize('size, channels_last', [((97, 75), False), ((64, 64), True),
                                                 ((121, 33), True)])
def test_matches_neck_and_head(case, with_preds, with_rfcr, shortcut, size, channels_last):
    rfcr, neck, head = _parts(case, shortcut)
    folded = DeployYOLOReTNeck(neck, head.convs_pred if with_preds else None,
                               rfcr if with_rfcr else None)
    assert_inference_only(folded)
    feats = pyramid(size, ((shortcut, ) if shortcut else ()) + rfcr.in_channels, batch=2)

    def reference(*x):
        out = neck(rfcr(*x) if with_rfcr else x[0])
        return head(out)[0] if with_preds else out

    with torch.no_grad():
        x = feats if with_rfcr else list(rfcr(feats))
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
        x = [t.contiguous(memory_format=torch.channels_last) for t in x]
    assert_same_outputs(reference, folded, x)
    expected_channels = (head.num_base_priors * head.num_attrib, ) * 3 if with_preds else (
        neck.out_channels)
    assert folded.out_channels == expected_channels


def test_what_is_composed():
    _, coco, head = _parts('coco')
    folded = DeployYOLOReTNeck(coco, head.convs_pred)
    # Widths 16/32 < 33 compose; at stride 32 the top-down node (64 wide, read by 32 + 64
    # channels) stays, the bottom-up one (read by the prediction conv alone) composes.
    assert folded.compose_top_down == (True, True, False)
    assert folded.compose_bottom_up == (True, True, True)
    assert [n.projection is None for n in folded.top_down_nodes] == [True, True, False]
    assert [n.projection is None for n in folded.bottom_up_nodes] == [True, True, True]
    no_head = DeployYOLOReTNeck(coco)  # the outputs are needed: projections stay
    assert [n.projection is not None for n in no_head.bottom_up_nodes] == [True, True, True]
    _, residual, _ = _parts('residual')
    assert not DeployYOLOReTNeck(residual).compose_top_down[0]


def test_fold_detector_structure():
    rfcr, neck, head = _parts('coco')
    detector = nn.Module()
    detector.neck, detector.bbox_head = nn.Sequential(rfcr, neck), head
    assert fold_yoloret_detector(detector)
    assert isinstance(detector.neck, DeployYOLOReTNeck)
    assert isinstance(detector.neck.rfcr, DeployRFCR)
    assert all(isinstance(c, nn.Identity) for c in head.convs_pred)
    assert head.in_channels == [head.num_base_priors * head.num_attrib] * 3
    assert not fold_yoloret_detector(detector)  # already folded: nothing left to do

    other = nn.Module()
    other.neck, other.bbox_head = nn.Sequential(copy.deepcopy(neck)), _parts('coco')[2]
    assert fold_yoloret_detector(other)  # no RFCR: the neck alone is composed
    assert isinstance(other.neck, DeployYOLOReTNeck) and other.neck.rfcr is None


def test_bad_arguments():
    rfcr, neck, head = _parts('coco')
    with pytest.raises(ValueError, match=r'pred_convs must be three 1x1 convs'):
        DeployYOLOReTNeck(neck, list(head.convs_pred)[:2])
    with pytest.raises(ValueError, match=r'rfcr must be an RFCR returning the three maps'):
        DeployYOLOReTNeck(neck, rfcr=RFCR((8, 16, 24), collect_channels=8, fuse_channels=8,
                                          out_indices=(1, 2)))
    folded = DeployYOLOReTNeck(neck)
    with pytest.raises(ValueError, match=r'DeployYOLOReTNeck expects 3 inputs, got 2'):
        folded(pyramid((64, 64), neck.in_channels)[:2])


def test_switch_to_deploy_of_a_list_neck_keeps_modules_apart():
    """Without a head to compose, a list neck folds module by module (the export of
    ``--neck I`` relies on it)."""
    rfcr, neck, _ = _parts('coco')
    folded = switch_to_deploy(nn.Sequential(copy.deepcopy(rfcr), copy.deepcopy(neck)))
    assert isinstance(folded[0], DeployRFCR) and isinstance(folded[1], DeployYOLOReTNeck)
    assert folded[1].rfcr is None
