"""Writes student-only checkpoints during distillation."""
import os.path as osp
from typing import Dict, Optional

from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import Tensor

from ..distillers.base import BaseDistiller
from ..distillers.export import export_student
from ..utils.base_hooks import check_base_hooks


@HOOKS.register_module()
class ExportStudentHook(Hook):
    """Saves ``student_epoch_{N}.pth`` (or ``student_iter_{N}.pth``) into the
    work dir: the student alone, loadable by ``tools/test.py`` with the
    student's own config (see :mod:`mokd_det.distillers.export`).

    The exported weights are the ones validation evaluates: with mmengine's
    ``EMAHook`` (RTMDet, YOLOX) they are the student's EMA parameters (and
    EMA buffers when the EMA updates buffers), as in mmengine's own
    checkpoints, not the raw training weights.

    Add it after the base config's hooks, so that the student's recipe
    keeps its own (a config's ``custom_hooks`` list replaces its base's):

    .. code-block:: python

        custom_hooks = [*_base_.get('custom_hooks', []),
                        dict(type='ExportStudentHook')]

    Before the run it checks that no base config's custom hook was dropped
    (see :mod:`mokd_det.utils.base_hooks`).

    Args:
        interval: Save every ``interval`` epochs (iterations when
            ``by_epoch=False``). Defaults to 1.
        by_epoch: Count epochs or iterations. Defaults to True.
        save_last: Also save after the last epoch/iteration when it is not
            a multiple of ``interval``. Defaults to True.
        out_dir: Destination; defaults to the runner's work dir.
    """
    priority = 'VERY_LOW'

    def __init__(self,
                 interval: int = 1,
                 by_epoch: bool = True,
                 save_last: bool = True,
                 out_dir: Optional[str] = None):
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_last = save_last
        self.out_dir = out_dir

    def before_run(self, runner) -> None:
        check_base_hooks(runner.cfg)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if not isinstance(model, BaseDistiller):
            raise TypeError(
                f'ExportStudentHook needs a distiller model, got '
                f'{type(model).__name__}; remove the hook for plain training')

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and (self.every_n_epochs(runner, self.interval) or
                              (self.save_last and
                               self.is_last_train_epoch(runner))):
            self._save(runner, f'student_epoch_{runner.epoch + 1}.pth')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and (
                self.every_n_train_iters(runner, self.interval) or
                (self.save_last and self.is_last_train_iter(runner))):
            self._save(runner, f'student_iter_{runner.iter + 1}.pth')

    def _save(self, runner, name: str) -> None:
        if runner.rank != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        path = osp.join(self.out_dir or runner.work_dir, name)
        ema = ema_student_state(runner, model)
        export_student(model, path, state_dict=ema, meta=dict(
            epoch=runner.epoch + 1, iter=runner.iter + 1, ema=ema is not None,
            dataset_meta=getattr(runner.train_dataloader.dataset, 'metainfo',
                                 None)))
        kind = 'the EMA student' if ema is not None else 'the student'
        runner.logger.info(f'Exported {kind} to {path}')


def ema_student_state(runner, model: BaseDistiller
                      ) -> Optional[Dict[str, Tensor]]:
    """The student's state dict as the runner's ``EMAHook`` puts it in for
    validation (its ``_swap_ema_parameters``): EMA parameters, and EMA
    buffers when the averaged model updates buffers, the model's own
    buffers otherwise. None without an ``EMAHook`` (or before its
    ``before_run``)."""
    hook = next((h for h in runner.hooks if isinstance(h, EMAHook)), None)
    if hook is None or getattr(hook, 'ema_model', None) is None:
        return None
    averaged = hook.ema_model
    ema_student = averaged.module.student
    swapped = dict(ema_student.named_parameters(remove_duplicate=False))
    if averaged.update_buffers:
        swapped.update(ema_student.named_buffers(remove_duplicate=False))
    return {k: swapped[k].detach() if k in swapped else v
            for k, v in model.student_state_dict().items()}
