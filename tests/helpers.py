"""Helpers for the end-to-end tests: small, fast variants of real configs."""
import os.path as osp

from mmengine.config import Config

from mokd_det.datasets import CLASSES


def retarget_detection_data(cfg: Config, data_root: str, work_dir: str,
                            batch_size: int = 4, img_scale=(128, 128),
                            flip: bool = True) -> Config:
    """Points every dataloader and evaluator of a detection config at a
    generated shapes set, single-process loading, small images."""
    classes = tuple(c[0] for c in CLASSES[:6])
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader is None:
            continue
        ann_split = 'train' if split == 'train' else 'val'
        loader.batch_size = batch_size
        loader.num_workers = 0
        loader.persistent_workers = False
        ds = loader.dataset
        ds.data_root = data_root
        ds.metainfo = dict(classes=classes)
        ds.ann_file = f'annotations/instances_{ann_split}.json'
        ds.data_prefix = dict(img=f'{ann_split}/')
        pipeline = []
        for t in ds.pipeline:
            if t['type'] == 'Resize':
                t = dict(t, scale=img_scale)
            if t['type'] == 'RandomFlip' and not flip:
                continue
            pipeline.append(t)
        ds.pipeline = pipeline
    for split in ('val', 'test'):
        if cfg.get(f'{split}_evaluator') is not None:
            cfg[f'{split}_evaluator'].ann_file = osp.join(
                data_root, 'annotations', 'instances_val.json')
    cfg.work_dir = work_dir
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook')
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    return cfg
