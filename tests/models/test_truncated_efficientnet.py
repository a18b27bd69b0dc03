"""TruncatedEfficientNet: mmdet's EfficientNet without its last stage and final conv, tapped
as the official YOLO-ReT-EB3; mmdet / mmpretrain checkpoints; YOLO-ReT-EB3 end to end."""
import math

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.models.backbones import EfficientNet
from mmdet.structures import DetDataSample
from rfcr.models import TruncatedEfficientNet
from rfcr.models.keras_compat import keras_numerics_mismatch
from rfcr.utils.config import build_model
from tests.conftest import randomize_bn_stats

CONFIG = 'configs/yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py'


def _full(arch):
    model = EfficientNet(arch=arch, out_indices=(6, ))
    randomize_bn_stats(model)
    return model


def _load(model, path, **kwargs):
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path), **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('arch, last_stage', [('b0', (1, 320)), ('b3', (2, 384))])
def test_holds_exactly_the_kept_stages(arch, last_stage):
    """Against mmdet's full EfficientNet: every kept tensor is there, shaped alike; what is
    missing is exactly the last stage (the tail of layers[5]) and the final 1x1 conv."""
    full, ours = _full(arch), TruncatedEfficientNet(arch, out_strides=(4, 8, 16, 32))
    theirs, mine = full.state_dict(), ours.state_dict()
    assert all(k in theirs and theirs[k].shape == v.shape for k, v in mine.items())
    kept = len(full.layers[5]) - last_stage[0]
    assert len(ours.layers) == 6 and len(ours.layers[5]) == kept
    assert all(b.linear_conv.conv.out_channels == last_stage[1]
               for b in full.layers[5][kept:])
    assert ours.layers[5][-1].linear_conv.conv.out_channels != last_stage[1]
    removed = {k for k in theirs if k not in mine}
    assert removed == {k for k in theirs if k.startswith('layers.6.')
                       or any(k.startswith(f'layers.5.{j}.') for j in range(kept, kept + 2))}
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in full.parameters()) - sum(
        p.numel() for m in [full.layers[6], *full.layers[5][kept:]] for p in m.parameters())
    if arch == 'b3':  # the official Keras model's backbone (YOLO-ReT-EB3: 8,788,793 in all)
        assert count == 6_819_118


@pytest.mark.parametrize('size', [(97, 75), (129, 33)])
def test_taps_are_the_full_networks_stage_outputs(size):
    """Strides 4, 8, 16, 32 at 32/48/136/232 channels (the official add_2, add_4, add_12,
    add_17), equal to mmdet's full EfficientNet-B3 at the same stages, odd sizes too."""
    full = _full('b3')
    full.eval()  # mmdet's EfficientNet.train() returns None
    ours = TruncatedEfficientNet('b3', out_strides=(4, 8, 16, 32)).eval()
    kept = ours.state_dict().keys()
    ours.load_state_dict({k: v for k, v in full.state_dict().items() if k in kept})
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        feats = [x]
        for layer in full.layers[:5]:
            feats.append(layer(feats[-1]))
        feats.append(full.layers[5][:len(ours.layers[5])](feats[-1]))
        outs = ours(x)
    assert ours.out_channels == (32, 48, 136, 232) and ours.strides == (4, 8, 16, 32)
    assert len(outs) == 4
    for out, ref, c, s in zip(outs, feats[3:], ours.out_channels, ours.strides):
        assert out.shape == (2, c, *(math.ceil(n / s) for n in size))  # TensorFlow "SAME"
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_keras_numerics_by_default_and_drop_path_as_the_full_network():
    ours = TruncatedEfficientNet('b3', drop_path_rate=0.2)
    full = EfficientNet('b3', out_indices=(6, ), drop_path_rate=0.2)
    assert keras_numerics_mismatch(ours) is None
    assert keras_numerics_mismatch(TruncatedEfficientNet('b3', conv_cfg=None)) is not None
    def rates_of(layers):  # a rate of 0 builds an Identity
        return [[getattr(b.drop_path, 'drop_prob', 0.) for b in layer] for layer in layers]

    rates, expected = rates_of(ours.layers[1:]), rates_of(full.layers[1:6])
    expected[-1] = expected[-1][:len(rates[-1])]
    assert sum(rates, []) == pytest.approx(sum(expected, [])) and rates[-1][-1] > 0
    assert ours.drop_path_rate == 0.2


def test_mmdet_and_mmpretrain_layouts_load_and_log_what_they_drop(tmp_path, mmengine_messages):
    full = _full('b0')
    mmdet_path, mmpretrain_path = tmp_path / 'mmdet.pth', tmp_path / 'mmpretrain.pth'
    torch.save(full.state_dict(), mmdet_path)
    torch.save({'meta': {'epoch': 1}, 'state_dict': {
        **{f'backbone.{k}': v for k, v in full.state_dict().items()},
        'head.fc.weight': torch.zeros(1000, 1280), 'head.fc.bias': torch.zeros(1000)}},
        mmpretrain_path)
    a = _load(TruncatedEfficientNet('b0'), mmdet_path)
    b = _load(TruncatedEfficientNet('b0'), mmpretrain_path)
    for model in (a, b):
        for k, v in model.state_dict().items():
            assert torch.equal(v, full.state_dict()[k]), k
    mmdet_log, mmpretrain_log = [r for r in mmengine_messages
                                 if r.startswith('TruncatedEfficientNet')]
    for key in ('layers.5.4.expand_conv.conv.weight', 'layers.6.conv.weight',
                'layers.6.bn.running_var'):
        assert key in mmdet_log and f'backbone.{key}' in mmpretrain_log
    assert 'head.fc.weight' in mmpretrain_log and 'layers.5.3.' not in mmdet_log


def test_detector_checkpoint_with_prefix(tmp_path):
    full = _full('b0')
    path = tmp_path / 'det.pth'
    sd = {f'backbone.{k}': v for k, v in full.state_dict().items()}
    sd['neck.0.fusion_weights'] = torch.ones(4)
    torch.save({'state_dict': sd}, path)
    model = _load(TruncatedEfficientNet('b0'), path, prefix='backbone')  # mmengine's spelling
    torch.testing.assert_close(model.layers[0].conv.weight, full.layers[0].conv.weight)


def test_mismatches_are_errors(tmp_path):
    path = tmp_path / 'b0.pth'
    sd = _full('b0').state_dict()
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"b0\.pth' does not match TruncatedEfficientNet\("
                       r"arch='b3'\): .*shape mismatch .*layers\.0\.conv\.weight: checkpoint "
                       r'\(32, 3, 3, 3\) vs model \(40, 3, 3, 3\)'):
        _load(TruncatedEfficientNet('b3'), path)
    sd['layers.3.0.extra'] = torch.zeros(1)
    del sd['layers.2.1.se.conv1.conv.bias']
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r'(?s)missing \(1\): layers\.2\.1\.se\.conv1\.conv\.bias'
                       r'; unexpected \(1\): layers\.3\.0\.extra'):
        _load(TruncatedEfficientNet('b0'), path)


def test_missing_file_names_the_imagenet_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth': no such file\. mmpretrain "
                       r'publishes .*efficientnet-b3_3rdparty_8xb32-aa_in1k'):
        _load(TruncatedEfficientNet('b3'), tmp_path / 'nope.pth')


def test_keras_checkpoint_needs_keras_numerics(tmp_path):
    path = tmp_path / 'keras.pth'
    torch.save({'state_dict': _full('b0').state_dict(),
                'meta': {'keras_numerics': dict(pad_type='same', bn_eps=1e-3)}}, path)
    with pytest.raises(ValueError, match=r"holds Keras weights, which need Keras' numerics, "
                       r'but TruncatedEfficientNet\.layers\.0\.bn has BN eps=1e-05'):
        _load(TruncatedEfficientNet('b0', norm_cfg=dict(type='BN')), path)
    _load(TruncatedEfficientNet('b0'), path)


@pytest.mark.parametrize('frozen', [-1, 0, 1, 3, 6])
def test_frozen_stages_as_mmdet(frozen):
    """mmdet's count: the first ``frozen`` modules of ``layers``; -1 (FreezeBackboneHook's
    "unfrozen") and 0 freeze nothing."""
    model = TruncatedEfficientNet('b0', frozen_stages=frozen).train()
    assert model.training  # train() returns the module (mmdet's returns None)
    for i, layer in enumerate(model.layers):
        frozen_here = i < frozen
        assert all(p.requires_grad != frozen_here for p in layer.parameters()), i
        assert all(m.training != frozen_here for m in layer.modules()), i


def test_norm_eval():
    model = TruncatedEfficientNet('b0', norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='es'), r"arch must be one of mmdet's EfficientNet-B archs .*got 'es'"),
    (dict(out_strides=(8, 4)), r'out_strides must be a non-empty increasing subset of '
                               r'\(2, 4, 8, 16, 32\), got \(8, 4\)'),
    (dict(frozen_stages=7), r'frozen_stages must be an int in \[-1, 6\] .*got 7'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TruncatedEfficientNet(**kwargs)


def test_yoloret_eb3_runs_end_to_end_at_odd_sizes():
    """The YOLO-ReT-EB3 config: a training step (loss, backward) and a prediction on an odd
    input size."""
    model = build_model(CONFIG).train()
    x = torch.rand(1, 3, 97, 131)
    sample = DetDataSample(metainfo=dict(img_shape=(97, 131), ori_shape=(97, 131),
                                         batch_input_shape=(97, 131), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 20., 60., 70.]]),
                                       labels=torch.tensor([3]))
    losses = model.loss(x, [sample])
    loss = sum(sum(v) if isinstance(v, list) else v for v in losses.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.layers[0].conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (maps, ) = model(x, mode='tensor')
        (result, ) = model.predict(x, [sample])
    assert [m.shape[-2:] for m in maps] == [(4, 5), (7, 9), (13, 17)]
    assert torch.isfinite(result.pred_instances.bboxes).all()
