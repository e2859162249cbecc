# MKD (ViT students, as in the MKD paper): learnable teacher/student
# temperatures of the logit term and the distillation weight, meta-updated
# every 20 iterations
# (mokd_det's formulation; see mokd_det/optim/mkd.py).
_base_ = ['../_base_/pairs/regnetx-12gf-deit-small_in1k.py']
model = dict(
    distill_losses=dict(
        kd=dict(
            temperature=dict(
                _delete_=True,
                type='MetaTemperature',
                init=2.0,
                bounds=(1.0, 10.0)))))
optim_wrapper = dict(type='MKDOptimWrapper', interval=20)
custom_hooks = [*_base_.custom_hooks, dict(type='MKDMetaHook')]
