# Vanilla KD: the pair's terms summed with the task losses, plain SGD.
_base_ = ['../_base_/pairs/faster-rcnn_r101-r50_coco.py']
