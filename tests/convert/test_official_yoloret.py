"""rfcr-convert official-yoloret against a Keras YOLO-ReT-M0.75 VOC graph re-stated from the
official ``yolov3_body`` (random weights and BN statistics), saved both ways: the three raw
prediction maps equal Keras', the official input handling equals the official code's, and
mmdet's tools load the checkpoint."""
import os
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmdet.apis import DetInferencer
from mmdet.datasets import VOCDataset
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from rfcr.tools import convert, test as rfcr_test
from tests.convert.keras_reference import (IMAGE_SHAPES, YOLORET_SIZES, assert_close_to_max,
                                           mobilenet_v2_file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(
    ROOT, 'configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py')
OFFICIAL_PARAMS = 1_857_075  # the authors' model, BN running statistics excluded


@pytest.fixture(scope='module')
def files(keras_refs, tmp_path_factory):
    """The Keras model saved as weights only and whole, each converted."""
    folder = tmp_path_factory.mktemp('official')
    out = {}
    for how in ('weights', 'model'):
        src = keras_refs.dir / f'yoloret_{how}.h5'
        dst = folder / f'{how}.pth'
        convert.run(['official-yoloret', str(src), str(dst), '--config', CONFIG])
        out[how] = src, dst
    return out


@pytest.fixture(scope='module')
def model(files):
    register_all_modules()
    model = MODELS.build(Config.fromfile(CONFIG).model)
    load_checkpoint(model, str(files['weights'][1]), strict=True)
    return model.eval()


def test_the_keras_reference_is_the_official_model(keras_refs):
    assert keras_refs.yoloret['params'] == OFFICIAL_PARAMS


def test_both_file_forms_convert_alike(files):
    a, b = (torch.load(files[how][1], weights_only=True) for how in ('weights', 'model'))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key in a['state_dict']:
        assert torch.equal(a['state_dict'][key], b['state_dict'][key]), key
    assert a['meta']['dataset_meta']['classes'] == VOCDataset.METAINFO['classes']
    # Keras orders the fusion scalars by stride 32, 16, 8, 4; RFCR by 4, 8, 16, 32.
    assert a['state_dict']['neck.0.fusion_weights'].tolist() == [1.25, -0.5, 0.75, 1.5]


def _per_anchor(pred_map, like):
    """(N, A * (5 + C), H, W) -> Keras' (N, H, W, A, 5 + C): mmdet's YOLOv3 head has the same
    per-anchor channel order, x, y, w, h, objectness, classes."""
    return pred_map.permute(0, 2, 3, 1).reshape(like.shape).numpy()


@pytest.mark.parametrize('size', YOLORET_SIZES)
def test_prediction_maps_equal_keras(keras_refs, model, size):
    refs = keras_refs.yoloret
    with torch.no_grad():
        (ours, ) = model._forward(torch.from_numpy(refs[f'x{size}']).permute(0, 3, 1, 2))
    for i, mine in enumerate(ours):  # strides 32, 16, 8
        theirs = refs[f'y{size}_{i}']
        assert_close_to_max(_per_anchor(mine, theirs), theirs, what=f'size {size}, map {i}')


@pytest.mark.parametrize('k', range(len(IMAGE_SHAPES)))
def test_official_input_handling(keras_refs, model, k):
    """The config's test pipeline and data preprocessor make the official input of an image
    file (code/yolo.py's letterbox, in TensorFlow), and the model the official maps."""
    cfg = Config.fromfile(CONFIG)
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t['type'] != 'LoadAnnotations'])
    sample = pipeline(dict(img_path=str(keras_refs.dir / f'image{k}.png'), img_id=0))
    data = model.data_preprocessor({key: [value] for key, value in sample.items()})
    refs = keras_refs.yoloret
    assert_close_to_max(data['inputs'].permute(0, 2, 3, 1).numpy(), refs[f'input{k}'],
                        what='input')
    with torch.no_grad():
        (ours, ) = model._forward(data['inputs'])
    for i, mine in enumerate(ours):
        theirs = refs[f'image{k}_y{i}']
        assert_close_to_max(_per_anchor(mine, theirs), theirs, what=f'image {k}, map {i}')


def test_det_inferencer_loads_it(files, model, tmp_path):
    path = tmp_path / 'image.jpg'
    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 256, (240, 300, 3), np.uint8))
    inferencer = DetInferencer(model=CONFIG, weights=str(files['model'][1]), device='cpu',
                               show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == VOCDataset.METAINFO['classes']
    for key, value in model.state_dict().items():
        assert torch.equal(inferencer.model.state_dict()[key], value), key
    result = inferencer(str(path), return_datasamples=True)['predictions'][0]
    boxes = result.pred_instances.bboxes
    assert len(boxes) > 0 and torch.isfinite(boxes).all()
    assert result.pred_instances.labels.max() < 20


VOC_XML = """<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>{name}</name><difficult>0</difficult>
<bndbox><xmin>20</xmin><ymin>30</ymin><xmax>150</xmax><ymax>120</ymax></bndbox></object>
</annotation>"""


def test_rfcr_test_runs_it_on_voc(files, tmp_path):
    """rfcr-test with the official config on a two-image VOC07-layout test set."""
    root = tmp_path / 'VOCdevkit'
    voc = root / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (voc / sub).mkdir(parents=True)
    names = ['000001', '000002']
    for i, name in enumerate(names):
        h, w = (200, 300) if i == 0 else (330, 250)
        cv2.imwrite(str(voc / 'JPEGImages' / f'{name}.jpg'),
                    np.random.default_rng(i).integers(0, 256, (h, w, 3), np.uint8))
        (voc / 'Annotations' / f'{name}.xml').write_text(
            VOC_XML.format(w=w, h=h, name=('dog', 'person')[i]))
    (voc / 'ImageSets/Main/test.txt').write_text('\n'.join(names) + '\n')
    metrics = rfcr_test.run([
        CONFIG, str(files['weights'][1]), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        f'test_dataloader.dataset.data_root={root}/', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', 'test_dataloader.batch_size=2'])
    assert 0 <= metrics['pascal_voc/mAP'] <= 1


def test_bad_input(keras_refs, files, tmp_path, convert_fails):
    src = str(files['weights'][0])
    dst = str(tmp_path / 'out.pth')
    text = tmp_path / 'x.h5'
    text.write_text('not hdf5')
    convert_fails(['official-yoloret', str(text), dst, '--config', CONFIG],
           'is not an HDF5 file', dst)

    # Another architecture: a network without MobileNetV2, and Keras' MobileNetV2 alone.
    convert_fails(['official-yoloret', str(keras_refs.dir / 'other.h5'), dst, '--config',
                    CONFIG], "is not a YOLO-ReT checkpoint of MobileNetV2 (it has no layer 'Conv1') "
           'or EfficientNet', dst)
    imagenet = str(keras_refs.dir / mobilenet_v2_file(0.75))
    convert_fails(['official-yoloret', imagenet, dst, '--config', CONFIG],
           "layer 'block_16_expand' is a MobileNetV2 layer that the truncated backbone", dst)
    convert_fails(['keras-mobilenetv2', src, dst],
           "is not a whole Keras MobileNetV2: it has no layer 'block_16_project'", dst)

    # A width that does not fit the config.
    convert_fails(['official-yoloret', src, dst, '--config', CONFIG, '--cfg-options',
                    'model.backbone.widen_factor=1.4'],
           "layer 'Conv1' weight 'kernel': expected (3, 3, 3, 48) for backbone.conv1.conv.weight",
           dst)
    # A class count that does not fit the config (COCO's 80 classes).
    coco = tmp_path / 'official_coco.py'
    coco.write_text(textwrap.dedent(f"""
        _base_ = '{CONFIG}'
        model = dict(
            neck=[dict(type='RFCR', in_channels=(24, 72, 120), shortcut_channels=24,
                       norm_cfg=dict(type='BN', eps=1e-3)),
                  dict(type='YOLOReTNeck', in_channels=(120, 168, 216), out_channels=255,
                       norm_cfg=dict(type='BN', eps=1e-3))],
            bbox_head=dict(num_classes=80, in_channels=[255, 255, 255]))
        test_dataloader = dict(dataset=dict(metainfo=dict(classes=[str(i) for i in range(80)])))
    """))
    err = convert_fails(['official-yoloret', src, dst, '--config', str(coco)],
                 "weight 'kernel': expected (1, 1, 512, 255) for "
                 'neck.1.top_down_nodes.2.1.linear_conv.conv.weight', dst)
    assert 'got (1, 1, 512, 75)' in err
    # A config without Keras' numerics (PyTorch's BN eps in the neck).
    convert_fails(['official-yoloret', src, dst, '--config', os.path.join(
        ROOT, 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_voc0712.py')],
        "which need Keras' numerics, but YOLOV3.neck.0.fuse_conv.0.bn has BN eps=1e-05", dst)
    # A config of another graph (no stride-4 shortcut).
    convert_fails(['official-yoloret', src, dst, '--config', os.path.join(
        ROOT, 'configs/ablation/yoloret_mobilenetv2-0.75-trunc_rfcr_2xb8-320-250e_voc0712.py')],
        'the config does not build the official YOLO-ReT graph: the backbone is not', dst)


def test_cli_without_tensorflow(files, tmp_path):
    """The console entry point converts without importing TensorFlow; it takes seconds."""
    dst = tmp_path / 'cli.pth'
    code = ('import sys; from rfcr.tools.convert import main; main(sys.argv[1:]); '
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', code, 'official-yoloret', str(files['weights'][0]),
                    str(dst), '--config', CONFIG], check=True, cwd=ROOT,
                   env={**os.environ, 'PYTHONPATH': ROOT})
    print(f'rfcr-convert official-yoloret, whole process: {time.perf_counter() - start:.1f} s')
    assert torch.load(dst, weights_only=True)['state_dict'].keys() == \
        torch.load(files['weights'][1], weights_only=True)['state_dict'].keys()
