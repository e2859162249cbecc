"""A crash-safe ``CheckpointHook``: no truncated file, no lost progress, no
non-finite checkpoint.

mmengine 0.10.7's ``CheckpointHook`` removes the oldest checkpoint *before*
writing the new one, writes the new one in place, and then rewrites
``last_checkpoint`` in place. A ``kill -9`` during the write (measured by a
user: 5 of 5 trials with ``max_keep_ckpts=1``) left ``last_checkpoint``
naming a missing or truncated file, and ``--resume`` failed: all progress
lost. And a diverging run wrote checkpoints full of NaN over the good ones.

:class:`CrashSafeCheckpointHook` keeps every argument and behaviour of
mmengine's hook, and for a local ``out_dir``:

* writes each checkpoint to a temporary file in the same directory, fsyncs
  it and renames it into place (``os.replace`` is atomic on POSIX), so a
  checkpoint file is either complete or absent;
* points ``last_checkpoint`` (written the same way) only at complete files;
* removes old checkpoints (``max_keep_ckpts``, and the previous
  ``save_best`` file) only after the new one is complete;
* refuses to write a checkpoint whose model or optimizer state holds a
  non-finite tensor: the run stops with
  :class:`~mokd_det.optim.NonFiniteTrainingError`, and the last finite
  checkpoint is kept (never removed);
* removes temporary files a killed run left behind, at ``before_train``;
* records each checkpoint's SHA-256 beside it (``<file>.sha256``,
  :mod:`mokd_det.checkpoint.integrity`), and before a run resumes checks
  the checkpoint it would resume from: an automatic ``--resume`` whose
  latest checkpoint is cut short, damaged or not the file its digest was
  taken of falls back to the newest whole one and says so, naming both;
  when none is whole, or an explicitly named one (``--resume PATH``) is
  not, the run stops instead of training from scratch;
* a checkpoint write that fails (a full disk, any ``OSError``) stops the
  run with :class:`CheckpointWriteError`, which names the file and the
  cause; the previous checkpoint, and ``last_checkpoint`` naming it, stay
  as they were;
* on a preemption signal (``preempt_signals``, SIGTERM and SIGUSR1 by
  default) the iteration finishes on every rank, a checkpoint of it is
  written the same way and the run exits with ``PREEMPTED_EXIT_CODE`` (75;
  :mod:`mokd_det.hooks.preemption`).

Importing mokd_det registers it under mmengine's name ``CheckpointHook`` as
well (``HOOKS.register_module(force=True)`` in mmengine's root registry), so
configs keep ``default_hooks = dict(checkpoint=dict(type='CheckpointHook',
...))`` and get it; remote back-ends (``out_dir`` on s3/petrel) keep
mmengine's behaviour apart from the finiteness check.
"""
import glob
import logging
import os
import os.path as osp
import signal
from contextlib import contextmanager
from typing import List

import torch
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..checkpoint.integrity import (DIGEST_SUFFIX, digest_line,
                                    newest_whole, verify)
from ..checkpoint.safe_load import CorruptCheckpointError
from ..optim.guard import NonFiniteTrainingError
from .preemption import PREEMPTED_EXIT_CODE, PreemptionSignals

_TMP_SUFFIX = '.tmp-partial'


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one is intact."""


def nonfinite_entries(state: dict, prefix: str = '') -> List[str]:
    """Keys (dotted paths) of the floating-point tensors of ``state`` that
    hold a NaN or an infinity."""
    bad = []
    for key, value in state.items():
        name = f'{prefix}{key}'
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and \
                    not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, dict):
            bad.extend(nonfinite_entries(value, name + '.'))
        elif isinstance(value, (list, tuple)):
            bad.extend(nonfinite_entries(dict(enumerate(value)), name + '.'))
    return bad


def fsync_replace(tmp_path: str, path: str) -> None:
    """Makes ``tmp_path`` durable and renames it to ``path`` atomically."""
    with open(tmp_path, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    try:  # the rename itself: fsync the directory (POSIX)
        fd = os.open(osp.dirname(osp.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
    """Writes a small text file so that readers see the old or the new
    content, never a truncated one."""
    tmp_path = path + _TMP_SUFFIX
    with open(tmp_path, 'w') as f:
        f.write(text)
    fsync_replace(tmp_path, path)


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic writes, safe rotation, a
    finiteness check, integrity checks before a resume and preemption
    checkpoints (see the module docstring).

    Args:
        preempt_signals: Signal names that preempt the run (checkpoint,
            then exit 75); ``()`` turns it off. Defaults to
            ``('SIGTERM', 'SIGUSR1')``.
        **kwargs: mmengine's ``CheckpointHook`` arguments.
    """

    def __init__(self, *args, preempt_signals=('SIGTERM', 'SIGUSR1'),
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.preemption = PreemptionSignals(preempt_signals)

    def _local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def before_run(self, runner) -> None:
        """Before ``load_or_resume``: checks the checkpoint a resume would
        load, and falls back to the newest whole one (see the module
        docstring)."""
        super().before_run(runner)
        # mmengine's Runner keeps --resume and load_from privately; a
        # fallback is a resume from an explicit file
        if not getattr(runner, '_resume', False):
            return
        explicit = getattr(runner, '_load_from', None)
        decision = [None, None, []]  # explicit problem, chosen, passed over
        if is_main_process():
            if explicit is not None:
                if osp.exists(explicit) or '://' not in explicit:
                    decision[0] = verify(explicit)
            else:
                latest = find_latest_checkpoint(runner.work_dir)
                if latest is not None and '://' not in latest:
                    decision[1], decision[2] = newest_whole(latest)
        broadcast_object_list(decision)
        problem, chosen, passed = decision
        if problem is not None:
            raise CorruptCheckpointError(explicit, problem)
        if not passed:
            return
        skipped = '; '.join(f'{p} ({why})' for p, why in passed)
        if chosen is None:
            raise RuntimeError(
                f'--resume: no whole checkpoint to resume from in '
                f'{runner.work_dir}: {skipped}. Not training from scratch '
                'in their place: remove them (or the work dir) to start '
                'afresh, or name a good checkpoint with --resume PATH.')
        print_log(
            f'--resume: the latest checkpoint {passed[0][0]} is not whole '
            f'({passed[0][1]}); resuming from the newest whole one, '
            f'{chosen}, instead' + (f' (also passed over: '
                                    f'{"; ".join(p for p, _ in passed[1:])})'
                                    if len(passed) > 1 else ''),
            logger='current', level=logging.WARNING)
        runner._load_from = chosen

    def before_train(self, runner) -> None:
        super().before_train(runner)
        print_log(
            'mokd_det (imported) has replaced two pieces of mmengine: its '
            'CheckpointHook by CrashSafeCheckpointHook (atomic writes, '
            'rotation after the write, no non-finite checkpoint) and its '
            'checkpoint loaders by weights-only ones with an allowlist '
            '(mokd_det/checkpoint/install.py; README: Safe checkpoint '
            'loading)', logger='current')
        if self._local() and is_main_process():
            for path in glob.glob(osp.join(self.out_dir, '*' + _TMP_SUFFIX)):
                os.remove(path)  # a write that a kill interrupted
        self.preemption.install()

    def after_train(self, runner) -> None:
        super().after_train(runner)
        self.preemption.uninstall()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self.preemption.signals:
            return
        signum = self.preemption.agreed()
        if signum is None:
            return
        name = signal.Signals(signum).name
        path = self.file_backend.join_path(self.out_dir,
                                           f'iter_{runner.iter + 1}.pth')
        if getattr(self, 'last_ckpt', None) != path:  # not saved just now
            self._save_preemption_checkpoint(runner, path)
        barrier()  # every rank waits for the file before exiting
        self.preemption.uninstall()
        print_log(f'{name} received: stopped after iteration '
                  f'{runner.iter + 1} (epoch {runner.epoch + 1}), wrote '
                  f'{path}; exiting with {PREEMPTED_EXIT_CODE} (preempted). '
                  'Continue with --resume.', logger='current',
                  level=logging.WARNING)
        raise SystemExit(PREEMPTED_EXIT_CODE)

    def _save_preemption_checkpoint(self, runner, path: str) -> None:
        """The checkpoint of the iteration just finished, ``iter_<N>.pth``
        whatever the loop (kept out of ``max_keep_ckpts``' rotation)."""
        self._check_finite(runner)
        # by_epoch=False: the meta holds this epoch and the next iteration
        self._write_checkpoint(runner, osp.basename(path), by_epoch=False)

    def _write_checkpoint(self, runner, filename: str, by_epoch: bool,
                          meta=None) -> None:
        """Writes ``filename`` under ``out_dir`` through the atomic save,
        records it as the last checkpoint (and the one before as the
        previous) and points ``last_checkpoint`` at it (local back-end)."""
        self.previous_ckpt = getattr(self, 'last_ckpt', None)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        with self._atomic_runner_saves(runner):
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=by_epoch, backend_args=self.backend_args,
                **self.args)
        if is_main_process() and self._local():
            atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'),
                              self.last_ckpt)

    # ------------------------------------------------------------- checks
    def _check_finite(self, runner) -> None:
        state = dict(model=runner.model.state_dict())
        if hasattr(runner, 'optim_wrapper') and \
                runner.optim_wrapper is not None:
            state['optimizer'] = runner.optim_wrapper.state_dict()
        bad = nonfinite_entries(state)
        if bad:
            last = getattr(self, 'last_ckpt', None)
            shown = ', '.join(bad[:5]) + (', ...' if len(bad) > 5 else '')
            raise NonFiniteTrainingError(
                f'Refusing to write a checkpoint at iteration {runner.iter} '
                f'(epoch {runner.epoch}): {len(bad)} tensors of the training '
                f'state hold NaN or inf ({shown}). The run has diverged. '
                'Older checkpoints are kept; '
                + (f'the last one written is {last}; resume from it with '
                   '--resume after lowering the learning rate or adding '
                   'optim_wrapper.clip_grad.' if last else
                   'none was written in this run.') +
                " Use optim_wrapper=dict(type='KDOptimWrapper') (or a KD "
                'method wrapper), which skips non-finite updates.')

    # -------------------------------------------------------------- saving
    @contextmanager
    def _atomic_runner_saves(self, runner):
        """Inside, ``runner.save_checkpoint`` writes to a temporary file and
        renames it into place (main process; local back-end only)."""
        if not self._local() or 'save_checkpoint' in vars(runner):
            yield  # remote, or already inside (best -> with_step nesting)
            return
        original = runner.save_checkpoint

        def save_checkpoint(out_dir, filename, *args, **kwargs):
            tmp_name = filename + _TMP_SUFFIX
            path, tmp = osp.join(out_dir, filename), osp.join(out_dir,
                                                             tmp_name)
            try:
                original(out_dir, tmp_name, *args, **kwargs)
                if is_main_process():
                    line = digest_line(tmp).replace(tmp_name, filename)
                    fsync_replace(tmp, path)
                    atomic_write_text(path + DIGEST_SUFFIX, line)
            except OSError as err:
                if osp.exists(tmp):
                    os.remove(tmp)
                last = getattr(self, 'previous_ckpt', None)
                raise CheckpointWriteError(
                    f'Could not write the checkpoint {path}: '
                    f'{err.strerror or err} (errno {err.errno}). The run '
                    'stops rather than train on with nothing saved. '
                    + (f'The previous checkpoint {last} is intact and '
                       'last_checkpoint names it: free space (or fix the '
                       'cause) and continue with --resume.' if last else
                       'No checkpoint of this run was written before.')
                ) from err

        runner.save_checkpoint = save_checkpoint
        try:
            yield
        finally:
            del runner.save_checkpoint  # back to the class's method

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._check_finite(runner)
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # mmengine's bookkeeping, but the old file is removed only after
        # the new one is complete
        stale = []
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        self._write_checkpoint(runner, self.filename_tmpl.format(step),
                               self.by_epoch, meta)
        if not is_main_process():
            return
        for old in stale:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if old != step and osp.isfile(path):
                os.remove(path)
                if osp.isfile(path + DIGEST_SUFFIX):
                    os.remove(path + DIGEST_SUFFIX)
                print_log(f'removed {path} (max_keep_ckpts='
                          f'{self.max_keep_ckpts})', logger='current')

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best:
            return
        self._check_finite(runner)
        if not self._local():
            return super()._save_best_checkpoint(runner, metrics)
        # mmengine removes the previous best file before writing the new
        # one: hide the old paths from it and remove them afterwards
        old_single = getattr(self, 'best_ckpt_path', None)
        old_dict = dict(getattr(self, 'best_ckpt_path_dict', {}) or {})
        self.best_ckpt_path = None
        if old_dict:
            self.best_ckpt_path_dict = {k: None for k in old_dict}
        try:
            with self._atomic_runner_saves(runner):
                super()._save_best_checkpoint(runner, metrics)
        finally:
            stale = []
            if self.best_ckpt_path is None:
                self.best_ckpt_path = old_single
            elif old_single and old_single != self.best_ckpt_path:
                stale.append(old_single)
            for key, old in old_dict.items():
                if self.best_ckpt_path_dict.get(key) is None:
                    self.best_ckpt_path_dict[key] = old
                elif old and old != self.best_ckpt_path_dict[key]:
                    stale.append(old)
        if is_main_process():
            for path in stale:
                if osp.isfile(path):
                    os.remove(path)
                    if osp.isfile(path + DIGEST_SUFFIX):
                        os.remove(path + DIGEST_SUFFIX)
                    print_log(f'The previous best checkpoint {path} is '
                              'removed', logger='current')


# configs name mmengine's hook: they get this one (see the module docstring)
HOOKS.register_module(
    name='CheckpointHook', module=CrashSafeCheckpointHook, force=True)
