# Baseline: PKD (Cao et al., NeurIPS 2022) on the last backbone stage, plain
# SGD.
_base_ = ['../_base_/pairs/resnet34-resnet18_in1k.py']
model = dict(
    distill_losses=dict(
        _delete_=True,
        stage=dict(
            type='PKDLoss',
            student='backbone',
            teacher='backbone',
            loss_weight=6.0)))
