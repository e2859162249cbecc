"""Shared machinery of the hooks that recompute the losses of an iteration
after its step (amortized MoKD, MKD's meta update).

Recomputing "the same losses at new parameters" needs:

* the same batch, teacher outputs and (prediction-independent) label
  assignment: the distiller keeps them from the iteration's forward in its
  :class:`~mokd_det.distillers.RecomputeCache`, which these hooks switch on
  (:meth:`BaseDistiller.recompute_loss`);
* the iteration's random state, so random choices inside the losses (RoI
  sampling, for instance) repeat;
* the normalisation statistics left as they were: a recomputation is not a
  training pass, so BatchNorm running statistics are restored afterwards.

Only the iterations that will be recomputed pay for it (:meth:`RecomputeHook.
recomputes_after`): the others run with no cache and no random state kept
(MKD's meta update comes once every ``interval`` updates).
"""
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.profiler import record_function

from ..distillers.base import BaseDistiller
from ..distillers.recompute_cache import RecomputeCache


class RecomputeHook(Hook):
    """Base of hooks that recompute an iteration's losses after its step."""
    priority = 'NORMAL'

    def __init__(self):
        self._rng = None
        self._cache: Optional[RecomputeCache] = None

    @staticmethod
    def distiller(runner) -> BaseDistiller:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if not isinstance(model, BaseDistiller):
            raise TypeError(f'this hook needs a distiller model, got '
                            f'{type(model).__name__}')
        return model

    def before_run(self, runner) -> None:
        self._cache = RecomputeCache()

    def recomputes_after(self, runner) -> bool:
        """Whether the coming iteration's losses will be recomputed after
        its step (then its forward keeps what the recomputation reuses).
        Defaults to every iteration."""
        return True

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        keep = self.recomputes_after(runner)
        self.distiller(runner).recompute_cache = self._cache if keep \
            else None
        if not keep:
            self._rng = None
            return
        cuda = torch.cuda.get_rng_state_all() \
            if torch.cuda.is_initialized() else None
        self._rng = (torch.get_rng_state(), cuda)

    @contextmanager
    def replayed_rng(self):
        """The random state of this iteration's forward, restored on
        exit to what it was."""
        cpu_state, cuda_state = self._rng
        devices = list(range(len(cuda_state))) if cuda_state else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            if cuda_state:
                torch.cuda.set_rng_state_all(cuda_state)
            yield

    def recompute(self, runner, model: BaseDistiller):
        """A function returning the grouped total loss of this iteration's
        batch at the current parameters (iteration's RNG, AMP as in
        training); call it inside :func:`~mokd_det.utils.buffers.norm_stats_kept`."""

        def loss_fn():
            with self.replayed_rng(), \
                    runner.optim_wrapper.autocast_context():
                total, _ = model.parse_losses(model.recompute_loss())
            return total

        return loss_fn

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        """Runs :meth:`after_step` and frees the distiller's cache."""
        try:
            with record_function(f'mokd_det.{type(self).__name__}'):
                self.after_step(runner, self.distiller(runner))
        finally:
            if self._cache is not None:
                self._cache.clear()

    def after_step(self, runner, model: BaseDistiller) -> None:
        """The method's work after the iteration's update."""
        raise NotImplementedError
