"""Teacher-student distiller for mmpretrain image classifiers."""
from typing import Any, Optional

from mmengine.registry import MODELS
from torch import nn

from .base import BaseDistiller


def _mmpretrain_models():
    try:
        from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            'ClsDistiller needs mmpretrain (pip install "mokd_det[cls]")'
        ) from err
    return MMPRETRAIN_MODELS


@MODELS.register_module()
class ClsDistiller(BaseDistiller):
    """Distils an mmpretrain ``ImageClassifier`` from another.

    The teacher runs ``extract_feat`` and, when a teacher tap lies under
    ``head`` (e.g. ``'head'``: the logits), its head on those features.
    ``predict`` runs the student alone.

    Args:
        student: The student classifier's model dict, unchanged.
        teacher: ``dict(config='mmpretrain::...' | path, checkpoint=...)`` or
            ``dict(model=<model dict>, checkpoint=...)``.
        distill_losses: See :class:`BaseDistiller`.
        **kwargs: See :class:`BaseDistiller`.

    Examples:
        >>> model = dict(
        ...     type='ClsDistiller',
        ...     student=_base_.model,
        ...     teacher=dict(
        ...         config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        ...         checkpoint='checkpoints/resnet34.pth'),
        ...     distill_losses=dict(kd=dict(type='LogitKDLoss',
        ...                                 student='head', teacher='head',
        ...                                 temperature=1.0)))
    """

    teacher_forward_doc = (
        "ClsDistiller runs the teacher's extract_feat (backbone, neck) and, "
        'when a teacher tap lies under head, head(feats).')

    def __init__(self, *args, **kwargs):
        self.model_registry = _mmpretrain_models()
        super().__init__(*args, **kwargs)

    def run_teacher_heads(self, feats: Any, reused: bool = False,
                          data_samples=None) -> None:
        if not reused and any(t.teacher.path.split('.')[0] == 'head'
                              for t in self.terms):
            self.teacher.head(feats)

    @staticmethod
    def num_classes(model: nn.Module) -> Optional[int]:
        return getattr(getattr(model, 'head', None), 'num_classes', None)
