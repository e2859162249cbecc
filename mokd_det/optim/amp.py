"""Mixed precision for the multi-objective optim wrappers.

The AMP variant of a wrapper autocasts the forward and scales every
objective by **one** loss scale before differentiating. At the update all
accumulated gradients (every objective) are unscaled by the same factor and
checked for infs/NaNs **once**; if any is not finite the whole update is
skipped (the optimizer and the method state stay untouched) and a dynamic
scale backs off, exactly as ``torch.amp.GradScaler`` treats one gradient
set. The scaler's state is saved with the wrapper.

``loss_scale`` and ``dtype`` take mmengine ``AmpOptimWrapper``'s values:
``'dynamic'`` (torch's GradScaler defaults), a float (static), or a dict of
``init_scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval``;
``dtype`` ``'float16'`` (default) or ``'bfloat16'`` (no scaling needed;
note that mmcv 2.1.0's focal-loss CUDA kernel has no bfloat16, so
RetinaNet-style heads need float16). Needs CUDA: without it the constructor
raises the error of ``--amp`` (``allow_cpu=True`` runs on the CPU anyway,
for tests of these semantics; autocast follows the parameters' device).
"""
from contextlib import ExitStack
from typing import Union

import torch
from mmengine.registry import OPTIM_WRAPPERS

from .dot import DOTOptimWrapper
from .mkd import MKDOptimWrapper
from .mokd import MoKDOptimWrapper


class AmpMultiObjectiveMixin:
    """Adds autocast and a shared dynamic loss scale to a
    :class:`MultiObjectiveOptimWrapper` (put it first in the bases)."""

    def __init__(self,
                 optimizer,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 allow_cpu: bool = False,
                 **kwargs):
        """Builds the wrapper; refuses a machine without CUDA.

        Args:
            optimizer: The student's optimizer.
            loss_scale: ``'dynamic'``, a float (static) or a dict of
                GradScaler arguments. Defaults to ``'dynamic'``.
            dtype: ``'float16'`` (default) or ``'bfloat16'``.
            allow_cpu: Run without CUDA anyway, for tests of the AMP
                semantics on a CPU-only machine (fp16 on the CPU is slow
                and its dynamic loss scale skips most of the first steps
                while it settles). Defaults to False: without CUDA the
                wrapper refuses to build.
            **kwargs: The wrapper's own arguments.

        Raises:
            RuntimeError: No CUDA device and not ``allow_cpu`` (the message
                of ``--amp``, :data:`mokd_det.utils.config.AMP_NEEDS_CUDA`).
        """
        if not allow_cpu:
            from ..utils.config import check_amp_device
            check_amp_device()
        super().__init__(optimizer, **kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.cast_dtype = dtype or torch.float16
        if self.cast_dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f'dtype must be float16 or bfloat16, got '
                             f'{self.cast_dtype}')
        cfg = dict(init_scale=2.**16, growth_factor=2., backoff_factor=.5,
                   growth_interval=2000)
        if loss_scale == 'dynamic':
            self._dynamic = True
        elif isinstance(loss_scale, (int, float)):
            self._dynamic = False
            cfg['init_scale'] = float(loss_scale)
        elif isinstance(loss_scale, dict):
            self._dynamic = True
            cfg.update(loss_scale)
        else:
            raise TypeError(f'loss_scale must be "dynamic", a float or a '
                            f'dict, got {loss_scale!r}')
        if self.cast_dtype == torch.bfloat16:
            self._dynamic, cfg['init_scale'] = False, 1.
        self._scale_cfg = cfg
        self._scale = float(cfg['init_scale'])
        self._growth_tracker = 0

    @property
    def loss_scale(self) -> float:
        return self._scale

    @property
    def overflow_is_divergence(self) -> bool:
        """A dynamic loss scale overflows while it settles: not counted
        towards ``max_nonfinite_steps`` (non-finite losses still are)."""
        return not self._dynamic

    def autocast_context(self):
        device = self.optimizer.param_groups[0]['params'][0].device.type
        return torch.autocast(device_type=device, dtype=self.cast_dtype)

    def optim_context(self, model):
        stack = ExitStack()
        stack.enter_context(super().optim_context(model))
        stack.enter_context(self.autocast_context())
        return stack

    def unscale_and_check(self, grads) -> bool:
        present = [g for gs in grads.values() for g in gs if g is not None]
        if present:
            torch._foreach_mul_(present, 1. / self._scale)
            finite = bool(torch.isfinite(
                torch.stack(torch._foreach_norm(present))).all())
        else:
            finite = True
        self._update_scale(finite)
        return finite

    def _update_scale(self, finite: bool) -> None:
        if not self._dynamic:
            return
        if not finite:
            self._scale *= self._scale_cfg['backoff_factor']
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self._scale_cfg['growth_interval']:
                self._scale *= self._scale_cfg['growth_factor']
                self._growth_tracker = 0
        self.log_scalar('kd/loss_scale', self._scale)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state['loss_scaler'] = dict(scale=self._scale,
                                    growth_tracker=self._growth_tracker)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler = state_dict.pop('loss_scaler', None)
        if scaler is not None:
            self._scale = scaler['scale']
            self._growth_tracker = scaler['growth_tracker']
        super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class AmpDOTOptimWrapper(AmpMultiObjectiveMixin, DOTOptimWrapper):
    """:class:`DOTOptimWrapper` with mixed precision (see
    :mod:`mokd_det.optim.amp`)."""


@OPTIM_WRAPPERS.register_module()
class AmpMoKDOptimWrapper(AmpMultiObjectiveMixin, MoKDOptimWrapper):
    """:class:`MoKDOptimWrapper` with mixed precision (see
    :mod:`mokd_det.optim.amp`)."""


@OPTIM_WRAPPERS.register_module()
class AmpMKDOptimWrapper(AmpMultiObjectiveMixin, MKDOptimWrapper):
    """:class:`MKDOptimWrapper` with mixed precision (see
    :mod:`mokd_det.optim.amp`)."""
