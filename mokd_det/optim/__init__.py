from .amp import (AmpDOTOptimWrapper, AmpMKDOptimWrapper,
                  AmpMoKDOptimWrapper, AmpMultiObjectiveMixin)
from .base import MultiObjectiveOptimWrapper
from .dot import DOTOptimWrapper
from .mkd import MKDOptimWrapper
from .mokd import MoKDOptimWrapper, min_norm_weights, two_objective_weights

__all__ = [
    'AmpDOTOptimWrapper', 'AmpMKDOptimWrapper', 'AmpMoKDOptimWrapper',
    'AmpMultiObjectiveMixin', 'DOTOptimWrapper', 'MKDOptimWrapper',
    'MoKDOptimWrapper', 'MultiObjectiveOptimWrapper', 'min_norm_weights',
    'two_objective_weights'
]
