"""mokd_det: multi-objective knowledge distillation for MMDetection 3.x.

Importing the package registers its components into mmengine's root
registries, where the ``mmdet`` and ``mmpretrain`` scopes find them (configs
add ``custom_imports = dict(imports=['mokd_det'])``), and makes mmengine load
local checkpoints safely under torch >= 2.6 (see
:mod:`mokd_det.utils.checkpoint`).
"""
from . import backbones, distillers, hooks, losses, necks, optim  # noqa: F401
from .utils import install_safe_checkpoint_loader
from .version import __version__

install_safe_checkpoint_loader()

__all__ = ['__version__']
