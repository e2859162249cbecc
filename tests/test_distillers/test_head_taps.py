"""Logit terms on the heads the distiller runs beyond a dense head or a
one-stage RoI head: the RPN, each stage of a cascade (the teacher's stage
classifies the RoIs the student's stage sampled), and DETR queries (the
teacher's transformer and head run on its features; queries paired by
matching). Each is checked against the same quantity computed by hand."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope

from mokd_det.distillers import DetDistiller
from mokd_det.losses import LogitKDLoss, QueryKDLoss
from mokd_det.utils import load_config
from tests.helpers import (DET_FAMILIES, det_batch, save_random_checkpoint,
                           small_cascade, small_detector, small_dino)

CASCADE = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'
DINO = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('heads')
    cfgs = dict(
        faster_rcnn=small_detector(
            load_config(DET_FAMILIES['faster_rcnn']).model),
        cascade=small_cascade(load_config(CASCADE).model),
        dino=small_dino(load_config(DINO).model),
        dino_wide=small_dino(load_config(DINO).model, ffn=512,
                             num_queries=30))
    out = {name: (cfg, save_random_checkpoint(cfg, str(root / f'{name}.pth'),
                                              seed=0))
           for name, cfg in cfgs.items()}
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield out


def build(models, student, teacher, **terms):
    torch.manual_seed(0)
    model = DetDistiller(
        student=copy.deepcopy(models[student][0]),
        teacher=dict(model=copy.deepcopy(models[teacher][0]),
                     checkpoint=models[teacher][1]),
        distill_losses=terms)
    model.init_weights()  # as the Runner does
    return model


def _record(module, inputs=False):
    """A forward hook keeping ``module``'s inputs or output per call."""
    calls = []
    handle = module.register_forward_hook(
        lambda m, args, out: calls.append(args if inputs else out))
    return calls, handle


def test_rpn_objectness_term(models):
    model = build(models, 'faster_rcnn', 'faster_rcnn', rpn=dict(
        type='LogitKDLoss', student='rpn_head:0', teacher='rpn_head:0',
        temperature=2.0))
    assert model.distill_losses.rpn.activation == 'sigmoid'
    assert model.distill_losses.rpn.channels == 1
    inputs, samples = det_batch(model)
    calls, handle = _record(model.student.rpn_head)
    torch.manual_seed(1)
    losses = model.loss(inputs, samples)
    handle.remove()
    with torch.no_grad():
        teacher = model.teacher.rpn_head(model.teacher.extract_feat(
            model.teacher_inputs(inputs)))[0]
    expected = LogitKDLoss(temperature=2.0, activation='sigmoid',
                           channels=1)(calls[0][0], teacher)
    assert torch.allclose(losses['distill.rpn'], expected)
    assert losses['distill.rpn'] > 0


@pytest.mark.parametrize('student,s_stage,teacher,t_stage', [
    ('cascade', 1, 'cascade', 2),   # stage to stage
    ('faster_rcnn', None, 'cascade', 0),  # one-stage student's RoIs
    ('cascade', 2, 'faster_rcnn', None),  # one-stage teacher
])
def test_cascade_stage_term(models, student, s_stage, teacher, t_stage):
    def tap(stage):
        return 'roi_head.bbox_head' + ('' if stage is None else
                                       f'.{stage}') + ':0'
    model = build(models, student, teacher, cls=dict(
        type='LogitKDLoss', student=tap(s_stage), teacher=tap(t_stage)))
    assert model.distill_losses.cls.activation == 'softmax'
    roi = model.student.roi_head
    extractor = roi.bbox_roi_extractor if s_stage is None else \
        roi.bbox_roi_extractor[s_stage]
    head = roi.bbox_head if s_stage is None else roi.bbox_head[s_stage]
    rois, h1 = _record(extractor, inputs=True)
    logits, h2 = _record(head)
    inputs, samples = det_batch(model)
    torch.manual_seed(1)
    losses = model.loss(inputs, samples)
    h1.remove()
    h2.remove()
    # by hand: the teacher's stage on the student stage's sampled RoIs
    with torch.no_grad():
        feats = model.teacher.extract_feat(model.teacher_inputs(inputs))
        t_roi = model.teacher.roi_head
        out = t_roi._bbox_forward(feats, rois[0][1]) if t_stage is None \
            else t_roi._bbox_forward(t_stage, feats, rois[0][1])
    assert out['cls_score'].shape == logits[0][0].shape
    expected = LogitKDLoss(activation='softmax')(logits[0][0],
                                                 out['cls_score'])
    assert torch.allclose(losses['distill.cls'], expected)


def test_one_teacher_stage_for_two_student_stages_is_refused(models):
    with pytest.raises(ValueError, match="the teacher's stage 2 would "
                       'classify the RoIs of two student stages '
                       r'\(roi_head.bbox_roi_extractor.0, '
                       r'roi_head.bbox_roi_extractor.1\)'):
        build(models, 'cascade', 'cascade', a=dict(
            type='LogitKDLoss', student='roi_head.bbox_head.0:0',
            teacher='roi_head.bbox_head.2:0'), b=dict(
            type='LogitKDLoss', student='roi_head.bbox_head.1:0',
            teacher='roi_head.bbox_head.2:0'))


def test_dino_query_term_matches_the_teachers_queries(models):
    """DINO student (with denoising queries in training) and a wider DINO
    teacher with more queries: the teacher's transformer runs on its
    features, the student's matching queries are distilled from the
    matched teacher queries."""
    model = build(models, 'dino', 'dino_wide', queries=dict(
        type='QueryKDLoss', student='bbox_head', teacher='bbox_head'))
    loss = model.distill_losses.queries
    assert (loss.activation, loss.num_queries, loss.teacher_num_queries) \
        == ('sigmoid', 20, 30)
    calls, handle = _record(model.student.bbox_head)
    inputs, samples = det_batch(model)
    torch.manual_seed(1)
    losses = model.loss(inputs, samples)
    handle.remove()
    s_cls, s_box = calls[0][:2]
    assert s_cls.shape[2] > 20  # denoising queries came first
    with torch.no_grad():
        teacher = model.teacher
        out = teacher.bbox_head(**teacher.forward_transformer(
            teacher.extract_feat(model.teacher_inputs(inputs)), samples))
    assert out[0].shape[2] == 30
    expected = QueryKDLoss(activation='sigmoid', num_queries=20)(
        (s_cls, s_box), out)
    assert torch.allclose(losses['distill.queries'], expected)
    assert torch.isfinite(losses['distill.queries'])
    losses['distill.queries'].backward()
    assert model.student.bbox_head.cls_branches[0].weight.grad.abs().sum() \
        > 0


def test_dense_logit_loss_on_a_detr_head_is_refused(models):
    with pytest.raises(ValueError) as info:
        build(models, 'dino', 'dino', cls=dict(
            type='LogitKDLoss', student='bbox_head:0', teacher='bbox_head:0'))
    assert "Use type='QueryKDLoss', student='bbox_head', " \
        "teacher='bbox_head'" in str(info.value)
    with pytest.raises(ValueError, match='the student \\(FasterRCNN\\) is '
                       'not a DETR-family detector'):
        build(models, 'faster_rcnn', 'dino', q=dict(
            type='QueryKDLoss', student='rpn_head', teacher='bbox_head'))
