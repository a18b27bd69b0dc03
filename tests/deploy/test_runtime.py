"""The runtime table and its runners: a model unfolded and folded, in eager PyTorch, ONNX
Runtime, OpenVINO and torch.compile, each builds, runs, computes what PyTorch computes and
profiles itself; every tool's runtime choices come from the table."""
import copy
import dataclasses
import gc
import importlib
import os

import numpy as np
import pytest
import torch

from rfcr.deploy import switch_to_deploy
from rfcr.deploy import runtime as table
from rfcr.deploy.export import (OnnxWrapper, export_onnx, export_openvino, neck_wrapper,
                                odd_pyramid_size, openvino_op_counts)
from rfcr.deploy.runtime import (RUNTIMES, available_runtimes, compiled_runner, eager_runner,
                                 get_runtime, load_exported, verify_exported)
from rfcr.models import RFCR
from tests.deploy.test_fold import pyramid, randomize

CHANNELS = (16, 24, 40)  # strides 8, 16, 32


@pytest.fixture(scope='module')
def neck():
    torch.manual_seed(0)
    rfcr = RFCR(CHANNELS, collect_channels=16, fuse_channels=24)
    rfcr.init_weights()
    return neck_wrapper(randomize(rfcr, [0.8, -1.1, 0.5]))  # a negative stride-8 weight


def test_eager_runner_channels_last_leaves_the_module_alone():
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(1, 3, 16, 16)
    out = eager_runner(conv, (x, ), channels_last=True)()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous()
    torch.testing.assert_close(out, conv(x).detach())


def test_the_runtimes_this_environment_has():
    # The dev extra installs onnxruntime and openvino; gcc builds inductor's kernels.
    assert available_runtimes()[:3] == ('onnxruntime', 'openvino', 'compile')


def test_compile_needs_a_cpp_compiler(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    monkeypatch.delenv('CXX', raising=False)
    assert 'compile' not in available_runtimes()


@pytest.mark.parametrize('runtime', ('onnxruntime', 'openvino', 'compile'))
def test_every_runtime_matches_pytorch_unfolded_and_folded(neck, runtime, tmp_path):
    feats = pyramid((75, 97), CHANNELS, batch=1)  # odd sizes at every level
    rt = RUNTIMES[runtime]
    folded = neck_wrapper(switch_to_deploy(copy.deepcopy(neck.module)))
    expected = eager_runner(neck, feats)()
    assert max(float(e.abs().max()) for e in expected) > 1  # non-trivial outputs
    previous = torch.get_num_threads()
    for name, module in (('model', neck), ('model_deploy', folded)):
        path = tmp_path / f'{name}{rt.suffixes[0]}' if rt.suffixes else None
        run = rt.runner(module, feats, threads=1, path=path)
        got = run()
        assert torch.get_num_threads() == previous  # a runner restores the count
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert tuple(g.shape) == tuple(e.shape)
            assert float((torch.as_tensor(g) - e).abs().max()) <= 1e-4, name
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == {'onnxruntime': ['model.onnx', 'model_deploy.onnx'],
                     'openvino': ['model.bin', 'model.xml', 'model_deploy.bin',
                                  'model_deploy.xml'],
                     'compile': []}[runtime]


@pytest.mark.parametrize('runtime, conv', [('eager', 'aten::conv2d'),
                                           ('onnxruntime', 'Conv'),
                                           ('openvino', 'Convolution')])
def test_the_timed_runner_profiles_itself(runtime, conv, monkeypatch):
    """Profiling a runner reuses what it runs: a file runtime loads its file again (with
    the profiler on), it never exports again; the temporary file goes with the runner."""
    model = OnnxWrapper(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()))
    rt = RUNTIMES[runtime]
    run = rt.runner(model, (torch.rand(1, 3, 16, 16), ), threads=1)
    run()
    if rt.export is not None:
        def refuse(*args, **kwargs):
            raise AssertionError('exported again')
        monkeypatch.setattr(run, 'runtime', dataclasses.replace(rt, export=refuse))
    records, walls = run.profile(runs=3)
    assert conv in {op for op, _ in records}, records
    assert len(walls) == 3 and all(w > 0 for w in walls)
    assert all(seconds >= 0 for _, seconds in records)
    if rt.export is not None:
        path = run.model.path
        assert os.path.isfile(path)
        monkeypatch.undo()  # which held the runner
        del run
        gc.collect()
        assert not os.path.exists(path)


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
    """More models than dynamo keeps graphs per function (8), all of one class: none fails
    or recompiles, each computes its own."""
    x = torch.randn(2, 3)
    models = [torch.nn.Linear(3, 2 + i % 3).eval() for i in range(10)]  # same shapes too
    runners = [compiled_runner(m, (x, ), threads=1) for m in models]
    with torch.compiler.set_stance('fail_on_recompile'):
        for m, run in zip(models, runners):
            torch.testing.assert_close(run(), m(x).detach(), atol=1e-5, rtol=1e-5)


def test_compile_refuses_what_is_not_one_graph():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # Python control flow on a value

    with pytest.raises(Exception, match='(?i)data-dependent'):
        compiled_runner(DataDependent(), (torch.randn(2, 2), ), threads=1)


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
        load_exported(tmp_path / 'rfcr.xml', 'onnxruntime')
    with pytest.raises(ValueError, match=r"runtime must be one of \('onnxruntime', "
                                         r"'openvino', 'ncnn', 'mnn', 'litert', 'tensorrt'\), "
                                         r"got 'tvm'"):
        load_exported(path, 'tvm')
    with pytest.raises(RuntimeError, match=r'was not loaded with profile=True'):
        model.node_times(model.feeds(feats), 1)
    with pytest.raises(ValueError, match=r'expected a .onnx \(ONNX\) or .xml'):
        load_exported(tmp_path / 'rfcr.pt')
    with pytest.raises(FileNotFoundError, match=r'missing.xml.*no such file'):
        load_exported(tmp_path / 'missing.xml')
    np.testing.assert_allclose(model(*feats)[0], neck(*feats)[0].detach().numpy(), atol=1e-4)


def test_unknown_runtimes_are_refused(neck):
    feats = pyramid((32, 32), CHANNELS, batch=1)
    with pytest.raises(ValueError, match=r"runtime must be one of \('eager', 'onnxruntime', "
                                         r"'openvino', 'compile', 'ncnn', 'mnn', 'litert', "
                                         r"'tensorrt'\), got 'tvm'"):
        get_runtime('tvm')
    with pytest.raises(ValueError, match=r"runtime must be one of \('onnxruntime', "
                                         r"'openvino', .*'litert'.*\), got 'compile'"):
        get_runtime('compile', table.QUANTIZE_RUNTIMES)
    with pytest.raises(ValueError, match=r"an OpenVINO IR is a .xml file"):
        export_openvino(neck, feats, 'rfcr.onnx')


def test_the_table_says_what_each_runtime_is():
    for name, rt in RUNTIMES.items():
        assert rt.name == name and rt.label and rt.how and (name == 'eager' or rt.install)
        # A runtime runs the module itself or a file it exports and loads.
        assert (rt.build is None) == bool(rt.suffixes) == (rt.export is not None) \
            == (rt.load is not None) == (rt.op_counts is not None), name
        if rt.load is not None:
            assert rt.load.runtime == name  # the loaded model says which runtime runs it
        assert rt.quantize is None or rt.load is not None
    assert table.EXPORTED_RUNTIMES[:3] == ('onnxruntime', 'openvino', 'compile')
    assert table.FILE_RUNTIMES[:2] == table.QUANTIZE_RUNTIMES[:2] == ('onnxruntime', 'openvino')
    assert 'litert' in table.QUANTIZE_RUNTIMES and 'ncnn' not in table.QUANTIZE_RUNTIMES
    assert table.FILE_SUFFIXES[:2] == ('.onnx', '.xml')
    assert [table.default_runtime(f'm{s}') for s in table.FILE_SUFFIXES] == [
        'onnxruntime', 'openvino', 'ncnn', 'mnn', 'litert', 'tensorrt']


@pytest.mark.parametrize('tool, flag, names', [
    ('export', '--format', lambda: table.EXPORT_FORMATS),
    ('test', '--runtime', lambda: table.FILE_RUNTIMES),
    ('quantize', '--runtime', lambda: table.QUANTIZE_RUNTIMES),
    ('bench', '--runtime', lambda: table.EXPORTED_RUNTIMES + ('installed', )),
])
def test_every_tool_reads_its_runtime_choices_from_the_table(tool, flag, names, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(f'rfcr.tools.{tool}').run(['--help'])
    usage = ' '.join(capsys.readouterr().out.split())
    assert f'{flag} {{{",".join(names())}}}' in usage, usage
