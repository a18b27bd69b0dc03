"""Every file under configs/ loads; every model config builds and runs a forward pass."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mmdet
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
MMDET_CONFIG_DIR = Path(mmdet.__file__).parent / '.mim' / 'configs'
CONFIGS = sorted(CONFIG_DIR.rglob('*.py'))
INPUT = (160, 224)  # small, non-square


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


def test_configs_exist():
    names = {_id(p) for p in CONFIGS}
    for expected in ('yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py',
                     'yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-416-250e_voc0712.py',
                     'swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py',
                     'swapin/ssdlite_mobilenetv2-trunc_rfcr-scratch_8xb24-600e_coco.py',
                     'official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py',
                     'yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py',
                     'yoloret/yoloret_efficientnet-b3_rfcr_2xb8-224-250e_coco.py',
                     'official/yoloret_efficientnet-b3_rfcr_official-416_coco.py',
                     'official/yoloret_efficientnet-b3_rfcr_official-224_coco.py',
                     'ablation/yoloret_efficientnet-b3-full_fpnpan_2xb8-416-250e_coco.py',
                     'ablation/yoloret_efficientnet-b3-trunc_rfcr_2xb8-416-250e_coco.py'):
        assert expected in names
    assert len([n for n in names if n.startswith('ablation/')]) == 7


# The authors' Keras models (prakharg24/yoloret `yolov3_body`, counted with their code):
# weights without BN running statistics. Their prediction convs have no bias; ours have one.
OFFICIAL_PARAMS = {'M0.75 VOC': 1_857_075, 'M0.75 COCO': 2_659_515, 'M1.4 VOC': 3_750_595,
                   'M1.4 COCO': 4_553_035, 'EB3 COCO': 8_788_793}
PARAM_CASES = {
    'yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py': 'M0.75 VOC',
    'yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-416-250e_voc0712.py': 'M0.75 VOC',
    'yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py': 'M0.75 COCO',
    'yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-416-250e_coco.py': 'M0.75 COCO',
    'yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_voc0712.py': 'M1.4 VOC',
    'yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-416-250e_voc0712.py': 'M1.4 VOC',
    'yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_coco.py': 'M1.4 COCO',
    'yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-416-250e_coco.py': 'M1.4 COCO',
    'yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py': None,
    'ablation/yoloret_mobilenetv2-0.75-trunc_rfcr-shortcut_2xb8-320-250e_voc0712.py': 'M0.75 VOC',
    'official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py': 'M0.75 VOC',
    'yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py': 'EB3 COCO',
    'yoloret/yoloret_efficientnet-b3_rfcr_2xb8-224-250e_coco.py': 'EB3 COCO',
    'official/yoloret_efficientnet-b3_rfcr_official-416_coco.py': 'EB3 COCO',
    'official/yoloret_efficientnet-b3_rfcr_official-224_coco.py': 'EB3 COCO',
}


def test_every_yoloret_config_is_counted():
    assert {_id(p) for p in CONFIGS if _id(p).startswith(('yoloret/', 'official/'))} <= set(
        PARAM_CASES)


@pytest.mark.parametrize('path', sorted(PARAM_CASES))
def test_parameter_counts_equal_the_official_models(path):
    register_all_modules()
    cfg = Config.fromfile(str(CONFIG_DIR / path))
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    count = sum(p.numel() for p in model.parameters()) - sum(
        c.bias.numel() for c in head.convs_pred)
    # The released graph: a 4-input RFCR fed the stride-4 shortcut.
    assert model.backbone.strides == (4, 8, 16, 32) and model.neck[0].num_inputs == 4
    if PARAM_CASES[path] is None:  # the demo: 6 classes, no official model to compare with
        assert head.num_classes == 6
    else:
        assert count == OFFICIAL_PARAMS[PARAM_CASES[path]]


@pytest.mark.parametrize('path', CONFIGS, ids=_id)
def test_config_loads_builds_and_runs(path):
    register_all_modules()
    cfg = Config.fromfile(str(path))
    if 'model' not in cfg:
        assert any(k in cfg for k in ('train_dataloader', 'train_pipeline_320', 'optim_wrapper'))
        return
    cfg.model.backbone.init_cfg = None  # no weight loading in tests
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *INPUT), mode='tensor')
    head = model.bbox_head
    strides = [s[0] if isinstance(s, tuple) else s for s in head.prior_generator.strides]
    priors = head.prior_generator.num_base_priors
    if type(head).__name__ == 'SSDHead':
        cls_scores, bbox_preds = outs
        expected = [(p * (head.num_classes + 1), p * 4) for p in priors]
        maps = list(zip(cls_scores, bbox_preds))
    else:
        (pred_maps, ) = outs
        expected = [(p * (head.num_classes + 5), ) for p in priors]
        maps = [(m, ) for m in pred_maps]
    assert len(maps) == len(strides)
    for level, (tensors, channels, stride) in enumerate(zip(maps, expected, strides)):
        for t, c in zip(tensors, channels):
            assert t.shape[:2] == (2, c), (level, t.shape)
            assert torch.isfinite(t).all()
            if stride in (8, 16, 32, 64):  # exact halvings; SSD's 107/160/320 are not
                assert t.shape[-2:] == tuple(-(-s // stride) for s in INPUT), (level, t.shape)


def _strip_scope(v):
    """Inheriting an ``mmdet::`` base tags every dict with ``_scope_='mmdet'``."""
    if isinstance(v, dict):
        return {k: _strip_scope(x) for k, x in v.items() if k != '_scope_'}
    if isinstance(v, (list, tuple)):
        return type(v)(_strip_scope(x) for x in v)
    return v


def _flatten(d, prefix=''):
    out = {}
    for k, v in _strip_scope(d).items():
        key = f'{prefix}{k}'
        if isinstance(v, dict):
            out.update(_flatten(v, key + '.'))
        else:
            out[key] = v
    return out


@pytest.mark.parametrize('swapin, base', [
    ('swapin/yolov3_mobilenetv2-trunc_rfcr_8xb24-320-300e_coco.py',
     'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'),
    ('swapin/ssdlite_mobilenetv2-trunc_rfcr-scratch_8xb24-600e_coco.py',
     'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'),
])
def test_swapins_differ_only_in_backbone_neck_and_head_channels(swapin, base):
    ours = _flatten(Config.fromfile(str(CONFIG_DIR / swapin)).to_dict())
    theirs = _flatten(Config.fromfile(str(MMDET_CONFIG_DIR / base.split('::')[1])).to_dict())
    changed = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
    allowed = ('model.backbone.', 'model.neck', 'model.bbox_head.in_channels', 'custom_imports.')
    assert changed, 'the swap-in changes nothing'
    assert all(k.startswith(allowed) for k in changed), sorted(
        k for k in changed if not k.startswith(allowed))
    assert ours['model.backbone.type'] == 'TruncatedMobileNetV2'
