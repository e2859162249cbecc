from .connector import LinearConnector
from .subspace import OrthogonalProjection, SubspaceProjectionNeck

__all__ = ['LinearConnector', 'OrthogonalProjection', 'SubspaceProjectionNeck']
