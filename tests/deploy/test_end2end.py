"""The end-to-end graph (rfcr.deploy.end2end): End2End and its ONNX file, NMS inside,
against mmdet's own preprocessing + predict on the demo detector."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.structures import DetDataSample
from rfcr.deploy import switch_to_deploy
from rfcr.deploy.end2end import (END2END_KEY, End2End, NonMaxSuppression, end2end_metadata,
                                 export_end2end, metadata_path)
from rfcr.deploy.export import export_onnx
from rfcr.deploy.runtime import RUNTIMES, load_exported
from rfcr.utils.config import build_model, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs' / 'yoloret' / 'yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py'
OFFICIAL = ROOT / 'configs' / 'official' / 'yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py'
SIZE = 160
# 'dense': the config's test_cfg; nearly every anchor passes, nms_pre (1000) and
# max_per_img (100) cut. 'sparse': a few detections, the rest of the K rows padding.
SPARSE = dict(conf_thr=0.6, score_thr=0.6)
SPARSE_OPTIONS = ['--cfg-options', 'model.test_cfg.conf_thr=0.6', 'model.test_cfg.score_thr=0.6']
EDGE = ('mnn', 'litert')  # the edge runtimes that run the end-to-end graph (ncnn does not)


def confident_detector(objectness_bias: float = -2.0, **test_cfg):
    """The demo detector, random, made to detect: BN statistics of random images (so that
    features do not vanish), prediction convs that read them (objectness and class logits
    of spread O(1), box offsets of less, so boxes stay near their anchors)."""
    torch.manual_seed(0)
    model = build_model(CONFIG)
    model.bbox_head.test_cfg.update(test_cfg)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # running stats = those of the one batch below
    model.train()
    with torch.no_grad():
        model((torch.randint(0, 256, (4, 3, SIZE, SIZE)) - 120.0) / 58, mode='tensor')
    model.eval()
    head = model.bbox_head
    with torch.no_grad():
        for conv in head.convs_pred:
            w = conv.weight.view(head.num_base_priors, head.num_attrib, -1)
            w[:, :4] *= 3
            w[:, 4:] *= 20
            bias = conv.bias.view(head.num_base_priors, head.num_attrib)
            bias[:, 4] = objectness_bias
            bias[:, 5:] = -1.0
    return model


def mmdet_predict(model, images, metainfo=None, rescale=False):
    """mmdet's path: its data preprocessor on the uint8 (BGR) images, then predict."""
    metainfo = metainfo or [dict(img_shape=tuple(x.shape[-2:]), ori_shape=tuple(x.shape[-2:]),
                                 scale_factor=(1.0, 1.0)) for x in images]
    data = model.data_preprocessor(
        dict(inputs=list(images), data_samples=[DetDataSample(metainfo=m) for m in metainfo]))
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'], rescale=rescale)
    return [r.pred_instances for r in results]


def assert_same_detections(outputs, expected, box_tol):
    num_dets, boxes, scores, labels = (np.asarray(o) for o in outputs)
    assert num_dets.dtype == labels.dtype == np.int64
    for i, ref in enumerate(expected):
        n = len(ref)
        assert num_dets[i] == n
        np.testing.assert_allclose(boxes[i, :n], ref.bboxes.numpy(), atol=box_tol, rtol=0)
        np.testing.assert_allclose(scores[i, :n], ref.scores.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(labels[i, :n], ref.labels.numpy())
        # EfficientNMS padding: zeros past num_dets
        assert not boxes[i, n:].any() and not scores[i, n:].any() and not labels[i, n:].any()


def images(batch, height=SIZE, width=SIZE, seed=0):
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope='module')
def dense():
    return confident_detector()


@pytest.fixture(scope='session')  # tests/test_predict.py's detector too
def sparse():
    return confident_detector(-3.0, **SPARSE)


@pytest.fixture(scope='module')
def dense_onnx(dense, tmp_path_factory):
    path = tmp_path_factory.mktemp('end2end') / 'dense.onnx'
    cfg = load_config(CONFIG)
    export_end2end(dense, path, shape=(SIZE, SIZE), batch=2,
                   metadata=end2end_metadata(cfg, dense, (SIZE, SIZE)))
    return path


@pytest.mark.parametrize('name', ['dense', 'sparse'])
def test_end2end_equals_mmdet_predict(name, request):
    model = request.getfixturevalue(name)
    x = images(2)
    expected = mmdet_predict(model, x)
    counts = [len(r) for r in expected]
    if name == 'dense':  # the cuts apply: nms_pre of many more candidates, then K
        assert counts == [100, 100]
    else:  # some detections, fewer than K
        assert all(0 < n < 100 for n in counts), counts
    with torch.no_grad():
        assert_same_detections(End2End(model)(x), expected, box_tol=1e-4)
        folded = End2End(switch_to_deploy(copy.deepcopy(model)))
        assert not any(isinstance(m, _BatchNorm) for m in folded.modules())
        assert_same_detections(folded(x), expected, box_tol=1e-2)


@pytest.mark.parametrize('dynamic', [False, True])
def test_end2end_fewer_anchors_than_nms_pre(dense, dynamic):
    """At 64x96 the head has 378 anchors, fewer than nms_pre (1000): every anchor is a
    candidate, or (traced for any size) the nms_pre candidates are padded; either way
    End2End selects what mmdet does."""
    model = dense
    x = images(2, 64, 96, seed=3)
    end2end = End2End(model, dynamic=dynamic)
    with torch.no_grad():
        boxes, _, _ = end2end.decode(model(end2end.preprocess(x), mode='tensor')[0])
        assert boxes.shape[1] == 378 < end2end.nms_pre
        expected = mmdet_predict(model, x)
        assert sum(len(r) for r in expected) > 0
        assert_same_detections(end2end(x), expected, box_tol=1e-4)


@pytest.mark.slow
def test_onnx_end2end_equals_mmdet_predict(dense, dense_onnx):
    x = images(2, seed=1)
    outputs = load_exported(dense_onnx)(x)
    assert_same_detections(outputs, mmdet_predict(dense, x), box_tol=1e-2)
    ops = [n.op_type for n in onnx.load(dense_onnx).graph.node]
    assert ops.count('NonMaxSuppression') == 1


@pytest.mark.slow
def test_dynamic_folded_onnx_end2end_equals_mmdet_predict(sparse, tmp_path):
    path = tmp_path / 'sparse.onnx'
    export_end2end(switch_to_deploy(copy.deepcopy(sparse)), path, shape=(SIZE, SIZE),
                   dynamic=True)
    exported = load_exported(path)
    for batch, height, width in ((1, SIZE, SIZE), (3, 128, 192)):
        x = images(batch, height, width, seed=batch)
        expected = mmdet_predict(sparse, x)
        assert sum(len(r) for r in expected) > 0
        assert_same_detections(exported(x), expected, box_tol=1e-2)


def test_end2end_metadata(dense_onnx):
    meta = {p.key: p.value for p in onnx.load(dense_onnx).metadata_props}
    assert meta[END2END_KEY] == '1'
    assert json.loads(meta['classes']) == ['circle', 'square', 'triangle', 'star', 'cross',
                                           'ring']
    assert json.loads(meta['input_size']) == [SIZE, SIZE]
    assert meta['channel_order'] == 'bgr' and meta['letterbox'] == 'resize_pad'
    # mmdet pads the normalized batch with 0: the mean, here in BGR order
    assert json.loads(meta['pad_value']) == [103.53, 116.28, 123.675]
    assert (float(meta['score_thr']), float(meta['conf_thr']), float(meta['iou_thr']),
            int(meta['nms_pre']), int(meta['max_per_img'])) == (0.05, 0.005, 0.45, 1000, 100)


def test_official_config_metadata():
    """The official Keras configs: rfcr's centred Letterbox, black padding, VOC's classes."""
    cfg = load_config(OFFICIAL)
    meta = end2end_metadata(cfg, build_model(cfg), (320, 320))
    assert meta['letterbox'] == 'centred' and json.loads(meta['pad_value']) == [0, 0, 0]
    classes = json.loads(meta['classes'])
    assert len(classes) == 20 and classes[:2] == ['aeroplane', 'bicycle']
    assert (float(meta['score_thr']), float(meta['iou_thr']), meta['max_per_img']) == (
        0.2, 0.5, '400')


class _NMS(torch.nn.Module):
    def forward(self, boxes, scores):
        return NonMaxSuppression.apply(boxes, scores, 2, 0.5, 0.3),


def test_non_max_suppression_equals_onnx_op(tmp_path):
    """PyTorch's NonMaxSuppression selects what ONNX Runtime's op does: per image and
    class, above the score threshold, at most max_per_class (2) each."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 40, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 40, 2, generator=g) * 20], -1)
    scores = torch.rand(2, 3, 40, generator=g)
    path = tmp_path / 'nms.onnx'
    export_onnx(_NMS(), (boxes, scores), path)
    (selected, ) = load_exported(path)(boxes, scores)
    (eager, ) = _NMS()(boxes, scores)
    assert len(eager) == 2 * 3 * 2  # every (image, class) has 2 boxes left
    assert sorted(map(tuple, selected.tolist())) == sorted(map(tuple, eager.tolist()))
    assert selected.dtype == np.int64


def test_end2end_refuses_bad_arguments(dense, tmp_path):
    with pytest.raises(TypeError, match='YOLOV3Head'):
        End2End(dense.backbone)
    with pytest.raises(ValueError, match=r"test_cfg.nms: .*soft_nms"):
        End2End(dense, dict(dense.bbox_head.test_cfg, nms=dict(type='soft_nms',
                                                                iou_threshold=0.5)))
    with pytest.raises(ValueError, match='pad_size_divisor \\(32\\), got 100x160'):
        export_end2end(dense, tmp_path / 'x.onnx', shape=(100, 160))
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.slow
def test_rfcr_export_end2end(sparse, tmp_path, capsys):
    from rfcr.tools.export import run as rfcr_export
    checkpoint = tmp_path / 'sparse.pth'
    torch.save(sparse.state_dict(), checkpoint)
    out = tmp_path / 'model.onnx'
    summary = rfcr_export([str(CONFIG), str(out), '--end2end', '--checkpoint', str(checkpoint),
                           '--shape', str(SIZE), str(SIZE), '--deploy', '--verify']
                          + SPARSE_OPTIONS)
    (check, ) = summary['verify']
    assert check.same_num_dets and check.same_labels and check.max_box > 0
    assert check.max_box_diff <= 1e-3 * check.max_box
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta[END2END_KEY] == '1' and float(meta['score_thr']) == 0.6
    assert 'verify: OK' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='graph does not run on ncnn: ncnn has no '
                       'NonMaxSuppression'):
        rfcr_export([str(CONFIG), str(tmp_path / 'model.param'), '--format', 'ncnn',
                     '--end2end'])
    assert not (tmp_path / 'model.param').exists()


@pytest.fixture(scope='session')  # tests/test_predict.py's too
def edge_exports(sparse, tmp_path_factory):
    """rfcr-export --end2end --deploy --verify of the sparse detector to each installed edge
    runtime's file (MNN with dynamic shapes), by runtime name, and the same folded graph as
    ONNX (``'onnx'``) for reference. One export each for every test that uses them."""
    from rfcr.tools.export import run as rfcr_export
    tmp = tmp_path_factory.mktemp('end2end-edge')
    torch.save(sparse.state_dict(), tmp / 'sparse.pth')
    options = ['--end2end', '--checkpoint', str(tmp / 'sparse.pth'), '--shape', str(SIZE),
               str(SIZE), '--deploy'] + SPARSE_OPTIONS
    exports = dict(onnx=tmp / 'model.onnx')
    rfcr_export([str(CONFIG), str(exports['onnx'])] + options)
    for runtime in (RUNTIMES[name] for name in EDGE if RUNTIMES[name].available()):
        path = tmp / f'model{runtime.suffixes[0]}'
        summary = rfcr_export([str(CONFIG), str(path), '--format', runtime.name, '--verify']
                              + ['--dynamic'] * (runtime.name == 'mnn') + options)
        exports[runtime.name] = dict(path=path, summary=summary)
    return exports


def edge_export(exports: dict, name: str) -> dict:
    """``exports[name]``, or a skip where that runtime is not installed."""
    if name not in exports:
        pytest.skip(f'{RUNTIMES[name].label} is not installed')
    return exports[name]


@pytest.mark.slow
@pytest.mark.parametrize('name', EDGE)
def test_rfcr_export_end2end_edge(edge_exports, name):
    """MNN and LiteRT run the graph, NMS included: PyTorch's detections (at three sizes
    and two batch sizes for MNN's dynamic file); the metadata beside the file."""
    export = edge_export(edge_exports, name)
    checks = export['summary']['verify']
    assert len(checks) == (3 if name == 'mnn' else 1)
    for check in checks:
        assert check.same_num_dets and check.same_labels and check.max_box > 0
        assert check.max_box_diff <= 1e-3 * check.max_box
    meta = json.loads(metadata_path(export['path']).read_text())
    assert meta == {p.key: p.value for p in onnx.load(edge_exports['onnx']).metadata_props}
    assert meta[END2END_KEY] == '1' and float(meta['score_thr']) == 0.6


@pytest.mark.slow
@pytest.mark.parametrize('name', EDGE)
def test_predictor_on_edge_runtimes_equals_onnxruntime(edge_exports, name, tmp_path):
    """rfcr-predict --runtime mnn / litert in a fresh interpreter (no torch, mmdet,
    TensorFlow): ONNX Runtime's detections on the same folded graph, within 1 px."""
    import rfcr_predict
    from tests.test_predict import FRESH, assert_matches
    path = edge_export(edge_exports, name)['path']
    image = tmp_path / 'noise.png'
    cv2.imwrite(str(image), images(1, seed=5)[0].permute(1, 2, 0).numpy())
    (ort, ) = rfcr_predict.run([str(edge_exports['onnx']), str(image), '--out-dir',
                                str(tmp_path / 'ort')])
    proc = subprocess.run([sys.executable, '-c', FRESH, str(path), str(image), '--out-dir',
                           str(tmp_path / 'edge'), '--runtime', name],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '[]'
    result = json.loads((tmp_path / 'edge' / 'noise.json').read_text())
    assert_matches(result, (np.array(ort['boxes']), np.array(ort['scores']), ort['labels']))
