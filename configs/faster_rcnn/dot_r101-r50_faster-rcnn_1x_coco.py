# DOT (Zhao et al., ICCV 2023): task momentum mu - delta, KD momentum
# mu + delta (delta as mdistiller's default; DOT reports no COCO delta).
_base_ = ['../_base_/pairs/faster-rcnn_r101-r50_coco.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.075)
