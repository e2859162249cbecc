"""Plain KD's optim wrapper: mmengine's ``OptimWrapper`` with the guard.

Vanilla KD trains on the sum of the task and distillation losses, which
mmengine's own ``OptimWrapper`` does. :class:`KDOptimWrapper` does exactly
that (one backward of the summed loss, DDP's bucketed gradient sync,
accumulation and ``clip_grad`` unchanged) and adds what the KD methods'
wrappers do for non-finite values (:mod:`mokd_det.optim.guard`): an update
whose loss or gradients are not finite is skipped on every rank, the
normalisation statistics of a non-finite forward are put back, and
``max_nonfinite_steps`` such iterations in a row stop the run with a
message. With mmengine's bare ``OptimWrapper`` a NaN distillation loss on
two iterations put NaN into 236 tensors of the saved checkpoint.

The distillation configs of mokd_det use it (``optim_wrapper =
dict(type='KDOptimWrapper')`` keeps the student's optimizer); ``--amp``
turns it into :class:`AmpKDOptimWrapper`.
"""
from typing import Dict, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor

from .guard import NonFiniteGuard, all_finite, all_ranks_agree


@OPTIM_WRAPPERS.register_module()
class KDOptimWrapper(NonFiniteGuard, OptimWrapper):
    """``OptimWrapper`` that skips non-finite updates (see the module
    docstring).

    Args:
        optimizer: The student's optimizer.
        max_nonfinite_steps: Consecutive non-finite iterations (skipped)
            after which training stops with ``NonFiniteTrainingError``.
            Defaults to 20.
        **kwargs: ``accumulative_counts``, ``clip_grad`` as for
            ``OptimWrapper``.
    """
    amp_variant = 'AmpKDOptimWrapper'
    #: whether a non-finite gradient counts as divergence (fp32), or is a
    #: loss scale settling (fp16 AMP: the scaler skips it)
    overflow_is_divergence = True

    def __init__(self, optimizer, max_nonfinite_steps: int = 20, **kwargs):
        # by keyword: mmengine's AmpOptimWrapper (next in the MRO of
        # AmpKDOptimWrapper) takes ``loss_scale`` as its first argument
        super().__init__(optimizer=optimizer, **kwargs)
        self.init_guard(max_nonfinite_steps)
        self._window_finite = True

    def optim_context(self, model):
        self.snapshot_buffers(model)
        return super().optim_context(model)

    @torch.compiler.disable  # run eagerly under compile=True: no graph breaks
    def update_params(self,
                      loss: Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        self._window_finite &= bool(torch.isfinite(loss.detach()).all())
        # every rank runs its backward (DDP's reducer expects one); the
        # decision to step is taken at the update, the same on every rank
        self.backward(self.scale_loss(loss))
        if self.should_update():
            loss_ok = all_ranks_agree(self._window_finite, loss.device)
            grads_ok = not self.overflow_is_divergence or all_finite(
                [p.grad for g in self.optimizer.param_groups
                 for p in g['params']])
            if loss_ok and grads_ok:
                self.step(**(step_kwargs or {}))
                self.record_update()
            else:
                what = 'losses' if not loss_ok else 'gradients'
                self.record_skip(what)
            self.zero_grad(**(zero_kwargs or {}))
            self._window_finite = True

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(self.guard_state())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self.pop_guard_state(state_dict)
        super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class AmpKDOptimWrapper(KDOptimWrapper, AmpOptimWrapper):
    """:class:`KDOptimWrapper` with mmengine's mixed precision: its
    GradScaler skips gradient overflows (not counted as divergence), the
    guard skips non-finite losses.

    Raises:
        RuntimeError: No CUDA device (the message of ``--amp``,
            :data:`mokd_det.utils.config.AMP_NEEDS_CUDA`), before mmengine's
            own assertion.
    """
    overflow_is_divergence = False

    def __init__(self, optimizer, **kwargs):
        from ..utils.config import check_amp_device
        check_amp_device()
        super().__init__(optimizer, **kwargs)
