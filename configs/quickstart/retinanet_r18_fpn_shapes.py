# RetinaNet R18-FPN trained from scratch on the generated shapes data
# (tools/generate_shapes.py data/shapes): the quickstart *teacher*. It
# inherits mmdet's stock config and overrides only the data, the from-scratch
# backbone settings and a CPU-sized schedule: the usual way to train a stock
# detector on your own COCO-format data. The other quickstart configs inherit
# this one.
_base_ = ['mmdet::retinanet/retinanet_r18_fpn_1x_coco.py']
custom_imports = dict(imports=['mokd_det'], allow_failed_imports=False)

# --- data: tools/generate_shapes.py writes COCO's layout -------------------
data_root = 'data/shapes/'
# the first 6 classes of mokd_det.datasets.CLASSES (the generator's default)
metainfo = dict(classes=('red_circle', 'green_square', 'blue_triangle',
                         'yellow_star', 'red_triangle', 'blue_circle'))
img_scale = (192, 192)  # the 256 px images, downscaled: CPU-sized
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    # each sample's augmentation drawn from (seed, epoch, index): --resume
    # is exact with RandomFlip and persistent workers
    sampler=dict(type='SeededAugmentationSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# --- model: from scratch (no model hub here), so nothing frozen; a lighter
# FPN and head (128 channels, 2 convs; the stock has 256 and 4) so that an
# iteration takes under a second on a 2-core CPU ----------------------------
model = dict(
    backbone=dict(frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(out_channels=128),
    bbox_head=dict(
        num_classes=len(metainfo['classes']),
        in_channels=128,
        feat_channels=128,
        stacked_convs=2))

# --- schedule: minutes on a CPU (768 training images, 96 iterations an
# epoch); the teacher trains 2x the students' 3 epochs, as COCO KD teachers
# do; the students override it ---------------------------------------------
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[4, 5],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
