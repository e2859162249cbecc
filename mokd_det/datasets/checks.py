"""Start-up checks of COCO-style detection data, run by ``tools/train.py``.

Bad data otherwise fails late or not at all:

* an annotation file with no images, or with no boxes of the configured
  classes, stops in mmdet's dataset with "need at least one array to
  concatenate", which names neither the file nor the problem;
* annotations whose ``category_id`` the file's ``categories`` do not list are
  dropped silently, and a configured class missing from ``categories``
  shifts the labels of the classes after it (mmdet numbers labels in the
  order of the file's categories, keeping those whose name is configured);
  a distiller whose teacher was trained with other classes, or another
  order, distils the wrong logits;
* a zero-byte, unreadable or missing image stops the run when its batch is
  loaded, with a cv2 error that does not name the file.

:func:`check_detection_data` checks the train and val datasets of a config
that have an ``ann_file`` and a ``data_prefix['img']`` (mmdet's
``CocoDataset`` family; others are skipped), reading each annotation file
once and ``os.stat``-ing the images the dataset will load. Problems are
collected and raised together as :class:`DatasetCheckError`; suspicious
data that still trains is logged as a warning.
"""
import json
import logging
import os
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

#: files named in full in a message; the rest are counted
MAX_LISTED = 10


class DatasetCheckError(ValueError):
    """The data of a config cannot train as configured; the message lists
    every problem found, with the files and counts."""


def _listed(items: Sequence, limit: int = MAX_LISTED) -> str:
    items = list(items)
    shown = ', '.join(str(i) for i in items[:limit])
    more = f' ... ({len(items)} in all)' if len(items) > limit else ''
    return shown + more


def _is_remote(path: Optional[str]) -> bool:
    return bool(path) and '://' in str(path)


def _datasets(dataset: dict, where: str) -> List[Tuple[str, dict]]:
    """The leaf dataset configs of ``dataset`` (through ``RepeatDataset``,
    ``ClassBalancedDataset``, ``ConcatDataset`` and the like), each with
    where it sits in the config."""
    if dataset is None:
        return []
    if 'datasets' in dataset:
        return [leaf for i, d in enumerate(dataset['datasets'])
                for leaf in _datasets(d, f'{where}.datasets[{i}]')]
    if 'dataset' in dataset:
        return _datasets(dataset['dataset'], f'{where}.dataset')
    return [(where, dataset)]


def _is_coco_style(dataset: dict) -> bool:
    prefix = dataset.get('data_prefix')
    return bool(dataset.get('ann_file')) and isinstance(prefix, dict) and \
        prefix.get('img') is not None


def _join(root: Optional[str], path: str) -> str:
    """mmengine's ``BaseDataset`` joins ``data_root`` to relative paths."""
    return path if osp.isabs(path) or not root else osp.join(root, path)


def _default_classes(dataset: dict) -> Optional[Tuple[str, ...]]:
    """The classes a dataset type uses without ``metainfo`` (mmdet's
    ``CocoDataset``: COCO's 80)."""
    try:
        from mmdet.registry import DATASETS
        cls = dataset.get('type')
        cls = cls if isinstance(cls, type) else DATASETS.get(cls)
    except Exception:  # noqa: BLE001  unknown type: the Runner will say
        return None
    classes = getattr(cls, 'METAINFO', {}).get('classes')
    return tuple(classes) if classes is not None else None


def dataset_classes(dataset: dict) -> Tuple[Optional[Tuple[str, ...]], bool]:
    """The class names a dataset config trains with, and whether the config
    sets them (``metainfo.classes``) rather than inheriting the dataset
    type's default."""
    metainfo = dataset.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes']), True
    return _default_classes(dataset), False


def _read_json(path: str, cache: Dict[str, dict]) -> dict:
    if path not in cache:
        with open(path) as f:
            cache[path] = json.load(f)
    return cache[path]


def _kept_images(coco: dict, cat_ids: set, dataset: dict,
                 train: bool) -> List[dict]:
    """The images mmdet's ``CocoDataset`` keeps: in training
    (``test_mode=False``), with ``filter_cfg.filter_empty_gt`` those with an
    annotation of a configured class, and with ``min_size`` those at least
    that large."""
    images = coco.get('images') or []
    filter_cfg = dataset.get('filter_cfg') or {}
    if dataset.get('test_mode', not train) or not filter_cfg:
        return images
    if filter_cfg.get('filter_empty_gt', False):
        with_ann = {a.get('image_id') for a in coco.get('annotations') or []
                    if a.get('category_id') in cat_ids}
        images = [im for im in images if im.get('id') in with_ann]
    min_size = filter_cfg.get('min_size', 0)
    return [im for im in images
            if min(im.get('width', 0), im.get('height', 0)) >= min_size]


def _usable_boxes(coco: dict, cat_ids: set) -> int:
    """Annotations that become training boxes in mmdet's ``CocoDataset``:
    a configured class, not ignored, non-degenerate, inside the image."""
    sizes = {im.get('id'): (im.get('width', 0), im.get('height', 0))
             for im in coco.get('images') or []}
    n = 0
    for ann in coco.get('annotations') or []:
        if ann.get('ignore', False) or ann.get('category_id') not in cat_ids:
            continue
        x, y, w, h = ann['bbox']
        width, height = sizes.get(ann.get('image_id'), (0, 0))
        inside = max(0, min(x + w, width) - max(x, 0)) * \
            max(0, min(y + h, height) - max(y, 0))
        if inside > 0 and ann.get('area', w * h) > 0 and w >= 1 and h >= 1:
            n += 1
    return n


def _check_categories(coco: dict, dataset: dict, where: str, ann_file: str,
                      errors: List[str], warnings: List[str]) -> set:
    """Category ids used but not listed (a warning) and the configured
    class names against the file's categories (errors); returns the ids of
    the configured classes (every listed id without ``metainfo``)."""
    anns = coco.get('annotations') or []
    categories = coco.get('categories') or []
    listed_ids = {c.get('id') for c in categories}
    unlisted = Counter(a.get('category_id') for a in anns
                       if a.get('category_id') not in listed_ids)
    if unlisted:
        warnings.append(
            f'{where}: {sum(unlisted.values())} of the {len(anns)} '
            f'annotations in {ann_file} have a category_id that its '
            f'"categories" do not list (category ids: '
            f'{_listed(sorted(unlisted, key=str))}); mmdet drops these '
            'boxes, and the labels of the listed classes are numbered '
            'without them. Add the missing categories to the file (with '
            'their names), or remove those annotations.')
    classes, configured = dataset_classes(dataset)
    if classes is None:
        return listed_ids
    names = [c.get('name') for c in categories]
    source = 'metainfo.classes' if configured else (
        f'the default classes of {dataset.get("type")} (no '
        'metainfo.classes in the config)')
    missing = [c for c in classes if c not in names]
    if missing:
        errors.append(
            f'{where}: the class(es) {_listed(missing)} of the config '
            f'({source}) are not categories of {ann_file} (its '
            f'categories: {_listed(names, 100)}); mmdet would leave them '
            'out and shift the labels of the classes after them. Set '
            f'{where}.metainfo.classes to the names in the file, in its '
            'order.')
    else:
        duplicated = sorted(n for n, k in Counter(names).items()
                            if k > 1 and n in classes)
        in_file_order = [n for n in names if n in classes]
        if duplicated:
            errors.append(
                f'{where}: {ann_file} lists the categories '
                f'{_listed(duplicated)} more than once; give each '
                'category one entry.')
        elif in_file_order != list(classes):
            errors.append(
                f'{where}: the config lists its classes ({source}) in '
                f'another order than the categories of {ann_file}: '
                f'config {list(classes)}, file {in_file_order}. mmdet '
                'numbers labels in the file\'s order, so every label '
                'would be named (and distilled) as another class; list '
                'metainfo.classes in the file\'s order.')
    return {c.get('id') for c in categories if c.get('name') in classes}


def _check_boxes(coco: dict, cat_ids: set, dataset: dict, where: str,
                 ann_file: str, train: bool, errors: List[str],
                 warnings: List[str]) -> List[dict]:
    """Images, annotations and usable boxes of the configured classes;
    returns the images mmdet keeps."""
    images = coco.get('images') or []
    anns = coco.get('annotations') or []
    kept = _kept_images(coco, cat_ids, dataset, train)
    if not images:
        errors.append(f'{where}: {ann_file} lists no images ("images" is '
                      'empty); point ann_file at the annotations of your '
                      'images')
    elif not anns:
        errors.append(f'{where}: {ann_file} has {len(images)} images but no '
                      'annotations (no boxes to train on or evaluate)')
    elif not kept:
        filter_cfg = dataset.get('filter_cfg') or {}
        in_classes = sum(a.get('category_id') in cat_ids for a in anns)
        why = (f'none of its {len(anns)} annotations belongs to a configured '
               'class' if not in_classes else
               f'every image is smaller than filter_cfg.min_size='
               f'{filter_cfg.get("min_size")}')
        errors.append(f'{where}: no training image is left of the '
                      f'{len(images)} in {ann_file}: {why}')
    elif _usable_boxes(coco, cat_ids) == 0:
        (errors if train else warnings).append(
            f'{where}: none of the {len(anns)} annotations in {ann_file} is '
            'a usable box (all ignored, degenerate, outside their image or '
            'of other classes)')
    return kept


def _check_image_files(kept: List[dict], img_dir: str, where: str,
                       ann_file: str, errors: List[str]) -> None:
    """Every kept image's file exists, is a non-empty readable file."""
    bad = []
    for im in kept:
        path = osp.join(img_dir, im.get('file_name', ''))
        try:
            st = os.stat(path)
        except OSError as e:
            bad.append(f'{path} ({e.strerror or "not found"})')
            continue
        if not osp.isfile(path):
            bad.append(f'{path} (not a file)')
        elif st.st_size == 0:
            bad.append(f'{path} (0 bytes)')
        elif not os.access(path, os.R_OK):
            bad.append(f'{path} (not readable)')
    if bad:
        errors.append(
            f'{where}: {len(bad)} of the {len(kept)} images of {ann_file} '
            f'cannot be loaded: {_listed(bad)}. Restore or regenerate them, '
            'or remove them from the annotation file.')


def check_coco_dataset(dataset: dict, where: str, train: bool,
                       cache: Optional[Dict[str, dict]] = None
                       ) -> Tuple[List[str], List[str]]:
    """Checks one COCO-style dataset config: its annotation file, its
    categories against the configured classes, its boxes and its image
    files.

    Args:
        dataset: The dataset config (``ann_file``, ``data_prefix.img``,
            ``data_root``, ``metainfo``, ``filter_cfg``).
        where: Where it is in the config, for the messages (e.g.
            ``'train_dataloader.dataset'``).
        train: Whether it is a training set (mmdet filters its images).
        cache: Annotation files already read, by path (filled in).

    Returns:
        The errors and the warnings found, as messages.
    """
    cache = {} if cache is None else cache
    errors: List[str] = []
    warnings: List[str] = []
    root = dataset.get('data_root')
    ann_file = _join(root, dataset['ann_file'])
    img_dir = _join(root, dataset['data_prefix']['img'])
    if _is_remote(ann_file) or _is_remote(img_dir):
        return errors, warnings  # a storage backend: read by the Runner
    if not osp.isfile(ann_file):
        errors.append(
            f'{where}: annotation file {ann_file} not found (data_root '
            f'{root!r} + ann_file {dataset["ann_file"]!r}); fix the paths '
            'or generate/download the data first')
        return errors, warnings
    try:
        coco = _read_json(ann_file, cache)
    except (OSError, ValueError) as e:
        errors.append(f'{where}: annotation file {ann_file} is not '
                      f'readable JSON ({e})')
        return errors, warnings
    if not isinstance(coco, dict) or 'images' not in coco:
        errors.append(f'{where}: {ann_file} is not a COCO annotation file '
                      '(no "images" list)')
        return errors, warnings
    if any('bbox' not in a for a in coco.get('annotations') or []):
        return errors, warnings  # not detection boxes (e.g. panoptic)
    cat_ids = _check_categories(coco, dataset, where, ann_file, errors,
                                warnings)
    kept = _check_boxes(coco, cat_ids, dataset, where, ann_file, train,
                        errors, warnings)
    _check_image_files(kept, img_dir, where, ann_file, errors)
    return errors, warnings


def teacher_classes(model: dict) -> Tuple[Optional[Tuple[str, ...]], str]:
    """The classes the teacher of a ``DetDistiller`` config was trained
    with: its config's train (else val) dataset ``metainfo.classes``, with
    ``cfg_options`` merged, as :func:`mokd_det.distillers.teacher.
    teacher_model_cfg` resolves it. ``(None, ...)`` for an inline teacher
    model or a config that sets no classes."""
    from ..utils.config import load_config
    teacher = model.get('teacher') or {}
    if not teacher.get('config'):
        return None, ''
    cfg = load_config(teacher['config'])
    if teacher.get('cfg_options'):
        cfg.merge_from_dict(teacher['cfg_options'])
    for split in ('train', 'val'):
        loader = cfg.get(f'{split}_dataloader') or {}
        for _, leaf in _datasets(loader.get('dataset'), split):
            metainfo = leaf.get('metainfo') or {}
            if metainfo.get('classes') is not None:
                return tuple(metainfo['classes']), teacher['config']
    return None, teacher['config']


def check_detection_data(cfg: Config,
                         splits: Sequence[str] = ('train', 'val'),
                         log: bool = True) -> List[str]:
    """Checks the COCO-style datasets of ``cfg``'s train and val
    dataloaders, and the teacher's classes of a ``DetDistiller``.

    Args:
        cfg: The full config (dataloaders, ``model``).
        splits: Which dataloaders (``'<split>_dataloader'``).
        log: Log the warnings (tools/train.py: on rank 0 only).

    Returns:
        The warnings (data that trains but probably not as intended).

    Raises:
        DatasetCheckError: Every problem found: no images, no boxes of the
            configured classes, configured classes missing from the file
            or in another order, a teacher trained with other classes, or
            images that are missing, empty or unreadable (named).
    """
    errors: List[str] = []
    warnings: List[str] = []
    cache: Dict[str, dict] = {}
    train_classes = None
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for where, dataset in _datasets(loader.get('dataset'),
                                        f'{split}_dataloader.dataset'):
            if not isinstance(dataset, (dict, ConfigDict)) or \
                    not _is_coco_style(dataset):
                continue
            e, w = check_coco_dataset(dataset, where, split == 'train',
                                      cache)
            errors += e
            warnings += w
            classes, configured = dataset_classes(dataset)
            if split == 'train' and configured and train_classes is None:
                train_classes = classes

    model = cfg.get('model') or {}
    if model.get('type') == 'DetDistiller' and train_classes is not None:
        try:
            t_classes, t_config = teacher_classes(model)
        except FileNotFoundError:
            t_classes = None  # the distiller's build says so, clearly
        if t_classes is not None and t_classes != train_classes:
            errors.append(
                f'the teacher ({t_config}) was configured with the classes '
                f'{list(t_classes)}, the student\'s data with '
                f'{list(train_classes)}: the distillation would match the '
                'logits of different classes. Use the same class names in '
                'the same order in both configs (metainfo.classes).')

    if log:
        for w in warnings:
            print_log(w, logger='current', level=logging.WARNING)
    if errors:
        raise DatasetCheckError(
            'the data of this config cannot train as configured:\n  - '
            + '\n  - '.join(errors)
            + '\n(tools/train.py --skip-data-check skips these checks)')
    return warnings
