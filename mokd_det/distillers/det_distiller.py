"""Teacher-student distiller for MMDetection detectors."""
from typing import Any, List, Optional

from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import MODELS
from torch import Tensor, nn

from ..utils.dependencies import check_training_dependencies
from .base import BaseDistiller
from .taps import Tap

# the student's RoIs, recorded as the inputs of its RoI feature extractor
_ROI_TAP = Tap('roi_head.bbox_roi_extractor', inputs=True)


@MODELS.register_module()
class DetDistiller(BaseDistiller):
    """Distils an mmdet detector (the student) from another (the teacher).

    One-stage dense detectors (RetinaNet, FCOS, ATSS, GFL, ...) and two-stage
    detectors (Faster R-CNN, ...) work alike. The teacher runs what its taps
    need:

    * ``extract_feat`` (backbone and neck) always;
    * its dense head (``bbox_head``) on its own features, when a teacher tap
      lies under ``bbox_head`` (logit KD on per-prior class scores);
    * its RoI box head on **the student's sampled RoIs**, when a teacher tap
      lies under ``roi_head`` (logit KD on RoI classification), so that both
      classify the same boxes.

    ``predict``/``tensor`` (validation, testing) run the student alone, so the
    evaluation reports the student's COCO mAP.

    Args:
        student: The student detector's model dict, unchanged.
        teacher: ``dict(config='mmdet::...' | path, checkpoint=...)`` or
            ``dict(model=<model dict>, checkpoint=...)``.
        distill_losses: See :class:`BaseDistiller`.
        **kwargs: See :class:`BaseDistiller`.

    Examples:
        >>> model = dict(
        ...     type='DetDistiller',
        ...     student=_base_.model,
        ...     teacher=dict(
        ...         config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        ...         checkpoint='checkpoints/retinanet_r101.pth'),
        ...     distill_losses=dict(
        ...         fpn=dict(type='FeatureMSELoss', student='neck',
        ...                  teacher='neck',
        ...                  neck=dict(type='SubspaceProjectionNeck'))))
    """
    model_registry = MMDET_MODELS
    teacher_forward_doc = (
        "DetDistiller runs the teacher's backbone and neck (extract_feat), "
        'its bbox_head on those features when a teacher tap lies under '
        "bbox_head (a dense head's forward), and its roi_head's box branch "
        "on the student's RoIs when one lies under roi_head "
        '(roi_head._bbox_forward(feats, rois), a one-stage RoI head).')

    def _check_student(self, student: nn.Module) -> None:
        """Optional packages the student's heads need once training
        starts (PAA: scikit-learn), refused here rather than at iteration
        1."""
        check_training_dependencies(student)

    def extra_student_taps(self) -> List[Tap]:
        if self._needs('roi_head'):
            if not hasattr(getattr(self.student, 'roi_head', None),
                           'bbox_roi_extractor'):
                raise ValueError(
                    f'{self._roi_taps()}: the teacher\'s RoI head '
                    "classifies the student's RoIs, and the student "
                    f'({type(self.student).__name__}) has no RoI head. Tap '
                    'features of the teacher instead (e.g. "neck"), or use '
                    'a two-stage student.')
            return [_ROI_TAP]
        return []

    def _roi_taps(self) -> str:
        return 'teacher tap ' + ', '.join(
            f'"{t.teacher}" (term {t.name!r})' for t in self.terms
            if t.teacher.path.split('.')[0] == 'roi_head')

    def missing_extra_tap_message(self, tap: Tap) -> str:
        return (
            f"{self._roi_taps()}: the teacher's RoI head classifies the "
            "student's RoIs, taken from the student's RoI feature "
            f'extractor, which did not run as one module in the student\'s '
            f'forward ({type(self.student.roi_head).__name__}: a cascade '
            'runs one extractor per stage). Use a student with a one-stage '
            'RoI head (StandardRoIHead), or tap features of the teacher '
            '(e.g. "neck").')

    def probe_data_samples(self, inputs: Tensor) -> List[DetDataSample]:
        """Image metas of the dummy batch (two-stage and DETR forwards
        read them)."""
        shape = tuple(inputs.shape[-2:])
        return [DetDataSample(metainfo=dict(
            img_shape=shape, ori_shape=shape, pad_shape=shape,
            batch_input_shape=shape, scale_factor=(1., 1.)))
            for _ in range(len(inputs))]

    def _needs(self, prefix: str) -> bool:
        return any(t.teacher.path.split('.')[0] == prefix for t in self.terms)

    student_dependent_prefix = 'roi_head'  # runs on the student's RoIs

    def run_teacher_heads(self, feats: Any, reused: bool = False) -> None:
        if self._needs('bbox_head') and not reused:
            self.teacher.bbox_head(feats)
        if self._needs('roi_head'):
            _, rois = self.student_taps.get(_ROI_TAP)[:2]
            self.teacher.roi_head._bbox_forward(feats, rois)

    @staticmethod
    def num_classes(model: nn.Module) -> Optional[int]:
        head = getattr(model, 'bbox_head', None)
        if head is None and getattr(model, 'roi_head', None) is not None:
            head = getattr(model.roi_head, 'bbox_head', None)
        return getattr(head, 'num_classes', None)
