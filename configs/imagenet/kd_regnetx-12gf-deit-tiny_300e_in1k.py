# Vanilla KD (soft logits, T=1, 0.5/0.5) with DeiT's AdamW recipe.
_base_ = ['../_base_/pairs/regnetx-12gf-deit-tiny_in1k.py']
