# Quickstart pair on the generated shapes data: the RetinaNet R18 teacher
# (configs/quickstart/retinanet_r18_fpn_shapes.py, trained first: tools/demo.py
# does it) distilled into the half-width R18 student, with the same terms as
# the COCO pairs (FPN features through the projection neck: 64 vs 128
# channels; dense-head class logits). Plain SGD: vanilla KD.
_base_ = ['../../quickstart/retinanet_r18-half_fpn_shapes.py']

model = dict(
    _delete_=True,
    type='DetDistiller',
    student=_base_.model,
    teacher=dict(
        # beside this file wherever the configs are (a checkout, or
        # mokd_det/.mim/configs after pip install); the checkpoint is the
        # teacher you trained, relative to the working directory
        config='{{ fileDirname }}/../../quickstart/retinanet_r18_fpn_shapes.py',
        checkpoint='work_dirs/quickstart/retinanet_r18_fpn_shapes/'
        'epoch_6.pth'),
    distill_losses=dict(
        fpn=dict(
            type='FeatureMSELoss',
            student='neck',
            teacher='neck',
            neck=dict(type='SubspaceProjectionNeck'),
            loss_weight=1.0),
        cls=dict(
            type='LogitKDLoss',
            student='bbox_head:0',
            teacher='bbox_head:0',
            temperature=2.0,
            loss_weight=1.0)))
# the summed losses with the student's own optimizer (vanilla KD), skipping
# non-finite updates; a method's config replaces the type
optim_wrapper = dict(type='KDOptimWrapper')
# student-only checkpoints (student_epoch_N.pth), after the student's own
# hooks (a custom_hooks list replaces its base's: RTMDet's EMAHook would go)
custom_hooks = [
    *_base_.get('custom_hooks', []),
    dict(type='ExportStudentHook')
]
