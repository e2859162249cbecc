"""MKD's meta update of the temperatures, every ``interval`` iterations
after the student step (see :mod:`mokd_det.optim.mkd`). A hook, because the
meta update runs between iterations on every one of mmengine's paths. See
:mod:`mokd_det.hooks.recompute` for the recomputation."""
from mmengine.registry import HOOKS

from ..utils.buffers import norm_stats_kept
from .recompute import RecomputeHook


@HOOKS.register_module()
class MKDMetaHook(RecomputeHook):
    """Runs ``MKDOptimWrapper.meta_update`` after every ``interval``-th
    applied update (skipped updates do not count, and get no meta
    update)."""

    def before_run(self, runner) -> None:
        from ..optim.mkd import MKDOptimWrapper
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, MKDOptimWrapper):
            raise TypeError('MKDMetaHook goes with MKDOptimWrapper, not '
                            f'{type(wrapper).__name__}')
        # before load_or_resume, so a resumed meta optimizer state applies
        wrapper.bind(self.distiller(runner))
        super().before_run(runner)

    def recomputes_after(self, runner) -> bool:
        """Only before the updates that get a meta update: the one after
        the next ``interval``-th applied update (the condition under which
        ``MKDOptimWrapper.step`` keeps theta)."""
        wrapper = runner.optim_wrapper
        return (wrapper.applied_steps + 1) % wrapper.interval == 0

    def after_step(self, runner, model) -> None:
        wrapper = runner.optim_wrapper
        if wrapper.stepped and \
                wrapper.applied_steps % wrapper.interval == 0:
            loss_fn = self.recompute(runner, model)
            with norm_stats_kept(model):
                wrapper.meta_update(loss_fn)
