# MobileNetV1 on ImageNet-1k (mmpretrain has no V1 config): mmpretrain's
# ResNet-18 config with the backbone replaced by mokd_det's MobileNetV1. The
# student config of the ResNet-50 -> MobileNetV1 pair, and the config that
# evaluates its exported student.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='MobileNetV1'),
    head=dict(in_channels=1024))
