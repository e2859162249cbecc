# The quickstart *student*, trained from scratch: RetinaNet with a
# half-width ResNet-18 (32 base channels) and a 64-channel FPN and head, a
# quarter of the teacher's compute; same data as the teacher, and the
# 3-epoch schedule every quickstart student shares.
_base_ = ['./retinanet_r18_fpn_shapes.py']

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64))

max_epochs = 3
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[2],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
