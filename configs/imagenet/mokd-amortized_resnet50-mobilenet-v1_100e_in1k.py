# MoKD / DTO-KD, amortized (the paper's training rule, FAMO-style update).
_base_ = ['../_base_/pairs/resnet50-mobilenet-v1_in1k.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='amortized')
custom_hooks = [*_base_.custom_hooks, dict(type='MoKDAmortizedHook')]
