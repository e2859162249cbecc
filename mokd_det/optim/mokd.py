"""MoKD: multi-objective knowledge distillation (revised as DTO-KD).

Hayder, Cheraghian, Petersson and Harandi, "MoKD: Multi-Task Optimization
for Knowledge Distillation", arXiv 2505.08170 (2025), revised with Hartley
as "DTO-KD: Dynamic Trade-off Optimization for Effective Knowledge
Distillation", ICLR 2026. No official code exists; this follows the DTO-KD
text (Sec. 3.1, Theorem 3.1, Algorithm 1, Eq. 18) and FAMO (Liu et al.,
NeurIPS 2023; Cranial-XIX/FAMO @ 0a6ad06), whose update DTO-KD adopts.

KD is a two-objective problem (L_distill, L_task); both are balanced on
**log-loss gradients** g_i = grad log L_i = grad L_i / L_i, which removes the
losses' scales (manual weights have no effect).

``mode='exact'`` (DTO-KD Theorem 3.1): with g11 = |g1|^2, g22 = |g2|^2,
g12 = <g1, g2> (g1: distill, g2: task),

    pi1 = (g22 - g12) / (g11 + g22 - 2 g12),  pi2 = 1 - pi1,

the min-norm point of the segment between g1 and g2 (MGDA's two-task closed
form), and the update direction is pi1 g1 + pi2 g2. Choices where the paper
is silent: pi1 is clipped to [0, 1] (as MGDA); the denominator gets an
epsilon (``eps``, relative to g11 + g22) for g1 = g2; the Gram matrix covers
every trainable parameter that receives either gradient (``gram_params=
'all'``, faithful to theta) or only those receiving both (``'shared'``, an
ablation). With K > 2 groups the min-norm point of their convex hull is found
exactly by Wolfe's min-norm-point algorithm (:mod:`.min_norm`; MGDA's code
uses Frank-Wolfe iterations, which are inexact at any fixed count).

``mode='amortized'`` (DTO-KD Algorithm 1, the method trained in the paper):
one gradient of sum_k z_k log L_k with z = softmax(w) detached (w: one logit
per group, initialised to 0, i.e. pi = 1/K; under DDP, L_k is the loss over
all ranks, one all-reduce of K numbers per iteration, so that the gradient
is the whole batch's; with gradient accumulation each micro-batch uses its
own L_k, so accumulation averages micro-batch log-loss gradients); after
the student step the losses are recomputed on the same batch
(:class:`MoKDAmortizedHook`) and w is updated from the change of the
log-losses (a recomputation with a non-finite loss skips the weight update,
counted in ``train/kd/skipped_weight_updates``):

* ``weight_update='famo'`` (default, FAMO's ``update``): delta_k =
  log L_k(theta_t) - log L_k(theta_{t+1}); grad_w = J_softmax(w)^T delta;
  a step of the weights' optimiser on w (lr 0.025, weight decay 0.01).
  Minimising this ``grad_w`` lowers the weight of the objective that
  improved most, as FAMO does.
* ``weight_optimizer``: DTO-KD's text gives AdamW (lr 0.025, wd 0.01) for
  "the overall optimization"; those are FAMO's ``w_lr`` and ``gamma``, but
  FAMO's ``famo.py`` (L20) steps w with ``torch.optim.Adam(weight_decay=
  gamma)``, an L2 penalty added to the gradient. The default ``'adamw'``
  follows the paper this module implements (decoupled decay);
  ``'adam'`` is FAMO's code. On logits near 0 the two differ only in how
  the 0.01 decay enters.
* ``weight_update='eq18'`` (the paper's Eq. 18 as printed, which ignores the
  improvement rates): grad_w = J_softmax(w)^T grad_pi 1/2 (sum_k pi_k log
  L_k)^2, then the same AdamW step.
* ``step_scale`` (below) applies as in exact mode: ``'c'`` divides the
  objective by c = sum_k z_k / L_k (FAMO does, DTO-KD's Algorithm 1 does
  not).

Options where the paper is silent, or where its literal form fails under
SGD (the min-norm point is never longer than the shorter log-gradient: with
the distillation log-gradient 4-10x shorter than the task's, pi_task falls
to about 0.01 and the step is about 12x shorter than KD's); each one's
source:

* ``step_scale``: what multiplies the combination sum_k pi_k grad L_k / L_k
  (pi: the min-norm weights, or z = softmax(w) in amortized mode).
  ``'none'``: the paper as written. ``'c'``: divided by c = sum_k pi_k /
  L_k, so that the weights on the raw gradients, pi_k / (c L_k), sum to 1
  (FAMO's ``LOG_MGDA``, Cranial-XIX/FAMO ``methods/weight_methods.py``
  L503-504, the exact rule in code by the authors DTO-KD builds on; in
  amortized mode FAMO's normaliser c, ``famo.py`` L28-34). ``'K'``: the
  raw-gradient weights sum to K, the summed loss's scale (Nash-MTL's MGDA,
  ``weight_methods.py`` L396-397, ``sol * n_tasks``; CAGrad's ``mgd``
  multiplies by 2 "to match the sum loss"). ``'kd'``: the step as long
  as the summed raw gradients, vanilla KD's step at the same learning
  rate, so that MoKD changes the direction only (what an Adam student's
  per-step normalisation does roughly; DB-MTL, LibMTL ``DB_MTL.py``
  L28-35, rescales task gradients by norms likewise). Exact mode measures
  both lengths at every step; amortized mode, which differentiates one
  weighted loss, measures them every ``stretch_interval`` updates (one
  gradient per group on that update, as exact mode does) and scales the
  updates in between by the running mean (momentum 0.8) of the measured
  stretch |sum_k grad L_k| / |sum_k z_k grad L_k / L_k|.
* ``min_weight``: a floor on every weight, the rest rescaled (MGDA's code
  clamps two-task weights to [0.001, 0.999], isl-org/MultiObjective
  Optimization ``min_norm_solvers.py`` L17-26).
* ``balance='shared'`` (exact mode): the Gram matrix and the weights cover
  only the parameters every objective reaches; a parameter reached by one
  objective alone (the regression branch of a head under a class-logit
  term, a projection neck) takes that objective's raw gradient (LibMTL,
  ``abstract_weighting.py`` L37-55, which resets only the shared
  gradients). ``'all'``: every parameter takes the weighted combination
  (DTO-KD's J_t over theta).
* Per-term objectives: ``groups=('task', 'distill.fpn', 'distill.cls')``
  balances each distillation term (``distill.<name>`` of the distiller's
  ``distill_losses``) as its own objective; K >= 3 uses the exact solver.
* The student's optimizer is any torch optimizer: DTO-KD trains its
  detection students with AdamW (lr 1e-4, the ViDT recipe), to which a
  global rescale of the step makes little difference.

**Defaults chosen by measurement** (the paired CPU detection proxy,
``benchmarks/RESULTS.md``, issue 12): ``step_scale='kd', min_weight=0.05``.
There the two-objective min-norm point is the distillation log-gradient
alone from the first epoch on (its log-gradient is about 4x shorter than
the task's and their cosine exceeds that ratio), so the literal rule
(``step_scale='none', min_weight=0``) trains on the distillation loss only,
with a step about 5x shorter than KD's: 10.1 mAP against KD's 31.5
(3 seeds). The floor keeps pi_task at its value. Rescaled to K with the
floor 0.1 (raw-gradient weights about 0.5 task, 1.5 distill) the step is
about 0.63x KD's and the student is level with KD (exact -0.2 [-2.6, +2.2],
amortized -0.7 [-1.8, +0.4], 3 seeds). Stretched to KD's step length both
modes beat KD: with the floor 0.1 (raw weights about 0.8 task, 2.4
distill) exact +1.74 [+1.51, +1.97], amortized +1.86 [+1.20, +2.52]; with
the floor 0.05 (the default) **exact +2.98 [+2.13, +3.83], amortized +2.84
[+2.20, +3.48]** mAP x100, paired over 5 seeds (0.05 against 0.1: exact
+1.24 [+0.24, +2.24], amortized +0.98 [+0.82, +1.14]). Lost on seeds 0-1:
per-term objectives (-1.8), a floor of 0.2 with the KD-length step (+0.3),
``balance='shared'`` (+0.6 with the K scale). What the proxy rewards is the
distillation-heavy direction at full step length; the min-norm rule picks
the distillation side and the floor sets how far. Floors below 0.05 were
not tried (without a floor the task leaves the shared parameters: 28.8 /
29.1 with the K scale).

Logs: ``train/kd/pi_<group>`` each update, and in exact mode the gradient
dynamics of :class:`MultiObjectiveOptimWrapper`, the effective weights on
the raw gradients ``train/kd/raw_weight_<group>`` (pi_k / L_k, times the
step scale) and ``train/kd/step_ratio``, the length of the applied gradient
over that of the summed raw gradients (vanilla KD's at the same lr). In
amortized mode with ``step_scale='kd'`` the measuring updates log the same
dynamics and ``train/kd/stretch``, the running stretch.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor

from ..distillers.loss_groups import DISTILL, TASK
from .base import (Grads, MultiObjectiveOptimWrapper, flatten, gram_matrix,
                   loss_value, unflatten_into_grads)
from .min_norm import (floor_weights, min_norm_weights,  # noqa: F401
                       two_objective_weights)


@OPTIM_WRAPPERS.register_module()
class MoKDOptimWrapper(MultiObjectiveOptimWrapper):
    """MoKD / DTO-KD (see the module docstring) as an mmengine OptimWrapper.

    Args:
        optimizer: Any torch optimizer.
        mode: ``'exact'`` or ``'amortized'``. Defaults to ``'exact'``.
        groups: The objectives, K >= 2 loss groups. Defaults to
            ``('task', 'distill')``.
        eps: Guard of the closed form's denominator and of log L
            (log(L + eps)). Defaults to 1e-8.
        gram_params: ``'all'`` or ``'shared'`` (exact mode). Defaults to
            ``'all'``.
        weight_update: ``'famo'`` or ``'eq18'`` (amortized mode). Defaults to
            ``'famo'``.
        weight_lr: Learning rate of the weight logits. Defaults to 0.025.
        weight_decay: Weight decay of the logits. Defaults to 0.01.
        weight_optimizer: ``'adamw'`` (DTO-KD's text, decoupled decay) or
            ``'adam'`` (FAMO's code: Adam with L2 decay). Defaults to
            ``'adamw'``.
        step_scale: ``'none'`` (the paper), ``'c'`` (raw-gradient weights
            summing to 1, FAMO), ``'K'`` (summing to K, Nash-MTL) or
            ``'kd'`` (the step as long as vanilla KD's). Defaults to
            ``'kd'`` (chosen on the proxy; see the module docstring).
        min_weight: Floor on each weight (MGDA: 0.001). Defaults to 0.05
            (chosen on the proxy). ``step_scale='none', min_weight=0`` is
            the paper as written.
        balance: ``'all'`` or ``'shared'`` (exact mode: weights only where
            every objective reaches, raw gradients elsewhere). Defaults to
            ``'all'``.
        stretch_interval: Amortized mode with ``step_scale='kd'``: updates
            between two measurements of vanilla KD's step length. Defaults
            to 10.
        **kwargs: See :class:`MultiObjectiveOptimWrapper`.

    Note:
        ``mode='amortized'`` needs ``custom_hooks=[dict(type=
        'MoKDAmortizedHook')]``, which recomputes the losses after each step;
        the wrapper raises at the second update if the hook is missing.
    """
    amp_variant = 'AmpMoKDOptimWrapper'

    def __init__(self,
                 optimizer,
                 mode: str = 'exact',
                 groups: Sequence[str] = (TASK, DISTILL),
                 eps: float = 1e-8,
                 gram_params: str = 'all',
                 weight_update: str = 'famo',
                 weight_lr: float = 0.025,
                 weight_decay: float = 0.01,
                 weight_optimizer: str = 'adamw',
                 step_scale: str = 'kd',
                 min_weight: float = 0.05,
                 balance: str = 'all',
                 stretch_interval: int = 10,
                 **kwargs):
        super().__init__(optimizer, groups=groups, **kwargs)
        if mode not in ('exact', 'amortized'):
            raise ValueError(f"mode must be 'exact' or 'amortized', got "
                             f'{mode!r}')
        if len(self.groups) < 2:
            raise ValueError(f'MoKD balances >= 2 groups, got {self.groups}')
        if gram_params not in ('all', 'shared'):
            raise ValueError(f"gram_params must be 'all' or 'shared', got "
                             f'{gram_params!r}')
        if weight_update not in ('famo', 'eq18'):
            raise ValueError(f"weight_update must be 'famo' or 'eq18', got "
                             f'{weight_update!r}')
        optimizers = dict(adamw=torch.optim.AdamW, adam=torch.optim.Adam)
        if weight_optimizer not in optimizers:
            raise ValueError("weight_optimizer must be 'adamw' (DTO-KD) or "
                             f"'adam' (FAMO's code), got {weight_optimizer!r}")
        if step_scale not in ('none', 'c', 'K', 'kd'):
            raise ValueError(f"step_scale must be 'none', 'c', 'K' or 'kd', "
                             f'got {step_scale!r}')
        if not (isinstance(stretch_interval, int) and stretch_interval >= 1):
            raise ValueError('stretch_interval must be an int >= 1, got '
                             f'{stretch_interval!r}')
        if balance not in ('all', 'shared'):
            raise ValueError(f"balance must be 'all' or 'shared', got "
                             f'{balance!r}')
        if balance == 'shared' and mode == 'amortized':
            raise ValueError(
                "balance='shared' needs each objective's own gradient, which "
                "only mode='exact' computes (amortized mode differentiates "
                'one weighted loss)')
        if not 0 <= min_weight * len(self.groups) <= 1:
            raise ValueError(f'min_weight must be in [0, 1/K] = [0, '
                             f'{1 / len(self.groups):.3g}], got {min_weight}')
        self.mode = mode
        self.eps = eps
        self.gram_params = gram_params
        self.weight_update = weight_update
        self.step_scale = step_scale
        self.min_weight = min_weight
        self.balance = balance
        self.stretch_interval = stretch_interval
        # amortized step_scale='kd': the running stretch and the updates
        # since it was measured (a measurement at the first update)
        self.stretch: Optional[float] = None
        self._since_stretch = 0
        self.logits = torch.zeros(len(self.groups), requires_grad=True)
        self.logit_optimizer = optimizers[weight_optimizer](
            [self.logits], lr=weight_lr, weight_decay=weight_decay)
        self._pending: Optional[Tensor] = None  # losses before the step
        self._last_values: Optional[Tensor] = None
        self.weights = torch.full((len(self.groups), ), 1. / len(self.groups))
        self.skipped_weight_updates = 0

    # ------------------------------------------------------------ objectives
    def _check_positive(self, groups: Dict[str, Tensor]) -> None:
        for g in self.groups:
            if not groups[g].detach() > 0:
                raise ValueError(
                    f'MoKD takes log L of every group, but loss group {g!r} '
                    f'is {float(groups[g]):.4g} (must be > 0). Log-loss '
                    'balancing needs positive losses.')

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        self._check_positive(groups)
        self._last_values = torch.stack(
            [loss_value(groups[g]) for g in self.groups])
        if self.mode == 'exact' or self._measure_stretch():
            return OrderedDict((g, groups[g]) for g in self.groups)
        if self._pending is not None:
            raise RuntimeError(
                "MoKDOptimWrapper(mode='amortized') got no loss recomputation "
                'after its last step: add the hook to the config, keeping '
                "the base config's hooks: custom_hooks = [*_base_.get("
                "'custom_hooks', []), dict(type='MoKDAmortizedHook')]")
        z = floor_weights(F.softmax(self.logits.detach(), -1),
                          self.min_weight).to(groups[self.groups[0]])
        losses = torch.stack([groups[g] for g in self.groups])
        # grad log(L) = grad L / L with L the loss over all ranks (averaged
        # like the gradients), so DDP equals one process on the whole batch:
        # L_k / sg(mean_ranks L_k) has that gradient
        norm = loss_value(losses).clone()
        if torch_dist.is_available() and torch_dist.is_initialized() and \
                torch_dist.get_world_size() > 1:
            torch_dist.all_reduce(norm)
            norm /= torch_dist.get_world_size()
        norm = (norm + self.eps).to(losses.dtype)
        objective = (z * losses / norm).sum()
        factor = self._step_factor(z / norm)
        if self.step_scale == 'kd':
            factor = factor * self.stretch
        return {'weighted': objective * factor}

    def _measure_stretch(self) -> bool:
        """Amortized ``step_scale='kd'``: whether this update measures the
        stretch (every group's gradient instead of the weighted one). The
        same on every rank and for every micro-batch of one update."""
        return self.mode == 'amortized' and self.step_scale == 'kd' and (
            self.stretch is None
            or self._since_stretch >= self.stretch_interval - 1)

    def _step_factor(self, raw_weights: Tensor) -> Tensor:
        """The step scale's factor for weights ``raw_weights`` on the raw
        gradients (pi_k / L_k): 1, 1 / sum or K / sum."""
        if self.step_scale in ('none', 'kd'):  # 'kd': set in the combination
            return raw_weights.new_ones(())
        factor = 1. if self.step_scale == 'c' else float(len(self.groups))
        return factor / raw_weights.sum()

    # ---------------------------------------------------------- combination
    def apply_gradients(self, grads: Dict[str, Grads],
                        values: Dict[str, Tensor]) -> None:
        params = self.params()
        scale = torch.stack([values[g] for g in self.groups]).cpu().double()
        if self.mode == 'amortized':
            # compared with the recomputation on the same (last) batch
            self._pending = self._last_values
            self.weights = floor_weights(F.softmax(self.logits.detach(), -1),
                                         self.min_weight)
            if 'weighted' in grads:
                self._since_stretch += 1
                for p, g in zip(params, grads['weighted']):
                    p.grad = g
                self._log_weights()
                return
            self._apply_measured_stretch(grads, scale, params)
            return
        flat, present, shared, raw_matrix = self._group_gradients(grads,
                                                                  params)
        balanced = raw_matrix  # Gram matrix of what the weights apply to
        if self.gram_params == 'shared' or self.balance == 'shared':
            mask = torch.repeat_interleave(
                torch.tensor(shared, dtype=flat.dtype),
                torch.tensor([p.numel() for p in params])).to(flat.device)
            balanced = gram_matrix(flat * mask)
        # Gram matrix of the log-loss gradients g_i = G_i / L_i
        log_matrix = balanced / (scale[:, None] * scale[None, :])
        # groups[0] is g1 in the paper's notation for (distill, task): the
        # closed form is symmetric, so the order only names the weights
        pi = min_norm_weights(log_matrix)
        if not torch.isfinite(pi).all():  # e.g. a zero-norm gradient pair
            raise FloatingPointError(
                f'MoKD exact: non-finite min-norm weights {pi.tolist()} from '
                f'the log-gradient Gram matrix {log_matrix.tolist()}')
        pi = floor_weights(pi, self.min_weight)
        self.weights = pi.float()
        # weights on the raw gradients: pi_k / L_k, times the step scale
        coeffs = pi / scale
        coeffs = coeffs * self._step_factor(coeffs)
        direction = coeffs.to(flat) @ flat
        if self.balance == 'shared':
            # one objective's parameters: its raw gradient
            alone = mask == 0
            direction[alone] = flat[:, alone].sum(0)
            # disjoint supports: |shared part|^2 + |raw one-objective part|^2
            step2 = coeffs @ balanced.double() @ coeffs + (
                raw_matrix - balanced).double().sum()
        else:
            step2 = coeffs @ raw_matrix.double() @ coeffs
        # |sum of raw gradients|^2: vanilla KD's step at this lr
        kd2 = raw_matrix.double().sum()
        if self.step_scale == 'kd' and bool(step2 > 0):
            stretch = (kd2.clamp_min(0) / step2).sqrt()
            direction *= float(stretch)
            coeffs = coeffs * stretch
            step2 = step2 * stretch**2
        unflatten_into_grads(direction, params, present)
        self.log_scalar('kd/step_ratio',
                        (step2.clamp_min(0) / kd2.clamp_min(1e-300)).sqrt())
        self._log_weights(coeffs)

    def _group_gradients(self, grads: Dict[str, Grads], params) -> tuple:
        """The groups' gradients as one (K, N) matrix (the Gram matrix and
        the combination are then single BLAS calls), which parameters any
        group / every group reaches, and their Gram matrix over all
        parameters; logs the task-distill dynamics. Empties ``grads``."""
        raw = [grads[g] for g in self.groups]
        flat = flatten(raw, params)
        present = [any(r[i] is not None for r in raw)
                   for i in range(len(params))]
        shared = [all(r[i] is not None for r in raw)
                  for i in range(len(params))]
        grads.clear()  # the per-parameter gradients are copied into flat
        del raw
        gram = gram_matrix(flat)
        if len(self.groups) == 2 and set(self.groups) == {TASK, DISTILL}:
            t, d = self.groups.index(TASK), self.groups.index(DISTILL)
            self.log_gradient_dynamics(gram[t, t], gram[d, d], gram[t, d])
        return flat, present, shared, gram

    def _apply_measured_stretch(self, grads: Dict[str, Grads],
                                scale: Tensor, params) -> None:
        """Amortized ``step_scale='kd'``, a measuring update: the weighted
        combination of the groups' raw gradients (raw weights z_k / L_k),
        its stretch to vanilla KD's step length folded into the running
        stretch, and the step scaled by the running stretch."""
        flat, present, _, gram = self._group_gradients(grads, params)
        gram = gram.double()
        coeffs = self.weights.double() / scale
        step2 = coeffs @ gram @ coeffs
        kd2 = gram.sum().clamp_min(0)
        measured = float((kd2 / step2).sqrt()) if bool(step2 > 0) else 1.
        self.stretch = measured if self.stretch is None else \
            0.8 * self.stretch + 0.2 * measured
        self._since_stretch = 0
        self.log_scalar('kd/stretch', self.stretch)
        coeffs = coeffs * self.stretch
        self.log_scalar('kd/step_ratio', (coeffs @ gram @ coeffs).clamp_min(
            0).sqrt() / kd2.sqrt().clamp_min(1e-300))
        unflatten_into_grads(coeffs.to(flat) @ flat, params, present)
        self._log_weights(coeffs)

    def _log_weights(self, raw_weights: Optional[Tensor] = None) -> None:
        for k, (g, w) in enumerate(zip(self.groups, self.weights)):
            self.log_scalar(f'kd/pi_{g}', w)
            if raw_weights is not None:
                self.log_scalar(f'kd/raw_weight_{g}', raw_weights[k])

    # ------------------------------------------------------ amortized update
    def pending_losses(self) -> Optional[Tensor]:
        """Amortized mode, after a step: this rank's group losses (in
        ``groups`` order) on the last batch before the step, waiting for
        their recomputation after it; None otherwise."""
        return self._pending

    def update_weights(self, before: Tensor, after: Tensor) -> None:
        """Amortized mode: updates the weight logits from the group losses
        on one batch before and after the step (``groups`` order; averaged
        over ranks by the caller, :class:`MoKDAmortizedHook`)."""
        old = before.detach().double().cpu().add(self.eps).log()
        new = after.detach().double().cpu().add(self.eps).log()
        self._pending = None
        if not (torch.isfinite(old).all() and torch.isfinite(new).all()):
            # a non-finite recomputation must not reach the logits (nor,
            # through them, the next steps): this weight update is skipped
            self.skipped_weight_updates += 1
            self.log_scalar('kd/skipped_weight_updates',
                            self.skipped_weight_updates)
            return
        with torch.enable_grad():
            z = F.softmax(self.logits, -1)
            if self.weight_update == 'famo':
                delta = old - new
            else:  # Eq. 18: grad_pi 1/2 (sum_k pi_k log L_k)^2
                delta = (z.detach() * old).sum() * old
            grad_w, = torch.autograd.grad(z, self.logits,
                                          grad_outputs=delta.to(z.dtype))
        self.logit_optimizer.zero_grad()
        self.logits.grad = grad_w
        self.logit_optimizer.step()
        # what the next step applies (the logged pi): floored
        self.weights = floor_weights(F.softmax(self.logits.detach(), -1),
                                     self.min_weight)
        for g, w in zip(self.groups, self.weights):
            self.log_scalar(f'kd/pi_{g}', w)

    # ----------------------------------------------------------------- state
    def method_state_dict(self) -> dict:
        return dict(logits=self.logits.detach().clone(),
                    logit_optimizer=self.logit_optimizer.state_dict(),
                    weights=self.weights.clone(),
                    pending=self._pending,
                    stretch=self.stretch,
                    since_stretch=self._since_stretch)

    def load_method_state_dict(self, state: dict) -> None:
        if not state:
            return
        with torch.no_grad():
            self.logits.copy_(state['logits'])
        self.logit_optimizer.load_state_dict(state['logit_optimizer'])
        self.weights = state['weights']
        self._pending = state.get('pending')
        self.stretch = state.get('stretch')
        self._since_stretch = state.get('since_stretch', 0)
