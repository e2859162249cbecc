# MoKD exact (min-norm weights of the log-loss gradients every step) on
# DINO's AdamW.
_base_ = ['../_base_/pairs/dino_swin-l-r50_coco.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
