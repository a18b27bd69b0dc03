"""Runners of a model unfolded and folded, in eager PyTorch and ONNX Runtime."""
import pytest
import torch

from rfcr.deploy.export import neck_wrapper
from rfcr.deploy.runtime import deploy_runners, runtime_runner, torch_runner
from rfcr.models import RFCR


def test_torch_runner_channels_last_leaves_the_module_alone():
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(1, 3, 16, 16)
    out = torch_runner(conv, (x, ), channels_last=True)()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous()
    torch.testing.assert_close(out, conv(x).detach())


def test_deploy_runners_give_the_same_outputs_and_leave_the_module_unfolded():
    neck = neck_wrapper(RFCR((8, 16, 24), collect_channels=8, fuse_channels=8))
    feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4))
    runners = deploy_runners(neck, feats, threads=1)
    assert list(runners) == ['eager', 'eager channels_last', 'eager deploy',
                             'eager deploy channels_last', 'onnxruntime', 'onnxruntime deploy']
    assert isinstance(neck.module, RFCR)  # folding worked on a copy
    expected = runners['eager']()
    for name, run in runners.items():
        for a, b in zip(run(), expected):
            torch.testing.assert_close(torch.as_tensor(a), b, atol=1e-4, rtol=1e-4,
                                       msg=name)
    assert list(deploy_runners(neck, feats, runtimes=['torch'], channels_last=False)) == [
        'eager', 'eager deploy']


def test_unknown_runtimes_are_refused():
    neck = neck_wrapper(RFCR((8, 16, 24), collect_channels=8, fuse_channels=8))
    feats = (torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 24, 4, 4))
    with pytest.raises(ValueError, match=r"runtimes must be a non-empty subset of \('torch', "
                                         r"'onnxruntime'\), got \('tensorrt',\)"):
        deploy_runners(neck, feats, runtimes=['tensorrt'])
    with pytest.raises(ValueError, match=r"runtime must be one of \('onnxruntime',\), got "
                                         r"'tensorrt'"):
        runtime_runner('tensorrt', neck, feats)
