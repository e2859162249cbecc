"""Subspace projection neck for feature distillation.

MoKD (Hayder et al., arXiv 2505.08170) projects student and teacher features
into a shared space of higher dimension than either before comparing them;
DTO-KD, its revision, keeps "multi-scale lightweight projectors". Neither
text specifies the layers, so this neck follows the closest public design,
VkD (Miles et al., CVPR 2024), which uses orthogonally parametrised linear
projections:

* per level, a 1x1 projection of the student (C_s -> D) and one of the
  teacher (C_t -> D) with D > max(C_s, C_t), each with **orthonormal
  columns** (``torch.nn.utils.parametrizations.orthogonal``). A projection
  with orthonormal columns is an isometry: it preserves the norm of every
  feature vector, so the pair cannot shrink features to reach zero loss, the
  trivial solution open to unconstrained learnable projections on both sides.
  Zero loss needs student features whose inner products match the teacher's
  (a partial isometry between them), which is the knowledge to transfer.
* optionally (default) each side is standardised per channel over images
  and locations **before** its projection, so the loss is free of the
  features' scale. (VkD standardises after projecting; standardising first
  keeps the isometry argument above exact: projected features keep the norm
  of standardised, hence non-zero, features.)

The orthonormal columns come from torch's ``orthogonal`` parametrisation
with the **Cayley** map (default) or the matrix exponential
(``orthogonal_map``). torch's default for non-square weights, Householder
products, is **refused**: it multiplies each column by the sign of a diagonal
entry of the raw parameter, truncated to an integer, so once training (weight
decay, or any gradient on the diagonal) moves an entry into (-1, 1) that
column becomes zero, and in a distiller the feature term then collapses to
0 within a few iterations. The Cayley map keeps the columns orthonormal and
is also the fastest of the three (``benchmarks/neck_projection.py``; the
measurements are in ``benchmarks/RESULTS.md``).

The neck's parameters train with the student and are saved in the
distiller's checkpoint (``distill_necks.*``) but not in the exported student.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal


class OrthogonalProjection(nn.Module):
    """A 1x1 convolution ``C_in -> C_out`` (C_out >= C_in) whose weight has
    orthonormal columns: ``W^T W = I``.

    Args:
        in_channels: C_in.
        out_channels: C_out, at least C_in.
        orthogonal_map: ``'cayley'`` or ``'matrix_exp'``
            (``torch.nn.utils.parametrizations.orthogonal``); Householder
            products are refused (see the module docstring). Defaults to
            ``'cayley'``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 orthogonal_map: str = 'cayley'):
        super().__init__()
        if orthogonal_map not in ('cayley', 'matrix_exp'):
            raise ValueError(
                f"orthogonal_map must be 'cayley' or 'matrix_exp', got "
                f'{orthogonal_map!r}: torch\'s Householder map zeroes '
                'columns once training moves the diagonal of its raw '
                'parameter (weight decay does), so the projection stops '
                'being an isometry')
        if out_channels < in_channels:
            raise ValueError(f'an isometric projection needs out_channels '
                             f'>= in_channels, got {in_channels} -> '
                             f'{out_channels}')
        self.linear = orthogonal(
            nn.Linear(in_channels, out_channels, bias=False),
            orthogonal_map=orthogonal_map)

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, *spatial) -> (N, C_out, *spatial)``: feature maps or
        vectors."""
        w = self.linear.weight.to(x.dtype)
        return torch.einsum('oc,nc...->no...', w, x)


@MODELS.register_module()
class SubspaceProjectionNeck(nn.Module):
    """Projects student and teacher features of each level into a shared
    space of dimension ``dim`` > max(C_s, C_t).

    Channels and the number of levels are usually left to the distiller,
    which reads them from the tapped features when it is built.

    Args:
        student_channels: C_s per level (an int for every level).
        teacher_channels: C_t per level (an int for every level).
        num_levels: Number of feature levels. Defaults to 1.
        dim: Dimension D of the shared space; must exceed max(C_s, C_t).
            Defaults to 2 * max(C_s, C_t).
        standardize: Standardise each input channel over images and
            locations before projecting. Defaults to True.
        learn_teacher: Learn the teacher projection too; False keeps it a
            fixed random isometry. Defaults to True.
        orthogonal_map: How the projections are parametrised; see
            :class:`OrthogonalProjection`. Defaults to ``'cayley'``.
    """

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 num_levels: int = 1,
                 dim: Optional[int] = None,
                 standardize: bool = True,
                 learn_teacher: bool = True,
                 orthogonal_map: str = 'cayley'):
        super().__init__()
        widest = max(student_channels, teacher_channels)
        dim = 2 * widest if dim is None else dim
        if dim <= widest:
            raise ValueError(
                f'SubspaceProjectionNeck: dim={dim} must exceed both channel '
                f'counts (student {student_channels}, teacher '
                f'{teacher_channels})')
        self.dim = dim
        self.standardize = standardize
        self.student_proj = nn.ModuleList(
            OrthogonalProjection(student_channels, dim, orthogonal_map)
            for _ in range(num_levels))
        self.teacher_proj = nn.ModuleList(
            OrthogonalProjection(teacher_channels, dim, orthogonal_map)
            for _ in range(num_levels))
        if not learn_teacher:
            self.teacher_proj.requires_grad_(False)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]
                ) -> Tuple[List[Tensor], List[Tensor]]:
        if isinstance(student, Tensor):
            student, teacher = [student], [teacher]
        if len(student) != len(self.student_proj):
            raise ValueError(f'expected {len(self.student_proj)} levels, got '
                             f'{len(student)}')
        out_s, out_t = [], []
        for s, t, ps, pt in zip(student, teacher, self.student_proj,
                                self.teacher_proj):
            t = t.to(s.dtype)
            if self.standardize:
                s, t = _standardize(s), _standardize(t)
            out_s.append(ps(s))
            out_t.append(pt(t))
        return out_s, out_t


def _standardize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance per channel (dim 1) over all other dims."""
    dims = [d for d in range(x.dim()) if d != 1]
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()
