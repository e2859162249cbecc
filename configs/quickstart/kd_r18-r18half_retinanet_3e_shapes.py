# Vanilla KD: the pair's terms summed with the task losses, plain SGD.
_base_ = ['../_base_/pairs/retinanet_r18-r18half_shapes.py']
