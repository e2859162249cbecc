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

**Heads that output probabilities.** Some mmdet heads apply their activation
inside ``forward``: TOOD's ``TOODHead`` returns per-class probabilities
(the geometric mean of the classification sigmoid and the task-alignment
sigmoid), CenterNet's ``CenterNetHead`` sigmoid heatmaps. Taking those as
logits applies the sigmoid twice and gives a near-constant, near-zero term
(about 3e-6 on TOOD) that distils nothing. ``inputs='probs'`` turns
probabilities back into logits before the temperature is applied; the
distiller sets it from each tapped head's class, student and teacher apart
(:data:`mokd_det.distillers.base.PROBABILITY_HEADS`). The clamped logit is
``log(p) - log(1 - p)`` for sigmoid heads, ``log(p)`` for softmax heads
(equal to the logits up to a per-row constant, which the softmax ignores),
with p clamped to ``[PROB_EPS, 1 - PROB_EPS]`` (1e-6, logits within
+-13.8) in float64. The temperature then divides a true logit, so the loss
is Hinton's KD of the distributions the head predicts: KL(Bern(sigmoid(
logit(p_t) / T)) || Bern(sigmoid(logit(p_s) / T))) T^2 per class, which is
the plain Bernoulli KL of the probabilities at T = 1.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

Logits = Union[Tensor, Sequence[Tensor]]

#: Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before their logit.
PROB_EPS = 1e-6

_INPUTS = ('auto', 'logits', 'probs')


def probs_to_logits(probs: Tensor, activation: str) -> Tensor:
    """Logits whose ``activation`` gives ``probs`` (clamped to
    ``[PROB_EPS, 1 - PROB_EPS]``, computed in float64, returned in the input
    dtype): ``log(p / (1 - p))`` for ``'sigmoid'``, ``log(p)`` for
    ``'softmax'`` (the logits up to a per-row constant)."""
    p = probs.double().clamp(PROB_EPS, 1 - PROB_EPS)
    logits = p.log() - torch.log1p(-p) if activation == 'sigmoid' \
        else p.log()
    return logits.to(probs.dtype)


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
        inputs: What the tapped values are: ``'logits'``, ``'probs'``
            (probabilities, turned into clamped logits first, see the module
            docstring), or ``'auto'``: the distiller takes it from each
            tapped head's class (``'probs'`` for the heads in
            ``mokd_det.distillers.base.PROBABILITY_HEADS``, e.g. TOOD,
            ``'logits'`` otherwise); outside a distiller ``'auto'`` means
            ``'logits'``. A dict
            ``dict(student=..., teacher=...)`` sets the two sides apart
            (e.g. a TOOD teacher and an ATSS student). Defaults to
            ``'auto'``.
        loss_weight: Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 activation: str = 'auto',
                 channels: Optional[int] = None,
                 inputs: Union[str, Dict[str, str]] = 'auto',
                 loss_weight: float = 1.0):
        super().__init__()
        if activation not in ('auto', 'softmax', 'sigmoid'):
            raise ValueError(f'activation must be auto, softmax or sigmoid, '
                             f'got {activation!r}')
        sides = dict(inputs) if isinstance(inputs, dict) else \
            dict(student=inputs, teacher=inputs)
        if set(sides) != {'student', 'teacher'} or \
                any(v not in _INPUTS for v in sides.values()):
            raise ValueError(
                "inputs must be 'auto', 'logits' or 'probs', or "
                "dict(student=..., teacher=...) of those, got "
                f'{inputs!r}')
        #: 'auto' | 'logits' | 'probs' per side (the distiller resolves
        #: 'auto' from the tapped heads)
        self.student_inputs = sides['student']
        self.teacher_inputs = sides['teacher']
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
        if self.student_inputs == 'probs':
            s = probs_to_logits(s, self.activation)
        if self.teacher_inputs == 'probs':
            t = probs_to_logits(t, self.activation)
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
