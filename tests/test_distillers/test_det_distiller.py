"""DetDistiller end to end through the real Runner, per detector family:
builds, trains, validates; the teacher stays frozen, out of the optimizer and
out of checkpoints; the exported student evaluates like the distiller."""
import copy
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mokd_det.checkpoint import safe_torch_load
from mokd_det.utils import load_config
from tests.helpers import (DET_FAMILIES, retarget_detection_data,
                           run_tool, small_detector, small_mask_rcnn)

LOGIT_TAP = {'faster_rcnn': 'roi_head.bbox_head:0'}


def det_config(family: str, data_root: str, work_dir: str) -> Config:
    cfg = load_config(DET_FAMILIES[family])
    retarget_detection_data(cfg, data_root, work_dir)
    small_detector(cfg.model)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1)
    cfg.param_scheduler = []
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    return cfg


def save_teacher(model_cfg: ConfigDict, path: str) -> None:
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)


def distill_config(family, data_root, tmp_path):
    """The family's small student distilled from a wider teacher (96-channel
    FPN, so the feature term needs the projection neck) with a feature term
    and a logit term."""
    cfg = det_config(family, data_root, str(tmp_path / 'work'))
    student = cfg.model
    teacher = small_detector(
        load_config(DET_FAMILIES[family]).model, width=96)
    save_teacher(teacher, str(tmp_path / 'teacher.pth'))
    cfg.model = dict(
        type='DetDistiller',
        student=student,
        teacher=dict(model=teacher, checkpoint=str(tmp_path / 'teacher.pth')),
        distill_losses=dict(
            fpn=dict(type='FeatureMSELoss', student='neck', teacher='neck',
                     neck=dict(type='SubspaceProjectionNeck')),
            logits=dict(type='LogitKDLoss',
                        student=LOGIT_TAP.get(family, 'bbox_head:0'),
                        teacher=LOGIT_TAP.get(family, 'bbox_head:0'),
                        temperature=2.0)))
    return cfg, student


@pytest.mark.parametrize('family', list(DET_FAMILIES))
def test_family_trains_validates_and_keeps_teacher_frozen(
        family, shapes_det_root, tmp_path):
    cfg, _ = distill_config(family, shapes_det_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    teacher_before = {k: v.clone() for k, v in
                      model.teacher.state_dict().items()}
    runner.train()
    assert runner.iter == 2

    # teacher: bit-identical, eval mode, no grad, not in the optimizer
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    optimised = {id(p) for g in runner.optim_wrapper.optimizer.param_groups
                 for p in g['params']}
    assert not optimised & {id(p) for p in model.teacher.parameters()}
    # the projection neck trains with the student
    assert {id(p) for p in model.distill_necks.parameters()} <= optimised

    # logs: task terms under their mmdet names, distill terms, group totals
    logged = runner.message_hub.log_scalars
    for key in ('train/loss', 'train/loss_task', 'train/loss_distill',
                'train/task.loss_cls', 'train/distill.loss_fpn',
                'train/distill.loss_logits'):
        assert key in logged, (key, list(logged))
        # averaged over the log interval like loss_distill, not the
        # current iteration's value
        assert runner.log_processor.mean_pattern.search(key), key

    # checkpoints hold the student and the distillation modules only
    ckpt = safe_torch_load(osp.join(cfg.work_dir, 'epoch_1.pth'))
    prefixes = {k.split('.')[0] for k in ckpt['state_dict']}
    assert prefixes <= {'student', 'distill_necks', 'distill_losses'}
    assert 'student' in prefixes and 'distill_necks' in prefixes


def _map_line(log: str) -> str:
    return [line for line in log.splitlines()
            if 'bbox_mAP_copypaste' in line][-1].split('copypaste: ')[1]


@pytest.mark.parametrize('family', ['retinanet', 'faster_rcnn'])
def test_exported_student_matches_distiller_validation(
        family, shapes_det_root, tmp_path):
    """Distil with ExportStudentHook and TeacherEvalHook; then tools/test.py
    with the student's own config on the exported student reproduces the
    distiller's validation mAP and predictions exactly."""
    cfg, student = distill_config(family, shapes_det_root, tmp_path)
    cfg.custom_hooks = [dict(type='ExportStudentHook'),
                        dict(type='TeacherEvalHook')]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, save_best='coco/bbox_mAP',
        rule='greater')
    distill_cfg = str(tmp_path / 'distill.py')
    cfg.dump(distill_cfg)
    work = cfg.work_dir
    log = run_tool('tools/train.py', distill_cfg)
    distiller_map = _map_line(log)
    assert 'teacher/coco/bbox_mAP' in log
    # save_best followed the student's mAP, not the teacher's
    best = sorted(f for f in __import__('os').listdir(work)
                  if f.startswith('best'))
    # with its SHA-256 (mokd_det.checkpoint.integrity)
    assert best == ['best_coco_bbox_mAP_epoch_1.pth',
                    'best_coco_bbox_mAP_epoch_1.pth.sha256']

    student_ckpt = osp.join(work, 'student_epoch_1.pth')
    state = safe_torch_load(student_ckpt)['state_dict']
    assert not any(k.startswith(('student.', 'distill_', 'teacher'))
                   for k in state)

    student_cfg = det_config(family, shapes_det_root, str(tmp_path / 't'))
    student_cfg.model = student
    student_cfg_path = str(tmp_path / 'student.py')
    student_cfg.dump(student_cfg_path)
    out_s = str(tmp_path / 'student.pkl')
    log = run_tool('tools/test.py', student_cfg_path, student_ckpt, '--out',
               out_s)
    assert _map_line(log) == distiller_map

    # tools/export_student.py on the distiller checkpoint gives the same
    exported = str(tmp_path / 'exported.pth')
    run_tool('tools/export_student.py', osp.join(work, 'epoch_1.pth'),
             exported)
    exported_state = safe_torch_load(exported)['state_dict']
    assert exported_state.keys() == state.keys()
    assert all(torch.equal(exported_state[k], state[k]) for k in state)

    out_d = str(tmp_path / 'distiller.pkl')
    run_tool('tools/test.py', distill_cfg, osp.join(work, 'epoch_1.pth'),
         '--out', out_d)
    with open(out_s, 'rb') as f_s, open(out_d, 'rb') as f_d:
        preds_s, preds_d = pickle.load(f_s), pickle.load(f_d)
    assert len(preds_s) == len(preds_d) == 4
    for a, b in zip(preds_s, preds_d):
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(a['pred_instances'][key],
                               b['pred_instances'][key])


def test_mask_rcnn_distils_on_generated_masks_with_segm_map(
        shapes_det_root, tmp_path):
    """Instance segmentation: the generated set's masks train a Mask R-CNN
    student (its mask loss in the task group) distilled on the FPN from a
    wider Mask R-CNN teacher, validated with COCO bbox and segm mAP."""
    cfg = load_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    retarget_detection_data(cfg, shapes_det_root, str(tmp_path / 'work'))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1)
    cfg.param_scheduler = []
    teacher = small_mask_rcnn(width=96)
    save_teacher(teacher, str(tmp_path / 'teacher.pth'))
    cfg.model = dict(
        type='DetDistiller', student=small_mask_rcnn(),
        teacher=dict(model=teacher, checkpoint=str(tmp_path / 'teacher.pth')),
        distill_losses=dict(fpn=dict(
            type='FeatureMSELoss', student='neck', teacher='neck',
            neck=dict(type='SubspaceProjectionNeck'))))
    cfg.optim_wrapper = dict(type='KDOptimWrapper', optimizer=dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    runner = Runner.from_cfg(cfg)
    runner.train()
    logged = runner.message_hub.log_scalars
    assert 'train/task.loss_mask' in logged
    assert 'train/distill.loss_fpn' in logged
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        value = logged[f'val/{key}'].current()
        assert 0 <= value <= 1, (key, value)
