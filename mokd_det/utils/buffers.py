"""Snapshots of a model's buffers, put back later: the one mechanism behind
the non-finite guard's undo (every buffer, restored when an iteration is
skipped) and the recomputation hooks' extra forwards (normalisation
statistics only, restored on exit)."""
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Type

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class BufferSnapshot:
    """A copy of ``model``'s buffers, or of those of its ``modules`` of the
    given types only, that :meth:`restore` copies back in place.

    Args:
        model: The module whose buffers are kept.
        modules: Module classes whose own buffers are kept (e.g.
            ``(_BatchNorm, )``); None keeps every buffer. Defaults to None.
    """

    def __init__(self, model: nn.Module,
                 modules: Optional[Tuple[Type[nn.Module], ...]] = None):
        if modules is None:
            buffers = model.buffers()
        else:
            buffers = (b for m in model.modules() if isinstance(m, modules)
                       for b in m.buffers(recurse=False))
        self._saved = [(b, b.detach().clone()) for b in buffers]

    def restore(self) -> None:
        with torch.no_grad():
            for buf, saved in self._saved:
                buf.copy_(saved)


@contextmanager
def norm_stats_kept(model: nn.Module) -> Iterator[None]:
    """Restores every BatchNorm's running statistics on exit (other buffers,
    such as MKD's temperatures, keep what the block did to them)."""
    snapshot = BufferSnapshot(model, (_BatchNorm, ))
    try:
        yield
    finally:
        snapshot.restore()
