"""Every config in configs/ loads, builds its model and runs one training
iteration on generated data: the dataset swapped for the shapes set, tiny
images, teachers from random checkpoints, and deep backbones made shallow
(ResNet-50/101 -> 18, MobileNetV1 at width 0.25, ViTs to one 32-wide
layer, RegNets to 400MF, Swins to one 32-wide block a stage, DINOs to two
encoder and decoder layers and 50 queries) so that the whole set runs
in minutes on a CPU; the architectures' families, heads, taps, necks and
optim wrappers are the configs' own. A new config is covered automatically;
one missing from the README's configs section fails.
"""
import os.path as osp
import re
from glob import glob

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mokd_det.distillers.teacher import teacher_model_cfg
from mokd_det.utils import dropped_base_hooks
from tests.helpers import (REPO_ROOT, retarget_classification_data,
                           retarget_detection_data, save_random_checkpoint)

CONFIGS = sorted(
    osp.relpath(p, REPO_ROOT)
    for p in glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                  recursive=True) if '_base_' not in p)


def _tiny(model_cfg) -> None:
    """From scratch (no model hub here) and shallow."""
    backbone = model_cfg.backbone
    if 'init_cfg' in backbone:
        backbone.init_cfg = None
    levels = backbone.get('out_indices', (0, 1, 2, 3))
    if backbone.type.endswith('ResNet') and backbone.depth > 18:
        backbone.depth = 18
        if 'neck' in model_cfg and 'in_channels' in model_cfg.neck:
            model_cfg.neck.in_channels = [64 * 2**i for i in levels]
        if 'neck' not in model_cfg or model_cfg.neck.type.endswith(
                'GlobalAveragePooling'):
            model_cfg.head.in_channels = 512
    elif backbone.type == 'MobileNetV1':
        backbone.widen_factor = 0.25
        model_cfg.head.in_channels = 256
    elif backbone.type == 'VisionTransformer':  # DeiT-Ti/S -> 1 layer of 32
        backbone.update(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                  feedforward_channels=64), img_size=64)
        model_cfg.head.in_channels = 32
    elif backbone.type == 'RegNet':  # RegNetX-12GF -> 400MF
        backbone.arch = 'regnetx_400mf'
        model_cfg.head.in_channels = 384
    elif backbone.type == 'SwinTransformer':  # Swin-L -> 1 block a stage
        backbone.update(embed_dims=32, depths=[1, 1, 1, 1],
                        num_heads=[1, 2, 4, 8], window_size=4, with_cp=False,
                        pretrain_img_size=64)
        model_cfg.neck.in_channels = [32 * 2**i for i in levels]
    if model_cfg.get('type') == 'DINO':  # 2 + 2 layers, 50 queries
        model_cfg.encoder.num_layers = model_cfg.decoder.num_layers = 2
        model_cfg.num_queries = 50
        model_cfg.test_cfg.max_per_img = 50
    if 'head' in model_cfg and 'num_classes' in model_cfg.head:
        # the generated set's 6 classes (Mixup/CutMix one-hot to them)
        model_cfg.head.num_classes = 6


@pytest.fixture(scope='module')
def random_teachers(tmp_path_factory):
    """Random teacher checkpoints, one per (shrunk) teacher model: the
    configs of one pair share it."""
    return dict(root=tmp_path_factory.mktemp('teachers'), paths={})


def _random_teacher(cfg, scope, cache):
    """Replaces the teacher's checkpoint by a random one of its model."""
    teacher = teacher_model_cfg(cfg.model.teacher)
    _tiny(teacher)
    key = (scope, repr(teacher.to_dict()))
    if key not in cache['paths']:
        cache['paths'][key] = save_random_checkpoint(
            teacher, str(cache['root'] / f'teacher{len(cache["paths"])}.pth'),
            scope)
    cfg.model.teacher = dict(model=teacher, checkpoint=cache['paths'][key])


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_trains_one_iteration(path, shapes_det_root,
                                                shapes_cls_root,
                                                random_teachers, tmp_path):
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope', 'mmdet')
    if scope == 'mmpretrain':
        # 64 px: a ResNet's last stage is 2x2 (at 32 px 1x1, where CWD's
        # per-channel softmax is degenerate and refused)
        retarget_classification_data(cfg, shapes_cls_root, str(tmp_path),
                                     batch_size=2, scale=64)
    else:
        retarget_detection_data(cfg, shapes_det_root, str(tmp_path),
                                batch_size=2, img_scale=(64, 64))
        cfg.default_hooks.pop('visualization', None)
    cfg.train_dataloader.dataset.indices = 2  # one iteration
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    # schedulers that start after the first epoch (DeiT's cosine after 20
    # warm-up epochs) cannot be built for a 1-epoch run
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    cfg.param_scheduler = [s for s in schedulers if s.get('begin', 0) < 1]
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = cfg[f'{key}_cfg'] = None
        cfg[f'{key}_evaluator'] = None
    # no full checkpoint (a few hundred MB a config; the wrappers' and
    # hooks' state in checkpoints is tested by the resume tests); the
    # student export below is this test's
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                        save_last=False)
    is_distiller = 'teacher' in cfg.model
    if is_distiller:
        _tiny(cfg.model.student)
        _random_teacher(cfg, scope, random_teachers)
    else:
        _tiny(cfg.model)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert loss == loss and abs(loss) < float('inf')
    if is_distiller:
        assert 'train/loss_distill' in runner.message_hub.log_scalars
        assert osp.isfile(osp.join(str(tmp_path), 'student_epoch_1.pth'))


@pytest.mark.parametrize('path', CONFIGS)
def test_config_keeps_its_base_hooks(path):
    """Every distillation config exports the student and keeps every custom
    hook of its bases (the student's own, the pair's ExportStudentHook)."""
    cfg = Config.fromfile(path)
    assert dropped_base_hooks(cfg) == {}
    if 'teacher' in cfg.model:
        types = [h.type for h in cfg.custom_hooks]
        assert types.count('ExportStudentHook') == 1, types


def _readme_configs_section() -> str:
    """The text of README.md's ``## Configs`` section (to the next ``## ``
    heading)."""
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        text = f.read()
    match = re.search(r'^## Configs\b.*?(?=^## |\Z)', text,
                      re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Configs' section"
    return match.group(0)


def test_every_config_is_in_the_readme_table():
    """Every config under configs/ (but _base_/) is named in the README's
    configs section, by its path or its file name (the matrix links them),
    and every config path or file name there exists."""
    section = _readme_configs_section()
    paths = set(re.findall(r'configs/[\w/.-]+\.py', section))
    names = set(re.findall(r'[\w.-]+\.py', section))
    missing = [c for c in CONFIGS
               if c not in paths and osp.basename(c) not in names]
    assert not missing, \
        f"configs missing from README.md's configs section: {missing}"
    gone = [c for c in paths if not osp.isfile(osp.join(REPO_ROOT, c))]
    every = {osp.basename(p) for p in glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)}
    gone += [n for n in names if n not in every and not any(
        p.endswith('/' + n) for p in paths)]
    assert not gone, f'README.md names configs that do not exist: {gone}'


@pytest.mark.parametrize('path', [c for c in CONFIGS if '/imagenet/' not in
                                  c and '/quickstart/' not in c])
def test_detection_teacher_is_a_stock_mmdet_config(path):
    cfg = Config.fromfile(path)
    teacher = cfg.model.teacher.config
    assert teacher.startswith('mmdet::')
    assert teacher_model_cfg(dict(config=teacher)).type == \
        cfg.model.student.type


def _zoo_weights(teacher_config: str) -> set:
    """The weights URLs the model zoo's metafiles list for a ``pkg::``
    config."""
    import yaml
    from mmengine.utils import get_installed_path
    package, _, name = teacher_config.partition('::')
    mim = osp.join(get_installed_path(package), '.mim')
    urls = set()
    for metafile in glob(osp.join(mim, 'configs', '*', 'metafile.yml')):
        with open(metafile) as f:
            meta = yaml.safe_load(f)
        for model in (meta.get('Models', []) if isinstance(meta, dict)
                      else []):
            if model.get('Config', '').partition('/')[2] == name:
                urls.add(model.get('Weights'))
    return urls


@pytest.mark.parametrize('pair', sorted(
    p for p in glob(osp.join(REPO_ROOT, 'configs', '_base_', 'pairs', '*'))
    if 'shapes' not in p))
def test_model_zoo_pairs_name_the_zoo_file(pair):
    """Each model-zoo pair's teacher checkpoint is the file the zoo's
    metafile lists for its teacher config, a URL whose name carries the
    sha256 prefix the loader checks. (The same file: onedl-mmpretrain's
    metafiles list a mirror, mmassets.onedl.ai, under the same name.)"""
    from mokd_det.checkpoint.remote import published_sha256_prefix
    teacher = Config.fromfile(pair).model.teacher
    zoo = {osp.basename(url) for url in _zoo_weights(teacher.config)}
    assert osp.basename(teacher.checkpoint) in zoo, (pair, zoo)
    assert published_sha256_prefix(osp.basename(teacher.checkpoint)), pair
