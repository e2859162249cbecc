"""The ``mokd_det::`` config scope, before any config is parsed.

mmengine resolves ``_base_ = ['<package>::<config>']`` only for the packages
in its ``MODULE2PACKAGE`` map, and resolves ``_base_`` before a config's
``custom_imports`` run. So a user config that inherits
``mokd_det::retinanet/...`` parses only where the entry is already there:
under our tools, which import ``mokd_det`` first, but not under mmdet's own
``tools/train.py``, which parses the config before importing anything of
ours.

The wheel therefore installs ``mokd_det-scope.pth`` beside the package; the
interpreter runs its one line at start-up, which calls :func:`install`. That
adds the entry the moment ``mmengine.config.utils`` is imported (a meta-path
hook; nothing is imported early, so an interpreter that never uses mmengine
pays one list insertion). ``import mokd_det`` calls :func:`install` too, so
the scope also works where the ``.pth`` is absent (``pip install -e``).

mmengine finds the configs as ``<installed mokd_det>/.mim/configs``, where
``setup.py`` copies ``configs/`` (mmdet ships its configs the same way).
This module is top-level and imports only the standard library, so the
start-up line never imports ``mokd_det`` itself (torch, mmdet).
"""
import sys

#: the module that holds mmengine's map of config scopes
TARGET = 'mmengine.config.utils'
#: the scope and the distribution mmengine looks its configs up in
SCOPE, DISTRIBUTION = 'mokd_det', 'mokd_det'


def register(module) -> None:
    """Adds ``mokd_det`` to ``module.MODULE2PACKAGE`` (mmengine's map)."""
    module.MODULE2PACKAGE.setdefault(SCOPE, DISTRIBUTION)


class ScopeFinder:
    """Meta-path hook: registers the scope right after ``TARGET`` runs."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, 'find_spec', None)
            if finder is cls or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, 'exec_module', None)
        if exec_module is None:
            return spec

        def exec_and_register(module):
            exec_module(module)
            register(module)

        loader.exec_module = exec_and_register  # this module's loader only
        return spec


def install() -> None:
    """Registers the scope now if mmengine's map is loaded, else when it
    is. Idempotent."""
    module = sys.modules.get(TARGET)
    if module is not None:
        register(module)
    elif ScopeFinder not in sys.meta_path:
        sys.meta_path.insert(0, ScopeFinder)
