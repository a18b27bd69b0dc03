"""INT8 post-training quantization and exported-model evaluation on a trained tiny
checkpoint: the demo config trained by mmengine's Runner on a few generated images until
its detections are confident, then rfcr-quantize (ONNX Runtime, OpenVINO/NNCF) and
rfcr-test on the exported files (mmdet's CocoMetric through the real test loop)."""
import json
import pickle
from pathlib import Path

import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from rfcr.datasets.synthetic import generate
from rfcr.utils.checkpoint import mmengine_checkpoint_loading
from rfcr.tools import export as rfcr_export
from rfcr.tools import quantize as rfcr_quantize
from rfcr.tools import test as rfcr_test
from rfcr.tools import train as rfcr_train
from rfcr.utils.config import build_model
from tests.test_training import DEMO, _options, rfcr_train_parser

SIZE = 128  # images and model input: small enough to train in under a minute on 2 cores


def _data_options(data: Path) -> list:
    """The demo config on ``data`` at SIZE; validation and test on the training images,
    which the tiny model has learnt (its detections are then confident)."""
    ann = f'{data}/annotations/instances_train.json'
    options = _options(data, epochs=1, batch=4)
    options += [f'{split}_dataloader.dataset.{k}={v}' for split in ('val', 'test')
                for k, v in (('ann_file', 'annotations/instances_train.json'),
                             ('data_prefix.img', 'train/'),
                             ('pipeline.1.scale', f'({SIZE},{SIZE})'))]
    options += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
                f'train_dataloader.dataset.pipeline.2.scale=({SIZE},{SIZE})',
                'train_dataloader.dataset.pipeline.3.prob=0.0']
    # Score only what the model is sure of (the demo's test_cfg; _options keeps every box).
    return [o for o in options if not o.startswith('model.test_cfg')]


def train_tiny(root: Path, epochs: int = 80) -> tuple[list, str, float]:
    """The demo model overfit on 4 generated images of one shape each: cfg options, the
    checkpoint, and mAP@0.5 on those images."""
    data = generate(root / 'data', num_train=4, num_val=1, size=SIZE, seed=1,
                    num_objects=(1, 1), min_object=32)
    options = _data_options(data)
    args = rfcr_train_parser().parse_args(
        [str(DEMO), '--work-dir', str(root / 'work'), '--cfg-options', *options,
         f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
         'default_hooks.logger.interval=20'])
    cfg = rfcr_train.load_config(args)
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=0)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=5)]  # then a constant 1e-2: the quickest fit
    runner = rfcr_train.build_runner(cfg)
    with mmengine_checkpoint_loading():
        runner.train()
    return (options, str(root / 'work' / f'epoch_{epochs}.pth'),
            runner.message_hub.log_scalars['val/coco/bbox_mAP_50'].current())


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(cfg options, checkpoint) of a tiny model whose detections are confident."""
    options, checkpoint, map50 = train_tiny(tmp_path_factory.mktemp('quantize'))
    assert map50 >= 0.7
    return options, checkpoint


def _test(model: str, options: list, tmp_path: Path, *extra: str) -> tuple[dict, list]:
    """rfcr-test's metrics and its dumped predictions."""
    out = tmp_path / f'{Path(model).name}{"".join(extra)}.pkl'
    metrics = rfcr_test.run([str(DEMO), model, '--work-dir', str(tmp_path / 'test'),
                             '--out', str(out), *extra, '--cfg-options', *options])
    with open(out, 'rb') as f:
        return metrics, pickle.load(f)


def _overlapping(reference: list, other: list, min_score: float = 0.3) -> tuple[int, int]:
    """How many confident boxes of ``reference`` (score >= min_score) ``other`` finds again
    (a box of the same class with IoU >= 0.5), out of how many."""
    found = total = 0
    for ref, got in zip(reference, other):
        assert ref['img_id'] == got['img_id']
        ref, got = ref['pred_instances'], got['pred_instances']
        keep = ref['scores'] >= min_score
        for box, label in zip(ref['bboxes'][keep], ref['labels'][keep]):
            same = got['bboxes'][got['labels'] == label]
            total += 1
            found += bool(len(same)) and float(bbox_overlaps(box[None], same).max()) >= 0.5
    return found, total


@pytest.fixture(scope='module')
def fp32(trained, tmp_path_factory):
    options, checkpoint = trained
    return _test(checkpoint, options, tmp_path_factory.mktemp('fp32'))


@pytest.mark.slow
@pytest.mark.parametrize('runtime, suffix', [('onnxruntime', '.onnx'), ('openvino', '.xml')])
def test_int8_detections_overlap_fp32(trained, fp32, runtime, suffix, tmp_path):
    options, checkpoint = trained
    out = tmp_path / f'int8{suffix}'
    result = rfcr_quantize.run([str(DEMO), checkpoint, str(out), '--runtime', runtime,
                                '--calib', '3', '--cfg-options', *options])
    assert result['calib'] == 3 and result['input_shapes'] == [(1, 3, SIZE, SIZE)]
    ops = result['op_counts']
    assert ops.get('QuantizeLinear' if runtime == 'onnxruntime' else 'FakeQuantize', 0) > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['int8.onnx'] if runtime == 'onnxruntime' else ['int8.xml', 'int8.bin'])

    fp32_metrics, fp32_preds = fp32
    metrics, preds = _test(str(out), options, tmp_path)
    found, total = _overlapping(fp32_preds, preds)
    assert total >= 3 and found >= 0.8 * total, (found, total)  # 3-4 confident boxes
    assert metrics['coco/bbox_mAP_50'] >= fp32_metrics['coco/bbox_mAP_50'] - 0.2


@pytest.mark.slow
def test_fp32_exports_score_as_pytorch(trained, fp32, tmp_path):
    """PyTorch vs ONNX Runtime vs OpenVINO on the same FP32 graph: the same detections.
    A dynamic graph takes the test loader's batch of 4; a static batch-1 graph runs once
    per image."""
    options, checkpoint = trained
    fp32_metrics, fp32_preds = fp32
    dynamic, static = tmp_path / 'dynamic.onnx', tmp_path / 'static.onnx'
    rfcr_export.run([str(DEMO), str(dynamic), '--checkpoint', checkpoint, '--deploy',
                     '--dynamic', '--cfg-options', *options])
    rfcr_export.run([str(DEMO), str(static), '--checkpoint', checkpoint, '--shape', str(SIZE),
                     str(SIZE), '--cfg-options', *options])
    for model, extra in ((dynamic, ()), (static, ()), (dynamic, ('--runtime', 'openvino'))):
        metrics, preds = _test(str(model), options, tmp_path, *extra)
        for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
            assert metrics[key] == pytest.approx(fp32_metrics[key], abs=1e-3), (model, extra)
        for ref, got in zip(fp32_preds, preds):
            ref, got = ref['pred_instances'], got['pred_instances']
            assert len(got['scores']) == len(ref['scores'])
            torch.testing.assert_close(got['bboxes'], ref['bboxes'], atol=1e-2, rtol=0)


def _files(path: Path) -> list:
    return sorted(p.name for p in path.iterdir())


def test_bad_input_is_refused_and_writes_nothing(trained, tmp_path, capsys):
    options, checkpoint = trained
    out = tmp_path / 'out'
    out.mkdir()
    coco80 = tmp_path / 'coco80.pth'  # the COCO config's weights: 80 classes, not 6
    torch.save(build_model(DEMO.parent / 'yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py'
                           ).state_dict(), coco80)
    empty = tmp_path / 'empty.json'
    ann = json.loads(Path(options[0].split('=', 1)[1], 'annotations',
                          'instances_train.json').read_text())
    empty.write_text(json.dumps(dict(ann, images=[], annotations=[])))
    cases = [
        ([str(coco80), str(out / 'm.onnx')],
         rf"(?s)CHECKPOINT '{coco80}' does not fit the model of .*synthetic.py: The model and "
         r"loaded state dict do not match.*size mismatch for neck.1.*\.\.\. and \d+ more$"),
        ([checkpoint, str(out / 'm.onnx'), '--cfg-options',
          f'val_dataloader.dataset.ann_file={empty}'],
         r"--calib 100 --split val: the val split \(.*empty.json\) holds 0 images; 100 "
         r"calibration images were asked for"),
        ([checkpoint, str(out / 'm.onnx'), '--calib', '5'],
         r'the val split .* holds 4 images; 5 calibration images were asked for'),
        ([str(tmp_path / 'nope.pth'), str(out / 'm.onnx')],
         r"CHECKPOINT '.*nope.pth': no such file"),
    ]
    for argv, message in cases:
        if '--cfg-options' not in argv:
            argv = argv + ['--cfg-options', *options]
        with pytest.raises(SystemExit, match=message):
            rfcr_quantize.run([str(DEMO)] + argv)
    usage = [
        (['--calib', '0'], "--calib: must be a positive int, got '0'"),
        (['--calib', '-3'], "--calib: must be a positive int, got '-3'"),
        (['--runtime', 'tensorrt'], "--runtime: invalid choice: 'tensorrt'"),
        (['--runtime', 'openvino'], "--runtime openvino writes a .xml file, got OUT="),
        (['--split', 'holdout'], "--split: invalid choice: 'holdout'"),
    ]
    for extra, message in usage:
        with pytest.raises(SystemExit):
            rfcr_quantize.run([str(DEMO), checkpoint, str(out / 'm.onnx')] + extra)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rfcr_quantize.run([str(DEMO), checkpoint, str(tmp_path / 'missing' / 'm.onnx')])
    assert f"the folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert _files(out) == [] and not (tmp_path / 'missing').exists()


def test_rfcr_test_refuses_mixed_arguments(trained, tmp_path, capsys):
    options, checkpoint = trained
    for argv, message in (
            ([checkpoint, '--runtime', 'openvino'], '--runtime and --threads run an exported '
                                                    'model (.onnx/.xml), got the checkpoint'),
            ([str(tmp_path / 'm.onnx'), '--deploy'], '--deploy folds a PyTorch checkpoint'),
            ([str(tmp_path / 'm.onnx')], "exported model '" + str(tmp_path / 'm.onnx')
             + "': no such file"),
            ([str(tmp_path / 'm.onnx'), '--threads', '0'], '--threads must be a positive int')):
        with pytest.raises(SystemExit):
            rfcr_test.run([str(DEMO)] + argv + ['--work-dir', str(tmp_path / 'w')])
        assert message in capsys.readouterr().err
