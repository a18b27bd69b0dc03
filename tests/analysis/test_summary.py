"""The data-flow summary lists functional ops (pool, upsample, concat, weighted sum) with
their shapes, for RFCR alone and inside a detector built from a config."""
import torch

from rfcr.utils.config import build_model
from rfcr.analysis.summary import format_summary, summarize
from rfcr.models import RFCR
from rfcr.tools.summary import main as summary_main

YOLORET = 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py'


def _ops(rows, owner=''):
    return [(r.label, r.shapes[0]) for r in rows if r.is_op and r.owner == owner]


def test_rfcr_steps_with_shapes_at_an_odd_size():
    neck = RFCR((24, 72, 120)).eval()
    # A 321x321 image: stride-8/16/32 maps of 41, 21 and 11 pixels (ceil pyramid).
    feats = [torch.rand(1, 24, 41, 41), torch.rand(1, 72, 21, 21), torch.rand(1, 120, 11, 11)]
    rows = summarize(neck, [feats], input_size=(321, 321), runs=2)
    assert _ops(rows) == [
        ('max_pool2d', (1, 48, 21, 21)),  # stride 8 collected: conv, then 2x2 pool (ceil)
        ('upsample_nearest2d', (1, 48, 22, 22)),  # stride 32 collected: x2 ...
        ('mul x3 + add x2', (1, 48, 21, 21)),  # the weighted sum (after the crop to 21)
        ('upsample_nearest2d', (1, 96, 42, 42)),  # fused map to stride 8 (cropped to 41)
        ('cat', (1, 120, 41, 41)),
        ('cat', (1, 168, 21, 21)),
        ('max_pool2d', (1, 96, 11, 11)),  # fused map to stride 32
        ('cat', (1, 216, 11, 11)),
    ]
    strides = {r.label: r.strides for r in rows}
    assert strides['(total)'] == [8, 16, 32]
    assert strides['collect_convs.0'] == [8] and strides['fuse_conv'] == [16]
    total = rows[0]
    assert total.params == sum(p.numel() for p in neck.parameters())
    assert total.macs == sum(r.macs for r in rows if r.depth == 1 or r.is_op)
    assert total.seconds > 0


def test_detector_summary_from_a_config():
    model = build_model(YOLORET)
    x = torch.rand(1, 3, 64, 64)
    rows = summarize(model, x, depth=2, runs=1)
    labels = [r.label for r in rows]
    assert labels[:2] == ['(total)', 'backbone']
    assert 'neck.0' in labels and 'neck.1' in labels
    rfcr_ops = [label for label, _ in _ops(rows, 'neck.0')]
    assert rfcr_ops.count('cat') == 3 and rfcr_ops.count('max_pool2d') == 3  # + the shortcut's
    neck0 = next(r for r in rows if r.label == 'neck.0')
    assert neck0.kind == 'RFCR'
    assert [s[1:] for s in neck0.shapes] == [(120, 8, 8), (168, 4, 4), (216, 2, 2)]
    assert neck0.strides == [8, 16, 32]
    text = format_summary(rows, 'title')
    assert text.splitlines()[0] == 'title'
    assert '- mul x4 + add x3' in text  # the weighted sum of 4 collected maps


def test_summary_cli_prints_the_table(capsys):
    summary_main([YOLORET, '--input-size', '96x64', '--depth', '1', '--runs', '1',
                  '--threads', '1'])
    out = capsys.readouterr().out
    assert 'input (1, 3, 96, 64)' in out
    assert 'TruncatedMobileNetV2' in out and 'YOLOReTHead' in out
