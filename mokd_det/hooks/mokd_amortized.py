"""The loss recomputation of amortized MoKD (DTO-KD Algorithm 1, line 10):
after the student step the group losses are recomputed on the same batch
with the updated student ("frozen model inference") and the weight logits
are updated from the change. mmengine's DDP path never calls the model's
``train_step``, so this is a hook. See :mod:`mokd_det.hooks.recompute` for
how the recomputation is kept faithful and cheap."""
import torch
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..loss_groups import get_loss_groups
from ..optim.base import loss_value
from ..utils.buffers import norm_stats_kept
from .recompute import RecomputeHook


@HOOKS.register_module()
class MoKDAmortizedHook(RecomputeHook):
    """Recomputes the losses after each step of
    ``MoKDOptimWrapper(mode='amortized')`` and updates its weights; the
    before/after values are averaged over ranks (one all-reduce) so the
    weights stay identical on every rank. With the wrapper's
    ``weight_signal='next'`` it does nothing."""

    active = True

    def before_run(self, runner) -> None:
        from ..optim.mokd import MoKDOptimWrapper
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, MoKDOptimWrapper) or \
                wrapper.mode != 'amortized':
            raise TypeError(
                'MoKDAmortizedHook goes with MoKDOptimWrapper(mode='
                f"'amortized'), not {type(wrapper).__name__}")
        self.active = wrapper.recomputes
        if not self.active:
            # weight_signal='next' reads the next update's losses: nothing
            # to recompute, and no cache to keep
            print_log(
                "MoKDAmortizedHook: weight_signal='next' needs no "
                'recomputation; the hook does nothing (it may be removed '
                'from custom_hooks)', logger='current')
            return
        super().before_run(runner)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.active:
            super().before_train_iter(runner, batch_idx, data_batch)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.active:
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_step(self, runner, model) -> None:
        wrapper = runner.optim_wrapper
        before = wrapper.pending_losses()
        if before is None:  # no step in this iteration
            return
        loss_fn = self.recompute(runner, model)
        with torch.no_grad(), norm_stats_kept(model):
            groups = get_loss_groups(loss_fn(), with_terms=True)
        after = torch.stack([loss_value(groups[g]) for g in wrapper.groups])
        both = torch.stack([before.to(after.device), after])
        all_reduce(both, op='mean')
        wrapper.update_weights(both[0], both[1])
