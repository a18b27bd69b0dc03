"""rfcr-bench's suite: what to compare and the paper's claims to check (no data, no GPU,
random weights). ``rfcr-bench --suite benchmarks/suite.py`` reads ``SUITE`` from this file
(``--groups`` for some of its groups; ``make bench`` runs it all).

Groups, each timed in one interleaved run:

- ablation-M0.75, ablation-M1.4: the paper's Table 4 rows as a cost table (VOC heads);
- detectors-COCO: the swap-ins next to the mmdet models they came from, and
  YOLO-ReT-M0.75/M1.4;
- necks: on the M0.75 pyramid, RFCR vs the seed-notes port (seed_port_rfcr.py), mmdet FPN
  and PAFPN;
- deploy: detectors and necks again, every one folded for inference with
  ``rfcr.deploy.switch_to_deploy`` (BN into convs for mmdet's and the port's too;
  YOLO-ReT's linear maps composed);
- end2end: folded YOLO-ReT-M0.75 (COCO) model only (raw maps) and end to end
  (``rfcr.deploy.end2end.End2End``: uint8 image in, preprocessing, model, decoding and NMS,
  boxes out), made to detect as a trained model does;
- efficientnet, efficientnet-deploy: at 13/10 of ``--input-size`` (416 at 320), the full
  EfficientNet-B3 + FPN/PAN, the truncated one + RFCR and YOLO-ReT-EB3 (COCO heads), as
  built and all three folded.

Like is compared with like: the first groups run every model as built, the deploy groups
(and end2end) every model folded. Paths are relative to the repository root this file sits in.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rfcr.analysis.benchmark import BEST, Candidate, Group, Suite, Target, image
from rfcr.deploy import switch_to_deploy
from rfcr.deploy.end2end import UNSUPPORTED, End2End
from rfcr.utils.config import build_model
from seed_port_rfcr import SeedPortRFCR  # rfcr-bench puts this file's folder on sys.path

REPO = Path(__file__).resolve().parents[1]
ABLATION_ROWS = (  # (label, config file suffix) in Table 4's order
    ('full (baseline)', 'full_fpnpan'),
    ('+truncation', 'trunc_fpnpan'),
    ('+RFCR', 'full_rfcr'),
    ('trunc+RFCR', 'trunc_rfcr'),
    ('+shortcut', 'trunc_rfcr-shortcut'),
)
ABLATION_DIRS = {'0.75': 'configs/ablation', '1.4': 'benchmarks/configs/ablation_m1.4'}
MMDET_YOLOV3 = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'
MMDET_SSDLITE = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
YOLORET_M075 = 'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_2xb8-320-250e_coco.py'
YOLORET_M14 = 'configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-320-250e_coco.py'
NECK_CHANNELS = (24, 72, 120)  # TruncatedMobileNetV2 x0.75 at strides 8, 16, 32
# The paper's EfficientNet-B3 models (COCO), in Table 4's order, then the released graph.
EFFICIENTNET_ROWS = (
    ('EB3 full + FPN/PAN',
     'configs/ablation/yoloret_efficientnet-b3-full_fpnpan_2xb8-416-250e_coco.py'),
    ('EB3 trunc+RFCR', 'configs/ablation/yoloret_efficientnet-b3-trunc_rfcr_2xb8-416-250e_coco.py'),
    ('YOLO-ReT-EB3', 'configs/yoloret/yoloret_efficientnet-b3_rfcr_2xb8-416-250e_coco.py'),
)


def pyramid(batch: int, size: tuple[int, int], channels: Sequence[int] = NECK_CHANNELS
            ) -> tuple:
    """A neck's input: maps at strides 8, 16, 32 of a ``size`` image, sized as MobileNetV2's
    stride-2 3x3 convs (padding 1) size them."""
    h, w = size
    sizes = []
    for _ in range(5):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return ([torch.rand(batch, c, *s) for c, s in zip(channels, sizes[2:])], )


def image_416(batch: int, size: tuple[int, int]) -> tuple:
    """A detector's input at 13/10 of ``size``: 416x416, the paper's EfficientNet-B3 size, at
    the default 320."""
    return image(batch, (size[0] * 13 // 10, size[1] * 13 // 10))


def folded(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` folded for inference (``rfcr.deploy.switch_to_deploy``)."""
    return switch_to_deploy(build())


def seed_port() -> nn.Module:
    return SeedPortRFCR(NECK_CHANNELS).eval()


def detector(name: str, family: str, path: str, fold: bool = False, make_inputs=image,
             ref: str | None = None) -> Candidate:
    """The model of config ``path`` (``mmdet::`` or relative to the repository), as built or
    (``fold``) folded."""
    build = partial(build_model, path if '::' in path else str(REPO / path))
    return Candidate(name, family, partial(folded, build) if fold else build, make_inputs,
                     source=path, ref=ref)


def neck(name: str, family: str, cfg: dict, source: str, fold: bool = False,
         ref: str | None = None) -> Candidate:
    build = partial(build_model, cfg)
    return Candidate(name, family, partial(folded, build) if fold else build, pyramid,
                     source=source, ref=ref)


def ablation_group(width: str) -> Group:
    folder = ABLATION_DIRS[width]
    files = {suffix: next((REPO / folder).glob(f'*-{width}-{suffix}_2xb8-*.py'))
             for _, suffix in ABLATION_ROWS}
    return Group(
        f'ablation-M{width}', baseline=f'M{width} full (baseline)',
        note=f"Table 4 rows at width {width}, VOC heads (20 classes); ratios vs the full "
             'backbone baseline. RFCR\'s own cost: trunc+RFCR vs +truncation.',
        candidates=[detector(f'M{width} {label}', f'YOLO-ReT ablation M{width}',
                             str(files[suffix].relative_to(REPO)))
                    for label, suffix in ABLATION_ROWS])


# The paper's claims (its Jetson figures) are judged at the two models' MAC ratio + 0.03
# wherever a compute-bound CPU cannot reach them by arithmetic (Target.mac_margin).
PAPER = dict(mac_margin=0.03)


def ablation_targets(width: str) -> list[Target]:
    m = f'M{width}'
    return [
        Target(f'RFCR adds <= 5% to truncated MobileNetV2-x{width} + FPN/PAN (whole '
               'detector)', f'ablation-{m}', f'{m} trunc+RFCR', f'{m} +truncation', '<=', 1.05,
               **PAPER),
        Target(f'truncation saves >= 25% of MobileNetV2-x{width} + FPN/PAN',
               f'ablation-{m}', f'{m} +truncation', f'{m} full (baseline)', '<=', 0.75,
               **PAPER),
    ]


def detectors_group() -> Group:
    yolov3, ssdlite = 'yolov3_mobilenetv2_320', 'ssdlite_mobilenetv2'
    swapin = 'configs/swapin/{}_mobilenetv2-trunc_rfcr{}.py'.format
    return Group(
        'detectors-COCO', baseline=yolov3,
        note='COCO heads (80 classes); swap-ins vs the mmdet models they came from, '
             'YOLO-ReT vs both.',
        candidates=[
            detector(yolov3, 'mmdet', MMDET_YOLOV3),
            detector('yolov3 swap-in (trunc+RFCR)', 'swap-in',
                     swapin('yolov3', '_8xb24-320-300e_coco')),
            detector(ssdlite, 'mmdet', MMDET_SSDLITE),
            detector('ssdlite swap-in (trunc+RFCR)', 'swap-in',
                     swapin('ssdlite', '-scratch_8xb24-600e_coco'), ref=ssdlite),
            detector('YOLO-ReT-M0.75', 'YOLO-ReT', YOLORET_M075),
            detector('YOLO-ReT-M1.4', 'YOLO-ReT', YOLORET_M14),
        ])


def necks_group() -> Group:
    c = list(NECK_CHANNELS)
    return Group(
        'necks', baseline='RFCR', repeats=300,
        note='necks alone on the M0.75 pyramid (24/72/120 channels at strides 8/16/32); '
             'FPN and PAFPN at 96 channels, the width RFCR adds to every level. The seed '
             'port (benchmarks/seed_port_rfcr.py) needs even sizes.',
        candidates=[
            neck('RFCR', 'RFCR', dict(type='RFCR', in_channels=c), 'rfcr.models.RFCR(24, 72, 120)'),
            Candidate('seed-port RFCR', 'seed port', seed_port, pyramid,
                      source='benchmarks/seed_port_rfcr.py'),
            neck('FPN 96', 'mmdet neck', dict(type='FPN', in_channels=c, out_channels=96,
                                              num_outs=3), 'mmdet FPN(out_channels=96)'),
            neck('PAFPN 96', 'mmdet neck', dict(type='PAFPN', in_channels=c, out_channels=96,
                                                num_outs=3), 'mmdet PAFPN(out_channels=96)'),
        ])


def deploy_group() -> Group:
    yolov3, ssdlite = 'yolov3_mobilenetv2_320 (folded)', 'ssdlite_mobilenetv2 (folded)'
    return Group(
        'deploy', baseline=yolov3, repeats=60,
        note='every model folded for inference by rfcr.deploy.switch_to_deploy: BN into the '
             'convs for all (mmdet\'s and the seed port\'s too, so the comparison is fair), '
             'YOLO-ReT\'s linear maps composed; COCO heads. Necks on the M0.75 pyramid. The '
             'targets are checked on eager and on every runtime that ran (ncnn, MNN and '
             'LiteRT included), and on each model\'s fastest.',
        candidates=[
            detector(yolov3, 'mmdet', MMDET_YOLOV3, fold=True),
            detector(ssdlite, 'mmdet', MMDET_SSDLITE, fold=True),
            detector('YOLO-ReT-M0.75 (folded)', 'YOLO-ReT', YOLORET_M075, fold=True),
            neck('RFCR (folded)', 'RFCR', dict(type='RFCR', in_channels=list(NECK_CHANNELS)),
                 'rfcr.deploy.DeployRFCR', fold=True, ref='seed-port RFCR (folded)'),
            Candidate('seed-port RFCR (folded)', 'seed port', partial(folded, seed_port),
                      pyramid, source='benchmarks/seed_port_rfcr.py', ref='RFCR (folded)'),
        ])


def deploy_targets() -> list[Target]:
    yoloret, ssdlite = 'YOLO-ReT-M0.75 (folded)', 'ssdlite_mobilenetv2 (folded)'
    yolov3 = 'yolov3_mobilenetv2_320 (folded)'
    return [
        Target('folded: YOLO-ReT-M0.75 faster than ssdlite_mobilenetv2', 'deploy', yoloret,
               ssdlite, '<', 1.0, **PAPER),
        Target('folded: YOLO-ReT-M0.75 <= 0.75x yolov3_mobilenetv2_320', 'deploy', yoloret,
               yolov3, '<=', 0.75, **PAPER),
        # Where each would deploy: its fastest runtime (checked when runtimes run).
        Target('best runtime: YOLO-ReT-M0.75 faster than ssdlite_mobilenetv2', 'deploy',
               yoloret, ssdlite, '<', 1.0, runtime=BEST, **PAPER),
        Target('best runtime: YOLO-ReT-M0.75 <= 0.7x yolov3_mobilenetv2_320', 'deploy',
               yoloret, yolov3, '<=', 0.7, runtime=BEST, **PAPER),
    ]


def uint8_image(batch: int, size: tuple[int, int]) -> tuple:
    """An end-to-end graph's input: a random uint8 image batch (BGR, as mmdet loads it)."""
    return (torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8), )


def detecting(path: str, seed: int = 0) -> nn.Module:
    """The detector of config ``path`` (YOLOv3-style head), random (``seed``) but made to
    detect as a trained one does, so that decoding and NMS do a trained model's work:
    BN statistics of random images (features neither vanish nor blow up), prediction
    convs scaled to read them (objectness and class logits of spread O(1), box offsets of
    less, so boxes stay near their anchors) and negative biases (most anchors unlikely).
    With the config's test_cfg (mAP thresholds: conf_thr 0.005, score_thr 0.05), a random
    320x320 image then gives about 5000 of the 6300 anchors above conf_thr and far more
    than nms_pre (1000) (anchor, class) candidates: NMS gets nms_pre of them, the most
    these thresholds ever give it, and max_per_img (100) come out. The same idea as
    tests/deploy/test_end2end.py's detector."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(str(REPO / path))
        images = uint8_image(4, (320, 320))[0]
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # running statistics = those of the one batch below
    model.train()
    with torch.no_grad():
        model(End2End(model).preprocess(images), mode='tensor')
    model.eval()
    head = model.bbox_head
    with torch.no_grad():
        for conv in head.convs_pred:
            w = conv.weight.view(head.num_base_priors, head.num_attrib, -1)
            w[:, :4] *= 3
            w[:, 4:] *= 20
            bias = conv.bias.view(head.num_base_priors, head.num_attrib)
            bias[:, 4] = -2.0  # objectness
            bias[:, 5:] = -1.0  # class scores
    return model


def folded_detecting(path: str) -> nn.Module:
    """:func:`detecting`'s model, folded: the model-only row of the end2end group."""
    return switch_to_deploy(detecting(path))


def folded_end2end(path: str) -> nn.Module:
    """:func:`detecting`'s model (the same weights), folded, end to end."""
    return End2End(switch_to_deploy(detecting(path)))


# Where End2End's graph does not run, and why: the runtime table's own refusals.
END2END_NOT_ON = dict(UNSUPPORTED)


def end2end_group() -> Group:
    model, end2end = 'YOLO-ReT-M0.75 model only (folded)', 'YOLO-ReT-M0.75 end to end (folded)'
    return Group(
        'end2end', baseline=model, repeats=60,
        note='what an image costs at batch 1, as ultralytics and PicoDet publish speed: '
             'folded YOLO-ReT-M0.75 (COCO) model only (float input, raw maps, as in deploy) '
             'vs end to end (rfcr.deploy.end2end.End2End: uint8 image in, normalization, '
             'forward, YOLOv3 decoding, the config\'s test_cfg thresholds and '
             'NonMaxSuppression inside, boxes out), the same weights, in the same rounds. '
             'Random weights would give no boxes or all of them, so the model is made to '
             'detect as a trained one does (benchmarks/suite.py detecting(): BN statistics '
             'of random images, scaled prediction convs): more candidates pass the thresholds '
             'than nms_pre, so NMS gets nms_pre (1000), its most at these thresholds (an '
             'upper bound of its cost), and max_per_img (100) come out. Not run on ncnn (its '
             'cell says why); torch.compile tries, but torch.export does not capture NMS\'s '
             'data-dependent output size.',
        candidates=[
            Candidate(model, 'YOLO-ReT', partial(folded_detecting, YOLORET_M075), image,
                      source=YOLORET_M075),
            Candidate(end2end, 'YOLO-ReT end to end', partial(folded_end2end, YOLORET_M075),
                      uint8_image, source=YOLORET_M075, not_on=END2END_NOT_ON),
        ])


def end2end_targets() -> list[Target]:
    model, end2end = 'YOLO-ReT-M0.75 model only (folded)', 'YOLO-ReT-M0.75 end to end (folded)'
    return [Target('end to end adds <= 25% to model-only at 320', 'end2end', end2end, model,
                   '<=', 1.25, runtime=rt) for rt in ('onnxruntime', 'openvino')]


def efficientnet_group(fold: bool = False) -> Group:
    """The EfficientNet-B3 models as built or (``fold``) every one folded."""
    suffix = ' (folded)' if fold else ''
    how = ('every model folded by rfcr.deploy.switch_to_deploy' if fold
           else 'every model as built (unfolded)')
    return Group(
        f'efficientnet{"-deploy" if fold else ""}', baseline=f'EB3 full + FPN/PAN{suffix}',
        repeats=20,
        candidates=[detector(f'{label}{suffix}', 'YOLO-ReT EB3', path, fold=fold,
                             make_inputs=image_416) for label, path in EFFICIENTNET_ROWS],
        note=f'EfficientNet-B3 at 416x416 (13/10 of --input-size), COCO heads, {how}: the '
             'full backbone + FPN/PAN (Table 4 baseline), truncation + RFCR, and YOLO-ReT-EB3 '
             '(+ the stride-4 shortcut, the released graph); ratios vs the full baseline.')


# Targets are stated on eager; rfcr-bench checks them again on every --runtime.
SUITE = Suite(
    groups=[ablation_group('0.75'), ablation_group('1.4'), detectors_group(), necks_group(),
            deploy_group(), end2end_group(), efficientnet_group(),
            efficientnet_group(fold=True)],
    targets=ablation_targets('0.75') + ablation_targets('1.4') + deploy_targets()
    + end2end_targets())
