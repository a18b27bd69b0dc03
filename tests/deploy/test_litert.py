"""LiteRT (rfcr.deploy.litert): the folded M0.75 detector converted to .tflite through ONNX
and onnx2tf, run by the LiteRT interpreter against PyTorch (NCHW in and out); several
inputs and outputs in the graph's order; INT8 calibrated from a dynamic ONNX graph; static
shapes enforced."""
import pytest
import torch
from torch import nn

from rfcr.deploy.export import OnnxWrapper, detector_wrapper, export_onnx
from rfcr.deploy.fold import switch_to_deploy
from rfcr.deploy.litert import (LiteRTModel, export_litert, litert_op_counts, onnx_to_litert,
                                quantize_litert)
from rfcr.utils.config import build_model
from tests.deploy.test_fold import CONFIG, randomize



@pytest.fixture(scope='module')
def detector():
    """The M0.75 detector with random BN statistics and signed fusion weights, folded."""
    torch.manual_seed(0)
    return switch_to_deploy(randomize(build_model(CONFIG)).eval())


def _max_diff(module, model, inputs):
    with torch.no_grad():
        refs = [r.numpy() for r in module(*inputs)]
    outs = model(*inputs)
    assert [o.shape for o in outs] == [r.shape for r in refs]
    return (max(float(abs(o - r).max()) for o, r in zip(outs, refs)),
            max(float(abs(r).max()) for r in refs))


@pytest.mark.slow
def test_export_litert_detector(detector, tmp_path):
    wrapper = detector_wrapper(detector)
    path = tmp_path / 'det.tflite'
    names = export_litert(wrapper, (torch.randn(1, 3, 64, 96), ), path, input_names=['input'])
    assert names == (['input'], ['output0', 'output1', 'output2'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['det.tflite']
    ops = litert_op_counts(path)
    assert ops['CONV_2D'] > 0 and ops['RESIZE_NEAREST_NEIGHBOR'] > 0, ops

    model = LiteRTModel(path, threads=1)
    assert model.input_names == ['input'] and model.input_shapes == [(1, 3, 64, 96)]
    assert model.output_names == ['output0', 'output1', 'output2']
    diff, scale = _max_diff(wrapper, model, (torch.randn(1, 3, 64, 96), ))
    assert scale > 1 and diff <= 1e-3 * scale, (diff, scale)
    with pytest.raises(ValueError, match=r"input 'input' has shape 1x3x64x96, got 1x3x64x64"):
        model(torch.randn(1, 3, 64, 64))


class _TwoLevels(nn.Module):
    """Two feature maps in (different channels and sizes), two out: the finer one fused
    with the coarser one upsampled, then the coarser one."""

    def __init__(self) -> None:
        super().__init__()
        self.fine, self.coarse = nn.Conv2d(4, 5, 1), nn.Conv2d(6, 5, 3, padding=1)

    def forward(self, fine, coarse):
        coarse = self.coarse(coarse)
        return self.fine(fine) + nn.functional.interpolate(coarse, size=fine.shape[2:]), coarse


def test_export_litert_inputs_outputs_in_graph_order(tmp_path):
    net = OnnxWrapper(_TwoLevels())
    feats = (torch.randn(1, 4, 10, 6), torch.randn(1, 6, 5, 3))
    path = tmp_path / 'levels.tflite'
    export_litert(net, feats, path, input_names=['feat0', 'feat1'])
    model = LiteRTModel(path)
    assert model.input_names == ['feat0', 'feat1'] and model.output_names == ['output0', 'output1']
    assert model.input_shapes == [(1, 4, 10, 6), (1, 6, 5, 3)]
    diff, scale = _max_diff(net, model, feats)
    assert scale > 0.1 and diff <= 1e-5 * scale, (diff, scale)


def test_quantize_litert_dynamic_graph(tmp_path):
    """INT8 from a dynamic graph, fixed at the calibration batches' size: quantized ops,
    float in and out, close to FP32."""
    net = OnnxWrapper(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(),
                                    nn.Conv2d(8, 4, 1))).eval()
    fp32 = tmp_path / 'net.onnx'
    export_onnx(net, (torch.rand(1, 3, 17, 15), ), fp32, dynamic=True)
    batches = [torch.rand(1, 3, 16, 12) for _ in range(8)]
    out = tmp_path / 'net_int8.tflite'
    quantize_litert(fp32, out, batches)
    ops = litert_op_counts(out)
    assert ops['QUANTIZE'] == 1 and ops['DEQUANTIZE'] == 1 and ops['CONV_2D'] == 2, ops

    model = LiteRTModel(out, threads=2)
    assert model.input_shapes == [(1, 3, 16, 12)]
    diff, scale = _max_diff(net, model, (batches[0], ))
    assert scale > 0.1 and diff <= 0.05 * scale, (diff, scale)

    with pytest.raises(ValueError, match='calibration batches must share one shape'):
        quantize_litert(fp32, out, batches + [torch.rand(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="input 'input0' of the ONNX graph is dynamic"):
        onnx_to_litert(fp32, tmp_path / 'net.tflite')
    with pytest.raises(ValueError, match='export LiteRT with static shapes'):
        export_litert(net, (torch.rand(1, 3, 8, 8), ), tmp_path / 'net.tflite', dynamic=True)
    with pytest.raises(ValueError, match=r"a LiteRT model is a \.tflite file, got"):
        onnx_to_litert(fp32, tmp_path / 'net.lite', batches)
