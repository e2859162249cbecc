import filecmp
import os.path as osp

import numpy as np
import pytest
from pycocotools.coco import COCO

from mokd_det.datasets import (CLASSES, ShapesConfig, generate_coco_detection,
                               render_detection_image)


def test_detection_is_deterministic_and_seed_dependent(tmp_path):
    cfg = ShapesConfig(img_size=(96, 96))
    a = generate_coco_detection(str(tmp_path / 'a'), 3, 2, seed=1, cfg=cfg,
                                progress=False)
    # rendered in 2 worker processes: the same set
    b = generate_coco_detection(str(tmp_path / 'b'), 3, 2, seed=1, cfg=cfg,
                                progress=False, workers=2)
    c = generate_coco_detection(str(tmp_path / 'c'), 3, 2, seed=2, cfg=cfg,
                                progress=False)
    for split in ('train', 'val'):
        assert filecmp.cmp(a[split], b[split], shallow=False)
        assert not filecmp.cmp(a[split], c[split], shallow=False)
    for name in ('train/000000.png', 'train/000002.png', 'val/000001.png'):
        assert filecmp.cmp(tmp_path / 'a' / name, tmp_path / 'b' / name,
                           shallow=False)


def test_image_depends_only_on_seed_split_index():
    cfg = ShapesConfig(img_size=(64, 64))
    img1, anns1 = render_detection_image(cfg, 0, 'train', 5)
    render_detection_image(cfg, 0, 'train', 4)  # no hidden global state
    img2, anns2 = render_detection_image(cfg, 0, 'train', 5)
    assert np.array_equal(img1, img2) and anns1 == anns2


def test_coco_json_loads_and_is_consistent(shapes_det_root):
    coco = COCO(osp.join(shapes_det_root, 'annotations',
                         'instances_train.json'))
    assert len(coco.getImgIds()) == 8
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
        [c[0] for c in CLASSES[:6]]
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and w > 0 and h > 0
        assert x + w <= img['width'] and y + h <= img['height']
        # area counts visible pixels, so it never exceeds the box
        assert 0 < ann['area'] <= w * h
        # the instance mask: exactly those visible pixels, within the box
        mask = coco.annToMask(ann)
        assert mask.shape == (img['height'], img['width'])
        assert mask.sum() == ann['area']
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y] == \
            [x, y, w, h]
        assert osp.isfile(osp.join(shapes_det_root, 'train',
                                   img['file_name']))


def test_scales_cover_coco_area_ranges_and_occlusion_budget(tmp_path):
    cfg = ShapesConfig(img_size=(256, 256), objects_per_image=(4, 8),
                       min_visible=0.5)
    areas, visible = [], []
    for index in range(40):
        _, anns = render_detection_image(cfg, 0, 'train', index)
        areas += [ann['area'] for ann in anns]
        visible += [ann['visible_fraction'] for ann in anns]
    areas, visible = np.array(areas), np.array(visible)
    assert (visible >= 0.5).all()  # the occlusion budget holds
    assert (visible < 0.95).sum() >= 5  # and objects do occlude each other
    assert (areas < 32**2).any()
    assert ((areas >= 32**2) & (areas < 96**2)).any()
    assert (areas >= 96**2).any()


def test_classification_layout_reads_in_mmpretrain(shapes_cls_root):
    from mmpretrain.datasets import CustomDataset, ImageNet
    classes = open(osp.join(shapes_cls_root, 'meta',
                            'classes.txt')).read().split()
    folder = CustomDataset(data_root=shapes_cls_root, data_prefix='train')
    assert list(folder.CLASSES) == sorted(classes) and len(folder) == 32
    imagenet = ImageNet(data_root=shapes_cls_root, split='val',
                        ann_file='meta/val.txt', data_prefix='val',
                        classes=classes)
    assert len(imagenet) == 8
    with open(osp.join(shapes_cls_root, 'meta', 'val.txt')) as f:
        first_path, first_label = f.readline().split()
    info = imagenet.get_data_info(0)
    assert info['img_path'].endswith(first_path)
    assert info['gt_label'] == int(first_label)
    assert classes[int(first_label)] in first_path


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match='num_classes'):
        ShapesConfig(num_classes=len(CLASSES) + 1)
    with pytest.raises(ValueError, match='scale_mix'):
        ShapesConfig(scale_mix=(0.5, 0.5, 0.5))
