"""``rfcr-convert``: Keras HDF5 weights -> PyTorch checkpoints, read with h5py (no TensorFlow).

Examples::

    # the authors' YOLO-ReT-M0.75 VOC checkpoint -> an mmdet checkpoint (state_dict + classes)
    rfcr-convert official-yoloret mobilenetv2x75_320_voc.h5 yoloret_m075_voc.pth \\
        --config configs/official/yoloret_mobilenetv2-0.75_rfcr_official-320_voc0712.py
    # the authors' YOLO-ReT-EB3 COCO checkpoints likewise (the backbone is read from the file)
    rfcr-convert official-yoloret efficientnetb3_416_coco.h5 yoloret_eb3_416_coco.pth \\
        --config configs/official/yoloret_efficientnet-b3_rfcr_official-416_coco.py
    # Keras applications' ImageNet MobileNetV2 (any width) -> a backbone checkpoint
    rfcr-convert keras-mobilenetv2 \\
        mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5 \\
        checkpoints/mobilenet_v2_x0.75_imagenet.pth

Every layer's kind and shape is checked, and every weight of the file (rfcr.convert.keras_h5:
groups and datasets present, float values of the right rank, no NaN or inf); on any error
one line names the layer, the weight and what is wrong, and DST is not written (the
checkpoint goes to a temporary file, then is renamed), nor an existing DST touched.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from mmengine.config import Config

from rfcr.utils.cli import CfgOptions, add_debug_arg, cli


def dataset_meta(cfg: Config) -> dict:
    """The test dataset's meta (classes, palette): its class's ``METAINFO``, updated by the
    config's ``metainfo``; what mmdet's Runner and ``DetInferencer`` read from a checkpoint."""
    from mmdet.registry import DATASETS
    if 'test_dataloader' not in cfg:
        raise ValueError(f'config {cfg.filename} defines no test_dataloader, whose dataset '
                         'gives the classes')
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # dataset wrappers (RepeatDataset, ClassBalancedDataset)
        dataset = dataset.dataset
    dataset_type = DATASETS.get(dataset.type)
    meta = dict(getattr(dataset_type, 'METAINFO', {}))
    meta.update(dataset.get('metainfo') or {})
    return meta


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='rfcr-convert', description='Convert Keras HDF5 weights (read with h5py) to '
        'PyTorch checkpoints.')
    commands = parser.add_subparsers(dest='command', required=True)
    yoloret = commands.add_parser(
        'official-yoloret', help="the authors' YOLO-ReT checkpoint (prakharg24/yoloret: "
        'MobileNetV2 or EfficientNet-B3, read from the file) -> an mmdet checkpoint for --config')
    mobilenet = commands.add_parser(
        'keras-mobilenetv2', help="Keras applications' MobileNetV2 ImageNet weights (any "
        "alpha) -> a checkpoint for init_cfg=dict(type='Pretrained', checkpoint=DST)")
    for sub in (yoloret, mobilenet):
        sub.add_argument('src', help='Keras HDF5 file (weights-only, or a model saved whole)')
        sub.add_argument('dst', help='the checkpoint to write (.pth)')
        sub.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                         help='override settings of --config, key=value pairs')
        add_debug_arg(sub)
    yoloret.add_argument('--config', required=True,
                         help='the official-graph config, e.g. configs/official/*.py')
    mobilenet.add_argument('--config', help="a detector config: also check that its backbone "
                           "takes the weights (width, Keras' numerics)")
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> dict:
    """Convert as the command line says, write DST, and return the checkpoint."""
    args = parse_args(argv)
    start = time.perf_counter()
    from rfcr.convert import (check_fits_backbone, convert_keras_mobilenet_v2,
                              convert_official_yoloret, save_checkpoint)
    from rfcr.utils.config import build_model, load_config
    cfg = load_config(args.config, args.cfg_options) if args.config else None
    if args.command == 'official-yoloret':
        checkpoint = convert_official_yoloret(args.src, build_model(cfg), dataset_meta(cfg))
    else:
        checkpoint = convert_keras_mobilenet_v2(args.src)
        if cfg is not None:
            check_fits_backbone(checkpoint, build_model(cfg).backbone,
                                f'the backbone of {args.config}')
    save_checkpoint(checkpoint, args.dst)
    print(f'{args.src} -> {args.dst}: {len(checkpoint["state_dict"])} tensors, '
          f'{checkpoint["meta"]["architecture"]} ({time.perf_counter() - start:.1f} s)')
    return checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-convert', run, argv)


if __name__ == '__main__':
    main()
