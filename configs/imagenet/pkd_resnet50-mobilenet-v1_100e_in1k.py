# Baseline: PKD (Cao et al., NeurIPS 2022) on the last backbone stage, plain
# SGD.
_base_ = ['../_base_/pairs/resnet50-mobilenet-v1_in1k.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        stage=dict(
            type='PKDLoss',
            student='backbone',
            teacher='backbone',
            neck=dict(type='LinearConnector'),  # 1024 -> 2048 channels
            loss_weight=6.0)))
