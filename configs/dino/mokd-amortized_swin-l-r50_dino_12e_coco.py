# MoKD amortized (DTO-KD Algorithm 1, the paper's detection setting: a DETR
# student with AdamW); its loss recomputation needs MoKDAmortizedHook.
_base_ = ['../_base_/pairs/dino_swin-l-r50_coco.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='amortized')
custom_hooks = [*_base_.custom_hooks, dict(type='MoKDAmortizedHook')]
