# Baseline: CWD (Shu et al., ICCV 2021) on the FPN levels, plain SGD
# (mmrazor's RetinaNet/Faster R-CNN CWD configs use tau=1, loss_weight=10).
_base_ = ['../_base_/pairs/retinanet_r18-r18half_shapes.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        fpn=dict(
            type='ChannelWiseDivergence',
            student='neck',
            teacher='neck',
            neck=dict(type='SubspaceProjectionNeck'),
            tau=1.0,
            loss_weight=10.0)))
