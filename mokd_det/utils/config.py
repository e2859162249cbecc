"""Config loading and the edits behind ``tools/train.py``'s flags."""
import os.path as osp

from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def enable_amp(cfg: Config) -> None:
    """Switches ``cfg.optim_wrapper`` to its mixed-precision variant.

    ``OptimWrapper`` becomes mmengine's ``AmpOptimWrapper``; a wrapper class
    that names its AMP variant in a class attribute ``amp_variant`` becomes
    that variant; a wrapper that already is an ``AmpOptimWrapper`` is kept.
    The loss scale defaults to ``'dynamic'`` (fp16; mmcv 2.1.0's focal-loss
    CUDA kernel has no bf16, so fp16 is the safe default for detectors).

    Raises:
        ValueError: The configured optim wrapper has no AMP variant.
    """
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    wrapper_cls = wrapper_type if isinstance(wrapper_type, type) else \
        OPTIM_WRAPPERS.get(wrapper_type)
    if wrapper_cls is None:
        raise ValueError(f'optim_wrapper type {wrapper_type!r} is not '
                         'registered; is its package in custom_imports?')
    if not issubclass(wrapper_cls, AmpOptimWrapper):
        amp_type = 'AmpOptimWrapper' if wrapper_type == 'OptimWrapper' \
            else getattr(wrapper_cls, 'amp_variant', None)
        if amp_type is None:
            raise ValueError(
                f'--amp: optim_wrapper {wrapper_cls.__name__} has no AMP '
                'variant; use AmpOptimWrapper or a wrapper with one.')
        cfg.optim_wrapper.type = amp_type
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def enable_auto_scale_lr(cfg: Config) -> None:
    """Turns on ``auto_scale_lr`` as MMDetection's ``--auto-scale-lr`` does.

    Raises:
        RuntimeError: The config has no ``auto_scale_lr.base_batch_size``.
    """
    if 'auto_scale_lr' not in cfg or \
            'base_batch_size' not in cfg.auto_scale_lr:
        raise RuntimeError(
            '--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) '
            'in the config (mmdet::_base_/schedules/*.py define it).')
    cfg.auto_scale_lr.enable = True


def load_config(path: str) -> Config:
    """``Config.fromfile`` that also takes ``'pkg::path'`` (a config shipped
    inside an installed package, e.g. ``'mmdet::retinanet/...py'``), as
    ``_base_`` does.

    Raises:
        FileNotFoundError: The config does not exist; the message says where
            it was looked for.
    """
    resolved = path
    if '::' in path:
        resolved, _ = Config._get_cfg_path(path, '')
    if not osp.isfile(resolved):
        where = f' (resolved to {resolved})' if resolved != path else ''
        raise FileNotFoundError(
            f'config {path!r} not found{where}; relative paths are resolved '
            'from the working directory, "mmdet::..." from the installed '
            'package')
    return Config.fromfile(resolved)
