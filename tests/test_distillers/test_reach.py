"""Reach: every detector family a user brings distils under every method.

One training iteration per (pair, method) through ``train_step`` and the
method's hooks, as the Runner's loop runs them, on small versions of the
stock mmdet / mmpretrain configs: TOOD, PAA, Cascade R-CNN (per-stage RoI
logits and the RPN), RetinaNet with a Swin student and a ResNet teacher,
DINO (query KD), RTMDet, Mask R-CNN (generated box masks), and an
mmpretrain ResNet pair. Each pair has the logit term its head gives (MKD
learns its temperatures) and a feature term through the projection neck.
The methods: vanilla KD, DOT, MoKD exact (on the parameters; at the
shared features on four of the pairs) and amortized, MKD, all with SGD;
the pairs whose detectors ship AdamW (DINO, RTMDet) also run KD and DOT's
Adam analogue with AdamW.

``pytest tests/test_distillers/test_reach.py -v`` prints the table.
"""
import copy

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from mokd_det.distillers import ClsDistiller, DetDistiller
from mokd_det.utils import load_config
from tests.helpers import (det_samples, save_random_checkpoint,
                           small_cascade, small_detector, small_dino,
                           small_mask_rcnn)
from tests.test_optim.harness import make_runner, train


def _stock(name):
    return load_config(f'mmdet::{name}').model


def _swin_retinanet(width):
    """RetinaNet with a 32-wide, one-block-a-stage Swin backbone (mmdet's
    retinanet_swin-t-p4-w7 layout: stages 1-3 into the FPN)."""
    model = small_detector(_stock('retinanet/retinanet_r18_fpn_1x_coco.py'),
                           width=width)
    model.backbone = dict(
        type='SwinTransformer', embed_dims=32, depths=[1, 1, 1, 1],
        num_heads=[1, 2, 4, 8], window_size=4, out_indices=(1, 2, 3),
        init_cfg=None)
    model.neck.update(in_channels=[64, 128, 256], start_level=0)
    return model


def _rtmdet(name):
    model = _stock(f'rtmdet/{name}_8xb32-300e_coco.py')
    model.backbone.init_cfg = None
    model.bbox_head.num_classes = 6
    return model


def _tood(width):
    return small_detector(_stock('tood/tood_r50_fpn_1x_coco.py'),
                          width=width)


def _paa(width):
    return small_detector(_stock('paa/paa_r50_fpn_1x_coco.py'), width=width)


def _resnet(depth):
    from mmengine.config import ConfigDict
    return ConfigDict(
        type='ImageClassifier',
        data_preprocessor=dict(num_classes=6, mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True),
        backbone=dict(type='ResNet', depth=depth),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=6, in_channels=512,
                  loss=dict(type='CrossEntropyLoss')))


def _fpn(student='neck', teacher='neck'):
    return dict(type='FeatureMSELoss', student=student, teacher=teacher,
                neck=dict(type='SubspaceProjectionNeck'))


def _logits(tap, **kwargs):
    return dict(type='LogitKDLoss', student=tap, teacher=tap,
                temperature=2.0, **kwargs)


#: name -> (student, teacher, terms, scope, ships AdamW, batch options)
PAIRS = {
    'tood': (lambda: _tood(64), lambda: _tood(96),
             dict(fpn=_fpn(), cls=_logits('bbox_head:0')), False, {}),
    'paa': (lambda: _paa(64), lambda: _paa(96),
            dict(fpn=_fpn(), cls=_logits('bbox_head:0')), False, {}),
    'cascade': (
        lambda: small_cascade(_stock(
            'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py')),
        lambda: small_cascade(_stock(
            'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'), width=96),
        dict(fpn=_fpn(), rpn=_logits('rpn_head:0'),
             cls=_logits('roi_head.bbox_head.2:0')), False, {}),
    'swin_retinanet': (
        lambda: _swin_retinanet(64),
        lambda: small_detector(
            _stock('retinanet/retinanet_r18_fpn_1x_coco.py'), width=96),
        dict(fpn=_fpn(), cls=_logits('bbox_head:0')), False, {}),
    'dino': (lambda: small_dino(_stock(
                 'dino/dino-4scale_r50_8xb2-12e_coco.py')),
             lambda: small_dino(_stock(
                 'dino/dino-4scale_r50_8xb2-12e_coco.py'), ffn=512,
                 num_queries=30),
             dict(fpn=_fpn(), queries=dict(
                 type='QueryKDLoss', student='bbox_head',
                 teacher='bbox_head', temperature=2.0, layers='all')),
             True, {}),
    'rtmdet': (lambda: _rtmdet('rtmdet_tiny'), lambda: _rtmdet('rtmdet_s'),
               dict(fpn=_fpn(), cls=_logits('bbox_head:0')), True, {}),
    'mask_rcnn': (lambda: small_mask_rcnn(), lambda: small_mask_rcnn(96),
                  dict(fpn=_fpn(), cls=_logits('roi_head.bbox_head:0')),
                  False, dict(masks=True)),
    'mmpretrain_resnet': (
        lambda: _resnet(18), lambda: _resnet(34),
        dict(feat=_fpn('backbone', 'backbone'), cls=_logits('head')),
        False, {}),
}
METHODS = ['kd', 'dot', 'mokd_exact', 'mokd_exact_features',
           'mokd_amortized', 'mkd']
#: the one-backward MoKD on one pair of each kind of model (a dense head
#: under a Swin backbone, a cascade's RoI heads, a DETR, a classifier with a
#: backbone tap): its gradients at the features are the same code for all
FEATURE_PAIRS = ('swin_retinanet', 'cascade', 'dino', 'mmpretrain_resnet')
CASES = [(pair, method, 'sgd') for pair in PAIRS for method in METHODS
         if method != 'mokd_exact_features' or pair in FEATURE_PAIRS] + [
    (pair, method, 'adamw') for pair in PAIRS if PAIRS[pair][3]
    for method in ('kd', 'dot')]


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    """Each pair's teacher checkpoint (random weights, seeded)."""
    root = tmp_path_factory.mktemp('reach')
    return {pair: save_random_checkpoint(
                teacher(), str(root / f'{pair}.pth'), 'mmpretrain'
                if pair.startswith('mmpretrain') else 'mmdet', seed=1)
            for pair, (_, teacher, *_rest) in PAIRS.items()}


def _cls_samples():
    """Two random images and their labels, as a data loader gives them."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 255, (3, 64, 64), generator=gen,
                            dtype=torch.uint8) for _ in range(2)]
    return images, [DataSample().set_gt_label(label) for label in (2, 4)]


@pytest.mark.parametrize('pair,method,optimizer', CASES,
                         ids=[f'{p}-{m}-{o}' for p, m, o in CASES])
def test_pair_distils_under_method(pair, method, optimizer, teachers):
    student, teacher, terms, _, options = PAIRS[pair]
    terms = copy.deepcopy(terms)
    logit_terms = [n for n, t in terms.items() if t['type'] !=
                   'FeatureMSELoss']
    if method == 'mkd':  # learnable temperatures on every logit term
        for name in logit_terms:
            terms[name]['temperature'] = dict(type='MetaTemperature',
                                              init=2.0)
    cls = pair.startswith('mmpretrain')
    scope = 'mmpretrain' if cls else 'mmdet'
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = (ClsDistiller if cls else DetDistiller)(
            student=student(),
            teacher=dict(model=teacher(), checkpoint=teachers[pair]),
            distill_losses=terms)
        model.init_weights()  # as the Runner does
        extra = dict(interval=1) if method == 'mkd' else {}
        runner = make_runner(method, model, optimizer=optimizer, **extra)
        # raw, as a data loader gives them: train_step preprocesses
        x, y = _cls_samples() if cls else det_samples(**options)
        # the epoch the Runner's loop would publish (TOOD's assigner
        # switches on it)
        MessageHub.get_current_instance().update_info('epoch', 0)
        before = {k: v.clone() for k, v in model.student.state_dict().items()}
        logs = train(runner, [(x, y)])
    log = logs[0]
    for name in terms:
        value = torch.as_tensor(log[f'distill.loss_{name}'])
        assert torch.isfinite(value) and value > 0, (name, value)
    assert all(torch.isfinite(torch.as_tensor(v)).all()
               for v in log.values()), log
    moved = [k for k, v in model.student.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, 'the student did not move'
    if method == 'mkd':
        assert runner.optim_wrapper.meta_updates == 1
