# PKD's loss trained with MoKD (exact): a loss config and an optimiser in one
# line. On the paired CPU detection proxy this pair beats PKD with plain SGD
# (+1.2 [+0.0, +2.3] mAP x100, 3 seeds) and MoKD on the KD terms
# (benchmarks/RESULTS.md, issue 12).
_base_ = ['./pkd_r18-r18half_retinanet_3e_shapes.py']
optim_wrapper = dict(type='MoKDOptimWrapper', mode='exact')
