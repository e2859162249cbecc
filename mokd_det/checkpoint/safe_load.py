"""Safe loading of checkpoints, from every source mmengine reads them from.

What is protected
    Unpickling a file runs whatever callables its author named in it, so a
    checkpoint from elsewhere (a URL, a model zoo, a shared bucket, a file
    planted in a download cache) could run any code. mmengine 0.10.7 loads
    local files with a bare ``torch.load`` and URLs through
    ``torch.hub.load_state_dict_from_url``, which passes
    ``weights_only=False``: a teacher checkpoint or ``load_from`` given as a
    URL ran the code of whoever served it. Importing ``mokd_det`` replaces
    every loader of mmengine's ``CheckpointLoader`` with one that reads the
    file through :func:`safe_torch_load`: ``torch.load(weights_only=True)``
    with an allowlist. Under torch >= 2.6 this also makes mmengine's own
    resume checkpoints load again, which a bare weights-only load refuses.

Every scheme (the loaders live in :mod:`mokd_det.checkpoint.remote`)
    * a local path: the file itself;
    * ``http://``, ``https://``: downloaded with
      ``torch.hub.download_url_to_file`` into torch's hub cache under the
      name ``torch.hub.load_state_dict_from_url`` uses
      (``<torch.hub.get_dir()>/checkpoints/<basename of the URL>``), so the
      two share the cache; a file already there is loaded, not trusted.
      Under DDP each node's local rank 0 downloads, then all ranks meet at a
      barrier and load the cached file. Torch hub's legacy format (a zip
      holding one pre-1.6 ``torch.save`` file) is read from the zip in
      memory and goes through the same loader;
    * ``torchvision://``, ``modelzoo://``: the URL from mmengine's
      ``get_torchvision_models()``, then as ``http://``;
    * ``open-mmlab://``, ``openmmlab://``: the entry of
      ``get_external_models()`` (deprecated names renamed as mmengine does),
      a URL loaded as ``http://`` or a file under mmengine's home
      (``$MMENGINE_HOME``, else ``$XDG_CACHE_HOME/mmengine``);
    * ``mmcls://``: the URL from ``get_mmcls_models()`` as ``http://``, then
      mmengine's ``_process_mmcls_checkpoint``;
    * ``pavi://``: downloaded by ``pavi.modelcloud`` into a temporary
      directory;
    * ``s3://``, ``petrel://``, also behind a prefix such as
      ``open-mmlab:s3://``: the bytes from mmengine's file backend.

    The module-level names ``load_url`` (``mmengine.runner.checkpoint``,
    ``mmengine.utils.dl_utils`` and its ``hub``) and the ``load_from_*``
    functions of ``mmengine.runner.checkpoint`` are rebound to the safe
    versions too, so callers of those names are covered. Code that calls
    ``torch.load`` or ``torch.hub.load_state_dict_from_url`` itself, or
    that bound those mmengine names before ``mokd_det`` was imported, is not.

Design
    The allowlist is torch's default (tensors, builtin containers and
    scalars) plus exactly the types mmengine's ``Runner`` writes
    (:data:`MMENGINE_CHECKPOINT_TYPES`: ``HistoryBuffer``, numpy arrays,
    dtypes and scalars, and a ``getattr`` that resolves only the
    ``HistoryBuffer`` statistics methods). Any failure of the weights-only
    unpickler on a whole file becomes :class:`UnsafeCheckpointError`, whose
    message says that the file may be malicious, where it came from and what was
    refused, and for a file of your own suggests re-saving it as a plain
    state dict of tensors. It never suggests loading without the check.
    :func:`allow_checkpoint_types` extends the allowlist with classes of
    your own and refuses functions, builtins, methods and classes from
    modules that reach the system. A file that fails to load because it is
    damaged (cut short, or a member failing its CRC-32: :func:`damage`) is
    reported as :class:`CorruptCheckpointError` instead: corrupt, not
    suspicious.

The loaders are installed into mmengine when ``mokd_det`` is imported
(:mod:`mokd_det.checkpoint.install`, the one place that patches mmengine).
"""
import os
import os.path as osp
import pickle
import re
import types
import zipfile
from typing import IO, Any, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


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

# Modules whose classes are ways to run code or reach the system rather than
# data (``subprocess.Popen``, ``functools.partial``, ``operator.methodcaller``,
# ``builtins.type`` ...); torch already allows the builtin data types.
_REFUSED_MODULES = frozenset({
    'builtins', 'code', 'codeop', 'ctypes', 'functools', 'importlib', 'io',
    'multiprocessing', 'nt', 'operator', 'os', 'pickle', 'posix', 'pty',
    'runpy', 'shutil', 'signal', 'socket', 'subprocess', 'sys', 'threading',
    'types', 'webbrowser'
})


def _check_allowable(obj: Any) -> None:
    """Raises TypeError unless ``obj`` is a class that may be allowed."""
    if not isinstance(obj, type):
        if isinstance(obj, (types.BuiltinFunctionType,
                            types.BuiltinMethodType)):
            kind = 'a builtin function'
        elif isinstance(obj, types.MethodType):
            kind = 'a method'
        elif callable(obj):
            kind = 'a function or other callable'
        else:
            kind = f'a {type(obj).__name__}, not a class'
        raise TypeError(
            f'allow_checkpoint_types takes classes only; {obj!r} is {kind}. '
            'Unpickling calls an allowed global with arguments chosen by '
            "the file's author, so allowing a function such as eval, exec "
            'or os.system would let any checkpoint run any code.')
    module = (obj.__module__ or '').split('.')[0]
    if issubclass(obj, type) or module in _REFUSED_MODULES:
        raise TypeError(
            f'allow_checkpoint_types refuses {obj.__module__}.'
            f'{obj.__qualname__}: it is a metaclass or a class from '
            f'`{module}`, whose objects can run code or reach the system '
            'when a crafted checkpoint creates them. Only allow data '
            'classes of your own.')


def allow_checkpoint_types(*types_: Any) -> None:
    """Allows more classes in the checkpoints mokd_det's loaders read.

    Only allow classes from code you trust: unpickling creates their objects
    with arguments chosen by the file's author. Functions, builtins and
    methods are refused, since allowing one (``eval``, ``exec``,
    ``os.system``) would let a checkpoint run any code.

    Args:
        *types_: Classes, or ``(class, 'module.Name')`` pairs that map the
            name a pickle uses to the class (as ``torch.serialization.
            add_safe_globals`` takes them).

    Raises:
        TypeError: One of ``types_`` is not a class, is a metaclass, or
            comes from a module such as ``os``, ``subprocess`` or
            ``builtins``; nothing is allowed then.
    """
    for entry in types_:
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[1], str):
                raise TypeError('a pair must be (class, "module.Name"), got '
                                f'{entry!r}')
            _check_allowable(entry[0])
        else:
            _check_allowable(entry)
    _extra_types.extend(t for t in types_ if t not in _extra_types)


def allowed_checkpoint_types() -> List[Any]:
    """The current allowlist: mmengine's types plus the user's."""
    return MMENGINE_CHECKPOINT_TYPES + _extra_types


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint was refused by the weights-only loader.

    Attributes:
        source: Where the file came from (path, URL, cache file).
        refused: The refused global or call, when the unpickler named one.
    """

    def __init__(self, message: str, source: str = '',
                 refused: Optional[str] = None):
        super().__init__(message)
        self.source = source
        self.refused = refused


class CorruptCheckpointError(pickle.UnpicklingError):
    """A checkpoint file is damaged (cut short, or failing its checksums),
    as opposed to whole but refused (:class:`UnsafeCheckpointError`).

    Attributes:
        source: Where the file came from.
        reason: What is wrong with it.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(
            f'The checkpoint {source} is corrupt: {reason}. It was not '
            'loaded. A file cut short comes from an interrupted write or '
            'copy, or a full disk: use the previous checkpoint (--resume '
            'falls back to it) or copy or download the file again.')
        self.source = source
        self.reason = reason


_ZIP_MAGIC = b'PK\x03\x04'


def damage(f: Union[str, os.PathLike, IO[bytes]]) -> Optional[str]:
    """Why ``f`` (a path, or a seekable binary file) is not a whole
    checkpoint archive, or None when it is whole or its format cannot
    tell. ``torch.save`` writes a zip archive, whose central directory
    comes last (a file cut short loses it) and whose members carry CRC-32
    checksums (:meth:`zipfile.ZipFile.testzip` reads every member)."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as handle:
            return damage(handle)
    if not (hasattr(f, 'seek') and f.seekable()):
        return None
    start = f.tell()
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size == 0:
            return 'it is empty (0 bytes)'
        if f.read(4) != _ZIP_MAGIC:
            return None  # not a zip (a legacy format): nothing to check
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, EOFError, ValueError) as err:
            return (f'it is cut short or damaged ({size} bytes; its zip '
                    f'archive does not read: {err})')
        if bad is not None:
            return f'its member {bad!r} fails its CRC-32 check'
        return None
    finally:
        f.seek(start)


# How torch's weights-only unpickler names what it refused (its messages
# change between versions; anything unmatched is still refused).
_REFUSED_PATTERNS = [
    re.compile(r'GLOBAL (\S+) whose module \S+ is blocked'),
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'Unsupported global: GLOBAL (\S+)'),
    re.compile(r'reduce for unrecognized function ([^\n]+?)'
               r'(?: which belongs to|\n|$)'),
    re.compile(r'create new object [^\n]* but got ([^\n]+)'),
]
_REFUSED_GETATTR = re.compile(r'refused (getattr\([^\n]*?\))')
_SAFE_NAME = re.compile(r'[\w.<>\' ()-]{1,120}')
# sentences of torch's text that give advice (how to load anyway): dropped
_ADVICE = re.compile(r'weights.?only|safe_globals|trust|arbitrary code|'
                     r'pytorch\.org|file an issue|jit\.load', re.I)


def _refused_name(text: str) -> Optional[str]:
    """The global the unpickler refused, as named in ``text``."""
    for pattern in _REFUSED_PATTERNS:
        match = pattern.search(text)
        if match is not None:
            name = match.group(1).strip()
            if '.' not in name and name.isidentifier():
                name = f'builtins.{name}'  # torch strips 'builtins.'
            # the name comes from the file: show it only if it looks like one
            return name if _SAFE_NAME.fullmatch(name) else '<unprintable>'
    return None


def _torch_detail(text: str) -> str:
    """The first sentences of torch's error text, without its advice."""
    text = text.split('WeightsUnpickler error:')[-1]
    sentences = re.split(r'(?<=[.!?])\s+', text.strip())
    kept = ' '.join([s for s in sentences
                     if s and not _ADVICE.search(s)][:3])
    return kept if len(kept) <= 300 else kept[:297] + '...'


def _refusal(source: str, err: BaseException) -> UnsafeCheckpointError:
    """The error to raise for a failure ``err`` of the weights-only load."""
    text = str(err)
    getattr_call = _REFUSED_GETATTR.search(text)
    refused = getattr_call.group(1) if getattr_call else _refused_name(text)
    if getattr_call is not None:
        what = (f'it calls {refused} while unpickling; only the '
                'HistoryBuffer statistics methods that mmengine pickles are '
                'resolved, since a general getattr reaches eval and the like')
    elif 'TorchScript' in text:
        what = ('it is a TorchScript archive, which holds code, not only '
                'weights')
    elif refused is not None:
        what = (f'unpickling it would use `{refused}`, which is not among '
                'the types allowed in checkpoints (tensors, plain containers '
                "and what mmengine's Runner writes)")
    else:
        detail = _torch_detail(text)
        what = ("torch's weights-only unpickler could not load it "
                f'({type(err).__name__}{": " + detail if detail else ""})')
    return UnsafeCheckpointError(
        f'Refusing to load the checkpoint from {source}: it may be '
        f'malicious. {what[0].upper() + what[1:]}. Nothing in it was run. '
        'If you produced the file yourself, re-save its weights as a plain '
        'state dict of tensors, e.g. torch.save(model.state_dict(), path), '
        'and load that file.', source=source, refused=refused)


def safe_torch_load(f: Union[str, os.PathLike, IO[bytes]],
                    map_location: Optional[Any] = None,
                    source: Optional[str] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist.

    Args:
        f: A path, or a binary file-like object (e.g. ``io.BytesIO``).
        map_location: As for ``torch.load``.
        source: Where the file came from (a URL, a ``s3://`` path), for
            error messages. Defaults to the path or the object's ``name``.

    Returns:
        The unpickled checkpoint.

    Raises:
        FileNotFoundError: ``f`` is a path that does not exist.
        CorruptCheckpointError: The file is cut short or fails its
            checksums (:func:`damage`).
        UnsafeCheckpointError: The weights-only unpickler refused a whole
            file or failed on it; the message says why and where it came
            from.
    """
    if isinstance(f, (str, os.PathLike)):
        f = osp.expanduser(os.fspath(f))
        if not osp.isfile(f):
            raise FileNotFoundError(f'{f} can not be found.')
        source = source or f
    else:
        source = source or str(getattr(f, 'name', 'a file-like object'))
    try:
        with torch.serialization.safe_globals(allowed_checkpoint_types()):
            return torch.load(f, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure, whatever its text
        # a damaged file is reported as corrupt, not as possibly malicious
        reason = damage(f)
        if reason is not None:
            raise CorruptCheckpointError(source, reason) from None
        if isinstance(err, OSError):
            raise
        raise _refusal(source, err) from None


def load_from_local_safe(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local paths."""
    return safe_torch_load(filename, map_location)
