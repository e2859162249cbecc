"""Shared fixtures: small generated data sets, built once per test session."""
import os

import pytest

from tests.helpers import REPO_ROOT


@pytest.fixture(scope='session')
def shapes_det_root(tmp_path_factory):
    """A tiny COCO-format detection set (8 train / 4 val images, 128 px)."""
    from mokd_det.datasets import ShapesConfig, generate_coco_detection
    root = str(tmp_path_factory.mktemp('shapes_det'))
    generate_coco_detection(
        root, num_train=8, num_val=4, seed=0,
        cfg=ShapesConfig(img_size=(128, 128), objects_per_image=(1, 3),
                         scale_mix=(0.2, 0.6, 0.2)),
        progress=False)
    return root


@pytest.fixture(scope='session')
def shapes_cls_root(tmp_path_factory):
    """A tiny ImageNet-style classification set (32 train / 8 val, 32 px)."""
    from mokd_det.datasets import (ShapesConfig,
                                   generate_imagenet_classification)
    root = str(tmp_path_factory.mktemp('shapes_cls'))
    generate_imagenet_classification(
        root, num_train=32, num_val=8, seed=0,
        cfg=ShapesConfig(img_size=(32, 32)), progress=False)
    return root


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Configs use repo-relative paths (configs/..., data/...)."""
    monkeypatch.chdir(REPO_ROOT)
    os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(autouse=True)
def _fresh_visualizers():
    """Each test's Runners build their own visualizer. mmdet's runtime
    config names its visualizer 'visualizer', and mmengine hands back an
    existing instance of that name, whose files live in the work dir of
    the first test that built one (removed once that test passed:
    ``tmp_path_retention_policy`` in pytest.ini)."""
    yield
    from mmengine.visualization import Visualizer
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes.extend(cls.__subclasses__())


@pytest.fixture(autouse=True, scope='session')
def _unformatted_config_dumps():
    """Config dumps without yapf. Each Runner formats its config about five
    times (the log, the work-dir copy, the visualizer, every checkpoint),
    about 1.6 s each for a detection distiller: half of a one-iteration
    config test. The dumped text is the same Python, unformatted (what
    mmengine writes with ``format_python_code=False``). mmengine 0.10.7
    binds yapf's ``FormatCode`` at import; onedl-mmengine imports it from
    yapf when it formats: both are replaced."""
    from mmengine.config import config
    from yapf.yapflib import yapf_api
    unformatted = lambda text, **kwargs: (text, False)  # noqa: E731
    saved = [(m, m.FormatCode) for m in (config, yapf_api)
             if hasattr(m, 'FormatCode')]
    for module, _ in saved:
        module.FormatCode = unformatted
    yield
    for module, formatted in saved:
        module.FormatCode = formatted
