"""Feature distillation losses on (multi-level) feature maps.

* :class:`FeatureMSELoss`: mean squared error per level (FitNets, Romero et
  al., ICLR 2015, on projected features), summed over levels.
* :class:`ChannelWiseDivergence`: CWD, Shu et al., "Channel-wise Knowledge
  Distillation for Dense Prediction", ICCV 2021. Each channel is turned into
  a distribution over locations by a softmax with temperature tau; the loss
  is KL(teacher || student) * tau^2, summed over channels and averaged over
  channels and images (as mmrazor's ``ChannelWiseDivergence``).
* :class:`PKDLoss`: PKD, Cao et al., "PKD: General Distillation Framework
  for Object Detectors via Pearson Correlation Coefficient", NeurIPS 2022.
  Both maps are standardised per channel (zero mean, unit variance over
  images and locations); the loss is half their MSE, i.e. 1 - Pearson
  correlation averaged over channels (as mmrazor's ``PKDLoss``).

Every loss takes a tensor ``(N, C, H, W)`` or a sequence of them (FPN
levels) for each side; student and teacher must have the same channels
(project them with a neck otherwise). PKD resizes the student map to the
teacher's size when they differ, as the paper does for heterogeneous pairs.
"""
from typing import Sequence, Tuple, Union

import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

Features = Union[Tensor, Sequence[Tensor]]


def as_levels(student: Features,
              teacher: Features) -> Tuple[Sequence[Tensor], Sequence[Tensor]]:
    """Pairs up levels and checks their channels."""
    if isinstance(student, Tensor):
        student = [student]
    if isinstance(teacher, Tensor):
        teacher = [teacher]
    if len(student) != len(teacher):
        raise ValueError(f'student has {len(student)} feature levels, '
                         f'teacher {len(teacher)}')
    for i, (s, t) in enumerate(zip(student, teacher)):
        if s.shape[:2] != t.shape[:2]:
            raise ValueError(
                f'level {i}: student {tuple(s.shape)} vs teacher '
                f'{tuple(t.shape)}: batch and channels must match '
                '(use a projection neck for different channel counts)')
    return student, teacher


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """Mean squared error per level, summed over levels.

    Args:
        loss_weight: Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student: Features, teacher: Features) -> Tensor:
        student, teacher = as_levels(student, teacher)
        loss = sum(F.mse_loss(s, t.to(s.dtype))
                   for s, t in zip(student, teacher))
        return self.loss_weight * loss


@MODELS.register_module()
class ChannelWiseDivergence(nn.Module):
    """CWD (Shu et al., ICCV 2021), summed over levels.

    Args:
        tau: Softmax temperature over locations. Defaults to 1.0.
        loss_weight: Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        self.tau = tau
        self.loss_weight = loss_weight

    def forward(self, student: Features, teacher: Features) -> Tensor:
        student, teacher = as_levels(student, teacher)
        loss = 0.
        if all(s[0, 0].numel() == 1 for s in student):
            # a one-position softmax is 1: such a level adds exactly 0 (a
            # small image's top FPN level does, harmlessly); all of them
            # make the term a silent no-op
            raise ValueError(
                f'ChannelWiseDivergence on {tuple(student[0].shape)} maps: '
                'it normalises each channel over spatial positions, so 1x1 '
                'maps (pooled features, or a last stage that small) make '
                'the loss 0. Tap a stage with spatial extent (e.g. an '
                'earlier backbone stage), or use PKDLoss / FeatureMSELoss '
                'on vectors.')
        for s, t in zip(student, teacher):
            n, c = s.shape[:2]
            s = s.reshape(n * c, -1) / self.tau
            t = t.to(s.dtype).reshape(n * c, -1) / self.tau
            t_log = F.log_softmax(t, dim=1)
            kl = (t_log.exp() * (t_log - F.log_softmax(s, dim=1))).sum()
            loss = loss + kl * self.tau**2 / (n * c)
        return self.loss_weight * loss


def _standardize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit (unbiased) std per channel over images and
    locations."""
    c = x.size(1)
    flat = x.transpose(0, 1).reshape(c, -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, keepdim=True)
    return ((flat - mean) / (std + eps)).reshape(c, x.size(0), *x.shape[2:]) \
        .transpose(0, 1)


@MODELS.register_module()
class PKDLoss(nn.Module):
    """PKD (Cao et al., NeurIPS 2022), summed over levels.

    Args:
        loss_weight: Multiplier of the loss. Defaults to 1.0.
        resize_student: Resize student maps to the teacher's spatial size
            when they differ (bilinear). Defaults to True.
    """

    def __init__(self, loss_weight: float = 1.0, resize_student: bool = True):
        super().__init__()
        self.loss_weight = loss_weight
        self.resize_student = resize_student

    def forward(self, student: Features, teacher: Features) -> Tensor:
        student, teacher = as_levels(student, teacher)
        loss = 0.
        for s, t in zip(student, teacher):
            if s.shape[2:] != t.shape[2:]:
                if not self.resize_student:
                    raise ValueError(f'spatial sizes differ: {s.shape[2:]} '
                                     f'vs {t.shape[2:]}')
                s = F.interpolate(s, t.shape[2:], mode='bilinear',
                                  align_corners=False)
            loss = loss + F.mse_loss(
                _standardize(s), _standardize(t.to(s.dtype))) / 2
        return self.loss_weight * loss
