# Baseline: PKD (Cao et al., NeurIPS 2022) on the FPN levels, plain SGD
# (mmrazor's PKD configs use loss_weight=6).
_base_ = ['../_base_/pairs/retinanet_r18-r18half_shapes.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        fpn=dict(
            type='PKDLoss',
            student='neck',
            teacher='neck',
            neck=dict(type='SubspaceProjectionNeck'),
            loss_weight=6.0)))
