"""ClsDistiller end to end on an mmpretrain ImageNet config."""
import copy
import os.path as osp

import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mokd_det.checkpoint import safe_torch_load
from mokd_det.utils import load_config
from tests.helpers import retarget_classification_data

RESNET18 = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'


def small_classifier(model, base_channels):
    model.backbone.update(depth=18, base_channels=base_channels)
    model.head.update(num_classes=6, in_channels=base_channels * 8)
    return model


def test_resnet_distillation_through_the_runner(shapes_cls_root, tmp_path):
    from mmpretrain.registry import MODELS
    cfg = load_config(RESNET18)
    retarget_classification_data(cfg, shapes_cls_root, str(tmp_path))
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.val_evaluator = cfg.test_evaluator = dict(type='Accuracy',
                                                  topk=(1, ))
    student = small_classifier(cfg.model, 16)
    teacher = small_classifier(copy.deepcopy(cfg.model), 32)
    teacher_cfg = copy.deepcopy(teacher)
    teacher_cfg.data_preprocessor = cfg.data_preprocessor
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.save(dict(state_dict=MODELS.build(teacher_cfg).state_dict()),
                   str(tmp_path / 'teacher.pth'))
    cfg.model = dict(
        type='ClsDistiller', student=student,
        teacher=dict(model=teacher, checkpoint=str(tmp_path / 'teacher.pth')),
        distill_losses=dict(
            kd=dict(type='LogitKDLoss', student='head', teacher='head',
                    temperature=4.0),
            feat=dict(type='PKDLoss', student='neck', teacher='neck',
                      neck=dict(type='SubspaceProjectionNeck'))))
    cfg.custom_hooks = [dict(type='ExportStudentHook')]
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    runner.train()
    assert runner.iter == 4  # 32 images, batch 8
    assert model.distill_losses['kd'].activation == 'softmax'
    assert model.distill_necks['feat'].dim == 512  # 2 * max(128, 256)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k])
    logged = runner.message_hub.log_scalars
    assert {'train/task.loss', 'train/distill.loss_kd',
            'train/distill.loss_feat',
            'train/loss_task', 'train/loss_distill'} <= set(logged)
    metrics = runner.val_loop.run()
    assert 0 <= metrics['accuracy/top1'] <= 100
    state = safe_torch_load(osp.join(str(tmp_path),
                                     'student_epoch_1.pth'))['state_dict']
    assert state.keys() == model.student.state_dict().keys()


def test_student_with_its_own_preprocessor_and_a_typeless_top_level_one(
        shapes_cls_root, tmp_path):
    """mmpretrain configs give a top-level data_preprocessor without a type
    (ImageClassifier adds it); with a student that has its own, the
    distiller used to fail to build it ("must contain the key type")."""
    from mmpretrain.registry import MODELS
    cfg = load_config(RESNET18)
    student = small_classifier(cfg.model, 16)
    student.data_preprocessor = dict(cfg.data_preprocessor, num_classes=6)
    teacher = small_classifier(copy.deepcopy(cfg.model), 16)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.save(dict(state_dict=MODELS.build(teacher).state_dict()),
                   str(tmp_path / 'teacher.pth'))
        model = MODELS.build(dict(
            type='ClsDistiller', student=student,
            teacher=dict(model=teacher,
                         checkpoint=str(tmp_path / 'teacher.pth')),
            distill_losses=dict(kd=dict(type='LogitKDLoss', student='head',
                                        teacher='head', temperature=1.0)),
            data_preprocessor=dict(cfg.data_preprocessor)))
    assert model.data_preprocessor is model.student.data_preprocessor
    assert type(model.data_preprocessor).__name__ == 'ClsDataPreprocessor'


def test_vit_token_taps():
    """A DeiT student's class-token features (``backbone``, (N, C)) distil
    through the projection neck from a CNN's pooled features, next to the
    class token's logits (``head``), as the README says."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = load_config('mmpretrain::deit/deit-tiny_4xb256_in1k.py')
    vit = cfg.model
    vit.backbone.update(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                  feedforward_channels=64), img_size=64)
    vit.head.update(num_classes=6, in_channels=32)
    vit.pop('train_cfg')  # no Mixup here
    teacher = small_classifier(load_config(RESNET18).model, 16)
    inputs = torch.rand(2, 3, 64, 64) * 255
    samples = [DataSample().set_gt_label(i) for i in (1, 4)]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ClsDistiller', student=vit,
            teacher=dict(model=copy.deepcopy(teacher), untrained=True),
            distill_losses=dict(
                kd=dict(type='LogitKDLoss', student='head',
                        teacher='head', temperature=1.0),
                tok=dict(type='FeatureMSELoss', student='backbone',
                         teacher='neck',
                         neck=dict(type='SubspaceProjectionNeck')))))
    recorded = []
    handle = model.student.backbone.register_forward_hook(
        lambda m, i, o: recorded.append(o[-1].shape))
    losses = model(inputs, samples, mode='loss')
    handle.remove()
    assert recorded[0] == (2, 32)
    assert torch.isfinite(losses['distill.tok'])
    assert losses['distill.tok'] > 0
