# RetinaNet R101 (2x) -> R50 (1x) on COCO, shared by every method of this pair:
# the student's stock config (data, 1x schedule, CocoMetric) with its model
# wrapped in a DetDistiller, the teacher's stock config and checkpoint,
# and the distillation terms. With
# a plain OptimWrapper this *is* vanilla KD; the leaf configs change only the
# optim wrapper (or, for the baselines, the terms).
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='DetDistiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        # the model zoo's file (sha256 prefix in its name, checked on
        # download; cached by torch.hub); a local path works too
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'),
    distill_losses=dict(
        # FPN features, both projected into a wider shared space; weight 4:
        # VkD's distillation coefficient on standardised features (the
        # design SubspaceProjectionNeck follows; benchmarks/RESULTS.md,
        # "The COCO pairs' distillation weights")
        fpn=dict(
            type='FeatureMSELoss',
            student='neck',
            teacher='neck',
            neck=dict(type='SubspaceProjectionNeck'),
            loss_weight=4.0),
        # per-prior sigmoid class logits of the dense head
        cls=dict(
            type='LogitKDLoss',
            student='bbox_head:0',
            teacher='bbox_head:0',
            temperature=2.0,
            loss_weight=1.0)))
# each sample's augmentation drawn from (seed, epoch, index): exact --resume
train_dataloader = dict(sampler=dict(type='SeededAugmentationSampler'))
# the summed losses with the student's own optimizer (vanilla KD), skipping
# non-finite updates; a method's config replaces the type
optim_wrapper = dict(type='KDOptimWrapper')
# student-only checkpoints (student_epoch_N.pth), after the student's own
# hooks (a custom_hooks list replaces its base's: RTMDet's EMAHook would go)
custom_hooks = [
    *_base_.get('custom_hooks', []),
    dict(type='ExportStudentHook')
]
