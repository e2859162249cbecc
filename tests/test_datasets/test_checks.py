"""Start-up checks of COCO-style data (mokd_det.datasets.checks): each bad
data set of the bug report fails (or warns) before training, saying what is
wrong and in which file, in the library and through tools/train.py."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

from mokd_det.datasets import (CLASSES, DatasetCheckError,
                               check_detection_data)
from mokd_det.utils import load_config
from tests.helpers import DET_FAMILIES, REPO_ROOT, retarget_detection_data

NAMES = tuple(c[0] for c in CLASSES[:6])


@pytest.fixture
def data_root(shapes_det_root, tmp_path):
    """A private copy of the generated set (8 train / 4 val images), to
    break."""
    root = str(tmp_path / 'data')
    shutil.copytree(shapes_det_root, root)
    return root


def det_cfg(root, work_dir):
    cfg = load_config(DET_FAMILIES['retinanet'])
    return retarget_detection_data(cfg, root, work_dir)


def edit_json(root, split, fn):
    path = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(path) as f:
        coco = json.load(f)
    fn(coco)
    with open(path, 'w') as f:
        json.dump(coco, f)
    return path


def errors_of(cfg) -> str:
    with pytest.raises(DatasetCheckError) as err:
        check_detection_data(cfg)
    return str(err.value)


def train_cli(cfg, tmp_path):
    config = str(tmp_path / 'cfg.py')
    cfg.dump(config)
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', config, '--work-dir',
         str(tmp_path / 'work')], capture_output=True, text=True,
        cwd=REPO_ROOT, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''),
        timeout=300)
    assert proc.returncode != 0
    assert 'Epoch(train)' not in proc.stdout + proc.stderr
    return proc.stderr


def test_generated_data_passes(data_root, tmp_path):
    assert check_detection_data(det_cfg(data_root, str(tmp_path))) == []


def test_no_images_names_the_file_instead_of_concatenate(data_root,
                                                         tmp_path):
    ann = edit_json(data_root, 'train', lambda c: c.update(images=[]))
    cfg = det_cfg(data_root, str(tmp_path))
    # what mmdet alone says
    from mmdet.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(ValueError, match='need at least one array'):
            DATASETS.build(cfg.train_dataloader.dataset)
    msg = errors_of(cfg)
    assert f'{ann} lists no images' in msg
    assert 'train_dataloader.dataset' in msg
    # through tools/train.py
    err = train_cli(cfg, tmp_path)
    assert 'DatasetCheckError' in err and f'{ann} lists no images' in err
    assert 'need at least one array' not in err


def test_no_boxes(data_root, tmp_path):
    ann = edit_json(data_root, 'train', lambda c: c.update(annotations=[]))
    msg = errors_of(det_cfg(data_root, str(tmp_path)))
    assert f'{ann} has 8 images but no annotations' in msg


def test_no_boxes_of_the_configured_classes(data_root, tmp_path):
    def rename(coco):
        for c in coco['categories']:
            c['name'] = 'other_' + c['name']
    ann = edit_json(data_root, 'train', rename)
    cfg = det_cfg(data_root, str(tmp_path))
    msg = errors_of(cfg)
    assert f'are not categories of {ann}' in msg
    assert 'no training image is left of the 8' in msg
    assert 'none of its' in msg and 'belongs to a configured class' in msg


def test_category_missing_from_categories_warns_with_count(data_root,
                                                           tmp_path):
    counts = {}

    def drop_blue_triangle(coco):
        cat = next(c for c in coco['categories']
                   if c['name'] == 'blue_triangle')
        coco['categories'].remove(cat)
        counts['anns'] = sum(a['category_id'] == cat['id']
                             for a in coco['annotations'])
        counts['all'] = len(coco['annotations'])
    ann = edit_json(data_root, 'train', drop_blue_triangle)
    assert counts['anns'] > 0
    # the config still names the class: an error (labels would shift)
    cfg = det_cfg(data_root, str(tmp_path))
    msg = errors_of(cfg)
    assert "class(es) blue_triangle of the config (metainfo.classes) are " \
        f"not categories of {ann}" in msg
    # the config without it: trains, with a warning that counts the boxes
    for split in ('train', 'val'):
        cfg[f'{split}_dataloader'].dataset.metainfo = dict(
            classes=tuple(n for n in NAMES if n != 'blue_triangle'))
    warnings = check_detection_data(cfg)
    assert len(warnings) == 1
    assert f"{counts['anns']} of the {counts['all']} annotations in {ann} " \
        'have a category_id that its "categories" do not list' in warnings[0]
    assert 'mmdet drops these boxes' in warnings[0]


def test_class_order_must_follow_the_file(data_root, tmp_path):
    cfg = det_cfg(data_root, str(tmp_path))
    cfg.train_dataloader.dataset.metainfo = dict(classes=NAMES[::-1])
    msg = errors_of(cfg)
    assert 'in another order than the categories of' in msg
    assert str(list(NAMES)) in msg and str(list(NAMES[::-1])) in msg


def test_no_metainfo_means_coco_classes(data_root, tmp_path):
    cfg = det_cfg(data_root, str(tmp_path))
    del cfg.train_dataloader.dataset['metainfo']
    msg = errors_of(cfg)
    assert 'the default classes of CocoDataset (no metainfo.classes' in msg
    assert 'person' in msg


def distiller_cfg(data_root, tmp_path, teacher_classes):
    """A DetDistiller config whose teacher config (a file) sets
    ``teacher_classes``; the checkpoint is not needed by the checks."""
    teacher = det_cfg(data_root, str(tmp_path / 'teacher_work'))
    for split in ('train', 'val', 'test'):
        teacher[f'{split}_dataloader'].dataset.metainfo = dict(
            classes=teacher_classes)
    teacher_path = str(tmp_path / 'teacher_cfg.py')
    teacher.dump(teacher_path)
    cfg = det_cfg(data_root, str(tmp_path / 'work'))
    cfg.model = dict(type='DetDistiller', student=cfg.model,
                     teacher=dict(config=teacher_path,
                                  checkpoint=str(tmp_path / 'teacher.pth')),
                     distill_losses=dict())
    return cfg, teacher_path


def test_teacher_classes_must_match(data_root, tmp_path):
    cfg, _ = distiller_cfg(data_root, tmp_path, NAMES)
    assert check_detection_data(cfg) == []
    swapped = (NAMES[1], NAMES[0]) + NAMES[2:]
    cfg, teacher_path = distiller_cfg(data_root, tmp_path, swapped)
    msg = errors_of(cfg)
    assert f'the teacher ({teacher_path}) was configured with the ' \
        f'classes {list(swapped)}' in msg
    assert 'logits of different classes' in msg


def test_zero_byte_missing_and_unreadable_images_are_named(data_root,
                                                           tmp_path):
    with open(osp.join(data_root, 'annotations',
                       'instances_train.json')) as f:
        files = [im['file_name'] for im in json.load(f)['images']]
    empty = osp.join(data_root, 'train', files[2])
    open(empty, 'w').close()  # truncated to 0 bytes
    missing = osp.join(data_root, 'train', files[5])
    os.remove(missing)
    cfg = det_cfg(data_root, str(tmp_path))
    msg = errors_of(cfg)
    assert '2 of the 8 images of' in msg
    assert f'{empty} (0 bytes)' in msg
    assert f'{missing} (No such file or directory)' in msg
    # through tools/train.py: at start, naming the file
    err = train_cli(cfg, tmp_path)
    assert f'{empty} (0 bytes)' in err


def test_val_images_are_checked_too(data_root, tmp_path):
    with open(osp.join(data_root, 'annotations', 'instances_val.json')) as f:
        name = json.load(f)['images'][0]['file_name']
    path = osp.join(data_root, 'val', name)
    open(path, 'w').close()
    msg = errors_of(det_cfg(data_root, str(tmp_path)))
    assert 'val_dataloader.dataset' in msg and f'{path} (0 bytes)' in msg


def test_other_datasets_are_skipped(tmp_path):
    from mmengine.config import Config
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(
            type='ImageNet', ann_file='meta/train.txt', data_prefix='train')),
        val_dataloader=None))
    assert check_detection_data(cfg) == []
