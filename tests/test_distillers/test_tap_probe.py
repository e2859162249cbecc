"""The build-time tap probe: taps that would fail at the first iteration (a
module that never runs, a teacher head the distiller cannot run, levels of
different widths under a neck, a missing output index) fail when the
distiller is built, naming the tap as written and what to write instead."""
import copy
import random

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from mokd_det.distillers import DetDistiller
from mokd_det.distillers.probe import probe_taps
from mokd_det.utils import load_config
from tests.helpers import (DET_FAMILIES, det_samples, small_cascade,
                           small_detector)

CASCADE = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'


@pytest.fixture(scope='module')
def scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _checkpoint(model_cfg, path):
    from mmdet.registry import MODELS
    torch.save(dict(state_dict=MODELS.build(copy.deepcopy(model_cfg))
                    .state_dict()), str(path))
    return str(path)


@pytest.fixture(scope='module')
def models(scope, tmp_path_factory):
    root = tmp_path_factory.mktemp('probe')
    out = {}
    for name in ('retinanet', 'faster_rcnn'):
        cfg = small_detector(load_config(DET_FAMILIES[name]).model)
        out[name] = (cfg, _checkpoint(cfg, root / f'{name}.pth'))
    cfg = small_cascade(load_config(CASCADE).model)
    out['cascade'] = (cfg, _checkpoint(cfg, root / 'cascade.pth'))
    return out


def build(models, student, teacher, **terms):
    return DetDistiller(
        student=copy.deepcopy(models[student][0]),
        teacher=dict(model=copy.deepcopy(models[teacher][0]),
                     checkpoint=models[teacher][1]),
        distill_losses=terms)


def test_teacher_tap_on_a_module_the_distiller_never_runs(models):
    # a loss module never runs in a forward
    with pytest.raises(ValueError) as info:
        build(models, 'faster_rcnn', 'faster_rcnn', rpn=dict(
            type='FeatureMSELoss', student='neck',
            teacher='rpn_head.loss_cls'))
    msg = str(info.value)
    assert msg.startswith(
        'teacher tap "rpn_head.loss_cls" of distill term \'rpn\': '
        'rpn_head.loss_cls (CrossEntropyLoss) of the teacher (FasterRCNN) '
        'never runs in its forward pass, so the tap would record nothing.')
    assert "Modules of the teacher that ran: ['backbone', 'neck', " \
        "'rpn_head']" in msg
    assert "DetDistiller runs the teacher's backbone and neck" in msg


def test_module_list_tap_names_the_stages_that_ran(models):
    with pytest.raises(ValueError) as info:
        build(models, 'cascade', 'cascade', cls=dict(
            type='LogitKDLoss', student='roi_head.bbox_head:0',
            teacher='neck'))
    assert str(info.value) == (
        'student tap "roi_head.bbox_head:0" of distill term \'cls\': '
        'roi_head.bbox_head (ModuleList) of the student (CascadeRCNN) never '
        'runs in its forward pass, so the tap would record nothing. Its '
        "submodules that ran: ['roi_head.bbox_head.0', "
        "'roi_head.bbox_head.1', 'roi_head.bbox_head.2']; tap one of them, "
        'e.g. "roi_head.bbox_head.0:0".')


def test_cascade_taps_name_a_stage(models):
    # a cascade's box heads run per stage, each on its own RoIs: a tap on
    # the module list is refused, on either side, naming the stage taps
    with pytest.raises(ValueError) as info:
        build(models, 'faster_rcnn', 'cascade', cls=dict(
            type='LogitKDLoss', student='roi_head.bbox_head:0',
            teacher='roi_head.bbox_head:0'))
    assert str(info.value) == (
        'teacher tap "roi_head.bbox_head:0" of distill term \'cls\': the '
        "teacher's RoI head (CascadeRoIHead) has 3 box stages, each run on "
        'its own RoIs; tap one stage, e.g. "roi_head.bbox_head.2:0" (the '
        'last), or one term per stage.')
    with pytest.raises(ValueError, match='student tap "roi_head.bbox_head:0"'
                       ' of distill term \'cls\': the student\'s RoI head'):
        build(models, 'cascade', 'cascade', cls=dict(
            type='LogitKDLoss', student='roi_head.bbox_head:0',
            teacher='roi_head.bbox_head.2:0'))
    # and a one-stage student has no RoIs at all
    with pytest.raises(ValueError) as info:
        build(models, 'retinanet', 'faster_rcnn', cls=dict(
            type='LogitKDLoss', student='bbox_head:0',
            teacher='roi_head.bbox_head:0'))
    assert str(info.value).startswith(
        'teacher tap "roi_head.bbox_head:0" (term \'cls\'): the teacher\'s '
        "RoI head classifies the student's RoIs, and the student "
        '(RetinaNet) has no RoI head.')
    assert 'bbox_roi_extractor' not in str(info.value)


def test_levels_of_different_widths_under_a_neck(models):
    """A ResNet (or Swin) backbone tap: 4 levels of 64 to 512 channels; the
    projection neck takes one width, which died at iteration 1 in an
    einsum."""
    with pytest.raises(ValueError) as info:
        build(models, 'retinanet', 'retinanet', stages=dict(
            type='FeatureMSELoss', student='backbone', teacher='backbone',
            neck=dict(type='SubspaceProjectionNeck')))
    assert str(info.value) == (
        'distill term \'stages\': student tap "backbone" gives 4 levels with '
        'different channels (level 0: 64, level 1: 128, level 2: 256, '
        'level 3: 512), and SubspaceProjectionNeck maps every level with '
        'one channel count. Tap features of one width, e.g. "neck" (the FPN '
        'outputs), or one level, e.g. "backbone:3" (512 channels), on both '
        'sides.')
    # what the message suggests builds; without a neck, level-wise equal
    # widths on both sides are fine
    model = build(models, 'retinanet', 'retinanet', stage=dict(
        type='FeatureMSELoss', student='backbone:3', teacher='backbone:3',
        neck=dict(type='SubspaceProjectionNeck')), stages=dict(
        type='FeatureMSELoss', student='backbone', teacher='backbone'))
    assert model.distill_necks['stage'].student_proj[0].linear \
        .weight.shape == (1024, 512)


def test_output_index_that_does_not_exist(models):
    with pytest.raises(ValueError, match=r'distill term \'cls\': student tap '
                       r'"bbox_head:2": the module output is tuple of length '
                       r'2, which has no element 2'):
        build(models, 'retinanet', 'retinanet', cls=dict(
            type='LogitKDLoss', student='bbox_head:2', teacher='bbox_head:0'))


def test_probe_leaves_the_random_generators_alone(models):
    """Only the dummy batch comes from torch's generator (as before the
    probe ran heads): a seeded run's initial weights do not move."""
    model = build(models, 'faster_rcnn', 'faster_rcnn', fpn=dict(
        type='FeatureMSELoss', student='neck', teacher='neck'), cls=dict(
        type='LogitKDLoss', student='roi_head.bbox_head:0',
        teacher='roi_head.bbox_head:0'))
    states = []
    for probe in (True, False):
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        if probe:
            shapes = probe_taps(model, (64, 64))
        else:
            torch.randn(2, 3, 64, 64)
        states.append((torch.rand(3), random.random(), np.random.rand()))
    assert torch.equal(states[0][0], states[1][0])
    assert states[0][1:] == states[1][1:]
    assert shapes['student', 'fpn'][0] == (2, 64, 16, 16)
    # the teacher classified the student's RoIs: one row per RoI, 6 + 1
    assert shapes['student', 'cls'][0][1] == 7
    assert shapes['student', 'cls'] == shapes['teacher', 'cls']
    assert model.student.training  # the probe's eval mode is undone


def test_mkd_trains_a_cascade_on_feature_terms_alone(models):
    """Issue 13: MKD needed a logit term, which a cascade's RoI heads do not
    give. With its learnt distillation weight (the default) it trains on
    the FPN term alone: two iterations through train_step and the meta
    hook, lambda moved, everything finite."""
    from tests.test_optim.harness import make_runner, train
    model = build(models, 'cascade', 'cascade', fpn=dict(
        type='FeatureMSELoss', student='neck', teacher='neck',
        neck=dict(type='SubspaceProjectionNeck')))
    runner = make_runner('mkd', model, interval=1)
    assert runner.optim_wrapper.temperatures == {}
    batches = [det_samples(seed=seed) for seed in (0, 1)]
    weight = float(runner.optim_wrapper.distill_weight())
    logs = train(runner, batches)
    assert runner.optim_wrapper.meta_updates == 2
    assert float(runner.optim_wrapper.distill_weight()) != weight
    for log in logs:
        assert all(torch.isfinite(torch.as_tensor(v)).all()
                   for v in log.values())
        assert 'distill.loss_fpn' in log
