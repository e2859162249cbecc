# MoKD exact (closed-form min-norm weights every step) on the AdamW recipe.
_base_ = ['../_base_/pairs/regnetx-12gf-deit-tiny_in1k.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
