# Vanilla KD (DOT's KD baseline: T=1, CE/KD weights 0.5/0.5), plain SGD.
_base_ = ['../_base_/pairs/resnet34-resnet18_in1k.py']
