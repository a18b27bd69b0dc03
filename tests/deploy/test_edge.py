"""The edge runtimes (rfcr.deploy.edge): the M0.75 detector and its RFCR neck exported by
rfcr-export to ncnn and MNN, verified in each runtime and loaded back; TensorRT refused
where there is no CUDA GPU."""
import pytest
import torch

from rfcr.deploy.edge import MnnModel, NcnnModel, export_ncnn, export_tensorrt
from rfcr.deploy.export import OnnxWrapper, detector_wrapper
from rfcr.deploy.runtime import RUNTIMES, load_exported
from rfcr.tools.export import run as rfcr_export
from rfcr.utils.config import build_model
from tests.deploy.test_fold import CONFIG, randomize


@pytest.fixture(scope='module')
def detector():
    """The M0.75 detector with random BN statistics and signed fusion weights."""
    torch.manual_seed(0)
    return randomize(build_model(CONFIG)).eval()


@pytest.fixture(scope='module')
def checkpoint(detector, tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'yoloret_m075.pth'
    torch.save(detector.state_dict(), path)
    return str(path)


def _outputs(module, *inputs):
    with torch.no_grad():
        return [o.numpy() for o in module(*inputs)]


@pytest.mark.slow
def test_rfcr_export_ncnn(detector, checkpoint, tmp_path, capsys):
    out = tmp_path / 'det.param'
    summary = rfcr_export([str(CONFIG), str(out), '--checkpoint', checkpoint, '--shape', '64',
                           '96', '--deploy', '--verify', '--format', 'ncnn'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['det.bin', 'det.param']
    assert 'verify (max |ncnn - reference|' in capsys.readouterr().out
    (result, ) = summary['verify']['PyTorch']  # static: the exported size alone
    assert result.output_shapes == ((1, 255, 2, 3), (1, 255, 4, 6), (1, 255, 8, 12))
    assert result.max_abs_diff <= 1e-4 and result.max_abs_ref > 1, result
    assert summary['op_counts']['Convolution'] > 0

    model = load_exported(out, threads=1)  # .param: ncnn
    assert isinstance(model, NcnnModel) and model.input_shapes == [(1, 3, 64, 96)]
    x = torch.randn(1, 3, 64, 96)
    for got, want in zip(model(x), _outputs(detector_wrapper(detector), x)):
        assert got.shape == want.shape and abs(got - want).max() <= 1e-4
    with pytest.raises(ValueError, match=r"input 'in0' has shape 1x3x64x96, got 1x3x64x64"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.slow
def test_rfcr_export_mnn_dynamic(detector, checkpoint, tmp_path, capsys):
    out = tmp_path / 'det.mnn'
    summary = rfcr_export([str(CONFIG), str(out), '--checkpoint', checkpoint, '--shape', '64',
                           '64', '--dynamic', '--verify', '--format', 'mnn'])
    assert 'verify (max |MNN - reference|' in capsys.readouterr().out
    results = summary['verify']['PyTorch']  # other batch sizes, odd sizes
    assert [r.input_shapes[0] for r in results] == [(1, 3, 64, 64), (2, 3, 97, 33),
                                                    (1, 3, 49, 81)]
    assert all(r.max_abs_diff <= 1e-4 and r.max_abs_ref > 1 for r in results), results

    model = load_exported(out, threads=1)  # .mnn: MNN
    assert isinstance(model, MnnModel) and model.input_shapes == [(None, 3, None, None)]
    x = torch.randn(3, 3, 75, 51)
    for got, want in zip(model(x), _outputs(detector_wrapper(detector), x)):
        assert got.shape == want.shape and abs(got - want).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('fmt, suffix', [('ncnn', '.param'), ('mnn', '.mnn')])
def test_rfcr_export_neck_edge(checkpoint, fmt, suffix, tmp_path):
    """RFCR alone: four inputs, three outputs, in the graph's order."""
    out = tmp_path / f'neck{suffix}'
    summary = rfcr_export([str(CONFIG), str(out), '--checkpoint', checkpoint, '--shape', '64',
                           '64', '--neck', '0', '--verify', '--format', fmt])
    (result, ) = summary['verify']['PyTorch']
    assert result.input_shapes == ((1, 24, 16, 16), (1, 24, 8, 8), (1, 72, 4, 4),
                                   (1, 120, 2, 2))
    assert result.output_shapes == ((1, 120, 8, 8), (1, 168, 4, 4), (1, 216, 2, 2))
    assert result.max_abs_diff <= 1e-4 and result.max_abs_ref > 1, result


def test_ncnn_export_is_static_and_batch_one(tmp_path):
    conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    with pytest.raises(ValueError, match='export ncnn with static shapes'):
        export_ncnn(conv, (torch.rand(1, 3, 8, 8), ), tmp_path / 'c.param', dynamic=True)
    with pytest.raises(ValueError, match=r'batch 1, got \[\(2, 3, 8, 8\)\]'):
        export_ncnn(conv, (torch.rand(2, 3, 8, 8), ), tmp_path / 'c.param')
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU: TensorRT builds here')
def test_tensorrt_needs_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit, match='--format tensorrt needs a CUDA GPU'):
        rfcr_export([str(CONFIG), str(tmp_path / 'det.engine'), '--format', 'tensorrt'])
    conv = OnnxWrapper(torch.nn.Conv2d(3, 4, 1))
    with pytest.raises(RuntimeError, match=r'TensorRT needs a CUDA GPU'):
        export_tensorrt(conv, (torch.rand(1, 3, 8, 8), ), tmp_path / 'c.engine')
    assert not list(tmp_path.iterdir())


class _Pools(torch.nn.Module):
    """Conv + ReLU6 (range 0..6: MNN then pools in INT8) into tiling max-pools, floor and
    ceil mode, and one that does not tile (5x5, stride 1, padded)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pools = torch.nn.ModuleList([
            torch.nn.MaxPool2d(2, 2), torch.nn.MaxPool2d(2, 2, ceil_mode=True),
            torch.nn.MaxPool2d(4, 4, ceil_mode=True), torch.nn.MaxPool2d(5, 1, 2)])

    def forward(self, x):
        x = torch.nn.functional.relu6(self.conv(x) * 3 + 3)
        return tuple(pool(x) for pool in self.pools)


def _pools_onnx(tmp_path, shape):
    from rfcr.deploy.export import export_onnx
    torch.manual_seed(0)
    path = tmp_path / 'pools.onnx'
    export_onnx(_Pools().eval(), (torch.randn(shape), ), path)
    return path


def test_max_pools_as_reduce_max_are_the_same_maximum(tmp_path):
    """quantize_mnn's rewrite of tiling max-pools: bit for bit the same in ONNX Runtime, at
    an odd size in floor and ceil mode; the pool that does not tile is left alone."""
    import numpy as np
    import onnx

    from rfcr.deploy.edge import _max_pools_as_reduce_max
    path = _pools_onnx(tmp_path, (1, 3, 13, 11))
    graph = onnx.load(path)
    assert len(_max_pools_as_reduce_max(graph)) == 3
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count('MaxPool') == 1 and ops.count('ReduceMax') == 3
    onnx.save(graph, tmp_path / 'rewritten.onnx')
    x = torch.randn(1, 3, 13, 11)
    for a, b in zip(load_exported(path)(x), load_exported(tmp_path / 'rewritten.onnx')(x)):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not RUNTIMES['mnn'].available(), reason='needs MNN')
def test_mnn_int8_max_pool_after_relu6(tmp_path):
    """MNN's INT8 file of Conv + ReLU6 -> max-pools stays near FP32 (MNN's own x86 INT8
    max-pool was off by 1.4x the largest output here; quantize_mnn takes those maxima as
    ReduceMax, in FP32 between INT8 tensors)."""
    from rfcr.deploy.edge import mnn_op_counts, quantize_mnn
    path = _pools_onnx(tmp_path, (1, 3, 32, 32))
    batches = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i))
               for i in range(8)]
    quantize_mnn(path, tmp_path / 'int8.mnn', batches)
    ops = mnn_op_counts(tmp_path / 'int8.mnn')
    assert ops['Convolution (INT8)'] == 1, ops
    fp32, int8 = load_exported(path), load_exported(tmp_path / 'int8.mnn', threads=1)
    for x in batches[:2]:
        for a, b in zip(fp32(x), int8(x)):
            assert abs(a - b).max() <= 0.1 * abs(a).max()
