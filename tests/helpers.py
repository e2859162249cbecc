"""Helpers for the end-to-end tests: small, fast variants of real configs."""
import os
import os.path as osp
import subprocess
import sys
from typing import Optional

from mmengine.config import Config

from mokd_det.datasets import CLASSES

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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
            elif t['type'] in ('RandomChoice', 'RandomChoiceResize',
                               'RandomResize'):  # DETRs' multi-scale
                t = dict(type='Resize', scale=img_scale, keep_ratio=True)
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


# stock mmdet configs of each detector family the distiller supports
DET_FAMILIES = {
    'retinanet': 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
    'fcos': 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    'atss': 'mmdet::atss/atss_r50_fpn_1x_coco.py',
    'gfl': 'mmdet::gfl/gfl_r50_fpn_1x_coco.py',
    'faster_rcnn': 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
}


def small_detector(model: dict, width: int = 64, num_classes: int = 6):
    """Shrinks a stock detector dict in place (ResNet-18, ``width``-channel
    FPN and heads, from scratch) so that a CPU step takes a fraction of a
    second; the architecture family is unchanged."""
    model.backbone.update(depth=18, init_cfg=None, frozen_stages=-1,
                          norm_eval=False)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=width)
    if 'bbox_head' in model:
        model.bbox_head.update(num_classes=num_classes, in_channels=width,
                               feat_channels=width, stacked_convs=1)
    if 'rpn_head' in model:
        model.rpn_head.update(in_channels=width, feat_channels=width)
        roi = model.roi_head
        roi.bbox_roi_extractor.out_channels = width
        roi.bbox_head.update(in_channels=width, fc_out_channels=128,
                             num_classes=num_classes)
        model.train_cfg.rcnn.sampler.num = 64
        model.train_cfg.rpn.sampler.num = 64
        model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    model.test_cfg.get('rcnn', model.test_cfg).score_thr = 0.0
    return model


def retarget_classification_data(cfg: Config, data_root: str, work_dir: str,
                                 batch_size: int = 8,
                                 scale: Optional[int] = None) -> Config:
    """Points an mmpretrain ImageNet config at a generated shapes set
    (32 px images, resized to ``scale`` px when given), single-process
    loading."""
    classes = [c[0] for c in CLASSES[:6]]
    resize = [dict(type='Resize', scale=(scale, scale))] if scale else []
    train = [dict(type='LoadImageFromFile'), *resize,
             dict(type='RandomFlip', prob=0.5, direction='horizontal'),
             dict(type='PackInputs')]
    test = [dict(type='LoadImageFromFile'), *resize, dict(type='PackInputs')]
    for split, pipeline in (('train', train), ('val', test), ('test', test)):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
        ann_split = 'train' if split == 'train' else 'val'
        loader.dataset = dict(
            type='ImageNet', data_root=data_root, split='',
            ann_file=f'meta/{ann_split}.txt', data_prefix=ann_split,
            classes=classes, pipeline=pipeline)
    cfg.data_preprocessor.num_classes = len(classes)
    cfg.work_dir = work_dir
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    return cfg


def run_tool(*args, env=None) -> str:
    """Runs ``python <args>`` (a tools/ script) as a user would; returns its
    output, failing the test with the output's tail if it fails. ``env``:
    variables added to this process's environment."""
    proc = subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, env=None if env is None else
                          dict(os.environ, **env))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def small_cascade(model: dict, width: int = 64, num_classes: int = 6):
    """Cascade R-CNN shrunk as :func:`small_detector` (three box stages)."""
    model.backbone.update(depth=18, init_cfg=None)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, fc_out_channels=128,
                    num_classes=num_classes)
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    return model


def small_dino(model: dict, num_queries: int = 20, num_classes: int = 6,
               ffn: int = 256, width: int = 256):
    """DINO shrunk to a ResNet-18, one encoder and one decoder layer with
    ``ffn``-wide feed-forwards, ``num_queries`` queries and 10 denoising
    queries; the family (two-stage query selection, box refinement,
    denoising) unchanged. The embedding stays 256 wide: DINO's decoder
    encodes reference points with 128 sine features per coordinate
    whatever the width."""
    model.backbone.update(depth=18, init_cfg=None, frozen_stages=-1,
                          norm_eval=False,
                          norm_cfg=dict(type='BN', requires_grad=True))
    model.neck.update(in_channels=[128, 256, 512], out_channels=width,
                      norm_cfg=dict(type='GN', num_groups=8))
    for part in (model.encoder, model.decoder):
        part.num_layers = 1
        for key in ('self_attn_cfg', 'cross_attn_cfg'):
            if key in part.layer_cfg:
                part.layer_cfg[key].update(embed_dims=width, num_heads=4)
        part.layer_cfg.ffn_cfg.update(embed_dims=width,
                                      feedforward_channels=ffn)
    model.positional_encoding.num_feats = width // 2
    model.num_queries = num_queries
    model.bbox_head.update(num_classes=num_classes, embed_dims=width)
    model.dn_cfg.group_cfg.num_dn_queries = 10
    model.test_cfg.max_per_img = num_queries
    return model


def small_mask_rcnn(width: int = 64):
    """Mask R-CNN shrunk as :func:`small_detector`, mask branch included."""
    from mokd_det.utils import load_config
    model = small_detector(
        load_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model,
        width=width)
    model.roi_head.mask_roi_extractor.out_channels = width
    model.roi_head.mask_head.update(in_channels=width,
                                    conv_out_channels=width, num_classes=6)
    return model


def det_samples(size: int = 128, masks: bool = False, seed: int = 0):
    """Two random images with two boxes each (and their box masks), as a
    data loader gives them: ``(uint8 images, data_samples)``."""
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[8., 8., 70., 90.], [40., 30., 120., 100.]])
    images, samples = [], []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=boxes.clone(),
                                           labels=torch.tensor([2, 4]))
        if masks:
            bitmaps = torch.zeros(2, size, size, dtype=torch.uint8)
            for bitmap, (x0, y0, x1, y1) in zip(bitmaps, boxes.int()):
                bitmap[y0:y1, x0:x1] = 1
            sample.gt_instances.masks = BitmapMasks(bitmaps.numpy(), size,
                                                    size)
        images.append(torch.randint(0, 255, (3, size, size), generator=gen,
                                    dtype=torch.uint8))
        samples.append(sample)
    return images, samples


def det_batch(model, **kwargs):
    """:func:`det_samples` through ``model``'s data preprocessor, for
    calling ``model.loss`` directly: ``(inputs, data_samples)``."""
    images, samples = det_samples(**kwargs)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training=True)
    return data['inputs'], data['data_samples']


def save_random_checkpoint(model_cfg, path: str, scope: str = 'mmdet',
                           seed: Optional[int] = None) -> str:
    """Builds ``model_cfg`` in ``scope`` ('mmdet' or 'mmpretrain'),
    initialises it as the Runner does (``init_weights``: DINO allocates its
    level embeddings uninitialised, NaN matching costs without it) and
    saves its weights as a checkpoint at ``path``; returns ``path``.
    ``seed`` seeds torch first."""
    import copy

    import torch
    from mmengine.registry import DefaultScope
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        from mmdet.registry import MODELS
    if seed is not None:
        torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)
    return path
