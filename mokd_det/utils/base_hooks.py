"""Custom hooks that a config's base configs set and the config drops.

mmengine merges a config into its bases dict by dict, but a list replaces
the base's list: a distillation config that writes
``custom_hooks = [dict(type='ExportStudentHook')]`` over RTMDet's config
silently drops RTMDet's ``EMAHook`` and ``PipelineSwitchHook``, and the
student trains without its recipe's weight averaging and pipeline switch.
The idiom that keeps them, in a ``.py`` config (where ``_base_`` holds the
merged base config):

.. code-block:: python

    custom_hooks = [*_base_.get('custom_hooks', []),
                    dict(type='ExportStudentHook')]

:func:`check_base_hooks` (run by ``tools/train.py`` before anything is
built, and by ``ExportStudentHook`` for runs started by other tools) fails
when a hook type of any base config is missing from the final
``custom_hooks``, and says how to keep it, or how to drop it on purpose:
``dropped_base_hooks = ['EMAHook']`` at the config's top level.
"""
from typing import Dict, List, Optional

from mmengine.config import Config

#: the top-level config key that lists hook types dropped on purpose
DROPPED_KEY = 'dropped_base_hooks'


def hook_type_name(hook) -> str:
    """The class name a custom hook entry builds (``'mmdet.EMAHook'`` ->
    ``'EMAHook'``; a class or an instance -> its name)."""
    kind = hook.get('type', '') if isinstance(hook, dict) else hook
    if isinstance(kind, str):
        return kind.rpartition('.')[2]
    return kind.__name__ if isinstance(kind, type) else type(kind).__name__


def _base_files(filename: str) -> List[tuple]:
    """``(as written, resolved path)`` of a config file's direct bases
    (``_base_ = [...]`` configs; lazy-import configs have none here)."""
    if not filename.endswith('.py'):
        return []
    bases = []
    for base in Config._get_base_files(filename):
        path, _ = Config._get_cfg_path(base, filename)
        bases.append((base, path))
    return bases


def base_hooks(filename: str,
               _seen: Optional[set] = None) -> Dict[str, str]:
    """Hook type -> the base config (as its child names it) of every custom
    hook that some ancestor of ``filename`` has in its merged
    ``custom_hooks``."""
    seen = set() if _seen is None else _seen
    found: Dict[str, str] = {}
    for written, path in _base_files(filename):
        if path in seen:
            continue
        seen.add(path)
        for hook in Config.fromfile(path).get('custom_hooks') or []:
            found.setdefault(hook_type_name(hook), written)
        for kind, where in base_hooks(path, seen).items():
            found.setdefault(kind, where)
    return found


def dropped_base_hooks(cfg: Config) -> Dict[str, str]:
    """Hook type -> base config, for each custom hook of ``cfg``'s base
    configs (``cfg.filename``'s ``_base_`` chain) that ``cfg.custom_hooks``
    does not have and ``cfg.dropped_base_hooks`` does not list."""
    filename = getattr(cfg, 'filename', None)
    if not filename:
        return {}
    kept = {hook_type_name(h) for h in cfg.get('custom_hooks') or []}
    kept |= set(cfg.get(DROPPED_KEY) or [])
    return {kind: where for kind, where in base_hooks(filename).items()
            if kind not in kept}


def check_base_hooks(cfg: Config) -> None:
    """Refuses a config whose ``custom_hooks`` dropped hooks of its bases.

    Raises:
        ValueError: A base config's custom hook is missing from the final
            ``custom_hooks``; the message names it, its base config and
            the two ways out.
    """
    dropped = dropped_base_hooks(cfg)
    if not dropped:
        return
    listed = ', '.join(f'{kind} (from {where})'
                       for kind, where in dropped.items())
    raise ValueError(
        f'{cfg.filename}: custom_hooks drops {listed}. A config\'s '
        'custom_hooks list replaces its base\'s (mmengine merges dicts, not '
        'lists), so the student would train without them (e.g. without '
        "RTMDet's EMA). Keep them: custom_hooks = ["
        "*_base_.get('custom_hooks', []), dict(type='ExportStudentHook'), "
        f'...]; or drop them on purpose: {DROPPED_KEY} = '
        f'{sorted(dropped)} at the top level of the config.')
