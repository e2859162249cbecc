# Baseline: CWD (Shu et al., ICCV 2021) on the last backbone stage, plain SGD.
_base_ = ['../_base_/pairs/resnet34-resnet18_in1k.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        stage=dict(
            type='ChannelWiseDivergence',
            student='backbone',
            teacher='backbone',
            tau=1.0,
            loss_weight=10.0)))
