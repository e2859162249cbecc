"""Exact MoKD with one backward through the backbone: the min-norm weights
from the objectives' gradients at the student's shared features
(``MoKDOptimWrapper(mode='exact', gradients='features')``).

Source: MGDA-UB, Sener and Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018, Sec. 3.3: with shared parameters theta_sh
computing a representation Z, grad_theta_sh L_k = (dZ/dtheta_sh)^T
grad_Z L_k, so |sum_k pi_k grad_theta_sh L_k| <= |dZ/dtheta_sh| |sum_k
pi_k grad_Z L_k|, and the min-norm point of the gradients at Z minimises
that upper bound. Here Z is the output of the student's ``extract_feat``
(the FPN levels of a detector, the pooled features of a classifier), which
the distillers attach to the loss (:class:`~mokd_det.loss_groups.
SharedFeatures`).

What differs from exact mode (``gradients='params'``):

* The weights are the min-norm point of the log-loss gradients **at Z**,
  the minimiser of MGDA-UB's upper bound, not of the gradients on the
  parameters: the two agree when dZ/dtheta_sh is a multiple of an isometry,
  and not in general. The parameters above Z (the heads, the distillation
  necks) do not enter the Gram matrix.
* ``step_scale='kd'`` stretches the combination at Z to the length of the
  summed gradients at Z (vanilla KD's there), and applies the same factor
  everywhere.
* The cost: each objective's gradient is taken back to Z and the parameters
  above it only (the heads; ``retain_graph``), then the combined gradient
  at Z goes down the backbone and neck once. Vanilla KD's one backward
  plus one more pass through the heads, against exact mode's two full
  backward passes.
* With gradient accumulation the weights are set per micro-batch (from its
  own gradients at Z) before its backward, as amortized mode's
  normalisers are; with ``accumulative_counts=1`` (the default) they are
  the update's. Under DDP the Gram matrix and the losses are averaged
  over ranks (one all-reduce of K^2 + K numbers), so the weights are the
  same on every rank and equal to one process's on the whole batch up to
  the scale, which the min-norm point does not depend on.

Refused, with the reason: amortized mode (one backward already),
``balance='shared'``, ``gram_params='shared'`` and ``metric='adam'`` (they
weigh parameters, which this mode does not see), a model that attaches no
shared features (not a mokd_det distiller), and a distillation term that
taps the student below Z (its gradient reaches the backbone around Z).

Notes on faithfulness and options: docs/methods.md (MoKD).
"""
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce
from torch import Tensor

from ..loss_groups import SharedFeatures
from .base import Grads, loss_value
from .mokd_modes import ExactMode, kd_stretch


class FeatureExactMode(ExactMode):
    """Exact MoKD weighed at the shared features (see the module
    docstring): one objective, ``'weighted'``, whose gradient this mode
    computes itself (:meth:`gradients`)."""

    def __init__(self, wrapper, **options):
        super().__init__(wrapper, **options)
        #: the shared features of the iteration being differentiated
        self.features: Optional[SharedFeatures] = None

    @staticmethod
    def check(mode: str, options: dict) -> None:
        if options['gradients'] not in ('params', 'features'):
            raise ValueError(
                "gradients must be 'params' (each objective's gradient on "
                "the parameters) or 'features' (at the student's shared "
                f"features, MGDA-UB), got {options['gradients']!r}")
        if options['gradients'] != 'features':
            return
        if mode != 'exact':
            raise ValueError(
                "gradients='features' is exact mode's one-backward form; "
                "amortized mode takes one backward already: drop it or use "
                "mode='exact'")
        for key, default in (('balance', 'all'), ('gram_params', 'all'),
                             ('metric', 'euclidean')):
            if options[key] != default:
                raise ValueError(
                    f"gradients='features' weighs the objectives at the "
                    f"shared features, not on the parameters, so "
                    f"{key}={options[key]!r} has nothing to act on: use "
                    f"gradients='params' for it")

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        feats = self.features
        if feats is None:
            raise TypeError(
                "MoKDOptimWrapper(gradients='features') needs the student's "
                'shared features attached to the loss, which the mokd_det '
                'distillers (DetDistiller, ClsDistiller) do; this model '
                "attaches none: use gradients='params'")
        if feats.unusable:
            raise ValueError(
                f"MoKDOptimWrapper(gradients='features'): {feats.unusable}.")
        return OrderedDict((g, groups[g]) for g in self.w.groups)

    def gradients(self, objectives: Dict[str, Tensor], params: List[Tensor],
                  scale: float) -> Dict[str, Grads]:
        """The weighted gradient of one micro-batch: each objective's
        gradient at the features and the parameters above them, the
        weights from the former, and one backward of the combination at
        the features through the parameters below them."""
        w = self.w
        feats = self.features
        self.features = None  # the graph is freed with the loss
        below = {id(p) for p in feats.below}
        above = [p for p in params if id(p) not in below]
        lower = [p for p in params if id(p) in below]
        tensors = [t for t in feats.tensors if t.requires_grad]
        n = len(tensors)
        at_z, on_above = [], []
        for name, objective in objectives.items():
            grads = torch.autograd.grad(objective * scale, tensors + above,
                                        retain_graph=True, allow_unused=True)
            at_z.append([torch.zeros_like(t) if g is None else g
                         for t, g in zip(tensors, grads[:n])])
            on_above.append(grads[n:])
        flat = torch.stack([torch.cat([g.reshape(-1).float() for g in gs])
                            for gs in at_z])
        gram = (flat @ flat.T).double().cpu()
        values = torch.stack([loss_value(o) for o in objectives.values()])
        shared = torch.cat([gram.reshape(-1), values.double().cpu()])
        all_reduce(shared, op='mean')
        k = len(objectives)
        gram = shared[:k * k].reshape(k, k) / scale**2
        values = shared[k * k:] + w.eps
        if torch.isfinite(gram).all():
            coeffs = self.weights(gram, values)
        else:  # an fp16 overflow: the wrapper's check skips this update
            coeffs = torch.ones(k, dtype=torch.float64)
        # one backward of the combination at Z through backbone and neck
        combined = [sum(float(c) * g[i] for c, g in zip(coeffs, at_z))
                    for i in range(n)]
        down = torch.autograd.grad(tensors, lower, grad_outputs=combined,
                                   allow_unused=True) if lower else ()
        out = {id(p): g for p, g in zip(lower, down)}
        for j, p in enumerate(above):
            parts = [(float(c), g[j]) for c, g in zip(coeffs, on_above)
                     if g[j] is not None]
            out[id(p)] = sum(c * g for c, g in parts) if parts else None
        return {'weighted': [out.get(id(p)) for p in params]}

    def weights(self, gram: Tensor, values: Tensor) -> Tensor:
        """The weights on the raw objectives, pi_k / L_k times the step
        scale (:meth:`ExactMode.raw_weights`), from the Gram matrix of
        their raw gradients at Z and their values, stretched at Z under
        ``step_scale='kd'``; logs them and the dynamics at Z."""
        w = self.w
        w.log_group_dynamics(gram)
        coeffs = self.raw_weights(gram, values)
        if w.step_scale == 'kd':
            coeffs = coeffs * kd_stretch(coeffs @ gram @ coeffs, gram)
        w.log_weights(coeffs)
        return coeffs

    def apply_gradients(self, grads: Dict[str, Grads], scale: Tensor,
                        params: List[Tensor]) -> None:
        for p, g in zip(params, grads['weighted']):
            p.grad = g
