"""Query-level logit distillation for DETR-family detectors.

DETR-style detectors (DETR, Deformable DETR, DINO, and DTO-KD's ViDT) predict
a set: query i of the student and query i of the teacher need not describe
the same object (DINO selects its queries from the encoder's top-k
proposals, which differ between models). Before the logits can be
distilled, student and teacher queries are paired by a one-to-one
(Hungarian) matching of their predictions, as DETR matches predictions to
ground truth and as DETR distillation work matches them to a teacher's
predictions (Chang et al., "DETRDistill: A Universal Knowledge
Distillation Framework for DETR-families", ICCV 2023, which uses the
teacher's predictions in place of ground truth). Here:

* the tap is the DETR head's whole output, ``'bbox_head'``: per decoder
  layer the class logits ``(L, B, Q, K)`` and normalised ``(cx, cy, w, h)``
  boxes ``(L, B, Q, 4)``;
* the student's last ``num_queries`` queries are its matching queries (DINO
  puts its denoising queries first in training; the distiller fills
  ``num_queries`` from the student detector), the teacher's likewise;
* the matching uses the **last decoder layer** of both, per image (on a
  GPU the costs of the whole batch in one batched computation, on the CPU
  image by image; one copy to the host for scipy's solver), with
  DETR's box costs (``box_l1_weight`` x L1 of the boxes +
  ``giou_weight`` x (-GIoU)) plus ``cls_weight`` x the mean absolute
  difference of the class probabilities (so that two queries on one object
  that disagree on its class pair less readily); every teacher query is
  matched when the student has at least as many, else every student query;
* the matched logits are distilled by :class:`LogitKDLoss`'s Hinton KD
  (per-class Bernoulli KL for the sigmoid heads of DETR-family detectors,
  softmax KL for DETR's own head), on the last layer, or on every decoder
  layer with the last layer's matching (``layers='all'``, the auxiliary
  outputs: student layer l against teacher layer l).

The matching is not differentiated through (it is an assignment). A
non-finite prediction gets a fixed high cost, so that the matching still
exists and the loss comes out non-finite, which the KD optim wrappers skip,
instead of the solver raising mid-training.
Temperatures, learnable ones (MKD) included, work as in
:class:`LogitKDLoss`.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.registry import MODELS
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .logit_kd import LogitKDLoss

_LAYERS = ('last', 'all')
#: the cost of a pair with a non-finite prediction
_UNMATCHABLE = 1e6


def matching_costs(s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor,
                   t_boxes: Tensor, activation: str,
                   box_l1_weight: float = 5.0, giou_weight: float = 2.0,
                   cls_weight: float = 2.0) -> Tensor:
    """The ``(B, Qs, Qt)`` matching costs of a batch of images, in one
    batched computation on the predictions' device.

    Args:
        s_logits, t_logits: ``(B, Qs, K)``, ``(B, Qt, K)`` class logits.
        s_boxes, t_boxes: ``(B, Qs, 4)``, ``(B, Qt, 4)`` normalised cxcywh
            boxes.
        activation: ``'sigmoid'`` or ``'softmax'`` (of the class logits).
        box_l1_weight, giou_weight, cls_weight: Cost weights (see the
            module docstring). Defaults to 5.0, 2.0, 2.0 (DETR's box costs).
    """
    act = torch.sigmoid if activation == 'sigmoid' else \
        (lambda x: x.softmax(-1))
    s_boxes, t_boxes = s_boxes.float(), t_boxes.float()
    cost = box_l1_weight * torch.cdist(s_boxes, t_boxes, p=1)
    cost = cost - giou_weight * bbox_overlaps(
        bbox_cxcywh_to_xyxy(s_boxes), bbox_cxcywh_to_xyxy(t_boxes),
        mode='giou')
    if cls_weight:
        cost = cost + cls_weight * torch.cdist(
            act(s_logits.float()), act(t_logits.float()),
            p=1) / s_logits.size(-1)
    # non-finite predictions: any matching (the loss is then non-finite
    # and the KD optim wrappers skip the step) rather than a solver error
    return torch.nan_to_num(cost, nan=_UNMATCHABLE, posinf=_UNMATCHABLE,
                            neginf=_UNMATCHABLE)


def match_query_batch(s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor,
                      t_boxes: Tensor, activation: str, **costs
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """The one-to-one matching of every image's student and teacher
    queries: the costs of the whole batch at once (:func:`matching_costs`;
    image by image on the CPU, where that is faster), one copy to the host,
    the Hungarian solver (scipy) per image there, and one copy of the
    indices back.

    Returns:
        ``(image, student_index, teacher_index)``: the matched pairs of all
        images, ``min(Qs, Qt)`` per image, image by image.
    """
    if s_logits.device.type == 'cpu':
        # on the CPU the batch's (B, Qs, Qt) intermediates outgrow the
        # caches and one computation is slower than one per image
        # (benchmarks/RESULTS.md, QueryKDLoss's matching)
        cost = torch.cat([
            matching_costs(s_logits[i:i + 1], s_boxes[i:i + 1],
                           t_logits[i:i + 1], t_boxes[i:i + 1], activation,
                           **costs) for i in range(len(s_logits))])
    else:
        cost = matching_costs(s_logits, s_boxes, t_logits, t_boxes,
                              activation, **costs)
    cost = cost.cpu().numpy()
    matches = [linear_sum_assignment(c) for c in cost]
    index = torch.from_numpy(np.stack([
        np.concatenate([np.full(len(r), b) for b, (r, _) in
                        enumerate(matches)]),
        np.concatenate([r for r, _ in matches]),
        np.concatenate([c for _, c in matches])]).astype(np.int64))
    image, rows, cols = index.to(s_logits.device)
    return image, rows, cols


def match_queries(s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor,
                  t_boxes: Tensor, activation: str,
                  **costs) -> Tuple[Tensor, Tensor]:
    """The one-to-one matching of one image's queries (``(Q, K)`` logits,
    ``(Q, 4)`` boxes): :func:`match_query_batch` of a batch of one.

    Returns:
        ``(student_index, teacher_index)``: matched rows, ``min(Qs, Qt)``
        pairs.
    """
    _, rows, cols = match_query_batch(s_logits[None], s_boxes[None],
                                      t_logits[None], t_boxes[None],
                                      activation, **costs)
    return rows, cols


@MODELS.register_module()
class QueryKDLoss(LogitKDLoss):
    """Hinton KD of DETR queries paired by Hungarian matching.

    Tap both sides' DETR heads whole (``student='bbox_head'``,
    ``teacher='bbox_head'``); see the module docstring.

    Args:
        layers: ``'last'`` (the last decoder layer) or ``'all'`` (every
            layer, with the last layer's matching; both sides need the same
            number of decoder layers). Defaults to ``'last'``.
        num_queries: The student's matching queries, its last
            ``num_queries`` (DINO's denoising queries come first); None
            lets the distiller fill it from the student's ``num_queries``.
            Defaults to None.
        teacher_num_queries: The same for the teacher (which runs in eval
            mode, without denoising queries). Defaults to None (all).
        box_l1_weight, giou_weight, cls_weight: Matching costs. Defaults
            to 5.0, 2.0 and 2.0.
        **kwargs: :class:`LogitKDLoss`'s arguments (``temperature``,
            ``activation``, ``inputs``, ``loss_weight``).
    """

    def __init__(self,
                 layers: str = 'last',
                 num_queries: Optional[int] = None,
                 teacher_num_queries: Optional[int] = None,
                 box_l1_weight: float = 5.0,
                 giou_weight: float = 2.0,
                 cls_weight: float = 2.0,
                 **kwargs):
        super().__init__(**kwargs)
        if layers not in _LAYERS:
            raise ValueError(f"layers must be 'last' or 'all', got "
                             f'{layers!r}')
        self.layers = layers
        self.num_queries = num_queries
        self.teacher_num_queries = teacher_num_queries
        self.costs = dict(box_l1_weight=box_l1_weight,
                          giou_weight=giou_weight, cls_weight=cls_weight)

    def forward(self, student: Sequence[Tensor],
                teacher: Sequence[Tensor]) -> Tensor:
        s_cls, s_box = _queries(student, self.num_queries, 'student')
        t_cls, t_box = _queries(teacher, self.teacher_num_queries,
                                'teacher')
        if self.activation == 'auto':
            raise RuntimeError(
                "QueryKDLoss(activation='auto') was not resolved: use it "
                "through a distiller, or set activation='sigmoid'/'softmax'")
        if s_cls.size(-1) != t_cls.size(-1):
            raise ValueError(f'student queries score {s_cls.size(-1)} '
                             f'classes, teacher queries {t_cls.size(-1)}')
        if self.layers == 'all' and s_cls.size(0) != t_cls.size(0):
            raise ValueError(
                f"layers='all' pairs decoder layers one to one: the student "
                f'has {s_cls.size(0)}, the teacher {t_cls.size(0)}; use '
                "layers='last'")
        image, si, ti = match_query_batch(
            s_cls[-1].detach(), s_box[-1].detach(), t_cls[-1], t_box[-1],
            self.activation, **self.costs)
        # every layer's matched logits in one gather: (layers * pairs, K)
        layers = slice(None) if self.layers == 'all' else slice(-1, None)
        k = s_cls.size(-1)
        return super().forward(s_cls[layers][:, image, si].reshape(-1, k),
                               t_cls[layers][:, image, ti].reshape(-1, k))


def _queries(output: Sequence[Tensor], num_queries: Optional[int],
             role: str) -> Tuple[Tensor, Tensor]:
    """``(class logits, boxes)`` of a DETR head's output, per layer, the last
    ``num_queries`` queries."""
    if not isinstance(output, Sequence) or len(output) < 2 or \
            not all(isinstance(x, Tensor) for x in output[:2]) or \
            output[0].dim() != 4 or output[1].shape[:3] != output[0].shape[
                :3] or output[1].size(-1) != 4:
        shapes = [tuple(x.shape) if isinstance(x, Tensor) else
                  type(x).__name__ for x in output] \
            if isinstance(output, Sequence) else type(output).__name__
        raise ValueError(
            f'QueryKDLoss: the {role} tap must be a DETR head\'s whole '
            'output, (class logits (layers, batch, queries, classes), boxes '
            f'(layers, batch, queries, 4)), e.g. "bbox_head"; got {shapes}')
    cls, box = output[0], output[1]
    if num_queries is not None:
        if num_queries > cls.size(2):
            raise ValueError(f'QueryKDLoss: {role} num_queries={num_queries}'
                             f' but its head output has {cls.size(2)}')
        cls, box = cls[:, :, -num_queries:], box[:, :, -num_queries:]
    return cls, box
