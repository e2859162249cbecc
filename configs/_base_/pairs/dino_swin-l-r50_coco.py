# DINO Swin-L (5 scales) -> DINO R50 (4 scales) on COCO, shared by every
# method of this pair: the student's stock config (data, 12 epochs, AdamW lr
# 1e-4 with clip_grad 0.1 and the backbone at 0.1x, CocoMetric) with its
# model wrapped in a DetDistiller, the teacher's stock config and checkpoint.
# Term: query-level logit KD. A DETR's queries are a set, so student and
# teacher queries are paired by Hungarian matching of their last decoder
# layer's predictions (box L1 and GIoU, class probabilities) and the paired
# class logits distilled on every decoder layer (mokd_det/losses/query_kd.py).
# DINO's denoising queries are left out. No feature term: the teacher has 5
# neck levels, the student 4.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='DetDistiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
        # the model zoo's file (sha256 prefix in its name, checked on
        # download; cached by torch.hub); a local path works too
        checkpoint='https://download.openmmlab.com/mmdetection/v3.0/dino/dino-5scale_swin-l_8xb2-12e_coco/dino-5scale_swin-l_8xb2-12e_coco_20230228_072924-a654145f.pth'),
    distill_losses=dict(
        queries=dict(
            type='QueryKDLoss',
            student='bbox_head',
            teacher='bbox_head',
            layers='all',
            temperature=1.0,
            loss_weight=1.0)))
# each sample's augmentation drawn from (seed, epoch, index): exact --resume
train_dataloader = dict(sampler=dict(type='SeededAugmentationSampler'))
# vanilla KD with the student's AdamW, skipping non-finite updates; a
# method's config replaces the type
optim_wrapper = dict(type='KDOptimWrapper')
# student-only checkpoints (student_epoch_N.pth), after the student's hooks
custom_hooks = [
    *_base_.get('custom_hooks', []),
    dict(type='ExportStudentHook')
]
