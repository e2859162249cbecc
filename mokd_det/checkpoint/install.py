"""The one place where ``mokd_det`` patches mmengine's checkpoint loading.

Importing ``mokd_det`` calls :func:`install_safe_checkpoint_loader`, which
replaces (``force=True``) the loader of every scheme of mmengine's
``CheckpointLoader`` by the safe ones (:mod:`.safe_load` for local paths,
:data:`.remote.SAFE_SCHEMES` for URLs) and rebinds the module-level names
callers may hold: ``load_from_local`` and the ``load_from_*`` functions of
``mmengine.runner.checkpoint`` and every ``load_url`` mmengine exposes
(``mmengine.runner.checkpoint``, ``mmengine.utils.dl_utils`` and its
``hub``). The crash-safe ``CheckpointHook`` (:mod:`mokd_det.hooks.
checkpoint`), registered over mmengine's on the same import, says both at
the start of every run. On torch < 2.5 (no
``torch.serialization.safe_globals``) nothing is installed and mmengine's
loaders apply unchanged.
"""
from typing import Callable, Optional

import torch
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .remote import SAFE_SCHEMES, safe_load_url
from .safe_load import load_from_local_safe


def install_safe_checkpoint_loader() -> Optional[Callable]:
    """Makes mmengine load checkpoints from every scheme safely (see the
    module docstring). Calling it again is harmless.

    Returns:
        The local-path loader, or None on torch versions without
        ``torch.serialization.safe_globals`` (< 2.5), where nothing is
        installed.
    """
    if not hasattr(torch.serialization, 'safe_globals'):
        return None
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True)
    mm_checkpoint.load_from_local = load_from_local_safe
    for prefixes, loader, mmengine_name in SAFE_SCHEMES:
        CheckpointLoader.register_scheme(prefixes, loader=loader, force=True)
        setattr(mm_checkpoint, mmengine_name, loader)
    mm_checkpoint.load_url = safe_load_url
    try:
        from mmengine.utils import dl_utils
    except ImportError:  # pragma: no cover - mmengine without dl_utils
        return load_from_local_safe
    for module in (dl_utils, getattr(dl_utils, 'hub', None)):
        if module is not None and hasattr(module, 'load_url'):
            module.load_url = safe_load_url
    return load_from_local_safe
