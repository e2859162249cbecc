"""Student-only checkpoints: what a distillation run is for.

A student checkpoint holds the student's weights under its own keys (as a
plain mmdet / mmpretrain checkpoint would) and the ``meta`` mmengine uses
(``dataset_meta`` among it), so ``tools/test.py`` with the student's stock
config, mmdeploy and ``load_from`` all take it. The teacher and the
distillation modules (necks, learnable temperatures) are left out.
"""
import time
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

from .base import BaseDistiller

PREFIX = 'student.'


def student_state_from_distiller_state(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keeps the ``student.`` entries of a distiller state dict, unprefixed.

    Raises:
        KeyError: No key starts with ``student.`` (not a distiller
            checkpoint).
    """
    state = {k[len(PREFIX):]: v for k, v in state_dict.items()
             if k.startswith(PREFIX)}
    if not state:
        raise KeyError('no "student." keys: this is not a distiller '
                       'checkpoint (a plain model checkpoint needs no '
                       'export)')
    return state


def save_student_checkpoint(state_dict: Dict[str, torch.Tensor],
                            filename: str,
                            meta: Optional[Dict[str, Any]] = None) -> None:
    """Writes a student checkpoint (CPU tensors, mmengine's layout)."""
    meta = dict(meta or {})
    meta.setdefault('time', time.asctime())
    meta['exported_by'] = 'mokd_det'
    state_dict = weights_to_cpu(OrderedDict(state_dict))
    save_checkpoint(dict(meta=meta, state_dict=state_dict), filename)


def export_student(model: BaseDistiller, filename: str,
                   meta: Optional[Dict[str, Any]] = None,
                   state_dict: Optional[Dict[str, torch.Tensor]] = None
                   ) -> None:
    """Writes ``model``'s student as a student checkpoint; ``state_dict``
    (the student's keys, e.g. its EMA weights) replaces the student's own
    weights when given."""
    if state_dict is None:
        state_dict = model.student_state_dict()
    save_student_checkpoint(state_dict, filename, meta)
