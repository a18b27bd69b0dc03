"""YOLO-ReT's prediction convs on mmdet's YOLOv3 head machinery."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.models.dense_heads import YOLOV3Head
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.structures.bbox import scale_boxes
from mmdet.utils import InstanceList, OptConfigType, OptInstanceList


@MODELS.register_module()
class YOLOReTHead(YOLOV3Head):
    """A 1x1 prediction conv per level, on :class:`YOLOReTNeck`'s node features.

    Anchors, target assignment, losses and ``predict`` (decoding + NMS) are mmdet's
    :class:`YOLOV3Head`; only the layers differ: YOLOv3's 3x3 "bridge" convs are gone
    (YOLO-ReT's MBConv nodes already end each level) and the prediction conv reads the
    node output directly. Images letterboxed with the padding centred
    (:class:`~rfcr.datasets.Letterbox`, the official test-time input) carry
    ``pad_param``; their boxes are shifted back before they are rescaled.

    ``test_cfg.clip_to_image=True`` clips every box to the image, as the official
    ``yolo_eval`` does: after the boxes are mapped back to the original image and before
    the size filter and NMS, to ``[0, W] x [0, H]`` of ``img_meta['ori_shape']``. With
    ``rescale=False`` the boxes stay in input pixels and are clipped to where the image
    lies in the input (``ori_shape`` x ``scale_factor``, shifted by ``pad_param``): the
    same boxes in the other frame. Default ``False``: mmdet's YOLOv3, unclipped.

    Box loss: by default mmdet's YOLOv3 losses (BCE on the cell offsets, MSE on the log
    sizes), which match mmdet's grid assigner and prior-probability bias init. The
    official YOLO-ReT code uses a GIoU loss instead; pass ``loss_bbox=dict(type=
    'GIoULoss', reduction='sum')`` to train with it: it is computed on the decoded
    boxes of the positive anchors and replaces ``loss_xy`` / ``loss_wh``.

    Args:
        num_classes: Number of object classes.
        in_channels: Channels of the stride 32, 16, 8 inputs.
        loss_bbox: Optional IoU-type box loss (see above). ``None``: mmdet's YOLOv3
            xy/wh losses.
        **kwargs: Everything else of :class:`mmdet.models.dense_heads.YOLOV3Head`
            (``anchor_generator``, ``bbox_coder``, ``featmap_strides``, losses,
            ``train_cfg``, ``test_cfg``); its ``out_channels`` are not used.

    Example:
        >>> import torch
        >>> from rfcr.models import YOLOReTHead
        >>> head = YOLOReTHead(num_classes=20, in_channels=(75, 75, 75))
        >>> (pred_maps, ) = head((torch.rand(1, 75, 10, 10), torch.rand(1, 75, 20, 20),
        ...                       torch.rand(1, 75, 40, 40)))
        >>> print([tuple(p.shape) for p in pred_maps])
        [(1, 75, 10, 10), (1, 75, 20, 20), (1, 75, 40, 40)]
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Sequence[int],
                 loss_bbox: OptConfigType = None,
                 **kwargs) -> None:
        kwargs.setdefault('out_channels', tuple(in_channels))
        super().__init__(num_classes, in_channels, **kwargs)
        self.loss_bbox = MODELS.build(loss_bbox) if loss_bbox is not None else None
        _clip_to_image(self.test_cfg)  # a bad value fails at build, not at test time

    def _init_layers(self) -> None:
        self.convs_pred = nn.ModuleList(
            nn.Conv2d(c, self.num_base_priors * self.num_attrib, 1) for c in self.in_channels)

    def forward(self, x: Sequence[Tensor]) -> tuple:
        if len(x) != self.num_levels:
            raise ValueError(f'YOLOReTHead expects {self.num_levels} inputs (strides '
                             f'{tuple(self.featmap_strides)}), got {len(x)}')
        for i, (feat, c) in enumerate(zip(x, self.in_channels)):
            if feat.shape[1] != c:
                raise ValueError(f'YOLOReTHead input {i} has {feat.shape[1]} channels, but '
                                 f'in_channels[{i}]={c}')
        return tuple(conv(feat) for conv, feat in zip(self.convs_pred, x)),

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigDict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        img_meta = img_meta or {}
        pad = img_meta.get('pad_param')  # [top, bottom, left, right]
        shift = results.bboxes.new_tensor([pad[2], pad[0]] * 2 if pad is not None else [0] * 4)
        if rescale:  # undo the letterbox's shift, then mmdet's scaling
            assert img_meta.get('scale_factor') is not None
            results.bboxes = scale_boxes(results.bboxes - shift,
                                         [1 / s for s in img_meta['scale_factor']])
        if _clip_to_image(cfg):
            if img_meta.get('ori_shape') is None or img_meta.get('scale_factor') is None:
                raise ValueError(f'test_cfg.clip_to_image=True needs ori_shape and '
                                 f'scale_factor in img_meta, got keys {sorted(img_meta)}')
            h, w = img_meta['ori_shape'][:2]
            low, high = results.bboxes.new_zeros(4), results.bboxes.new_tensor([w, h] * 2)
            if not rescale:  # in input pixels: where the image lies in the input
                low, high = shift, high * results.bboxes.new_tensor(
                    img_meta['scale_factor']).repeat(2) + shift
            results.bboxes = torch.minimum(torch.maximum(results.bboxes, low), high)
        return super()._bbox_post_process(results, cfg, False, with_nms, img_meta)

    def loss_by_feat(self,
                     pred_maps: Sequence[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        if self.loss_bbox is None:
            return super().loss_by_feat(pred_maps, batch_gt_instances, batch_img_metas,
                                        batch_gt_instances_ignore)
        num_imgs = len(batch_img_metas)
        device = pred_maps[0].device
        featmap_sizes = [p.shape[-2:] for p in pred_maps]
        mlvl_anchors = self.prior_generator.grid_priors(featmap_sizes, device=device)
        responsible_flags = [
            self.responsible_flags(featmap_sizes, gt.bboxes, device) for gt in batch_gt_instances]
        target_maps, neg_maps = self.get_targets(
            [mlvl_anchors] * num_imgs, responsible_flags, batch_gt_instances)
        losses_cls, losses_conf, losses_bbox = multi_apply(
            self._loss_single_iou, pred_maps, target_maps, neg_maps, mlvl_anchors,
            self.featmap_strides)
        return dict(loss_cls=losses_cls, loss_conf=losses_conf, loss_bbox=losses_bbox)

    def _loss_single_iou(self, pred_map: Tensor, target_map: Tensor, neg_map: Tensor,
                         anchors: Tensor, stride: int) -> tuple:
        """Class and objectness losses as YOLOv3; an IoU loss on decoded boxes."""
        num_imgs = len(pred_map)
        pred = pred_map.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.num_attrib)
        pos = target_map[..., 4] > 0
        pos_and_neg = (neg_map.float() + target_map[..., 4]).clamp(0, 1)
        loss_cls = self.loss_cls(pred[..., 5:], target_map[..., 5:],
                                 weight=pos.unsqueeze(-1).float())
        loss_conf = self.loss_conf(pred[..., 4], target_map[..., 4], weight=pos_and_neg)
        if not pos.any():
            return loss_cls, loss_conf, pred[..., :4].sum() * 0
        priors = anchors.expand(num_imgs, -1, -1)[pos]
        pred_xywh = torch.cat([pred[..., :2].sigmoid(), pred[..., 2:4]], -1)[pos]
        pred_boxes = self.bbox_coder.decode(priors, pred_xywh, stride)
        target_boxes = self.bbox_coder.decode(priors, target_map[..., :4][pos], stride)
        return loss_cls, loss_conf, self.loss_bbox(pred_boxes, target_boxes)


def _clip_to_image(cfg) -> bool:
    """``cfg.clip_to_image`` (default ``False``), checked."""
    clip = (cfg or {}).get('clip_to_image', False)
    if not isinstance(clip, bool):
        raise ValueError(f'test_cfg.clip_to_image must be True or False, got {clip!r}')
    return clip
