"""Building, loading and freezing the teacher.

The teacher is given in a distiller config as

.. code-block:: python

    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',  # or a path,
        checkpoint='checkpoints/retinanet_r101.pth',              # or an
        cfg_options=dict(...))                                    # inline
                                                                  # model dict
    teacher=dict(model=dict(type='RetinaNet', ...), checkpoint='...')

It is loaded strictly and checked before the first iteration: a missing
file, or keys that do not fit, are errors that say what is wrong.

``untrained=True`` (instead of ``checkpoint``) builds a randomly initialised
teacher, with a warning: a smoke test of a config before any teacher is
trained (``--cfg-options model.teacher.untrained=True``), never a result.
"""
import logging
import os.path as osp
from typing import Any, Dict, Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import Registry
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from ..utils.config import load_config


def teacher_model_cfg(teacher: Union[dict, ConfigDict]) -> ConfigDict:
    """The teacher's model dict from ``config`` (path or ``pkg::path``) or
    ``model`` (inline), with ``cfg_options`` merged in."""
    teacher = ConfigDict(teacher)
    unknown = set(teacher) - {'config', 'model', 'checkpoint', 'cfg_options',
                              'untrained'}
    if unknown:
        raise KeyError(f'teacher: unknown keys {sorted(unknown)}; expected '
                       'config or model, checkpoint (or untrained=True), '
                       'cfg_options')
    if ('config' in teacher) == ('model' in teacher):
        raise KeyError('teacher needs exactly one of `config` (a config '
                       'path or "mmdet::..." path) and `model` (a model '
                       'dict)')
    if 'config' in teacher:
        cfg = load_config(teacher.config)
        if teacher.get('cfg_options'):
            cfg.merge_from_dict(teacher.cfg_options)
        model = cfg.model
        # mmpretrain configs set the preprocessor at the top level, where
        # the Runner would inject it into the model
        if cfg.get('data_preprocessor') is not None:
            model.setdefault('data_preprocessor', cfg.data_preprocessor)
        return model
    model = ConfigDict(teacher.model)
    if teacher.get('cfg_options'):
        cfg = Config(dict(model=model))
        cfg.merge_from_dict(teacher.cfg_options)
        model = cfg.model
    return model


def load_teacher_checkpoint(model: nn.Module,
                            checkpoint: Optional[str]) -> None:
    """Loads ``checkpoint`` into ``model`` strictly.

    Accepts mmengine checkpoints (``state_dict`` inside), plain state dicts,
    and distiller checkpoints (their ``student.`` weights).

    Raises:
        ValueError: No checkpoint given.
        FileNotFoundError: The file does not exist.
        KeyError: Keys missing from or unexpected in the checkpoint, listed.
    """
    if not checkpoint:
        raise ValueError(
            'teacher.checkpoint is required: distilling from an untrained '
            'teacher is almost certainly a mistake. Train the teacher first '
            '(python tools/train.py <teacher config>) and point '
            'teacher.checkpoint at its .pth. For a smoke test of the config '
            'only: --cfg-options model.teacher.untrained=True')
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'teacher checkpoint {checkpoint!r} not found. Train the teacher '
            'first (python tools/train.py <teacher config>) or fix '
            'model.teacher.checkpoint in the config (e.g. --cfg-options '
            'model.teacher.checkpoint=path/to/teacher.pth).')
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items()
                 if k.startswith('student.')}
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state)
                        if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        def show(keys):
            return f'{keys[:5]}{" ..." if len(keys) > 5 else ""} ' \
                   f'({len(keys)})'
        parts = [f'missing {show(missing)}' if missing else '',
                 f'unexpected {show(unexpected)}' if unexpected else '',
                 'shape mismatch ' + show([
                     f'{k}: checkpoint {tuple(state[k].shape)} vs model '
                     f'{tuple(own[k].shape)}' for k in mismatched])
                 if mismatched else '']
        raise KeyError(
            f'teacher checkpoint {checkpoint!r} does not fit the teacher '
            f'model ({type(model).__name__}): '
            + '; '.join(p for p in parts if p)
            + '. Is teacher.config the config the checkpoint was trained '
            'with?')
    model.load_state_dict(state, strict=True)


def build_teacher(teacher: Union[Dict[str, Any], nn.Module],
                  registry: Registry) -> nn.Module:
    """Builds the teacher, loads its checkpoint strictly and freezes it:
    ``requires_grad=False`` everywhere and eval mode. A built module is
    frozen as it is (no checkpoint is loaded: its caller built and loaded
    it)."""
    if isinstance(teacher, nn.Module):
        model = teacher
    else:
        model = _built_and_loaded(teacher, registry)
    # the runner's init_weights must not overwrite the loaded weights
    model._is_init = True
    model.requires_grad_(False)
    model.eval()
    return model


def _built_and_loaded(teacher: Dict[str, Any],
                      registry: Registry) -> nn.Module:
    model = registry.build(teacher_model_cfg(teacher))
    if teacher.get('untrained'):
        if teacher.get('checkpoint'):
            raise ValueError(
                'teacher: untrained=True and a checkpoint contradict each '
                'other; drop untrained (a real run) or the checkpoint (a '
                'smoke test)')
        model.init_weights()
        print_log('teacher.untrained=True: the teacher is randomly '
                  'initialised; a smoke test of the config, not a '
                  'distillation run', logger='current',
                  level=logging.WARNING)
    else:
        load_teacher_checkpoint(model, teacher.get('checkpoint'))
    return model
