"""Writes student-only checkpoints during distillation."""
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..distillers.base import BaseDistiller
from ..distillers.export import export_student


@HOOKS.register_module()
class ExportStudentHook(Hook):
    """Saves ``student_epoch_{N}.pth`` (or ``student_iter_{N}.pth``) into the
    work dir: the student alone, loadable by ``tools/test.py`` with the
    student's own config (see :mod:`mokd_det.distillers.export`).

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
        export_student(model, path, meta=dict(
            epoch=runner.epoch + 1, iter=runner.iter + 1,
            dataset_meta=getattr(runner.train_dataloader.dataset, 'metainfo',
                                 None)))
        runner.logger.info(f'Exported the student to {path}')
