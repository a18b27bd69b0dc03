"""rfcr-predict (rfcr_predict.py): an end-to-end ONNX file on images with numpy, OpenCV and
ONNX Runtime only, its boxes mapped back to the image as mmdet's predict(rescale=True)."""
import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch
from mmcv.transforms import LoadImageFromFile

import rfcr_predict
from mmdet.datasets.transforms import Resize
from rfcr.datasets import Letterbox
from rfcr.deploy.end2end import end2end_metadata, export_end2end
from rfcr.utils.config import load_config
from tests.deploy.test_end2end import CONFIG, ROOT, SIZE, mmdet_predict
from tests.deploy.test_end2end import sparse  # noqa: F401  (the detector, a fixture)

pytestmark = pytest.mark.slow  # exports a whole detector
HEIGHT, WIDTH = 120, 200  # resized by 0.8 to 96 x 160, padded to 160 x 160
# A fresh interpreter: rfcr-predict's main, then the heavy modules it imported (none).
FRESH = ('import sys, rfcr_predict\n'
         'rc = rfcr_predict.main(sys.argv[1:])\n'
         "print(sorted(m for m in sys.modules if m.split('.')[0] in "
         "('torch', 'mmdet', 'mmcv', 'mmengine', 'rfcr', 'tensorflow')))\n"
         'sys.exit(rc)\n')


@pytest.fixture(scope='module')
def model(sparse):  # noqa: F811
    return sparse


@pytest.fixture(scope='module')
def files(model, tmp_path_factory):
    """An end-to-end file (mmdet's Resize + bottom-right pad), the same graph marked for
    rfcr's centred Letterbox, and an image with shapes on noise."""
    tmp = tmp_path_factory.mktemp('predict')
    path = tmp / 'model.onnx'
    export_end2end(model, path, shape=(SIZE, SIZE),
                   metadata=end2end_metadata(load_config(CONFIG), model, (SIZE, SIZE)))
    centred = onnx.load(path)
    for entry in centred.metadata_props:
        if entry.key in ('letterbox', 'pad_value'):
            entry.value = 'centred' if entry.key == 'letterbox' else '[0, 0, 0]'
    onnx.save(centred, tmp / 'centred.onnx')
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    cv2.circle(image, (60, 60), 35, (255, 255, 255), -1)
    cv2.rectangle(image, (120, 20), (185, 100), (0, 0, 255), -1)
    cv2.imwrite(str(tmp / 'shapes.png'), image)
    return dict(model=path, centred=tmp / 'centred.onnx', image=tmp / 'shapes.png')


def reference(model, letterboxed, meta):
    """mmdet's predict(rescale=True) on the graph's input, boxes clipped to the image."""
    x = torch.from_numpy(letterboxed).permute(2, 0, 1)
    (ref, ) = mmdet_predict(model, [x], [dict(meta, ori_shape=(HEIGHT, WIDTH))],
                            rescale=True)
    boxes = ref.bboxes.numpy().copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, WIDTH)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, HEIGHT)
    return boxes, ref.scores.numpy(), ref.labels.numpy()


def assert_matches(result, expected):
    """The same detections within 1 px, in any order (near-equal scores may swap)."""
    boxes, scores, labels = expected
    assert 0 < len(result['labels']) == len(labels)
    unmatched = list(range(len(labels)))
    for box, score, label in zip(result['boxes'], result['scores'], result['labels']):
        match = [j for j in unmatched if labels[j] == label and abs(scores[j] - score) < 1e-3
                 and np.abs(boxes[j] - box).max() <= 1]
        assert match, (box, score, label)
        unmatched.remove(match[0])


def test_predictor_without_torch_equals_mmdet(model, files, tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, '-c', FRESH, str(files['model']),
                           str(files['image']), '--out-dir', str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '[]'  # no torch, mmdet, mmcv, rfcr
    result = json.loads((out / 'shapes.json').read_text())
    assert (result['height'], result['width']) == (HEIGHT, WIDTH)
    classes = ['circle', 'square', 'triangle', 'star', 'cross', 'ring']
    assert result['classes'] == [classes[i] for i in result['labels']]
    drawn = cv2.imread(str(out / 'shapes.png'))
    assert drawn.shape == (HEIGHT, WIDTH, 3)
    assert (drawn != cv2.imread(str(files['image']))).any()

    # mmdet's own loading and Resize give the graph's input, up to the padding ...
    loaded = Resize(scale=(SIZE, SIZE), keep_ratio=True)(
        LoadImageFromFile()(dict(img_path=str(files['image']))))
    image = cv2.imread(str(files['image']))
    letterboxed, scale, offset = rfcr_predict.letterbox(image, (SIZE, SIZE), 'resize_pad',
                                                       [103.53, 116.28, 123.675])
    assert loaded['img_shape'] == (96, 160) and scale == loaded['scale_factor']
    assert offset == (0, 0)
    np.testing.assert_array_equal(letterboxed[:96], loaded['img'])
    assert (letterboxed[96:] == [104, 116, 124]).all()
    # ... whose detections, rescaled by mmdet and clipped, are the predictor's.
    assert_matches(result, reference(model, letterboxed, dict(
        img_shape=loaded['img_shape'], scale_factor=loaded['scale_factor'])))


def test_predictor_centred_letterbox_and_coco_results(model, files, tmp_path):
    ann = tmp_path / 'instances_val.json'
    categories = ['ring', 'cross', 'star', 'triangle', 'square', 'circle']
    ann.write_text(json.dumps(dict(
        images=[dict(id=7, file_name='val/shapes.png', height=HEIGHT, width=WIDTH)],
        categories=[dict(id=100 + i, name=n) for i, n in enumerate(categories)])))
    coco = tmp_path / 'results' / 'bbox.json'
    (result, ) = rfcr_predict.run([str(files['centred']), str(files['image'].parent),
                                   '--out-dir', str(tmp_path / 'out'), '--coco-json',
                                   str(coco), '--coco-ann', str(ann)])

    letterbox = Letterbox(scale=SIZE)(dict(img=cv2.imread(str(files['image']))))
    letterboxed, scale, offset = rfcr_predict.letterbox(
        cv2.imread(str(files['image'])), (SIZE, SIZE), 'centred', [0, 0, 0])
    assert offset == (0, 32) and scale == letterbox['scale_factor']
    np.testing.assert_array_equal(letterboxed, np.rint(letterbox['img']))
    assert_matches(result, reference(model, letterboxed, dict(
        img_shape=(SIZE, SIZE), scale_factor=letterbox['scale_factor'],
        pad_param=letterbox['pad_param'])))

    entries = json.loads(coco.read_text())
    assert len(entries) == len(result['labels']) > 0
    for entry, (x1, y1, x2, y2), score, name in zip(entries, result['boxes'],
                                                    result['scores'], result['classes']):
        assert entry['image_id'] == 7 and entry['category_id'] == 100 + categories.index(name)
        np.testing.assert_allclose(entry['bbox'], [x1, y1, x2 - x1, y2 - y1], atol=1e-2)
        assert entry['score'] == pytest.approx(score, abs=1e-4)


@pytest.fixture
def bad_files(files, tmp_path):
    (tmp_path / 'text.png').write_text('not an image')
    (tmp_path / 'garbage.onnx').write_bytes(bytes(range(7, 250)))
    identity = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node('Identity', ['x'], ['y'])], 'identity',
        [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])]))
    onnx.save(identity, tmp_path / 'plain.onnx')
    (tmp_path / 'model.xml').write_text('<net/>')
    return dict(files, tmp=tmp_path)


@pytest.mark.parametrize('args, expected', [
    (['{model}', '{tmp}/missing.png'], "IMAGE_OR_DIR: got '{tmp}/missing.png', which does not"),
    (['{model}', '{image}', '{tmp}/text.png'], "IMAGE_OR_DIR: got '{tmp}/text.png', expected an "
     'image'),
    (['{image}', '{image}'], "MODEL: got '{image}', expected an end-to-end "
     '.onnx/.xml/.mnn/.tflite file (rfcr-export'),
    (['{tmp}/model.xml', '{image}'], "MODEL: got '{tmp}/model.xml', whose metadata "
     "'{tmp}/model.xml.json' (written beside it by rfcr-export --end2end) cannot be read"),
    (['{model}', '{image}', '--runtime', 'mnn'], "MODEL: got '{model}', expected an end-to-end "
     '.mnn file for --runtime mnn'),
    (['{tmp}/garbage.onnx', '{image}'], "MODEL: got '{tmp}/garbage.onnx', expected an"),
    (['{tmp}/plain.onnx', '{image}'], "MODEL: got '{tmp}/plain.onnx', expected an end-to-end "
     'graph with rfcr metadata'),
    (['{model}', '{image}', '--score-thr', '1.5'], '--score-thr: got 1.5, expected a number in '
     '[0, 1]'),
    (['{model}', '{image}', '--score-thr', '-0.1'], '--score-thr: got -0.1, expected'),
    (['{model}', '{image}', '--score-thr', 'high'], "argument --score-thr: invalid float value: "
     "'high'"),
], ids=['missing image', 'not an image', 'not a model', 'no sidecar metadata',
        'not for the runtime', 'garbage onnx', 'onnx without metadata', 'score-thr > 1', 'score-thr < 0', 'score-thr not a number'])
def test_predictor_bad_input(bad_files, args, expected, capfd):
    out = bad_files['tmp'] / 'out'
    argv = [a.format(**bad_files) for a in args] + [
        '--out-dir', str(out), '--coco-json', str(bad_files['tmp'] / 'coco.json')]
    capfd.readouterr()
    assert rfcr_predict.main(argv) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith('rfcr-predict: error: ' + expected.format(**bad_files))
    assert not out.exists() and not (bad_files['tmp'] / 'coco.json').exists()


def test_predictor_on_openvino_equals_onnxruntime(files, tmp_path):
    pytest.importorskip('openvino')
    args = [str(files['model']), str(files['image']), '--score-thr', '0.7']
    (ort, ) = rfcr_predict.run(args + ['--out-dir', str(tmp_path / 'ort')])
    (ov, ) = rfcr_predict.run(args + ['--out-dir', str(tmp_path / 'ov'), '--runtime',
                                      'openvino'])
    assert min(ort['scores']) >= 0.7
    assert_matches(ov, (np.array(ort['boxes']), np.array(ort['scores']), ort['labels']))
