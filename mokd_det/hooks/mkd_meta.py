"""MKD's meta update of the temperatures, every ``interval`` iterations
after the student step (see :mod:`mokd_det.optim.mkd`). A hook, because the
meta update needs the batch, which only hooks receive on mmengine's DDP
path. See :mod:`mokd_det.hooks.recompute` for the recomputation."""
from mmengine.registry import HOOKS

from .recompute import RecomputeHook, norm_stats_kept


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
        model = self.distiller(runner)
        # before load_or_resume, so a resumed meta optimizer state applies
        wrapper.bind(model)
        model.cache_teacher = True

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        wrapper = runner.optim_wrapper
        model = self.distiller(runner)
        if wrapper.stepped and \
                wrapper.applied_steps % wrapper.interval == 0:
            loss_fn = self.recompute(runner, model, data_batch)
            with norm_stats_kept(model):
                wrapper.meta_update(loss_fn)
        model._teacher_cache = None
