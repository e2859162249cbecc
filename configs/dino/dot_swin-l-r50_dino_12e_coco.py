# DOT on DINO's AdamW: the Adam analogue (first moments with beta1 -/+ delta
# for the task and distillation gradients; mokd_det/optim/dot_adam.py).
_base_ = ['../_base_/pairs/dino_swin-l-r50_coco.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.075)
