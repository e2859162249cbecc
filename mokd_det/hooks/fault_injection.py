"""Faults injected into a training run on purpose, to test that the run
survives them (``tools/fault_soak.py`` drives it).

:class:`FaultInjectionHook` fires each fault of its plan at its iteration:

* ``'preempt'``: SIGTERM to this process before the iteration (the
  scheduler's preemption; ``CrashSafeCheckpointHook`` checkpoints the
  iteration and exits 75);
* ``'kill'``: SIGKILL to this process before the iteration (a lost worker:
  under ``torchrun --max-restarts`` the group restarts and
  ``tools/train.py`` resumes on its own);
* ``'write_fail'``: the next checkpoint write at or after the iteration
  fails half-way with ENOSPC (a full disk; the run stops with
  ``CheckpointWriteError`` and the previous checkpoint stays whole);
* ``'nonfinite'``: the student's backbone outputs NaN during the iteration,
  so every loss is NaN (a data fault: the KD wrappers skip the update and
  count it).

A fault fires on its ``rank`` (default 0; ``'nonfinite'`` on every rank).
The first three fire once per run: a marker file under
``<work_dir>/faults/`` records that they fired, so the resumed run, which
trains the iteration again, goes on. ``'nonfinite'`` is a property of its
iteration and fires every time the iteration runs, so that a run resumed
from before it follows the same trajectory as a run that never stopped.
"""
import errno
import os
import os.path as osp
import signal
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import get_rank
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

KINDS = ('preempt', 'kill', 'write_fail', 'nonfinite')
ONCE = ('preempt', 'kill', 'write_fail')


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Fires the faults of ``faults`` (see the module docstring).

    Args:
        faults: ``[dict(kind=..., iter=N, rank=R), ...]``; ``iter`` is the
            0-based iteration (``runner.iter``) before which, or during
            which, the fault fires; ``rank`` defaults to 0.

    Raises:
        ValueError: An unknown kind, or a negative iteration.
    """
    priority = 'VERY_HIGH'

    def __init__(self, faults: Sequence[dict]):
        self.faults: List[dict] = []
        for i, fault in enumerate(faults):
            kind, at = fault.get('kind'), fault.get('iter')
            if kind not in KINDS:
                raise ValueError(f'faults[{i}]: kind {kind!r} is not one of '
                                 f'{", ".join(KINDS)}')
            if not isinstance(at, int) or at < 0:
                raise ValueError(f'faults[{i}]: iter must be an iteration '
                                 f'index >= 0, got {at!r}')
            self.faults.append(dict(index=i, kind=kind, iter=at,
                                    rank=int(fault.get('rank', 0))))
        self._nan_handles: List = []
        self._original_put = None

    # -------------------------------------------------------------- markers
    @staticmethod
    def _marker(runner, fault: dict) -> str:
        return osp.join(runner.work_dir, 'faults',
                        f'{fault["index"]}_{fault["kind"]}_{fault["iter"]}')

    def _claim(self, runner, fault: dict) -> bool:
        """True once per run for a one-shot fault (creates its marker)."""
        path = self._marker(runner, fault)
        os.makedirs(osp.dirname(path), exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def _say(self, fault: dict, what: str) -> None:
        print(f'[fault] {fault["kind"]} at iteration {fault["iter"]} '
              f'(rank {get_rank()}): {what}', flush=True)

    # ---------------------------------------------------------------- hooks
    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[Dict] = None) -> None:
        for fault in self.faults:
            kind = fault['kind']
            if kind == 'nonfinite':
                if runner.iter == fault['iter']:
                    self._poison(runner)
                    self._say(fault, 'the losses are NaN')
                continue
            if get_rank() != fault['rank']:
                continue
            if kind == 'write_fail':
                if runner.iter >= fault['iter'] and \
                        self._original_put is None and \
                        not osp.exists(self._marker(runner, fault)):
                    self._fail_next_write(runner, fault)
                continue
            if runner.iter == fault['iter'] and self._claim(runner, fault):
                self._say(fault, 'sending ' + ('SIGTERM' if kind == 'preempt'
                                               else 'SIGKILL'))
                os.kill(os.getpid(), signal.SIGTERM if kind == 'preempt'
                        else signal.SIGKILL)

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Optional[Dict] = None,
                         outputs: Optional[dict] = None) -> None:
        for handle in self._nan_handles:
            handle.remove()
        self._nan_handles = []

    def after_run(self, runner) -> None:
        if self._original_put is not None:
            LocalBackend.put = self._original_put
            self._original_put = None

    # --------------------------------------------------------------- faults
    def _poison(self, runner) -> None:
        """NaN out of the student's backbone for this iteration."""
        model = getattr(runner.model, 'module', runner.model)
        student = getattr(model, 'student', model)

        def nan(module, inputs, output):
            if isinstance(output, torch.Tensor):
                return output * float('nan')
            return type(output)(o * float('nan') for o in output)

        self._nan_handles.append(
            student.backbone.register_forward_hook(nan))

    def _fail_next_write(self, runner, fault: dict) -> None:
        """The next checkpoint (``epoch_*``/``iter_*``) written through
        mmengine's local back-end is cut half-way by ENOSPC; later writes
        succeed."""
        original = LocalBackend.put
        self._original_put = original
        hook = self

        def put(backend, obj, filepath):
            name = osp.basename(str(filepath))
            if not name.startswith(('epoch_', 'iter_')) or \
                    '.pth' not in name or not hook._claim(runner, fault):
                return original(backend, obj, filepath)
            LocalBackend.put, hook._original_put = original, None  # disarmed
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            hook._say(fault, f'failing the write of {filepath} (ENOSPC)')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        LocalBackend.put = put
        print_log(f'[fault] write_fail armed at iteration {runner.iter}',
                  logger='current')
