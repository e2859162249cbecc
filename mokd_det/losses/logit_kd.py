"""Logit distillation with a temperature.

Implements Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
Network" (NIPS workshop 2014): KL(p_teacher^T || p_student^T) * T^2, where
p^T is the softmax of the logits divided by T. For sigmoid classifiers (the
dense heads of RetinaNet, FCOS, ATSS, GFL) the same is applied per class with
Bernoulli distributions, as those heads score every class independently.
The T^2 factor keeps gradient magnitudes comparable across temperatures.

Inputs may be:

* ``(N, K)`` logits (image classifiers, RoI heads: K classes, with the
  background for softmax RoI heads);
* dense-head maps ``(B, A * K, H, W)`` (A priors per location), or a list of
  them (FPN levels): reshaped to one K-vector per prior and location.

The loss is summed over classes and averaged over all vectors (all levels
together), so it does not grow with the number of priors.

With a learnable :class:`~mokd_det.losses.MetaTemperature` (MKD), teacher and
student logits are divided by their own temperatures tau_t and tau_s, and the
factor T^2 becomes tau_t * tau_s (equal to T^2 when they coincide).
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

Logits = Union[Tensor, Sequence[Tensor]]


def flatten_logits(logits: Logits, channels: Optional[int]) -> Tensor:
    """Concatenates logits into ``(M, K)``: 2-D inputs unchanged, 4-D dense
    maps ``(B, A*K, H, W)`` split into one K-vector per prior and location."""
    if isinstance(logits, Tensor):
        logits = [logits]
    rows: List[Tensor] = []
    for x in logits:
        if x.dim() == 2:
            rows.append(x)
        elif x.dim() == 4:
            if channels is None or x.size(1) % channels:
                raise ValueError(
                    f'dense logits of shape {tuple(x.shape)} need '
                    f'`channels` (classes per prior) dividing dim 1, got '
                    f'{channels}')
            # mmdet's own layout: channel index = prior * K + class
            rows.append(x.permute(0, 2, 3, 1).reshape(-1, channels))
        else:
            raise ValueError(f'logits must be 2-D or 4-D, got shape '
                             f'{tuple(x.shape)}')
    return torch.cat(rows) if len(rows) > 1 else rows[0]


def softmax_kd(student: Tensor, teacher: Tensor, tau_s, tau_t) -> Tensor:
    """Mean over rows of KL(softmax(t/tau_t) || softmax(s/tau_s)), times
    tau_t * tau_s (Hinton's T^2 when both are T)."""
    t_log = F.log_softmax(teacher / tau_t, dim=-1)
    s_log = F.log_softmax(student / tau_s, dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1)
    return (kl * _scale(tau_s, tau_t)).mean()


def sigmoid_kd(student: Tensor, teacher: Tensor, tau_s, tau_t) -> Tensor:
    """Mean over rows of the per-class Bernoulli KL summed over classes,
    times tau_t * tau_s."""
    t = teacher / tau_t
    s = student / tau_s
    p_t = torch.sigmoid(t)
    # KL(Bern(p_t) || Bern(p_s)) in log-sigmoid form (stable for big logits)
    kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + \
        (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return (kl * (tau_s * tau_t)).sum(-1).mean()


def _scale(tau_s, tau_t):
    """tau_s * tau_t as a per-row factor (per-class temperatures are
    averaged over classes for the softmax, whose KL is one per row)."""
    scale = tau_s * tau_t
    return scale.mean() if isinstance(scale, Tensor) else scale


@MODELS.register_module()
class LogitKDLoss(nn.Module):
    """Temperature-scaled logit distillation (softmax or per-class sigmoid).

    Args:
        temperature: Softmax temperature T > 0, or a config of a learnable
            ``MetaTemperature`` (MKD). Defaults to 1.0.
        activation: ``'softmax'``, ``'sigmoid'``, or ``'auto'`` to take the
            activation of the tapped head (the distiller resolves it: dense
            heads with ``use_sigmoid_cls``, RoI heads' ``loss_cls``,
            classifiers' softmax). Defaults to ``'auto'``.
        channels: Classes per prior of dense-head maps (``cls_out_channels``);
            None lets the distiller fill it from the head. Defaults to None.
        loss_weight: Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 activation: str = 'auto',
                 channels: Optional[int] = None,
                 loss_weight: float = 1.0):
        super().__init__()
        if activation not in ('auto', 'softmax', 'sigmoid'):
            raise ValueError(f'activation must be auto, softmax or sigmoid, '
                             f'got {activation!r}')
        if isinstance(temperature, dict):
            self.temperature = MODELS.build(temperature)
        elif temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        else:
            self.temperature = temperature
        self.activation = activation
        self.channels = channels
        self.loss_weight = loss_weight

    def forward(self, student: Logits, teacher: Logits) -> Tensor:
        if self.activation == 'auto':
            raise RuntimeError(
                "LogitKDLoss(activation='auto') was not resolved: use it "
                "through a distiller, or set activation='softmax'/'sigmoid'")
        s = flatten_logits(student, self.channels)
        t = flatten_logits(teacher, self.channels).to(s.dtype)
        if s.shape != t.shape:
            raise ValueError(f'student logits {tuple(s.shape)} and teacher '
                             f'logits {tuple(t.shape)} differ in shape')
        kd = softmax_kd if self.activation == 'softmax' else sigmoid_kd
        if isinstance(self.temperature, nn.Module):
            tau_s = self.temperature.student().to(s.dtype)
            tau_t = self.temperature.teacher().to(s.dtype)
        else:
            tau_s = tau_t = self.temperature
        return self.loss_weight * kd(s, t, tau_s, tau_t)
