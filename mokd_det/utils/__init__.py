from .base_hooks import check_base_hooks, dropped_base_hooks
from .config import enable_amp, enable_auto_scale_lr, load_config
from .logs import find_scalar_log, last_coco_metrics

__all__ = [
    'enable_amp', 'enable_auto_scale_lr', 'load_config', 'find_scalar_log',
    'last_coco_metrics', 'check_base_hooks', 'dropped_base_hooks'
]
