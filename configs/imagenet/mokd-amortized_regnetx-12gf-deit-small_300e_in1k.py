# MoKD amortized (DTO-KD Algorithm 1, the paper's setting) on the AdamW
# recipe; its loss recomputation needs MoKDAmortizedHook.
_base_ = ['../_base_/pairs/regnetx-12gf-deit-small_in1k.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='amortized')
custom_hooks = [*_base_.custom_hooks, dict(type='MoKDAmortizedHook')]
