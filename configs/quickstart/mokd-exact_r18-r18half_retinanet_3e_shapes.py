# MoKD / DTO-KD, exact: closed-form min-norm weights on log-loss gradients.
_base_ = ['../_base_/pairs/retinanet_r18-r18half_shapes.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
