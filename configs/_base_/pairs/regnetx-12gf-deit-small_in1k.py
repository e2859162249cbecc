# DTO-KD's ImageNet setting (also MKD's ViT students): DeiT-S distilled from a
# CNN teacher, with DeiT's recipe as mmpretrain ships it (AdamW lr 1e-3 for
# batch 1024, weight decay 0.05, cosine with warm-up, 300 epochs,
# Mixup/CutMix, clip_grad 5.0).
# Teacher: the papers' teacher is timm's RegNetY-160, which mmpretrain does
# not have (and timm is not a dependency here); the nearest mmpretrain RegNet
# is RegNetX-12GF (same family and size class, X blocks rather than Y).
# Term: soft logit KD on the class token's logits (T=1, CE and KD weights
# 0.5/0.5, as the ResNet pairs); DeiT's separate distillation token is not
# used.
_base_ = ['mmpretrain::deit/deit-small_4xb256_in1k.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='ClsDistiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::regnet/regnetx-12gf_8xb64_in1k.py',
        # the model zoo's file (sha256 prefix in its name, checked on
        # download; cached by torch.hub); a local path works too
        checkpoint='https://download.openmmlab.com/mmclassification/v0/regnet/regnetx-12gf_8xb64_in1k_20211213-5df8c2f8.pth'),
    distill_losses=dict(
        kd=dict(
            type='LogitKDLoss',
            student='head',
            teacher='head',
            temperature=1.0,
            loss_weight=0.5)))
model['student']['head']['loss']['loss_weight'] = 0.5  # CE weight

# each sample's augmentation drawn from (seed, epoch, index): exact --resume
train_dataloader = dict(sampler=dict(type='SeededAugmentationSampler'))
# vanilla KD with the student's AdamW (a method's leaf config replaces it)
optim_wrapper = dict(type='KDOptimWrapper')
# student-only checkpoints (student_epoch_N.pth), after the student's hooks
custom_hooks = [
    *_base_.get('custom_hooks', []),
    dict(type='ExportStudentHook')
]
