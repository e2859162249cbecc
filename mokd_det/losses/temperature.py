"""Learnable, bounded softmax temperatures for logit distillation (MKD).

Used as ``LogitKDLoss(temperature=dict(type='MetaTemperature', init=4.0))``.
The temperatures are **buffers**, not parameters: they are saved with the
model (so ``--resume`` restores them) but never reach the student's optimizer
(``MKDOptimWrapper`` updates them with its own). Each is parametrised as
``tau = low + (high - low) * sigmoid(raw)`` so it stays in ``[low, high]``
whatever the update.
"""
from typing import Optional, Tuple

import torch
from mmengine.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class MetaTemperature(nn.Module):
    """Teacher and student temperatures, scalar or one per class.

    Args:
        init: Initial value of both temperatures. Defaults to 4.0.
        bounds: ``(low, high)`` range of the temperatures, low > 0.
            Defaults to (1.0, 10.0).
        num_classes: One temperature per class (the last dimension of the
            logits) instead of a scalar. Defaults to None (scalar).
        tied: One temperature for teacher and student (the meta update
            moves both together; Hinton's single T, learned). Defaults to
            False (two, as MKD's abstract describes).
    """

    def __init__(self,
                 init: float = 4.0,
                 bounds: Tuple[float, float] = (1.0, 10.0),
                 num_classes: Optional[int] = None,
                 tied: bool = False):
        super().__init__()
        low, high = bounds
        if not 0 < low < init < high:
            raise ValueError(f'MetaTemperature needs 0 < low < init < high, '
                             f'got init {init}, bounds {bounds}')
        self.low, self.high = float(low), float(high)
        shape = () if num_classes is None else (num_classes, )
        raw = torch.logit(torch.tensor((init - low) / (high - low)))
        self.tied = tied
        self.register_buffer('raw_teacher', torch.full(shape, float(raw)))
        if not tied:
            self.register_buffer('raw_student',
                                 torch.full(shape, float(raw)))

    def _tau(self, raw: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(raw)

    def teacher(self) -> Tensor:
        return self._tau(self.raw_teacher)

    def student(self) -> Tensor:
        return self._tau(self.raw_teacher if self.tied else self.raw_student)

    def raw(self):
        """The buffers the meta update changes (one when tied)."""
        return [self.raw_teacher] if self.tied else \
            [self.raw_teacher, self.raw_student]
