from .amp import (AmpDOTOptimWrapper, AmpMKDOptimWrapper,
                  AmpMoKDOptimWrapper, AmpMultiObjectiveMixin)
from .base import MultiObjectiveOptimWrapper
from .dot import DOTOptimWrapper
from .guard import NonFiniteGuard, NonFiniteTrainingError
from .kd import AmpKDOptimWrapper, KDOptimWrapper
from .mkd import MKDOptimWrapper
from .min_norm import min_norm_weights, two_objective_weights
from .mokd import MoKDOptimWrapper

__all__ = [
    'AmpDOTOptimWrapper', 'AmpKDOptimWrapper', 'AmpMKDOptimWrapper',
    'AmpMoKDOptimWrapper', 'AmpMultiObjectiveMixin', 'DOTOptimWrapper',
    'KDOptimWrapper', 'MKDOptimWrapper', 'MoKDOptimWrapper',
    'MultiObjectiveOptimWrapper', 'NonFiniteGuard', 'NonFiniteTrainingError',
    'min_norm_weights', 'two_objective_weights'
]
