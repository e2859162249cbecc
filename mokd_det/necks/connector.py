"""A student-side connector for feature distillation between different
channel counts.

FitNets (Romero et al., ICLR 2015) regress the teacher's features from the
student's through a learned map on the student side; mmrazor's
``ConvModuleConnector`` does the same for CWD/PKD between heterogeneous
backbones. Only the student side is learned, so the teacher's features stay
a fixed target and the pair cannot collapse to a zero loss (which is what
:class:`SubspaceProjectionNeck` guards against when both sides are
projected). Cheaper than the subspace neck for very wide features (its
orthogonal parametrisation costs O(D C^2) per forward).
"""
from typing import List, Sequence, Tuple

from mmengine.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class LinearConnector(nn.Module):
    """Per level, a 1x1 convolution (a linear map for vectors) from the
    student's channels to the teacher's; the teacher's features pass
    through unchanged.

    Args:
        student_channels: C_s (filled in by the distiller).
        teacher_channels: C_t (filled in by the distiller).
        num_levels: Number of feature levels. Defaults to 1.
    """

    def __init__(self, student_channels: int, teacher_channels: int,
                 num_levels: int = 1):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Conv2d(student_channels, teacher_channels, 1)
            for _ in range(num_levels))

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]
                ) -> Tuple[List[Tensor], List[Tensor]]:
        if isinstance(student, Tensor):
            student, teacher = [student], [teacher]
        out = []
        for s, proj in zip(student, self.proj):
            vector = s.dim() == 2
            y = proj(s[..., None, None] if vector else s)
            out.append(y[..., 0, 0] if vector else y)
        return out, [t.to(out[0].dtype) for t in teacher]
