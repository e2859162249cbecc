# MoKD / DTO-KD, exact: closed-form min-norm weights on log-loss gradients.
_base_ = ['../_base_/pairs/resnet50-mobilenet-v1_in1k.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
