"""ONNX export checked with ONNX Runtime: RFCR alone, the M0.75 detector, rfcr-export."""
import copy

import onnx
import onnxruntime as ort
import pytest
import torch

from rfcr.deploy import switch_to_deploy
from rfcr.deploy.export import (OnnxWrapper, detector_wrapper, export_onnx, neck_wrapper,
                                odd_pyramid_size, onnx_op_counts)
from rfcr.deploy.runtime import verify_exported
from rfcr.models import RFCR
from rfcr.tools.export import run as rfcr_export
from rfcr.utils.config import build_model
from tests.deploy.test_fold import CONFIG, pyramid, randomize

CHANNELS = (16, 24, 72, 120)  # stride 4 shortcut, 8, 16, 32


@pytest.fixture(scope='module')
def rfcr():
    torch.manual_seed(0)
    neck = RFCR(CHANNELS[1:], shortcut_channels=CHANNELS[0])
    neck.init_weights()
    return randomize(neck, [0.7, -1.2, 0.4, -0.3])  # a negative stride-8 weight


@pytest.mark.parametrize('deploy', [False, True])
def test_rfcr_dynamic_export_matches_pytorch(rfcr, deploy, tmp_path):
    module = neck_wrapper(switch_to_deploy(copy.deepcopy(rfcr)) if deploy else rfcr)
    path = tmp_path / 'rfcr.onnx'
    size = odd_pyramid_size(96)
    export_onnx(module, pyramid((size, size), CHANNELS, batch=1), path, dynamic=True)
    # Other batch sizes, even and odd sizes, other aspect ratios; against the unfolded RFCR.
    input_sets = [pyramid(s, CHANNELS, batch=b) for b, s in ((1, (128, 96)), (2, (75, 161)))]
    results = verify_exported(path, neck_wrapper(rfcr), input_sets)
    assert [r.output_shapes for r in results] == [
        tuple((b, c, *x.shape[-2:]) for x, c in zip(xs[1:], rfcr.out_channels))
        for b, xs in zip((1, 2), input_sets)]
    assert all(r.max_abs_diff <= 1e-4 for r in results), results
    assert all(r.max_abs_ref > 1 for r in results)  # non-trivial outputs
    ops = onnx_op_counts(path)
    assert 'BatchNormalization' not in ops
    if deploy:  # the weighted sum is gone: no per-input Mul, a Sub for the negative weight
        assert 'Mul' not in ops and ops['Sub'] == 1
    session = ort.InferenceSession(str(path))
    assert len(session.get_inputs()) == len(CHANNELS)
    for graph_input, channels in zip(session.get_inputs(), CHANNELS):
        batch, c, height, width = graph_input.shape
        assert c == channels and all(isinstance(d, str) for d in (batch, height, width))


def test_verify_exported_reports_a_mismatch(rfcr, tmp_path):
    path = tmp_path / 'rfcr.onnx'
    feats = pyramid((64, 64), CHANNELS, batch=1)
    export_onnx(neck_wrapper(rfcr), feats, path)
    other = copy.deepcopy(rfcr)
    with torch.no_grad():
        other.fusion_weights.mul_(2)
    (result, ) = verify_exported(path, neck_wrapper(other), [feats])
    assert result.max_abs_diff > 1e-2


def test_export_onnx_arguments(tmp_path):
    module = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'opset must be an int >= 17, got 13'):
        export_onnx(module, (x, ), tmp_path / 'm.onnx', opset=13)
    with pytest.raises(ValueError, match=r'got 2 input_names and 1 output_names for a module '
                                         r'with 1 inputs and 1 outputs'):
        export_onnx(module, (x, ), tmp_path / 'm.onnx', input_names=['a', 'b'])
    with pytest.raises(ValueError, match=r'size must be a positive int, got 0'):
        odd_pyramid_size(0)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The M0.75 detector with random BN statistics and signed fusion weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'yoloret_m075.pth'
    torch.save(randomize(build_model(CONFIG)).state_dict(), path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('deploy, fmt', [(False, 'onnx'), (True, 'onnx'), (True, 'openvino')])
def test_rfcr_export_detector_dynamic(checkpoint, deploy, fmt, tmp_path, capsys):
    out = tmp_path / ('det.xml' if fmt == 'openvino' else 'det.onnx')
    summary = rfcr_export([str(CONFIG), str(out), '--checkpoint', checkpoint, '--shape', '128',
                           '96', '--dynamic', '--verify', '--format', fmt]
                          + (['--deploy'] if deploy else []))
    assert not {'BatchNormalization', 'BatchNormInference'} & set(summary['op_counts'])
    printed = capsys.readouterr().out
    if fmt == 'openvino':  # an IR, FP32 weights beside it; verified with OpenVINO
        assert sorted(p.name for p in tmp_path.iterdir()) == ['det.bin', 'det.xml']
        assert 'verify (max |OpenVINO - reference|' in printed
    results = summary['verify']['PyTorch']  # against the unfolded model
    assert [r.input_shapes[0] for r in results] == [(1, 3, 128, 96), (2, 3, 161, 65),
                                                    (1, 3, 113, 113)]
    assert results[1].output_shapes == ((2, 255, 6, 3), (2, 255, 11, 5), (2, 255, 21, 9))
    assert all(r.max_abs_diff <= 1e-4 and r.max_abs_ref > 1 for r in results), results
    assert 'verify: OK' in printed


@pytest.mark.slow
@pytest.mark.parametrize('neck, dynamic, shapes', [
    (['--neck'], False, ((1, 24, 24, 24), (1, 24, 12, 12), (1, 72, 6, 6), (1, 120, 3, 3))),
    (['--neck', '0'], True, ((1, 24, 24, 24), (1, 24, 12, 12), (1, 72, 6, 6),
                             (1, 120, 3, 3))),
    (['--neck', '1'], False, ((1, 120, 12, 12), (1, 168, 6, 6), (1, 216, 3, 3))),
])
def test_rfcr_export_neck(checkpoint, neck, dynamic, shapes, tmp_path):
    out = tmp_path / 'neck.onnx'
    summary = rfcr_export([str(CONFIG), str(out), '--checkpoint', checkpoint, '--shape', '96',
                           '96', '--deploy', '--verify'] + neck + ['--dynamic'] * dynamic)
    assert summary['inputs'] == [f'feat{i}' for i in range(len(shapes))]
    results = summary['verify']['PyTorch']
    assert len(results) == (3 if dynamic else 1)
    assert results[0].input_shapes == shapes
    assert all(r.max_abs_diff <= 1e-4 for r in results)
    session = ort.InferenceSession(str(out))
    if not dynamic:
        assert [i.shape for i in session.get_inputs()] == [list(s) for s in shapes]


def test_rfcr_export_bad_arguments(tmp_path, capsys):
    for argv, message in ((['--shape', '16', '320'], '--shape must be at least 32 32'),
                          (['--opset', '13'], '--opset must be >= 17, got 13'),
                          (['--batch', '0'], '--batch must be positive, got 0'),
                          (['--neck', 'rfcr'], "--neck takes no value or a module index, "
                                               "got 'rfcr'"),
                          (['--format', 'openvino'], '--format openvino writes a .xml file, '
                                                     'got ')):
        with pytest.raises(SystemExit):
            rfcr_export([str(CONFIG), str(tmp_path / 'x.onnx')] + argv)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize('deploy', [False, True])
def test_tf_same_padding_exports_dynamically(deploy, tmp_path):
    """TensorFlow-"SAME" convs pad by input size: the dynamic graph must too (mmcv's
    Conv2dAdaptivePadding computes its pads in Python, which tracing would freeze)."""
    from mmcv.cnn import ConvModule
    conv = randomize(ConvModule(3, 4, 3, stride=2, conv_cfg=dict(type='Conv2dAdaptivePadding'),
                                norm_cfg=dict(type='BN')))
    module = OnnxWrapper(switch_to_deploy(copy.deepcopy(conv)) if deploy else conv)
    path = tmp_path / 'same.onnx'
    export_onnx(module, (torch.randn(1, 3, 9, 7), ), path, dynamic=True)
    sizes = ((9, 7), (10, 8), (16, 11), (5, 6))
    results = verify_exported(path, OnnxWrapper(conv), [(torch.randn(1, 3, *s), ) for s in sizes])
    assert [r.output_shapes[0][-2:] for r in results] == [(5, 4), (5, 4), (8, 6), (3, 3)]
    assert all(r.max_abs_diff <= 1e-5 for r in results), results


# What a detector computes: an exported graph should hold these and little else.
COMPUTE_OPS = {'Conv', 'Gemm', 'MatMul', 'MaxPool', 'AveragePool', 'GlobalAveragePool',
               'ReduceMean', 'Resize', 'Concat', 'Add', 'Sub', 'Mul', 'Clip', 'Relu',
               'Sigmoid', 'HardSigmoid', 'HardSwish', 'LeakyRelu'}
SIZE_ARITHMETIC = {'Shape', 'Gather', 'Cast', 'ConstantOfShape', 'Identity', 'Constant'}


@pytest.mark.slow
def test_static_export_holds_no_size_arithmetic(tmp_path):
    """The static folded YOLO-ReT-M0.75 (COCO, 320): every fixed pad and resize size is a
    constant (onnxslim), <= 1.3 nodes per compute op; the dynamic export stays dynamic and
    keeps the size arithmetic it needs. The summary rfcr-export prints is what is counted."""
    config = str(CONFIG)  # YOLO-ReT-M0.75, COCO
    static = rfcr_export([config, str(tmp_path / 's.onnx'), '--deploy', '--verify'])
    counts = static['op_counts']
    compute = sum(n for op, n in counts.items() if op in COMPUTE_OPS)
    assert counts['Conv'] == 76 and not set(counts) & SIZE_ARITHMETIC, counts
    assert sum(counts.values()) <= 1.3 * compute, counts
    dynamic = rfcr_export([config, str(tmp_path / 'd.onnx'), '--deploy', '--dynamic',
                           '--verify'])
    assert dynamic['op_counts']['Shape'] > 0  # sizes read from the input at run time
    graph_input = onnx.load(tmp_path / 'd.onnx').graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in graph_input] == [
        'batch', 3, 'input_height', 'input_width']
    # Without simplifying, the tracer's arithmetic is all there.
    model = switch_to_deploy(build_model(config))
    export_onnx(detector_wrapper(model), (torch.rand(1, 3, 320, 320), ), tmp_path / 'r.onnx',
                simplify=False)
    raw = onnx_op_counts(tmp_path / 'r.onnx')
    assert raw['Shape'] > 0 and sum(raw.values()) > 2 * sum(counts.values())
