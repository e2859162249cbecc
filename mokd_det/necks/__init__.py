from .subspace import OrthogonalProjection, SubspaceProjectionNeck

__all__ = ['OrthogonalProjection', 'SubspaceProjectionNeck']
