from .base import (PROBABILITY_HEADS, BaseDistiller, head_activation,
                   head_inputs)
from .cls_distiller import ClsDistiller
from .det_distiller import DetDistiller
from .loss_groups import (DISTILL, TASK, attach_loss_groups, get_loss_groups,
                          get_loss_terms, parse_grouped_losses)
from .recompute_cache import RecomputeCache, TargetCache
from .taps import Tap, TapRecorder
from .teacher import build_teacher, load_teacher_checkpoint

__all__ = [
    'BaseDistiller', 'ClsDistiller', 'DetDistiller', 'DISTILL', 'TASK',
    'Tap', 'TapRecorder', 'attach_loss_groups', 'build_teacher',
    'get_loss_groups', 'get_loss_terms', 'head_activation', 'head_inputs',
    'load_teacher_checkpoint', 'parse_grouped_losses', 'PROBABILITY_HEADS',
    'RecomputeCache', 'TargetCache'
]
