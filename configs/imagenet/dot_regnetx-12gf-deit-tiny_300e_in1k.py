# DOT on DeiT's AdamW: the Adam analogue (first moments with beta1 -/+ delta
# for the task and distillation gradients; mokd_det/optim/dot_adam.py).
_base_ = ['../_base_/pairs/regnetx-12gf-deit-tiny_in1k.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.075)
