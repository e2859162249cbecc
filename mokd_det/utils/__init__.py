from .base_hooks import check_base_hooks, dropped_base_hooks
from .checkpoint import (MMENGINE_CHECKPOINT_TYPES, UnsafeCheckpointError,
                         allow_checkpoint_types, allowed_checkpoint_types,
                         install_safe_checkpoint_loader, safe_torch_load)
from .config import enable_amp, enable_auto_scale_lr, load_config
from .logs import find_scalar_log, last_coco_metrics
from .remote_checkpoint import safe_load_url

__all__ = [
    'MMENGINE_CHECKPOINT_TYPES', 'UnsafeCheckpointError',
    'allow_checkpoint_types', 'allowed_checkpoint_types',
    'install_safe_checkpoint_loader', 'safe_torch_load', 'safe_load_url',
    'enable_amp', 'enable_auto_scale_lr', 'load_config', 'find_scalar_log',
    'last_coco_metrics', 'check_base_hooks', 'dropped_base_hooks'
]
