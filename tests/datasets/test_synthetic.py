import json

import numpy as np
import pytest

from rfcr.datasets.synthetic import CLASSES, generate, main, make_image


def test_deterministic_and_extensible(tmp_path):
    a = generate(tmp_path / 'a', num_train=6, num_val=2, seed=3)
    b = generate(tmp_path / 'b', num_train=9, num_val=2, seed=3)  # a larger set, same seed
    c = generate(tmp_path / 'c', num_train=6, num_val=2, seed=4)
    for i in range(6):
        assert (a / 'train' / f'{i:06d}.jpg').read_bytes() == (b / 'train' / f'{i:06d}.jpg').read_bytes()
    assert (a / 'train/000000.jpg').read_bytes() != (c / 'train/000000.jpg').read_bytes()
    ann_a = json.loads((a / 'annotations/instances_train.json').read_text())
    ann_b = json.loads((b / 'annotations/instances_train.json').read_text())
    assert ann_b['annotations'][:len(ann_a['annotations'])] == ann_a['annotations']


def test_annotations_are_valid_coco(tmp_path):
    out = generate(tmp_path, num_train=12, num_val=3, size=160, seed=0)
    coco = json.loads((out / 'annotations/instances_train.json').read_text())
    assert [c['name'] for c in coco['categories']] == list(CLASSES)
    assert len(coco['images']) == 12
    assert all(im['width'] == im['height'] == 160 for im in coco['images'])
    ids = {im['id'] for im in coco['images']}
    sizes = []
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert ann['image_id'] in ids and 1 <= ann['category_id'] <= len(CLASSES)
        assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 160 and w > 0 and h > 0
        assert 0 < ann['area'] <= w * h and ann['iscrowd'] == 0
        sizes.append((w * h) ** 0.5)
    assert min(sizes) < 32  # small objects included
    assert len(coco['annotations']) >= 2 * 12  # at least two shapes per image


def test_shapes_occlude_but_stay_half_visible():
    visible = []
    for i in range(10):
        img, anns = make_image(0, 'train', i, 128, (6, 10))
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and len(anns) >= 1
        visible += [ann['visible'] for ann in anns]
    assert min(visible) >= 0.5  # every annotated shape at least half visible
    assert sum(v < 1 for v in visible) >= 5  # and crowded images do occlude


def test_loads_with_mmdet_coco_dataset(tmp_path):
    from mmdet.datasets import CocoDataset
    out = generate(tmp_path, num_train=4, num_val=2, seed=0)
    ds = CocoDataset(data_root=str(out) + '/', ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='LoadAnnotations', with_bbox=True)])
    sample = ds[0]
    assert sample['img'].shape == (320, 320, 3)
    assert len(sample['gt_bboxes']) == len(sample['gt_bboxes_labels']) > 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_train=0), r'num_train must be an int >= 1, got 0'),
    (dict(size=32), r'size must be an int >= 64, got 32'),
    (dict(num_objects=(3, 2)), r'num_objects must be \(min, max\) ints .* got \(3, 2\)'),
    (dict(min_object=200), r'min_object must be an int in \[4, 128\), got 200'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tmp_path, **kwargs)


def test_cli(tmp_path, capsys):
    main(['--out', str(tmp_path / 'd'), '--train', '3', '--val', '1', '--size', '96',
          '--seed', '7', '--objects', '1', '3', '--min-object', '8'])
    assert 'wrote 3 train + 1 val images' in capsys.readouterr().out
    coco = json.loads((tmp_path / 'd/annotations/instances_val.json').read_text())
    assert len(coco['images']) == 1 and coco['images'][0]['width'] == 96
