# DOT with its published ImageNet setting, delta=0.09 (mdistiller's
# configs/imagenet/r50_mv1/dot.yaml).
_base_ = ['../_base_/pairs/resnet50-mobilenet-v1_in1k.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.09)
