# DOT with its published ImageNet setting, delta=0.09 (mdistiller's
# configs/imagenet/r34_r18/dot.yaml).
_base_ = ['../_base_/pairs/resnet34-resnet18_in1k.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.09)
