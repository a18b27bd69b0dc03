"""rfcr-convert official-yoloret on YOLO-ReT-EB3 COCO, against a Keras graph re-stated from the
official ``yolov3_body`` and ``efficientnet.py`` (random weights and BN statistics): the
backbone's official taps and the three raw prediction maps equal Keras' at 224 and 416, the
converter works out the backbone from the file, and the official COCO configs' evaluators
score COCO data."""
import json
import os
import textwrap

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.runner import load_checkpoint
from mmengine.structures import InstanceData

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS, MODELS
from mmdet.utils import register_all_modules
from rfcr.tools import convert
from tests.convert.keras_reference import EB3_SIZES, EB3_TAPS, assert_close_to_max
from tests.convert.test_official_yoloret import CONFIG as M075_CONFIG
from tests.convert.test_official_yoloret import _per_anchor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = {size: os.path.join(ROOT, f'configs/official/yoloret_efficientnet-b3_rfcr_official-'
                                    f'{size}_coco.py') for size in EB3_SIZES}
OFFICIAL_PARAMS = 8_788_793  # the authors' YOLO-ReT-EB3 COCO, BN running statistics excluded


@pytest.fixture(scope='module')
def converted(keras_refs, tmp_path_factory):
    """The Keras weights converted with each official EB3 config."""
    folder = tmp_path_factory.mktemp('official_eb3')
    src = keras_refs.dir / 'yoloret_eb3_weights.h5'
    return {size: convert.run(['official-yoloret', str(src), str(folder / f'{size}.pth'),
                               '--config', CONFIGS[size]]) | {'path': folder / f'{size}.pth'}
            for size in EB3_SIZES}


@pytest.fixture(scope='module')
def model(converted):
    register_all_modules()
    model = MODELS.build(Config.fromfile(CONFIGS[416]).model)
    load_checkpoint(model, str(converted[416]['path']), strict=True)
    return model.eval()


def test_the_keras_reference_is_the_official_model(keras_refs):
    assert keras_refs.yoloret_eb3['params'] == OFFICIAL_PARAMS


def test_both_configs_convert_alike(converted):
    a, b = (converted[size]['state_dict'] for size in EB3_SIZES)
    assert a and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = converted[416]['meta']
    assert meta['dataset_meta']['classes'] == CocoDataset.METAINFO['classes']
    assert meta['architecture'].endswith('EfficientNet-B3')


def _nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize('size', EB3_SIZES)
def test_taps_and_prediction_maps_equal_keras(keras_refs, model, size):
    refs = keras_refs.yoloret_eb3
    with torch.no_grad():  # YOLOV3._forward, keeping the backbone's taps
        taps = model.backbone(torch.from_numpy(refs[f'x{size}']).permute(0, 3, 1, 2))
        (maps, ) = model.bbox_head(model.neck(taps))
    assert model.backbone.strides == (4, 8, 16, 32)
    for name, mine in zip(EB3_TAPS, taps):
        assert_close_to_max(mine.permute(0, 2, 3, 1).numpy(), refs[f'{size}_{name}'],
                            what=f'size {size}, {name}')
    for i, mine in enumerate(maps):  # strides 32, 16, 8
        theirs = refs[f'y{size}_{i}']
        assert_close_to_max(_per_anchor(mine, theirs), theirs, what=f'size {size}, map {i}')


def test_official_evaluators_score_coco(tmp_path):
    """The official COCO configs' evaluators (COCO's AP and the official all-point AP50 of
    map.py, as VOCMetric) run on COCO data through the config's test pipeline: perfect
    detections score 1."""
    root = tmp_path / 'coco'
    (root / 'val2017').mkdir(parents=True)
    images, annotations = [], []
    for i, (h, w) in enumerate([(201, 333), (375, 251)]):
        name = f'{i:012d}.jpg'
        cv2.imwrite(str(root / 'val2017' / name), np.zeros((h, w, 3), np.uint8))
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for j, (box, category) in enumerate([([20, 30, 130, 90], (1, 18)[i]),
                                             ([5, 100, 60, 50], 3)]):
            annotations.append(dict(id=2 * i + j + 1, image_id=i + 1, category_id=category,
                                    iscrowd=0, bbox=box, area=box[2] * box[3]))
    ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    ann = root / 'annotations.json'
    ann.write_text(json.dumps(dict(images=images, annotations=annotations, categories=[
        dict(id=i, name=n) for i, n in zip(ids, CocoDataset.METAINFO['classes'])])))

    register_all_modules()
    cfg = Config.fromfile(CONFIGS[224])
    dataset = cfg.test_dataloader.dataset
    dataset.update(data_root=f'{root}/', ann_file='annotations.json',
                   data_prefix=dict(img='val2017/'))
    dataset = DATASETS.build(dataset)
    evaluator = Evaluator([dict(m, ann_file=str(ann)) if m['type'] == 'CocoMetric' else m
                           for m in cfg.test_evaluator])
    evaluator.dataset_meta = dataset.metainfo
    for sample in (dataset[i]['data_samples'] for i in range(len(dataset))):
        gt = sample.gt_instances
        sample.pred_instances = InstanceData(bboxes=gt.bboxes, labels=gt.labels,
                                             scores=torch.ones(len(gt.labels)))
        evaluator.process([sample])
    metrics = evaluator.evaluate(len(dataset))
    assert metrics['coco/bbox_mAP_50'] == 1 and metrics['pascal_voc/mAP'] == 1


def test_bad_input(keras_refs, tmp_path, convert_fails):
    src = str(keras_refs.dir / 'yoloret_eb3_weights.h5')
    dst = str(tmp_path / 'out.pth')
    # The backbone comes from the file: an EfficientNet file with a MobileNetV2 config, and
    # the other way round.
    convert_fails(['official-yoloret', src, dst, '--config', M075_CONFIG],
           "holds YOLO-ReT on EfficientNet; the config's backbone is TruncatedMobileNetV2", dst)
    convert_fails(['official-yoloret', str(keras_refs.dir / 'yoloret_weights.h5'), dst,
                    '--config', CONFIGS[416]],
           "holds YOLO-ReT on MobileNetV2; the config's backbone is TruncatedEfficientNet", dst)
    # Another depth: EfficientNet-B0 has 16 blocks, B3 24 (190 layers with weights).
    convert_fails(['official-yoloret', src, dst, '--config', CONFIGS[416], '--cfg-options',
                    'model.backbone.arch=b0'],
           'has 190 layers with weights before the YOLO-ReT neck, the truncated '
           'EfficientNet-B0 of the config 120', dst)
    # A class count that does not fit the config (VOC's 20 classes).
    voc = tmp_path / 'official_voc.py'
    voc.write_text(textwrap.dedent(f"""
        _base_ = '{CONFIGS[416]}'
        model = dict(
            neck=[dict(type='RFCR', in_channels=(48, 136, 232), shortcut_channels=32,
                       norm_cfg=dict(type='BN', eps=1e-3)),
                  dict(type='YOLOReTNeck', in_channels=(144, 232, 328), out_channels=75,
                       norm_cfg=dict(type='BN', eps=1e-3))],
            bbox_head=dict(num_classes=20, in_channels=[75, 75, 75]))
        test_dataloader = dict(dataset=dict(metainfo=dict(classes=[str(i) for i in range(20)])))
    """))
    err = convert_fails(['official-yoloret', src, dst, '--config', str(voc)],
                 "weight 'kernel': expected (1, 1, 512, 75) for "
                 'neck.1.top_down_nodes.2.1.linear_conv.conv.weight', dst)
    assert 'got (1, 1, 512, 255)' in err
