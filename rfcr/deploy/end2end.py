"""The whole detector in one graph: uint8 image batch in, boxes out, with NMS inside.

:class:`End2End` is what mmdet computes between its test pipeline and its results, as one
module: the data preprocessor (channel flip, mean, std), the forward pass (folded by
:func:`~rfcr.deploy.switch_to_deploy` or not), the YOLOv3 head's decoding
(``YOLOV3Head.predict_by_feat`` + ``YOLOBBoxCoder``), its ``test_cfg`` thresholds and
per-class NMS. :func:`export_end2end` writes it to ONNX with the standard
``NonMaxSuppression`` op and the outputs of TensorRT's EfficientNMS (mmyolo's
``projects/easydeploy``, ultralytics' exporter)::

    images (N, 3, H, W) uint8, the config's channel order (BGR for mmdet's loading)
      -> preprocess -> backbone / neck / head -> pred maps (N, B * (5 + C), h, w) per level
      -> decode: sigmoid xy, exp wh x anchors; objectness, class scores (sigmoid)
      -> keep: objectness >= conf_thr, class score > score_thr, top nms_pre class scores
         (sought among the nms_pre anchors whose best class score ranks highest: the
         same pairs, without work on every anchor and class), box sides > min_bbox_size;
         score = objectness x class score
      -> NonMaxSuppression per class (iou_threshold) -> top max_per_img by score
    num_dets (N,) int64, boxes (N, K, 4) x1 y1 x2 y2 in input pixels (not clipped, as
    mmdet's YOLOv3), scores (N, K), labels (N, K) int64; K = max_per_img, zeros past
    num_dets.

The file carries what a predictor needs to feed it (``metadata_props``,
:func:`end2end_metadata`): the classes, the input size and channel order, the letterbox
rule and pad value of the config's test pipeline, the thresholds. ``rfcr_predict.py``
(``rfcr-predict``) reads them and runs the file with numpy, OpenCV and the runtime alone.

The other file runtimes convert that ONNX graph (:data:`~rfcr.deploy.runtime.RUNTIMES`),
NMS included, and the metadata goes beside the file as JSON (:func:`metadata_path`):
OpenVINO, MNN (dynamic shapes too) and LiteRT (onnx2tf maps ``NonMaxSuppression`` to
LiteRT's ``NON_MAX_SUPPRESSION_V4``, one per class; static shapes) run it;
:data:`UNSUPPORTED` says why ncnn and TensorRT do not.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from torch import Tensor, nn
from torchvision.ops import batched_nms

from mmdet.models.dense_heads import YOLOV3Head
from mmdet.registry import DATASETS

from .export import DEFAULT_OPSET, export_onnx, odd_pyramid_size
from .runtime import FILE_RUNTIMES, default_runtime, get_runtime, load_exported

__all__ = ['END2END_KEY', 'UNSUPPORTED', 'End2End', 'End2EndCheck', 'NonMaxSuppression',
           'end2end_metadata', 'export_end2end', 'metadata_path', 'verify_end2end']

END2END_KEY = 'rfcr_end2end'  # metadata key marking an end-to-end graph; value: format version
OUTPUT_NAMES = ('num_dets', 'boxes', 'scores', 'labels')
# The file runtimes that cannot run the end-to-end graph, and why.
UNSUPPORTED = {
    'ncnn': 'ncnn has no NonMaxSuppression, TopK, ScatterND or Gather layer (pnnx cannot '
            'convert the graph either); export the raw head outputs (without --end2end) and '
            'run NMS in the application',
    'tensorrt': "rfcr's TensorRT runner feeds float32 inputs and reads float32 outputs; the "
                'end-to-end graph takes uint8 images and returns int64 num_dets and labels',
}
# Scores NonMaxSuppression must drop are set to -1; every kept score (a product of
# probabilities) is >= 0. The threshold lies between.
_DROPPED, _SCORE_THRESHOLD = -1.0, -0.5


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 11): greedy NMS per image and class.

    ``boxes`` (N, A, 4) corners, ``scores`` (N, C, A); a box competes in a class where its
    score is above ``score_threshold``; a box is suppressed by a higher-scored one whose
    IoU with it is above ``iou_threshold``; at most ``max_per_class`` boxes per image and
    class. Returns the selected ``(image, class, box)`` indices, (S, 3) int64. In PyTorch it
    runs torchvision's ``batched_nms``; exported, it is the ONNX op.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
                score_threshold: float) -> Tensor:
        selected = []
        for n in range(scores.shape[0]):
            labels, index = (scores[n] > score_threshold).nonzero(as_tuple=True)
            keep = batched_nms(boxes[n, index], scores[n, labels, index], labels,
                               iou_threshold)  # by decreasing score
            labels, index = labels[keep], index[keep]
            # Rank of each box within its class (stable sort keeps the score order).
            by_class, order = labels.sort(stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(order)) - torch.searchsorted(by_class, by_class)
            top = rank < max_per_class
            selected.append(torch.stack([torch.full_like(index[top], n), labels[top],
                                         index[top]], 1))
        return torch.cat(selected) if selected else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float,
                 score_threshold: float):
        def const(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))

        return g.op('NonMaxSuppression', boxes, scores, const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32),
                    const(score_threshold, torch.float32), center_point_box_i=0)


class End2End(nn.Module):
    """An mmdet detector with a YOLOv3-style head, from uint8 images to its detections.

    Computes what ``detector.data_preprocessor`` followed by ``detector.predict(...,
    rescale=False)`` computes for images already resized (and padded) to the input size,
    in the EfficientNMS layout (see :mod:`rfcr.deploy.end2end`). The input size must be a
    multiple of the preprocessor's ``pad_size_divisor``: mmdet's batch padding is then
    none. ``nms_pre <= 0`` keeps every candidate (mmdet's ``filter_scores_and_topk``
    would drop the lowest-scored one for ``nms_pre=-1``). ``test_cfg.clip_to_image``
    (:class:`~rfcr.models.YOLOReTHead`, the official configs) is not applied: the graph
    does not know where the image lies in its input; ``rfcr_predict.py`` clips the boxes
    it maps back to the image, after NMS.

    Args:
        detector: A single-stage detector whose ``bbox_head`` is a ``YOLOV3Head`` (e.g.
            :class:`~rfcr.models.YOLOReTHead`), folded or not; its ``data_preprocessor`` an
            mmengine ``ImgDataPreprocessor`` (mmdet's ``DetDataPreprocessor``).
        test_cfg: The selection settings; by default the head's ``test_cfg``. ``nms`` must
            be plain NMS (``type='nms'``), ``max_per_img`` positive.
        dynamic: Trace for inputs of any size: the ``nms_pre`` cut stays in the graph even
            where the traced input has fewer anchors (:func:`export_end2end` sets it for
            ``dynamic`` exports). Either way the detections are the same.

    Example:
        >>> import torch
        >>> from rfcr.utils.config import build_model
        >>> from rfcr.deploy.end2end import End2End
        >>> model = build_model(
        ...     'configs/yoloret/yoloret_mobilenetv2-0.75_rfcr_1xb4-320-3e_synthetic.py')
        >>> num_dets, boxes, scores, labels = End2End(model)(
        ...     torch.randint(0, 256, (2, 3, 320, 320), dtype=torch.uint8))
        >>> num_dets.shape, boxes.shape, scores.shape, labels.shape
        (torch.Size([2]), torch.Size([2, 100, 4]), torch.Size([2, 100]), torch.Size([2, 100]))
    """

    def __init__(self, detector: nn.Module, test_cfg: Optional[dict] = None,
                 dynamic: bool = False) -> None:
        super().__init__()
        head = getattr(detector, 'bbox_head', None)
        if not isinstance(head, YOLOV3Head):
            raise TypeError(f'detector: End2End decodes a YOLOV3Head (YOLOReTHead), got a '
                            f'{type(detector).__name__} whose bbox_head is '
                            f'{type(head).__name__}')
        cfg = ConfigDict(test_cfg if test_cfg is not None else head.test_cfg)
        nms = cfg.get('nms') or {}
        if nms.get('type', 'nms') != 'nms' or 'iou_threshold' not in nms:
            raise ValueError(f"test_cfg.nms: End2End runs plain NMS, expected dict(type='nms', "
                             f'iou_threshold=...), got {nms!r}')
        max_per_img = cfg.get('max_per_img')
        if isinstance(max_per_img, bool) or not isinstance(max_per_img, int) or max_per_img <= 0:
            raise ValueError(f'test_cfg.max_per_img must be a positive int, got {max_per_img!r}')
        pre = detector.data_preprocessor
        if not hasattr(pre, 'pad_size_divisor'):
            raise TypeError(f'detector.data_preprocessor: expected an mmengine '
                            f'ImgDataPreprocessor, got {type(pre).__name__}')
        self.detector = detector
        self.head = head
        # mmengine's ImgDataPreprocessor: channels converted first, then normalized (mean
        # and std are buffers of shape (3, 1, 1) only when it normalizes).
        self.flip_channels = bool(getattr(pre, '_channel_conversion', False))
        self.pad_size_divisor = int(pre.pad_size_divisor)
        mean = getattr(pre, 'mean', None)
        std = getattr(pre, 'std', None)
        self.register_buffer('mean', (mean if mean is not None else torch.zeros(3, 1, 1))
                             .detach().float().view(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer('std', (std if std is not None else torch.ones(3, 1, 1))
                             .detach().float().view(1, -1, 1, 1).clone(), persistent=False)
        self.conf_thr = float(cfg.get('conf_thr', -1))
        self.score_thr = float(cfg.get('score_thr', 0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.iou_threshold = float(nms['iou_threshold'])
        self.max_per_img = max_per_img
        self.dynamic = dynamic

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 images as the detector's input: channels flipped, normalized."""
        x = images.float()
        if self.flip_channels:  # mmengine converts 3-channel images only
            x = x[:, [2, 1, 0]]  # a Gather: onnx2tf drops Slice's step -1 on channels
        return (x - self.mean) / self.std

    def decode(self, pred_maps: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Boxes (N, A, 4), objectness (N, A) and class scores (N, A, C) of every anchor,
        levels in the head's order, anchors as mmdet's ``grid_priors`` orders them (row,
        column, base anchor)."""
        boxes, objectness, class_logits = self._decode(pred_maps)
        return boxes, objectness, class_logits.sigmoid()

    def _decode(self, pred_maps: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`decode`, with the class scores' logits (before their sigmoid)."""
        head = self.head
        boxes, objectness, logits = [], [], []
        for level, (pred, stride) in enumerate(zip(pred_maps, head.featmap_strides)):
            n, _, h, w = pred.shape
            pred = pred.permute(0, 2, 3, 1).reshape(n, -1, head.num_attrib)  # (N, h*w*B, 5+C)
            base = head.prior_generator.base_anchors[level].to(pred)  # (B, 4)
            stride_w, stride_h = head.prior_generator.strides[level]
            xs = torch.arange(w, device=pred.device).to(pred.dtype) * stride_w
            ys = torch.arange(h, device=pred.device).to(pred.dtype) * stride_h
            xy = torch.stack([xs.view(1, -1).expand(h, -1), ys.view(-1, 1).expand(-1, w)], -1)
            anchors = (xy.repeat(1, 1, 2)[:, :, None] + base).reshape(-1, 4)  # (h*w*B, 4)
            deltas = torch.cat([pred[..., :2].sigmoid(), pred[..., 2:4]], -1)
            boxes.append(head.bbox_coder.decode(anchors, deltas, stride))
            objectness.append(pred[..., 4].sigmoid())
            logits.append(pred[..., 5:])
        return torch.cat(boxes, 1), torch.cat(objectness, 1), torch.cat(logits, 1)

    def _select(self, boxes: Tensor, objectness: Tensor, class_logits: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """mmdet's selection (``YOLOV3Head.predict_by_feat``, ``filter_scores_and_topk``,
        ``_bbox_post_process``) as masks over the pairs (candidate, class), where the
        candidates are anchors: the boxes (N, S, 4) and scores (N, C, S) that NMS sees
        (objectness x class score where a pair is kept, -1 elsewhere), the same scores as
        (N, C*S), and each candidate's row in ``boxes.reshape(-1, 4)`` (N, S).

        With ``nms_pre`` below the number of anchors (or a dynamic graph), the candidates
        are the ``nms_pre`` anchors whose best class score ranks highest among those that
        pass the thresholds. They hold the ``nms_pre`` best pairs (an anchor whose best pair
        ranks below ``nms_pre`` other anchors' best pairs has none in the top ``nms_pre``),
        so this selects what mmdet does among all A x C pairs at a fraction of the cost:
        the work on every anchor and class is one max over the class logits (the sigmoid
        is increasing). Otherwise every anchor is a candidate.

        Candidate 0 is a sink: no box, no score. Static-shape runtimes pad
        ``NonMaxSuppression``'s output with (0, 0, 0) rows (onnx2tf's LiteRT graph: C x
        ``max_per_img`` rows), which land there and change nothing, whether a scatter
        overwrites or adds repeated indices. Tensors after a gather stay 2-D but NMS's
        inputs: onnx2tf mistakes the layout of 3-D ones (a transpose, a 3-D index, a
        reshape of NMS's scores, gathered boxes gathered again)."""
        n, num_anchors, num_classes = class_logits.shape
        device = class_logits.device
        k = self.nms_pre
        # Which anchors pass objectness, and the candidates: anchor indices and a rank
        # (below -0.5: not a candidate).
        passed = (objectness >= self.conf_thr if self.conf_thr > 0
                  else torch.ones_like(objectness, dtype=torch.bool))
        if k > 0 and (self.dynamic or k < num_anchors):
            best = class_logits.amax(-1).sigmoid()  # (N, A)
            ranked = torch.where((best > self.score_thr) & passed, best, -1.0)
            # k columns more, so that k entries exist for any input size; those (and
            # anchors that did not pass) rank below -0.5, their index taken mod A.
            ranked = torch.cat([ranked, ranked.new_full((1, k), -2.0).expand(n, -1)], 1)
            ranked, top = ranked.topk(k, dim=1)  # (N, k)
            top = top % num_anchors
        else:  # every anchor
            ranked = torch.where(passed, 0.0, -1.0)
            top = torch.arange(num_anchors, device=device)[None].expand(n, -1)
        ranked = torch.cat([ranked.new_full((1, 1), -2.0).expand(n, -1), ranked], 1)  # sink
        rows = (torch.cat([top.new_zeros((1, 1)).expand(n, -1), top], 1)
                + torch.arange(n, device=device)[:, None] * num_anchors)  # (N, S)
        slots = rows.shape[1]
        # (N, C*S), class-major: pair (c, j) is column c*S + j. A Gather of columns, not
        # a Tile (onnx2tf misreads Tile's repeats here).
        column = torch.arange(num_classes * slots, device=device)

        def tile(t: Tensor) -> Tensor:
            return t[:, column % slots]

        pairs = tile(rows * num_classes) + (column // slots)[None]
        cls_scores = class_logits.reshape(-1)[pairs].sigmoid()
        keep = (cls_scores > self.score_thr) & (tile(ranked) > -0.5)
        if k > 0 and (self.dynamic or k < num_classes * num_anchors):
            # the nms_pre highest class scores among those kept: TopK, not a sort of all
            # the scores (a sort was 2/3 of the graph's time)
            chosen = torch.where(keep, cls_scores, -1.0).topk(k, dim=1)[1]
            keep = keep & (torch.zeros_like(cls_scores).scatter(1, chosen, 1.0) > 0)
        if self.min_bbox_size >= 0:  # read before any gather of boxes; after the cut
            large = (boxes[..., 2:] - boxes[..., :2] > self.min_bbox_size).all(-1)
            keep = keep & (tile(large.float().reshape(-1)[rows]) > 0.5)
        scores = torch.where(keep, cls_scores * tile(objectness.reshape(-1)[rows]), _DROPPED)
        return (boxes.reshape(-1, 4)[rows.flatten()].view(n, -1, 4),
                scores.view(n, num_classes, slots), scores, rows)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        (pred_maps, ) = self.detector(self.preprocess(images), mode='tensor')
        boxes, objectness, class_logits = self._decode(pred_maps)
        candidates, scores, flat, rows = self._select(boxes, objectness, class_logits)
        n, _, num_anchors = scores.shape
        selected = NonMaxSuppression.apply(candidates, scores, self.max_per_img,
                                           self.iou_threshold, _SCORE_THRESHOLD)
        # The selected scores at their (class, anchor) place, -1 elsewhere; the top K.
        place = selected[:, 1] * num_anchors + selected[:, 2]
        dense = torch.full_like(flat, _DROPPED)
        dense[selected[:, 0], place] = flat[selected[:, 0], place]
        # K columns more, so that K entries exist however few anchors the input has.
        dense = torch.cat([dense, flat.new_full((1, self.max_per_img), _DROPPED)
                           .expand(n, -1)], 1)
        top_scores, top = dense.topk(self.max_per_img, dim=1)  # (N, K), by decreasing score
        found = top_scores > _SCORE_THRESHOLD
        # One flat gather of the decoded boxes' rows (no expanded index, no gather of
        # gathered boxes: onnx2tf mistakes their layout).
        rows = rows.reshape(-1)[top % num_anchors
                                + torch.arange(n, device=top.device)[:, None] * num_anchors]
        top_boxes = boxes.reshape(-1, 4)[rows.flatten()].view(n, -1, 4)
        return (found.sum(1),
                torch.where(found[..., None], top_boxes, 0.0),
                torch.where(found, top_scores, 0.0),
                torch.where(found, top // num_anchors, 0))


def _dataset_cfg(cfg: Config) -> dict:
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while 'dataset' in dataset or 'datasets' in dataset:  # RepeatDataset, ConcatDataset
        dataset = dataset.get('dataset') or dataset['datasets'][0]
    return dataset


def _classes(cfg: Config, detector: Optional[nn.Module]) -> list[str]:
    meta = getattr(detector, 'dataset_meta', None) or {}
    if meta.get('classes'):
        return list(meta['classes'])
    dataset = _dataset_cfg(cfg)
    classes = (dataset.get('metainfo') or {}).get('classes')
    if not classes and dataset.get('type'):
        classes = getattr(DATASETS.get(dataset['type']), 'METAINFO', {}).get('classes')
    if not classes:
        raise ValueError(f'config {cfg.filename!r}: no classes in model.dataset_meta, '
                         'test_dataloader.dataset.metainfo or its dataset type')
    return list(classes)


def _letterbox(cfg: Config) -> tuple[str, Optional[float]]:
    """The resize rule of the config's test pipeline and, for rfcr's ``Letterbox``, its
    pad value."""
    pipeline = _dataset_cfg(cfg).get('pipeline') or cfg.get('test_pipeline') or []
    for t in pipeline:
        if t.get('type') == 'Letterbox':
            return 'centred', float(t.get('pad_val', 0))
        if t.get('type') in ('Resize', 'mmdet.Resize'):
            if not t.get('keep_ratio', False):
                raise ValueError(f'config {cfg.filename!r}: the test pipeline resizes without '
                                 'keep_ratio; an end-to-end graph expects a keep_ratio Resize '
                                 'or a Letterbox')
            return 'resize_pad', None
    raise ValueError(f'config {cfg.filename!r}: no Resize or Letterbox in the test pipeline')


def end2end_metadata(cfg: Config, detector: nn.Module, shape: Sequence[int]) -> dict[str, str]:
    """What a predictor needs to feed an end-to-end graph of ``detector`` (built from
    ``cfg``) at input size ``shape`` (H, W), as ONNX ``metadata_props`` (strings; lists
    and numbers as JSON):

    - ``classes``: the class names, label order; ``input_size``: ``[H, W]``;
      ``channel_order``: ``'bgr'`` (mmdet's ``LoadImageFromFile`` decodes to BGR; the
      graph converts if the config says so);
    - ``letterbox``: ``'resize_pad'``: mmdet's ``Resize(keep_ratio=True)`` to fit (mmcv's
      rounding, ``int(side * scale + 0.5)``), padded at the bottom and right;
      ``'centred'``: rfcr's ``Letterbox`` (truncated sizes, centred);
      ``pad_value``: per input channel (``resize_pad``: the value mmdet's preprocessor
      pads with, its ``pad_value`` before normalization);
    - ``score_thr``, ``conf_thr``, ``iou_thr``, ``nms_pre``, ``max_per_img``: the head's
      ``test_cfg``; ``outputs``: their names.
    """
    end2end = detector if isinstance(detector, End2End) else End2End(detector)
    classes = _classes(cfg, end2end.detector)
    if len(classes) != end2end.head.num_classes:
        raise ValueError(f'config {cfg.filename!r}: {len(classes)} classes, but the head '
                         f'predicts {end2end.head.num_classes}')
    rule, pad = _letterbox(cfg)
    if pad is None:  # mmdet pads the normalized batch with pad_value
        pre = end2end.detector.data_preprocessor
        value = float(getattr(pre, 'pad_value', 0)) * end2end.std + end2end.mean
        value = value.flatten().tolist()
        pad_value = value[::-1] if end2end.flip_channels else value
    else:
        pad_value = [pad] * 3
    return {END2END_KEY: '1', 'classes': json.dumps(classes),
            'input_size': json.dumps([int(s) for s in shape]), 'channel_order': 'bgr',
            'letterbox': rule, 'pad_value': json.dumps([round(v, 4) for v in pad_value]),
            'score_thr': repr(end2end.score_thr), 'conf_thr': repr(end2end.conf_thr),
            'iou_thr': repr(end2end.iou_threshold), 'nms_pre': str(end2end.nms_pre),
            'max_per_img': str(end2end.max_per_img), 'outputs': ','.join(OUTPUT_NAMES)}


def metadata_path(path: str | os.PathLike) -> Path:
    """Where the metadata of an end-to-end file that is not ONNX goes: beside it, the
    file's name + ``.json`` (``X.mnn.json`` for ``X.mnn``: no runtime writes such a name,
    and ``X.mnn`` and ``X.tflite`` do not share one)."""
    path = Path(path)
    return path.with_name(path.name + '.json')


def export_end2end(detector: nn.Module,
                   path: str | os.PathLike,
                   shape: Sequence[int] = (320, 320),
                   batch: int = 1,
                   dynamic: bool = False,
                   metadata: Optional[dict[str, str]] = None,
                   opset: int = DEFAULT_OPSET,
                   runtime: Optional[str] = None) -> End2End:
    """Export ``detector`` end to end (:class:`End2End`; or an ``End2End`` as it is) to
    ``path``, the file of ``runtime`` (by default the one its suffix names,
    :func:`~rfcr.deploy.runtime.default_runtime`): input ``images`` (``batch``, 3, H, W)
    uint8, outputs ``num_dets, boxes, scores, labels``. ``metadata`` (e.g.
    :func:`end2end_metadata`) goes into an ONNX file's ``metadata_props``, or as JSON to
    :func:`metadata_path` beside any other file. With ``dynamic``, batch, height and width
    are dynamic (traced at odd pyramid sizes, :func:`~rfcr.deploy.export.odd_pyramid_size`).
    Returns the exported module.

    Raises:
        ValueError: a shape the preprocessor would pad, a runtime in :data:`UNSUPPORTED`,
            or what the runtime's file cannot hold (e.g. LiteRT: dynamic shapes).
    """
    import onnx

    rt = get_runtime(runtime or default_runtime(path), FILE_RUNTIMES)
    if rt.name in UNSUPPORTED:
        raise ValueError(f'the end-to-end graph does not run on {rt.label}: '
                         f'{UNSUPPORTED[rt.name]}')
    if Path(path).suffix.lower() not in rt.suffixes:
        raise ValueError(f'runtime {rt.name!r} runs {"/".join(rt.suffixes)} files, got '
                         f'{os.fspath(path)!r}')
    module = detector if isinstance(detector, End2End) else End2End(detector)
    if dynamic and not module.dynamic:  # the same detections, traced for any size
        module = copy.copy(module)
        module.dynamic = True
    height, width = (int(s) for s in shape)
    divisor = module.pad_size_divisor
    if divisor > 1 and (height % divisor or width % divisor):
        raise ValueError(f'shape must be a multiple of the data preprocessor\'s '
                         f'pad_size_divisor ({divisor}), got {height}x{width}')
    if dynamic:
        height, width = odd_pyramid_size(height), odd_pyramid_size(width)
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8)
    options = dict(input_names=['images'], output_names=OUTPUT_NAMES, dynamic=dynamic,
                   opset=opset)
    if Path(path).suffix.lower() != '.onnx':
        rt.export(module, (images, ), path, **options)
        if metadata:
            metadata_path(path).write_text(json.dumps(metadata, indent=1))
        return module
    export_onnx(module, (images, ), path, **options)
    model = onnx.load(os.fspath(path))
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, os.fspath(path))
    return module


@dataclass(frozen=True)
class End2EndCheck:
    """An end-to-end file against PyTorch on one image batch."""
    shape: tuple[int, ...]
    same_num_dets: bool
    same_labels: bool  # of the detections both found
    max_box_diff: float  # inf when the number of detections differs
    max_box: float  # the largest |box coordinate| of PyTorch's, for scale


def verify_end2end(path: str | os.PathLike, module: End2End,
                   batches: Iterable[Tensor], runtime: Optional[str] = None
                   ) -> list[End2EndCheck]:
    """Run the end-to-end file at ``path`` with ``runtime`` (by default the one its suffix
    names) and ``module`` on each uint8 image batch; compare their detections."""
    exported = load_exported(path, runtime)
    module.eval()
    checks = []
    for images in batches:
        with torch.no_grad():
            ref = [t.numpy() for t in module(images)]
        by_name = dict(zip(exported.output_names, exported(images)))  # LiteRT: sorted names
        out = [by_name[name] for name in OUTPUT_NAMES]
        same = bool((out[0] == ref[0]).all())
        found = np.arange(ref[3].shape[1]) < ref[0][:, None]  # (N, K): PyTorch's detections
        diff = float(abs(out[1] - ref[1]).max()) if same else float('inf')
        checks.append(End2EndCheck(tuple(images.shape), same,
                                   bool((out[3][found] == ref[3][found]).all()), diff,
                                   float(abs(ref[1]).max())))
    return checks
