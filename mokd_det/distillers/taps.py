"""Feature taps: record what named submodules of a model produce.

A tap is written in a config as a string ``'<module path>[:<index>]'``:

* ``'neck'``: the output of ``model.neck`` (for an FPN, the tuple of levels);
* ``'backbone.layer3'``: a backbone stage;
* ``'bbox_head:0'``: element 0 of the dense head's output (its per-level
  classification logits);
* ``'roi_head.bbox_head:0'``: the RoI head's classification logits.

A module that runs several times in one forward (a head's conv applied per
FPN level) records one entry per call, and the tap returns them as a list.
Taps are validated when the model is built: a path that matches no module
fails with the closest existing names, and a module that does not run in
the forward pass fails the build-time probe (:mod:`.probe`).
"""
import difflib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence)

from torch import nn


@dataclass(frozen=True)
class Tap:
    """A parsed tap: the module path and an optional output index.

    Args:
        path: Dotted module path inside the model, e.g. ``'neck'``.
        index: Element of the module's (tuple) output to take; None takes
            the whole output. Defaults to None.
        inputs: Record the module's positional inputs instead of its output
            (e.g. the RoIs going into an RoI extractor). Defaults to False.
    """
    path: str
    index: Optional[int] = None
    inputs: bool = False

    @classmethod
    def parse(cls, spec: str) -> 'Tap':
        if not isinstance(spec, str) or not spec:
            raise TypeError(f'a tap is a string like "neck" or '
                            f'"bbox_head:0", got {spec!r}')
        path, _, index = spec.partition(':')
        return cls(path, int(index) if index else None)

    def __str__(self) -> str:
        kind = ' (inputs)' if self.inputs else ''
        return self.path + ('' if self.index is None else
                            f':{self.index}') + kind


def find_module(model: nn.Module, path: str, role: str) -> nn.Module:
    """Returns ``model``'s submodule at ``path``.

    Raises:
        ValueError: No such module; the message lists the closest names.
    """
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    close = difflib.get_close_matches(path, list(modules), n=5, cutoff=0.4)
    top = sorted({n.split('.')[0] for n in modules if n})
    raise ValueError(
        f'{role} tap "{path}" matches no module of {type(model).__name__}. '
        f'Closest names: {close or "none"}; top-level modules: {top}.')


class TapRecorder:
    """Records the taps of one model through forward hooks.

    Hooks are attached only inside :meth:`recording`, so the model behaves
    normally (and pickles, deep-copies, exports) outside it.

    Args:
        model: The model whose submodules are tapped.
        taps: The taps to record.
        role: ``'student'`` or ``'teacher'``, for error messages.
    """

    def __init__(self, model: nn.Module, taps: Iterable[Tap], role: str):
        self.role = role
        self.taps = sorted(set(taps), key=str)
        self._modules = {
            t: find_module(model, t.path, role)
            for t in self.taps
        }
        self._records: Dict[Tap, List[Any]] = {}

    @contextmanager
    def recording(self, through_forward: bool = False
                  ) -> Iterator['TapRecorder']:
        """Clears the records and records every tapped call until exit.

        Args:
            through_forward: Wrap the modules' ``forward`` instead of
                registering forward hooks, so that direct calls of
                ``module.forward()`` (mmdet's ``mode='tensor'`` forwards call
                their heads that way) are recorded too: the build-time
                probe. Defaults to False.
        """
        self._records = {tap: [] for tap in self.taps}
        with ExitStack() as stack:
            for tap, module in self._modules.items():
                def record(args, output, _tap=tap):
                    self._records[_tap].append(
                        args if _tap.inputs else output)
                if through_forward:
                    stack.enter_context(wrap_forward(module, record))
                else:
                    handle = module.register_forward_hook(
                        lambda mod, args, output, _record=record:
                        _record(args, output))
                    stack.callback(handle.remove)
            yield self

    def count(self, tap: Tap) -> int:
        """How many times ``tap``'s module ran since :meth:`recording`
        began."""
        return len(self._records.get(tap, ()))

    def ran(self, tap: Tap) -> bool:
        """Whether ``tap``'s module ran since :meth:`recording` began."""
        return bool(self._records.get(tap))

    def get(self, tap: Tap) -> Any:
        """The recorded value of ``tap``: the output (or inputs) of its
        module, indexed by ``tap.index``; a list when the module ran more
        than once.

        Raises:
            RuntimeError: The module did not run in the recorded forward.
        """
        calls = self._records.get(tap)
        if not calls:
            raise RuntimeError(
                f'{self.role} tap "{tap}" recorded nothing: its module did '
                'not run in this forward pass.')
        if tap.index is not None:
            calls = [_index(c, tap, self.role) for c in calls]
        return calls[0] if len(calls) == 1 else calls

    def clear(self) -> None:
        """Drops the records (and the tensors they keep alive)."""
        self._records = {}

    def snapshot(self, exclude_prefix: Optional[str] = None
                 ) -> Dict[Tap, List[Any]]:
        """A copy of the current records, without the taps under
        ``exclude_prefix``."""
        return {
            tap: list(calls)
            for tap, calls in self._records.items()
            if exclude_prefix is None or
            tap.path.split('.')[0] != exclude_prefix
        }

    def restore(self, records: Dict[Tap, List[Any]]) -> None:
        """Puts snapshot records back (inside :meth:`recording`)."""
        for tap, calls in records.items():
            self._records[tap] = list(calls)


@contextmanager
def wrap_forward(module: nn.Module,
                 callback: Callable[[tuple, Any], None]) -> Iterator[None]:
    """Calls ``callback(args, output)`` after every call of ``module``'s
    ``forward``, also when it is called directly (which forward hooks do
    not see); wrappers nest and are removed on exit."""
    had_own = 'forward' in module.__dict__
    inner = module.forward

    def forward(*args, **kwargs):
        output = inner(*args, **kwargs)
        callback(args, output)
        return output

    module.forward = forward
    try:
        yield
    finally:
        if had_own:
            module.forward = inner
        else:
            del module.forward


def _index(output: Any, tap: Tap, role: str) -> Any:
    if not isinstance(output, Sequence) or tap.index >= len(output):
        length = f' of length {len(output)}' \
            if isinstance(output, Sequence) else ''
        raise IndexError(
            f'{role} tap "{tap}": the module output is '
            f'{type(output).__name__}{length}, which has no element '
            f'{tap.index}.')
    return output[tap.index]
