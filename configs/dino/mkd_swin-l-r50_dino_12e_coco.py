# MKD: learnable teacher/student temperatures of the query term and the
# distillation weight, meta-updated every 20 iterations
# (mokd_det's formulation; see mokd_det/optim/mkd.py).
_base_ = ['../_base_/pairs/dino_swin-l-r50_coco.py']
model = dict(
    distill_losses=dict(
        queries=dict(
            temperature=dict(
                _delete_=True,
                type='MetaTemperature',
                init=2.0,
                bounds=(1.0, 10.0)))))
optim_wrapper = dict(type='MKDOptimWrapper', interval=20)
custom_hooks = [*_base_.custom_hooks, dict(type='MKDMetaHook')]
