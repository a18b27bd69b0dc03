"""Runners of a model unfolded and folded, in eager PyTorch, ONNX Runtime, OpenVINO and
torch.compile: each builds, runs and computes what PyTorch computes."""
import copy

import numpy as np
import pytest
import torch

from rfcr.deploy import switch_to_deploy
from rfcr.deploy.export import (export_onnx, export_openvino, neck_wrapper, odd_pyramid_size,
                                openvino_op_counts, verify_exported)
from rfcr.deploy.runtime import (EXPORTED_RUNTIMES, available_runtimes, compiled_runner,
                                 deploy_runners, runtime_runner, torch_runner)
from rfcr.deploy.session import ExportedModel, load_exported
from rfcr.models import RFCR
from tests.deploy.test_fold import pyramid, randomize

CHANNELS = (16, 24, 40)  # strides 8, 16, 32


@pytest.fixture(scope='module')
def neck():
    torch.manual_seed(0)
    rfcr = RFCR(CHANNELS, collect_channels=16, fuse_channels=24)
    rfcr.init_weights()
    return neck_wrapper(randomize(rfcr, [0.8, -1.1, 0.5]))  # a negative stride-8 weight


def test_torch_runner_channels_last_leaves_the_module_alone():
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(1, 3, 16, 16)
    out = torch_runner(conv, (x, ), channels_last=True)()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous()
    torch.testing.assert_close(out, conv(x).detach())


def test_the_runtimes_this_environment_has():
    # The dev extra installs onnxruntime and openvino; gcc builds inductor's kernels.
    assert available_runtimes() == EXPORTED_RUNTIMES


def test_compile_needs_a_cpp_compiler(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    monkeypatch.delenv('CXX', raising=False)
    assert 'compile' not in available_runtimes()


@pytest.mark.parametrize('runtime', EXPORTED_RUNTIMES)
def test_every_runtime_matches_pytorch_unfolded_and_folded(neck, runtime, tmp_path):
    feats = pyramid((75, 97), CHANNELS, batch=1)  # odd sizes at every level
    runners = deploy_runners(neck, feats, runtimes=['torch', runtime], channels_last=False,
                             threads=1, export_dir=tmp_path)
    assert list(runners) == ['eager', 'eager deploy', runtime, f'{runtime} deploy']
    assert isinstance(neck.module, RFCR)  # folding worked on a copy
    expected = runners['eager']()
    assert max(float(e.abs().max()) for e in expected) > 1  # non-trivial outputs
    for name in (runtime, f'{runtime} deploy'):
        got = runners[name]()
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert tuple(g.shape) == tuple(e.shape)
            assert float((torch.as_tensor(g) - e).abs().max()) <= 1e-4, name
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == {'onnxruntime': ['model.onnx', 'model_deploy.onnx'],
                     'openvino': ['model.bin', 'model.xml', 'model_deploy.bin',
                                  'model_deploy.xml'],
                     'compile': []}[runtime]


def test_openvino_dynamic_ir_matches_pytorch_at_odd_sizes(neck, tmp_path):
    folded = neck_wrapper(switch_to_deploy(copy.deepcopy(neck.module)))
    path = tmp_path / 'rfcr.xml'
    size = odd_pyramid_size(64)
    names = export_openvino(folded, pyramid((size, size), CHANNELS, batch=1), path,
                            dynamic=True)
    assert names == (['input0', 'input1', 'input2'], ['output0', 'output1', 'output2'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['rfcr.bin', 'rfcr.xml']
    assert 'BatchNormInference' not in openvino_op_counts(path)
    input_sets = [pyramid(s, CHANNELS, batch=b) for b, s in ((1, (64, 96)), (2, (75, 161)),
                                                              (1, (33, 33)))]
    results = verify_exported(path, neck, input_sets)  # against the unfolded neck
    assert [r.output_shapes[0][:2] for r in results] == [(1, 40), (2, 40), (1, 40)]
    assert all(r.max_abs_diff <= 1e-4 and r.max_abs_ref > 1 for r in results), results
    # The same graph from ONNX, read by OpenVINO directly, agrees as well.
    onnx_path = tmp_path / 'rfcr.onnx'
    export_onnx(folded, pyramid((size, size), CHANNELS, batch=1), onnx_path, dynamic=True)
    results = verify_exported(onnx_path, neck, input_sets, runtime='openvino')
    assert all(r.max_abs_diff <= 1e-4 for r in results), results


def test_compile_keeps_each_models_graph():
    """More models than dynamo keeps graphs per function (8): none fails or recompiles."""
    x = torch.randn(2, 3)
    models = [torch.nn.Linear(3, 2 + i).eval() for i in range(9)]
    runners = [compiled_runner(m, (x, ), threads=1) for m in models]
    with torch.compiler.set_stance('fail_on_recompile'):
        for m, run in zip(models, runners):
            torch.testing.assert_close(run(), m(x).detach(), atol=1e-5, rtol=1e-5)


def test_compile_refuses_a_graph_break():
    @torch.compiler.disable
    def eager_only(x):
        return x + 1

    class Breaks(torch.nn.Module):
        def forward(self, x):
            return eager_only(x) * 2  # dynamo must break the graph here

    with pytest.raises(Exception, match='(?i)skip|disable|graph break'):
        compiled_runner(Breaks(), (torch.randn(2, 2), ), threads=1)


def test_exported_model_refuses_bad_input(neck, tmp_path):
    feats = pyramid((64, 64), CHANNELS, batch=1)
    path = tmp_path / 'rfcr.onnx'
    export_onnx(neck, feats, path)
    model = load_exported(path, threads=1)
    assert model.runtime == 'onnxruntime' and model.input_shapes[0] == (1, 16, 8, 8)
    with pytest.raises(ValueError, match=r"input 'input0' has shape 1x16x8x8, got 1x16x9x8"):
        model(torch.randn(1, 16, 9, 8), *feats[1:])
    with pytest.raises(ValueError, match=r'takes 3 inputs, got 1'):
        model(feats[0])
    with pytest.raises(ValueError, match=r"runtime 'onnxruntime' runs .onnx files, got .*"
                                         r"rfcr.xml"):
        ExportedModel(tmp_path / 'rfcr.xml', 'onnxruntime')
    with pytest.raises(ValueError, match=r"runtime must be one of \('onnxruntime', "
                                         r"'openvino'\), got 'tensorrt'"):
        ExportedModel(path, 'tensorrt')
    with pytest.raises(ValueError, match=r'expected a .onnx \(ONNX\) or .xml'):
        load_exported(tmp_path / 'rfcr.pt')
    with pytest.raises(FileNotFoundError, match=r'missing.xml.*no such file'):
        load_exported(tmp_path / 'missing.xml')
    np.testing.assert_allclose(model(*feats)[0], neck(*feats)[0].detach().numpy(), atol=1e-4)


def test_unknown_runtimes_are_refused(neck):
    feats = pyramid((32, 32), CHANNELS, batch=1)
    with pytest.raises(ValueError, match=r"runtimes must be a non-empty subset of \('torch', "
                                         r"'onnxruntime', 'openvino', 'compile'\), got "
                                         r"\('tensorrt',\)"):
        deploy_runners(neck, feats, runtimes=['tensorrt'])
    with pytest.raises(ValueError, match=r"runtime must be one of \('onnxruntime', "
                                         r"'openvino', 'compile'\), got 'tensorrt'"):
        runtime_runner('tensorrt', neck, feats)
    with pytest.raises(ValueError, match=r"an OpenVINO IR is a .xml file"):
        export_openvino(neck, feats, 'rfcr.onnx')
