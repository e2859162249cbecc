"""The two task families of the proxy study: where their configs come from
and how a run is pointed at a preset's data, models and schedule.

* ``det``: RetinaNet on the generated COCO-format shapes set; the shipped
  quickstart configs (teacher, scratch student, one leaf per method);
  COCO bbox mAP (pycocotools), reported x100.
* ``cls``: mmpretrain ``ImageClassifier`` ResNets on the generated
  ImageNet-layout set; the shipped ImageNet pair's leaf configs
  (``configs/imagenet/<method>_resnet34-resnet18_100e_in1k.py``, DOT's
  recipe: logit KD at T=1, CE and KD weights 0.5/0.5); top-1 accuracy (%).
"""
import copy
import os.path as osp
from typing import Dict

from mmengine.config import Config

from common import ROOT
from mokd_det.datasets import ShapesConfig
from mokd_det.utils import load_config


class Family:
    """What differs between detection and classification studies."""
    name: str
    metric: str          # key of the last validation's metrics
    scale: float         # shown = metric * scale
    unit: str
    scope: str           # registry scope that builds the models
    leaf: str            # leaf config template of each method

    def base_config(self, role: str) -> Config:
        """The teacher's or the scratch student's config."""
        raise NotImplementedError

    def model_overrides(self, cfg: Config, model: dict, preset: dict,
                        role: str) -> None:
        raise NotImplementedError

    def retarget_data(self, cfg: Config, preset: dict,
                      data_root: str) -> None:
        raise NotImplementedError

    def generate(self, root: str, spec: dict, workers: int) -> None:
        """Writes the preset's generated set under ``root``."""
        raise NotImplementedError

    def adapt_losses(self, losses: dict) -> None:
        """Fits the leaf configs' terms to the preset's pair (in place)."""

    def leaf_configs(self) -> Dict[str, Config]:
        from .runs import LOSSES, OPTIMISERS
        methods = set(LOSSES) | set(OPTIMISERS.values())
        return {m: Config.fromfile(osp.join(ROOT, self.leaf.format(m)))
                for m in sorted(methods)}


class DetFamily(Family):
    name, metric, scale, unit = 'det', 'bbox_mAP', 100.0, 'bbox mAP x100'
    scope = 'mmdet'
    leaf = 'configs/quickstart/{}_r18-r18half_retinanet_3e_shapes.py'
    configs = dict(
        teacher='configs/quickstart/retinanet_r18_fpn_shapes.py',
        student='configs/quickstart/retinanet_r18-half_fpn_shapes.py')

    def base_config(self, role):
        return Config.fromfile(osp.join(ROOT, self.configs[role]))

    def model_overrides(self, cfg, model, preset, role):
        overrides = copy.deepcopy(preset[f'{role}_model'])
        head = dict(overrides.pop('bbox_head', {}),
                    num_classes=ShapesConfig(
                        **preset['data']['shapes']).num_classes)
        _merge(model, dict(overrides, bbox_head=head))

    def generate(self, root, spec, workers):
        from mokd_det.datasets import generate_coco_detection
        generate_coco_detection(root, num_train=spec['num_train'],
                                num_val=spec['num_val'], seed=0,
                                cfg=ShapesConfig(**spec['shapes']),
                                progress=False, workers=workers)

    def retarget_data(self, cfg, preset, data_root):
        classes = tuple(ShapesConfig(**preset['data']['shapes']).class_names)
        for split in ('train', 'val', 'test'):
            loader = cfg[f'{split}_dataloader']
            loader.batch_size = preset['batch']
            loader.num_workers = preset['workers']
            loader.persistent_workers = preset['workers'] > 0
            ds = loader.dataset
            ds.data_root = data_root
            ds.metainfo = dict(classes=classes)
            for t in ds.pipeline:
                if t['type'] == 'Resize':
                    t['scale'] = preset['img_scale']
        for split in ('val', 'test'):
            cfg[f'{split}_evaluator'].ann_file = osp.join(
                data_root, 'annotations', 'instances_val.json')


class ClsFamily(Family):
    name, metric, scale, unit = 'cls', 'accuracy/top1', 1.0, 'top-1 %'
    scope = 'mmpretrain'
    leaf = 'configs/imagenet/{}_resnet34-resnet18_100e_in1k.py'
    base = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'

    def base_config(self, role):
        cfg = load_config(self.base)
        cfg.val_evaluator = cfg.test_evaluator = dict(type='Accuracy',
                                                      topk=(1, ))
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook')
        return cfg

    def model_overrides(self, cfg, model, preset, role):
        spec = preset[f'{role}_model']
        width = spec['base_channels']
        num_classes = ShapesConfig(**preset['data']['shapes']).num_classes
        model.backbone.update(depth=spec.get('depth', 18),
                              base_channels=width,
                              **preset.get('cls_backbone', {}))
        model.head.update(num_classes=num_classes, in_channels=width * 8,
                          topk=(1, ))
        model.data_preprocessor = dict(cfg.data_preprocessor,
                                       num_classes=num_classes)
        if role == 'student' and preset.get('student_batch_augments'):
            # mixed batches (mmpretrain's batch augments, in the student's
            # preprocessor, which the distiller feeds the teacher too) and
            # the soft-label cross-entropy they need
            model.data_preprocessor['batch_augments'] = copy.deepcopy(
                preset['student_batch_augments'])
            model.head.loss = dict(type='CrossEntropyLoss', loss_weight=1.0,
                                   use_soft=True)

    def adapt_losses(self, losses):
        # the shipped R34 -> R18 pair has 512 channels on both sides; the
        # preset's widths differ, so feature terms get the projection neck
        # that the detection pairs' feature terms have
        for term in losses.values():
            if term.get('student') != 'head' and 'neck' not in term:
                term['neck'] = dict(type='SubspaceProjectionNeck')

    def generate(self, root, spec, workers):
        from mokd_det.datasets import generate_imagenet_classification
        generate_imagenet_classification(
            root, num_train=spec['num_train'], num_val=spec['num_val'],
            seed=0, cfg=ShapesConfig(**spec['shapes']), progress=False)

    def retarget_data(self, cfg, preset, data_root):
        classes = ShapesConfig(**preset['data']['shapes']).class_names
        aug = [dict(type='RandomFlip', prob=0.5, direction='horizontal')]
        if preset.get('crop_padding'):
            size = preset['data']['shapes']['img_size'][0]
            aug.insert(0, dict(type='RandomCrop', crop_size=size,
                               padding=preset['crop_padding']))
        train = [dict(type='LoadImageFromFile'), *aug,
                 dict(type='PackInputs')]
        test = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
        for split, pipeline in (('train', train), ('val', test),
                                ('test', test)):
            loader = cfg[f'{split}_dataloader']
            loader.update(batch_size=preset['batch'],
                          num_workers=preset['workers'],
                          persistent_workers=preset['workers'] > 0)
            ann_split = 'train' if split == 'train' else 'val'
            loader.dataset = dict(
                type='ImageNet', data_root=data_root, split='',
                ann_file=f'meta/{ann_split}.txt', data_prefix=ann_split,
                classes=classes, pipeline=pipeline)
        cfg.data_preprocessor.num_classes = len(classes)


def _merge(target: dict, overrides: dict) -> None:
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v


FAMILIES = {f.name: f for f in (DetFamily(), ClsFamily())}
