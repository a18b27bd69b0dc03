"""A deterministic synthetic detection dataset in COCO format, for tests and the CPU demo.

Two to ten shapes of six classes, from small (12 px) to large (40 % of the image), are drawn in random colours on
textured backgrounds (smooth colour noise, stripes or checkers, plus pixel noise). Later
shapes may occlude earlier ones, but every annotated shape stays at least half visible.
Boxes are the shapes' full extent. The images and ``annotations/instances_{split}.json``
are read by mmdet's ``CocoDataset`` and scored by ``CocoMetric`` (pycocotools).

Image ``i`` of a split depends only on ``(seed, split, i)``, so a larger dataset with the
same seed extends a smaller one.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import zlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..utils.cli import add_debug_arg, cli, positive_int

CLASSES = ('circle', 'square', 'triangle', 'star', 'cross', 'ring')
MIN_VISIBLE = 0.5


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Smooth colour noise: a coarse random grid upsampled.
    cells = int(rng.integers(2, 7))
    coarse = rng.uniform(40, 200, (cells, cells, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    period = float(rng.uniform(6, 30))
    if kind == 0:  # stripes at a random angle
        angle = rng.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif kind == 1:  # checkers
        wave = np.sign(np.sin(xx * math.pi / period) * np.sin(yy * math.pi / period))
    else:  # blotches
        wave = cv2.resize(rng.uniform(-1, 1, (h // 8 + 1, w // 8 + 1)).astype(np.float32),
                          (w, h), interpolation=cv2.INTER_LINEAR)
    img += wave[..., None] * rng.uniform(10, 35, 3).astype(np.float32)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return img


def _shape_mask(cls: str, h: int, w: int, size: int, cx: float, cy: float, angle: float
                ) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    r = size / 2
    if cls == 'circle':
        cv2.circle(mask, (round(cx), round(cy)), max(round(r), 1), 1, -1, cv2.LINE_AA)
        return mask

    def poly(points: Sequence[tuple[float, float]]) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        return np.array([(cx + x * c - y * s, cy + x * s + y * c) for x, y in points],
                        np.float32)

    if cls == 'square':
        pts = [poly([(-r * .8, -r * .8), (r * .8, -r * .8), (r * .8, r * .8), (-r * .8, r * .8)])]
    elif cls == 'triangle':
        pts = [poly([(r * math.cos(a), r * math.sin(a))
                     for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])]
    elif cls == 'star':
        pts = [poly([((r if k % 2 == 0 else r * .45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                      (r if k % 2 == 0 else r * .45) * math.sin(-math.pi / 2 + k * math.pi / 5))
                     for k in range(10)])]
    elif cls == 'cross':
        t = r * .32
        pts = [poly([(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r),
                     (-t, t), (-r, t), (-r, -t), (-t, -t)])]
    elif cls == 'ring':
        cv2.circle(mask, (round(cx), round(cy)), max(round(r), 1), 1, -1, cv2.LINE_AA)
        cv2.circle(mask, (round(cx), round(cy)), max(round(r * .55), 1), 0, -1, cv2.LINE_AA)
        return mask
    else:
        raise ValueError(f'unknown class {cls!r}; expected one of {CLASSES}')
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in pts], 1, cv2.LINE_AA)
    return mask


def make_image(seed: int, split: str, index: int, size: int = 320,
               num_objects: tuple[int, int] = (2, 10), min_object: int = 12
               ) -> tuple[np.ndarray, list[dict]]:
    """One image (BGR uint8) and its annotations ``[{bbox: [x, y, w, h], category_id, area,
    visible}]``; ``visible`` is the fraction of the shape left unoccluded (>= 0.5)."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
    h = w = size
    img = _background(rng, h, w)
    objects: list[dict] = []  # with their masks, drawn in order
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        for _attempt in range(10):
            cls_id = int(rng.integers(len(CLASSES)))
            # Log-uniform sizes from min_object to 40 % of the image: about a third of the
            # shapes are COCO-small (< 32 px).
            obj = int(round(math.exp(rng.uniform(math.log(min_object), math.log(0.4 * size)))))
            cx, cy = rng.uniform(obj / 2, w - obj / 2), rng.uniform(obj / 2, h - obj / 2)
            mask = _shape_mask(CLASSES[cls_id], h, w, obj, cx, cy,
                               rng.uniform(0, 2 * math.pi)).astype(bool)
            ys, xs = np.nonzero(mask)
            if len(xs) < 20:
                continue
            win = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            # Every earlier shape must stay at least MIN_VISIBLE visible.
            if all(o['visible_px'] - (o['visible'][win] & mask[win]).sum()
                   >= MIN_VISIBLE * o['area'] for o in objects):
                break
        else:
            continue
        for o in objects:
            o['visible'][win] &= ~mask[win]
            o['visible_px'] = int(o['visible'].sum())
        colour = cv2.cvtColor(np.uint8([[[rng.integers(180), rng.integers(120, 256),
                                          rng.integers(90, 256)]]]), cv2.COLOR_HSV2BGR)[0, 0]
        alpha = mask[win].astype(np.float32)[..., None]
        shade = rng.uniform(0.75, 1.0, alpha.shape).astype(np.float32)
        img[win] = img[win] * (1 - alpha) + alpha * colour.astype(np.float32) * shade
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        area = int(mask.sum())
        objects.append(dict(category_id=cls_id + 1, visible=mask, visible_px=area, area=area,
                            bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, [dict(bbox=o['bbox'], category_id=o['category_id'], area=o['area'],
                      visible=o['visible_px'] / o['area']) for o in objects]


def _write_image(seed: int, split: str, index: int, size: int, path: str,
                 num_objects: tuple[int, int], min_object: int) -> list[dict]:
    img, anns = make_image(seed, split, index, size, num_objects, min_object)
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return [{k: v for k, v in ann.items() if k != 'visible'} for ann in anns]


def generate(out_dir: str | Path, num_train: int = 1500, num_val: int = 200, size: int = 320,
             seed: int = 0, num_objects: tuple[int, int] = (2, 10), min_object: int = 12) -> Path:
    """Write ``{train,val}/*.jpg`` and ``annotations/instances_{train,val}.json``."""
    for name, value in (('num_train', num_train), ('num_val', num_val), ('size', size)):
        if not isinstance(value, int) or value < (64 if name == 'size' else 1):
            raise ValueError(f'{name} must be an int >= {64 if name == "size" else 1}, '
                             f'got {value!r}')
    lo, hi = num_objects
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise ValueError(f'num_objects must be (min, max) ints with 1 <= min <= max, '
                         f'got {num_objects!r}')
    if not isinstance(min_object, int) or not 4 <= min_object < 0.4 * size:
        raise ValueError(f'min_object must be an int in [4, {0.4 * size:g}), got {min_object!r}')
    out = Path(out_dir)
    (out / 'annotations').mkdir(parents=True, exist_ok=True)
    categories = [dict(id=i + 1, name=c) for i, c in enumerate(CLASSES)]
    for split, count in (('train', num_train), ('val', num_val)):
        (out / split).mkdir(exist_ok=True)
        images, annotations = [], []
        jobs = [(seed, split, i, size, str(out / split / f'{i:06d}.jpg'), num_objects, min_object)
                for i in range(count)]
        # Images are independent (each has its own RNG stream): write them in parallel.
        with multiprocessing.get_context('fork').Pool(min(os.cpu_count() or 1, 8)) as pool:
            per_image = pool.starmap(_write_image, jobs, chunksize=16)
        for i, anns in enumerate(per_image):
            images.append(dict(id=i, file_name=f'{i:06d}.jpg', height=size, width=size))
            for ann in anns:
                annotations.append(dict(id=len(annotations) + 1, image_id=i, iscrowd=0, **ann))
        coco = dict(images=images, annotations=annotations, categories=categories,
                    info=dict(description=f'rfcr synthetic shapes, seed {seed}'))
        (out / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))
    return out


def run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='rfcr-make-data', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/synthetic', help='output directory')
    parser.add_argument('--train', type=positive_int, default=1500, help='training images')
    parser.add_argument('--val', type=positive_int, default=200, help='validation images')
    parser.add_argument('--size', type=int, default=320, help='image side in pixels (>= 64)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--objects', type=positive_int, nargs=2, default=(2, 10),
                        metavar=('MIN', 'MAX'), help='shapes per image')
    parser.add_argument('--min-object', type=int, default=12, help='smallest shape, pixels')
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f'--out {args.out!r} is a file, expected a directory')
    out = generate(args.out, args.train, args.val, args.size, args.seed, tuple(args.objects),
                   args.min_object)
    print(f'wrote {args.train} train + {args.val} val images of {len(CLASSES)} classes '
          f'to {out}')


def main(argv: Sequence[str] | None = None) -> None:
    cli('rfcr-make-data', run, argv)


if __name__ == '__main__':
    main()
