# ResNet-34 -> ResNet-18 on ImageNet-1k with DOT's published recipe
# (mdistiller configs/imagenet/r34_r18: SGD lr 0.2 for batch 512, momentum
# 0.9, weight decay 1e-4, 100 epochs with steps at 30/60/90; KD with T=1,
# CE and KD weights 0.5/0.5). With a plain OptimWrapper this is vanilla KD;
# the leaf configs change the optim wrapper (or, for baselines, the terms).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='ClsDistiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        # the model zoo's file (sha256 prefix in its name, checked on
        # download; cached by torch.hub); a local path works too
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    distill_losses=dict(
        kd=dict(
            type='LogitKDLoss',
            student='head',
            teacher='head',
            temperature=1.0,
            loss_weight=0.5)))
model['student']['head']['loss']['loss_weight'] = 0.5  # CE weight

# 8 GPUs x 64 = batch 512
# each sample's augmentation drawn from (seed, epoch, index): exact --resume
train_dataloader = dict(
    batch_size=64, sampler=dict(type='SeededAugmentationSampler'))
optim_wrapper = dict(
    type='KDOptimWrapper',
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
auto_scale_lr = dict(base_batch_size=512)
# student-only checkpoints (student_epoch_N.pth), after the student's own
# hooks (a custom_hooks list replaces its base's: RTMDet's EMAHook would go)
custom_hooks = [
    *_base_.get('custom_hooks', []),
    dict(type='ExportStudentHook')
]
