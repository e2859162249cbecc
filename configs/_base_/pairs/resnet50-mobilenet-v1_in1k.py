# ResNet-50 -> MobileNetV1 on ImageNet-1k, DOT's recipe as the ResNet-34 ->
# ResNet-18 pair (which this inherits); the student is
# configs/imagenet/mobilenet-v1_8xb32_in1k.py's model.
_base_ = ['./resnet34-resnet18_in1k.py']

model = dict(
    student=dict(
        backbone=dict(_delete_=True, type='MobileNetV1'),
        head=dict(in_channels=1024)),
    teacher=dict(
        config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
        # the model zoo's file (sha256 prefix in its name, checked on
        # download; cached by torch.hub); a local path works too
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'))
