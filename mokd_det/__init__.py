"""mokd_det: multi-objective knowledge distillation for MMDetection 3.x.

Importing the package registers its components into mmengine's root
registries, where the ``mmdet`` and ``mmpretrain`` scopes find them (configs
add ``custom_imports = dict(imports=['mokd_det'])``), makes mmengine load
checkpoints safely under torch >= 2.6 (see :mod:`mokd_det.checkpoint`),
makes its ``CheckpointHook`` crash-safe (see
:mod:`mokd_det.hooks.checkpoint`) and its ``EpochBasedTrainLoop`` resume
mid-epoch exactly (see :mod:`mokd_det.engine.loops`), and lets configs
inherit ``mokd_det::<config>`` (see ``_mokd_det_scope``).
"""
import importlib.util

import _mokd_det_scope

_missing = [m for m in ('mmengine', 'mmcv', 'mmdet')
            if importlib.util.find_spec(m) is None]
if _missing:
    raise ImportError(
        f'mokd_det needs MMDetection 3.x, and {", ".join(_missing)} is not '
        "installed. Install one stack: pip install 'mokd_det[mim]' (the "
        'upstream releases; mmcv 2.1.0 with its compiled ops, which PyPI has '
        "as source only) or pip install 'mokd_det[onedl]' (the OneDL forks, "
        'same import names). The README\'s "Install" section has both.')

from . import (backbones, checkpoint, datasets, distillers,  # noqa: F401
               engine, hooks, losses, necks, optim)
from .checkpoint import install_safe_checkpoint_loader
from .engine import install_resumable_epoch_loop
from .version import __version__

_mokd_det_scope.install()
install_safe_checkpoint_loader()
install_resumable_epoch_loop()

__all__ = ['__version__']
