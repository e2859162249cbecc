# Baseline: CWD (Shu et al., ICCV 2021) on the last backbone stage, plain SGD.
_base_ = ['../_base_/pairs/resnet50-mobilenet-v1_in1k.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        stage=dict(
            type='ChannelWiseDivergence',
            student='backbone',
            teacher='backbone',
            neck=dict(type='LinearConnector'),  # 1024 -> 2048 channels
            tau=1.0,
            loss_weight=10.0)))
