"""Teacher-student distiller for MMDetection detectors."""
import re
from typing import Any, Dict, List, Optional

from mmdet.models.detectors import DetectionTransformer
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import MODELS
from torch import Tensor, nn

from ..losses.query_kd import QueryKDLoss
from ..utils.dependencies import check_training_dependencies
from .base import BaseDistiller
from .taps import Tap

# a stage of a cascade's box heads: roi_head.bbox_head.<stage>[.<sub>]
_STAGE = re.compile(r'^roi_head\.bbox_head\.(\d+)(\.|$)')


def is_detr(model: nn.Module) -> bool:
    """Whether ``model`` is a DETR-family detector (DETR, Deformable DETR,
    DINO, ...), whose head runs on the transformer's outputs."""
    return isinstance(model, DetectionTransformer)


def roi_stage(tap: Tap) -> Optional[int]:
    """The cascade stage a tap under ``roi_head.bbox_head.<i>`` names, None
    for a one-stage RoI head's tap (``roi_head.bbox_head``)."""
    match = _STAGE.match(tap.path)
    return None if match is None else int(match.group(1))


def roi_tap(stage: Optional[int]) -> Tap:
    """The student's RoIs of a stage, recorded as the inputs of that
    stage's RoI feature extractor (a cascade has one per stage)."""
    suffix = '' if stage is None else f'.{stage}'
    return Tap('roi_head.bbox_roi_extractor' + suffix, inputs=True)


@MODELS.register_module()
class DetDistiller(BaseDistiller):
    """Distils an mmdet detector (the student) from another (the teacher).

    One-stage dense detectors (RetinaNet, FCOS, ATSS, GFL, ...) and two-stage
    detectors (Faster R-CNN, ...) work alike. The teacher runs what its taps
    need:

    * ``extract_feat`` (backbone and neck) always;
    * its dense head (``bbox_head``) on its own features, when a teacher tap
      lies under ``bbox_head`` (logit KD on per-prior class scores);
    * its RPN head on its own features, when a teacher tap lies under
      ``rpn_head`` (logit KD on the RPN's objectness, ``'rpn_head:0'``);
    * its RoI box head on **the student's sampled RoIs**, when a teacher tap
      lies under ``roi_head`` (logit KD on RoI classification), so that both
      classify the same boxes. Cascades distil per stage: the tap
      ``'roi_head.bbox_head.<i>:0'`` names stage ``i``; the teacher's stage
      classifies the RoIs the student's tapped stage sampled (a one-stage
      RoI head on either side pairs with any stage of the other).

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
        'its bbox_head (a dense head\'s forward) and rpn_head on those '
        'features when a teacher tap lies under them (a DETR\'s bbox_head '
        'on its transformer\'s outputs), and its roi_head\'s box branch on '
        "the student's RoIs when one lies under roi_head (one stage per "
        'tap "roi_head.bbox_head.<i>:0" of a cascade).')

    def _check_student(self, student: nn.Module) -> None:
        """Optional packages the student's heads need once training
        starts (PAA: scikit-learn), refused here rather than at iteration
        1."""
        check_training_dependencies(student)

    def extra_student_taps(self) -> List[Tap]:
        taps = []
        for term in self._roi_terms():
            if not hasattr(getattr(self.student, 'roi_head', None),
                           'bbox_roi_extractor'):
                raise ValueError(
                    f'{self._roi_taps()}: the teacher\'s RoI head '
                    "classifies the student's RoIs, and the student "
                    f'({type(self.student).__name__}) has no RoI head. Tap '
                    'features of the teacher instead (e.g. "neck"), or use '
                    'a two-stage student.')
            for role, model in (('student', self.student),
                                ('teacher', self.teacher)):
                _check_stage(term, role, model)
            taps.append(roi_tap(self._student_stage(term)))
        # one RoI set per teacher stage; run_teacher_heads reads it each step
        self._stage_rois = self._teacher_stages()
        return sorted(set(taps), key=str)

    def _teacher_stages(self) -> Dict[Optional[int], Tap]:
        """Teacher RoI stage (None: a one-stage RoI head) -> the student
        RoIs it classifies.

        Raises:
            ValueError: Two terms ask one teacher stage to classify the
                RoIs of two student stages (its tap would record both).
        """
        stages: Dict[Optional[int], Tap] = {}
        for term in self._roi_terms():
            stage, rois = roi_stage(term.teacher), roi_tap(
                self._student_stage(term))
            if stages.setdefault(stage, rois) != rois:
                where = 'RoI head' if stage is None else f'stage {stage}'
                raise ValueError(
                    f'{self._roi_taps()}: the teacher\'s {where} would '
                    'classify the RoIs of two student stages '
                    f'({stages[stage].path}, {rois.path}) in one forward. '
                    'Give each term its own teacher stage, e.g. the '
                    'student\'s stage i against the teacher\'s stage i.')
        return stages

    def _roi_terms(self) -> list:
        return [t for t in self.terms
                if t.teacher.path.split('.')[0] == 'roi_head']

    def _student_stage(self, term) -> Optional[int]:
        """The student stage whose RoIs the teacher classifies for a term:
        the stage its student tap names, else the one-stage head's."""
        return roi_stage(term.student) \
            if term.student.path.startswith('roi_head.') else None

    def _roi_taps(self) -> str:
        return 'teacher tap ' + ', '.join(
            f'"{t.teacher}" (term {t.name!r})' for t in self._roi_terms())

    def missing_extra_tap_message(self, tap: Tap) -> str:
        return (
            f"{self._roi_taps()}: the teacher's RoI head classifies the "
            "student's RoIs, taken from the student's RoI feature "
            f'extractor {tap.path}, which did not run in the student\'s '
            f'forward ({type(self.student.roi_head).__name__}). Use a '
            'student with a StandardRoIHead or a cascade (tap a stage, '
            '"roi_head.bbox_head.<i>:0"), or tap features of the teacher '
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

    def run_teacher_heads(self, feats: Any, reused: bool = False,
                          data_samples: Optional[list] = None) -> None:
        if not reused:
            if self._needs('bbox_head'):
                if is_detr(self.teacher):  # on its transformer's outputs
                    self.teacher.bbox_head(
                        **self.teacher.forward_transformer(feats,
                                                           data_samples))
                else:
                    self.teacher.bbox_head(feats)
            if self._needs('rpn_head'):
                self.teacher.rpn_head(feats)
        for stage, rois in self._stage_rois.items():
            _, boxes = self.student_taps.get(rois)[:2]
            if stage is None:
                self.teacher.roi_head._bbox_forward(feats, boxes)
            else:
                self.teacher.roi_head._bbox_forward(stage, feats, boxes)

    def _resolve_logit_loss(self, term, loss: nn.Module) -> None:
        super()._resolve_logit_loss(term, loss)
        detr = [role for role in ('student', 'teacher')
                if is_detr(getattr(self, role)) and
                getattr(term, role).path.split('.')[0] == 'bbox_head']
        if detr and not isinstance(loss, QueryKDLoss):
            raise ValueError(
                f'distill term {term.name!r}: the {" and ".join(detr)} '
                f'tap{"s" if len(detr) > 1 else ""} a DETR head, whose '
                'queries are a set (query i of student and teacher need not '
                "be the same object). Use type='QueryKDLoss', "
                "student='bbox_head', teacher='bbox_head' (queries paired "
                'by Hungarian matching), or tap features (e.g. "neck").')
        if isinstance(loss, QueryKDLoss):
            for role, attr in (('student', 'num_queries'),
                               ('teacher', 'teacher_num_queries')):
                model = getattr(self, role)
                if not is_detr(model):
                    raise ValueError(
                        f'distill term {term.name!r}: QueryKDLoss distils '
                        f'DETR queries, and the {role} '
                        f'({type(model).__name__}) is not a DETR-family '
                        'detector. Use LogitKDLoss on a dense head '
                        '("bbox_head:0") instead.')
                if getattr(loss, attr) is None:
                    setattr(loss, attr, model.num_queries)

    @staticmethod
    def num_classes(model: nn.Module) -> Optional[int]:
        head = getattr(model, 'bbox_head', None)
        if head is None and getattr(model, 'roi_head', None) is not None:
            head = getattr(model.roi_head, 'bbox_head', None)
        return getattr(head, 'num_classes', None)


def _check_stage(term, role: str, model: nn.Module) -> None:
    """A tap under the box heads of a cascade must name a stage."""
    tap: Tap = getattr(term, role)
    heads = getattr(getattr(model, 'roi_head', None), 'bbox_head', None)
    if not tap.path.startswith('roi_head.bbox_head') or \
            not isinstance(heads, nn.ModuleList) or roi_stage(tap) is not None:
        return
    index = '' if tap.index is None else f':{tap.index}'
    raise ValueError(
        f'{role} tap "{tap}" of distill term {term.name!r}: the {role}\'s '
        f'RoI head ({type(model.roi_head).__name__}) has {len(heads)} box '
        'stages, each run on its own RoIs; tap one stage, e.g. '
        f'"roi_head.bbox_head.{len(heads) - 1}{index}" (the last), or one '
        'term per stage.')
