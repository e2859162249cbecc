# DOT (Zhao et al., ICCV 2023): task momentum mu - delta, KD momentum
# mu + delta (delta as mdistiller's default; DOT reports no detection delta).
_base_ = ['../_base_/pairs/retinanet_r18-r18half_shapes.py']
optim_wrapper = dict(type='DOTOptimWrapper', delta=0.075)
