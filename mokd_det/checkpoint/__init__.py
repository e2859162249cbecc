"""Safe checkpoint loading from every source mmengine reads (a subsystem of
its own): the weights-only loader and its allowlist (:mod:`.safe_load`),
the URL schemes (:mod:`.remote`) and their installation into mmengine
(:mod:`.install`)."""
from .install import install_safe_checkpoint_loader
from .remote import safe_load_url
from .safe_load import (MMENGINE_CHECKPOINT_TYPES, CorruptCheckpointError,
                        UnsafeCheckpointError, allow_checkpoint_types,
                        allowed_checkpoint_types, safe_torch_load)

__all__ = [
    'MMENGINE_CHECKPOINT_TYPES', 'CorruptCheckpointError',
    'UnsafeCheckpointError',
    'allow_checkpoint_types', 'allowed_checkpoint_types',
    'install_safe_checkpoint_loader', 'safe_load_url', 'safe_torch_load'
]
