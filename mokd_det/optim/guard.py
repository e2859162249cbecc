"""Non-finite steps: skipped, undone, counted, and a stop when a run diverges.

Shared by every optim wrapper of mokd_det (:class:`KDOptimWrapper` for
plain KD, and the DOT / MoKD / MKD wrappers):

* an update whose loss or (fp32) gradients are not finite is **skipped**:
  the optimizer, the method state and the parameters stay as they were;
* the normalisation buffers (BatchNorm running statistics) that the
  iteration's forward moved are **put back** when its loss is not finite:
  the wrapper snapshots the model's buffers in :meth:`optim_context`, which
  mmengine enters around every training forward (both the model's
  ``train_step`` and ``MMDistributedDataParallel.train_step``);
* skips are counted (``train/kd/skipped_steps``), and after
  ``max_nonfinite_steps`` **consecutive** non-finite iterations the run
  stops with :class:`NonFiniteTrainingError`, which says what to change.
  Loss-scale overflows of fp16 AMP, which a dynamic loss scale settles by
  itself, are skipped but do not count towards the limit.

With the crash-safe ``CheckpointHook`` (:mod:`mokd_det.hooks.checkpoint`),
which never writes a checkpoint holding a non-finite tensor, a diverging
run stops with a message and its last finite checkpoint survives.
"""
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size
from torch import Tensor, nn

from ..utils.buffers import BufferSnapshot


class NonFiniteTrainingError(RuntimeError):
    """Training produced non-finite values for too many iterations in a row,
    or a state holding non-finite values was about to be saved."""


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True if every element of every tensor is finite (one fused norm per
    device, one host sync)."""
    tensors = [t for t in tensors if t is not None and t.numel()]
    if not tensors:
        return True
    norms = torch._foreach_norm([t.detach() for t in tensors])
    return bool(torch.isfinite(torch.stack(
        [n.float().to(norms[0].device) for n in norms])).all())


def all_ranks_agree(ok: bool, device: Optional[torch.device] = None) -> bool:
    """``ok`` on every rank (one all-reduce of one number under DDP), so
    that all ranks skip the same updates."""
    if get_world_size() == 1:
        return ok
    flag = torch.tensor([0. if ok else 1.], device=device)
    all_reduce(flag)
    return bool(flag.item() == 0)


class NonFiniteGuard:
    """Mixin of the skip / undo / stop logic (see the module docstring).

    The wrapper calls :meth:`init_guard` in its constructor,
    :meth:`snapshot_buffers` from ``optim_context``, :meth:`record_skip`
    for a skipped iteration and :meth:`record_update` for an applied one.
    """

    def init_guard(self, max_nonfinite_steps: int = 20) -> None:
        if not isinstance(max_nonfinite_steps, int) or \
                max_nonfinite_steps < 1:
            raise ValueError('max_nonfinite_steps must be an int >= 1 (the '
                             'number of consecutive non-finite iterations '
                             f'tolerated), got {max_nonfinite_steps!r}')
        self.max_nonfinite_steps = max_nonfinite_steps
        self._skipped = 0
        self._consecutive_nonfinite = 0
        self._buffers: Optional[BufferSnapshot] = None

    def snapshot_buffers(self, model: nn.Module) -> None:
        """Keeps a copy of the model's buffers (normalisation statistics:
        small next to the parameters)."""
        self._buffers = BufferSnapshot(model)

    def restore_buffers(self) -> None:
        """Puts the buffers back as :meth:`snapshot_buffers` saw them."""
        if self._buffers is not None:
            self._buffers.restore()

    def record_update(self) -> None:
        self._consecutive_nonfinite = 0

    def record_skip(self, what: str, counts: bool = True) -> None:
        """Counts a skipped iteration; ``counts=False`` for loss-scale
        overflows (not a sign of divergence).

        Raises:
            NonFiniteTrainingError: ``max_nonfinite_steps`` consecutive
                non-finite iterations.
        """
        self._skipped += 1
        self.message_hub.update_scalar('train/kd/skipped_steps',
                                       float(self._skipped))
        if not counts:
            return
        self.restore_buffers()
        self._consecutive_nonfinite += 1
        if self._consecutive_nonfinite >= self.max_nonfinite_steps:
            raise NonFiniteTrainingError(
                f'{type(self).__name__}: {self._consecutive_nonfinite} '
                f'consecutive iterations with non-finite {what}; the run '
                'is diverging, so it stops here (those updates were '
                'skipped, and no checkpoint holding a non-finite value is '
                'ever written: the last checkpoint in the work directory is '
                'finite and --resume continues from it). Lower the learning '
                'rate, add a warm-up or optim_wrapper.clip_grad, check the '
                'loss weights and the data, or raise '
                'optim_wrapper.max_nonfinite_steps (now '
                f'{self.max_nonfinite_steps}) to tolerate longer runs of '
                'non-finite iterations.')

    def guard_state(self) -> dict:
        """The counters, as entries of the wrapper's ``state_dict``."""
        return dict(mokd_skipped=self._skipped,
                    mokd_nonfinite_run=self._consecutive_nonfinite)

    def pop_guard_state(self, state_dict: dict) -> None:
        """Takes the counters out of a wrapper ``state_dict`` (a copy)."""
        self._skipped = state_dict.pop('mokd_skipped', 0)
        self._consecutive_nonfinite = state_dict.pop('mokd_nonfinite_run', 0)
