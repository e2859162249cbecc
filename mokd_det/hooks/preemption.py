"""Preemption: a scheduler's signal turned into a checkpoint and a
documented exit code.

Clusters preempt jobs with a signal and a grace period: slurm sends
SIGTERM (or, with ``--signal=USR1@90``, SIGUSR1 90 s before the end),
Kubernetes SIGTERM. mmengine handles neither: the process dies with
whatever progress the last periodic checkpoint holds. With
:class:`PreemptionSignals` (installed by ``CrashSafeCheckpointHook``,
so every config has it):

* the handler only records the signal; the iteration in progress finishes.
  A second signal of the same kind gets the handler that was there before
  (by default: the process ends), so that a run stuck outside its
  iterations (or one that crashed, in a process that lives on) still
  answers it;
* after each iteration the ranks agree (one all-reduce of one number) on
  whether any of them was signalled, so every rank stops after the same
  iteration;
* a checkpoint of that iteration is written through the crash-safe path
  (``iter_<N>.pth``, mid-epoch too: ``mokd_det.engine.loops`` resumes an
  epoch after its trained batches), ``last_checkpoint`` names it;
* every rank waits for it at a barrier and exits with
  :data:`PREEMPTED_EXIT_CODE` (75, ``EX_TEMPFAIL`` of sysexits.h: "try
  again later"), so a requeue script can tell a preemption from a failure
  (any other non-zero code). ``--resume`` then continues exactly.
"""
import os
import signal
import threading
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce

#: the exit code of a run stopped by a preemption signal after writing its
#: checkpoint (sysexits.h EX_TEMPFAIL)
PREEMPTED_EXIT_CODE = 75


class PreemptionSignals:
    """Records the preemption signals a process receives.

    Args:
        signals: Signal names. Defaults to ``('SIGTERM', 'SIGUSR1')``.
    """

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1')):
        for name in signals:
            if not isinstance(getattr(signal, str(name), None),
                              signal.Signals):
                raise ValueError(f'preempt_signals: {name!r} is not a '
                                 'signal name (e.g. "SIGTERM", "SIGUSR1")')
        self.signals = [getattr(signal, name) for name in signals]
        self.received: Optional[int] = None
        self._previous = {}

    #: the instance whose handlers are installed (one per process): a run
    #: that crashed never uninstalled its own; the next run's install does
    _installed: Optional['PreemptionSignals'] = None

    def _record(self, signum, frame) -> None:
        if self.received == signum:  # the second one: as before us
            previous = self._previous.get(signum, signal.SIG_DFL)
            self.uninstall()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.received = signum

    def install(self) -> bool:
        """Installs the handlers (only the main thread can); True if it
        did."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if PreemptionSignals._installed is not None:
            PreemptionSignals._installed.uninstall()
        self.received = None
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)
        PreemptionSignals._installed = self
        return True

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        if PreemptionSignals._installed is self:
            PreemptionSignals._installed = None

    def agreed(self) -> Optional[int]:
        """The signal any rank received (the same answer on every rank,
        one all-reduce), or None."""
        flag = torch.tensor([float(self.received or 0)])
        all_reduce(flag, op='max')
        return int(flag.item()) or None
