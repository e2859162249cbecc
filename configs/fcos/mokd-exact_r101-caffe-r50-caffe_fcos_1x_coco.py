# MoKD / DTO-KD, exact: closed-form min-norm weights on log-loss gradients.
_base_ = ['../_base_/pairs/fcos_r101-r50_coco.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
