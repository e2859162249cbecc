# The quickstart *student*, trained from scratch: RetinaNet with a
# half-width ResNet-18 (32 base channels) and a 64-channel FPN and head, a
# quarter of the teacher's compute; same data and schedule as the teacher.
_base_ = ['./retinanet_r18_fpn_shapes.py']

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64))
