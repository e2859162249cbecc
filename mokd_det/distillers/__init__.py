from .base import (PROBABILITY_HEADS, BaseDistiller, head_activation,
                   head_inputs)
from .cls_distiller import ClsDistiller
from .det_distiller import DetDistiller
from .recompute_cache import RecomputeCache, TargetCache
from .taps import Tap, TapRecorder
from .teacher import build_teacher, load_teacher_checkpoint

__all__ = [
    'BaseDistiller', 'ClsDistiller', 'DetDistiller', 'Tap', 'TapRecorder',
    'build_teacher', 'head_activation', 'head_inputs',
    'load_teacher_checkpoint', 'PROBABILITY_HEADS',
    'RecomputeCache', 'TargetCache'
]
