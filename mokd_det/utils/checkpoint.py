"""Safe loading of mmengine checkpoints under torch >= 2.6.

mmengine 0.10.7 loads local checkpoints with ``torch.load(filename,
map_location=...)``. Since torch 2.6 that means ``weights_only=True``, and
the checkpoints mmengine itself writes (``message_hub`` holds
``HistoryBuffer`` objects and numpy scalars) are then refused, which breaks
``--resume`` and ``load_from``. Passing ``weights_only=False`` would fix it
by letting any pickle execute code, which is not acceptable for files that
may come from elsewhere.

This module replaces mmengine's loader for local paths with one that keeps
``weights_only=True`` and allows exactly the types mmengine checkpoints hold
(:data:`MMENGINE_CHECKPOINT_TYPES`). A checkpoint carrying any other type is
refused with :class:`UnsafeCheckpointError`, which names the type and how to
allow it: ``allow_checkpoint_types(TheType)`` in a module listed in the
config's ``custom_imports``, for files you trust.

The loader is installed when ``mokd_det`` is imported. On torch < 2.5 (no
``torch.serialization.safe_globals``) it is not installed and mmengine's own
loader applies unchanged.
"""
import os.path as osp
import pickle
import re
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def _numpy_types() -> List[Any]:
    """numpy objects pickled into mmengine checkpoints: arrays, dtypes and
    scalars (e.g. ``np.float64`` losses in ``message_hub.runtime_info``)."""
    try:  # numpy >= 2 moved the core module; pickles may name either
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [
        type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32,
                                    np.int64, np.uint8, np.uint16, np.uint32,
                                    np.uint64, np.float16, np.float32,
                                    np.float64)
    ]
    return [np.ndarray, np.dtype, _reconstruct, scalar, *dtype_classes]


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling.

    A ``HistoryBuffer`` pickles its ``statistics_methods`` as
    ``getattr(HistoryBuffer, 'mean')`` and the like. A general ``getattr``
    would let a crafted file walk from any allowed object to ``eval``, so only
    those lookups are resolved.
    """
    # the built-in statistics are registered lazily by the first instance
    allowed = {'min', 'max', 'current', 'mean'}
    if obj is HistoryBuffer and \
            name in allowed.union(HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'refused getattr({obj!r}, {name!r})')


#: Types (besides tensors and builtin containers, which torch allows by
#: itself) found in checkpoints written by mmengine's ``Runner``; the
#: ``(callable, name)`` form maps a pickled global to a safe stand-in.
MMENGINE_CHECKPOINT_TYPES: List[Any] = [
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
    *_numpy_types()
]

_extra_types: List[Any] = []


def allow_checkpoint_types(*types: Any) -> None:
    """Allows more types in checkpoints loaded by mmengine's local loader.

    Only allow types from code you trust: unpickling them may call them.

    Args:
        *types: Classes or functions, as ``torch.serialization.
            add_safe_globals`` takes them.
    """
    _extra_types.extend(t for t in types if t not in _extra_types)


def allowed_checkpoint_types() -> List[Any]:
    """The current allowlist: mmengine's types plus the user's."""
    return MMENGINE_CHECKPOINT_TYPES + _extra_types


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a type that is not on the allowlist."""


_UNSUPPORTED_GLOBAL = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')
_REFUSED_GETATTR = re.compile(r'refused (getattr\(.*?\))')


def safe_torch_load(filename: str, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UnsafeCheckpointError: The file holds a type not on the allowlist;
            the message names it and says how to allow it.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        with torch.serialization.safe_globals(allowed_checkpoint_types()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        getattr_call = _REFUSED_GETATTR.search(str(err))
        if getattr_call is not None:
            raise UnsafeCheckpointError(
                f'Refusing to load {filename}: it calls '
                f'{getattr_call.group(1)} while unpickling; only the '
                'HistoryBuffer statistics methods that mmengine pickles are '
                'resolved, since a general getattr lets a crafted file reach '
                'eval.') from None
        match = _UNSUPPORTED_GLOBAL.search(str(err))
        if match is None:
            raise
        name = match.group(1)
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it holds `{name}`, which is not '
            'among the types mokd_det allows in checkpoints (loading uses '
            'torch.load(weights_only=True); unpickling other types could run '
            'arbitrary code). If you trust this file, allow the type by '
            f'calling mokd_det.utils.allow_checkpoint_types({name}) in a '
            "module listed in your config's custom_imports.") from None


def _load_from_local(filename: str, map_location: Optional[Any] = None):
    """mmengine ``CheckpointLoader`` backend for local paths."""
    return safe_torch_load(filename, map_location)


def install_safe_checkpoint_loader() -> Optional[Callable]:
    """Makes mmengine load local checkpoints through :func:`safe_torch_load`.

    Returns:
        The installed loader, or None on torch versions without
        ``torch.serialization.safe_globals`` (< 2.5).
    """
    if not hasattr(torch.serialization, 'safe_globals'):
        return None
    # the function name after its 'load_from_' prefix is what mmengine logs
    _load_from_local.__name__ = 'load_from_local_safe'
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    return _load_from_local
