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
epsilon (``eps``, relative to g11 + g22) for g1 = g2 (``eps`` also guards
log(L + eps)); the Gram matrix covers
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
(:class:`~mokd_det.hooks.MoKDAmortizedHook`) and w is updated from the
change of the log-losses (a recomputation with a non-finite loss skips the
weight update, counted in ``train/kd/skipped_weight_updates``):

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
* ``weight_signal='next'`` (an option; the default ``'recompute'`` is
  DTO-KD's and FAMO's): no recomputation; delta_k compares each update's
  losses with the next update's, on the next batch
  (:class:`~.mokd_modes.AmortizedMode` states what that changes).
* ``step_scale`` (below) applies as in exact mode: ``'c'`` divides the
  objective by c = sum_k z_k / L_k (FAMO does, DTO-KD's Algorithm 1 does
  not).

The modes are two small classes of :mod:`.mokd_modes`
(:class:`~.mokd_modes.ExactMode`, :class:`~.mokd_modes.AmortizedMode`)
behind the config's ``mode``; this wrapper holds what they share: the
checks, the weights' floor, the step scale (the ``'kd'`` stretch written
once: :func:`~.mokd_modes.kd_stretch`) and the logs.

Options where the paper is silent, or where its literal form fails under
SGD (the min-norm point is never longer than the shorter log-gradient, so
when the distillation log-gradient is much shorter than the task's, pi_task
falls towards 0 and the step is much shorter than KD's); each one's
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
  L28-35, rescales task gradients by norms likewise). With
  ``balance='all'`` the whole step is stretched: the min-norm combination
  cancels where the objectives conflict, so the stretch lengthens the
  parameters one objective reaches alone beyond KD's step there (the
  regression branch under a class-logit term: ``benchmarks/
  step_length.py``). With ``balance='shared'`` only the shared part is
  stretched, to KD's length on the shared parameters, and the others take
  KD's raw gradient, so every part of the step is as long as KD's. Exact
  mode measures both lengths at every step; amortized mode, which differentiates one
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
* ``gradients='features'`` (exact mode): the weights from the
  objectives' gradients at the student's shared features (the FPN outputs,
  the pooled features), MGDA-UB's upper bound (Sener and Koltun, NeurIPS
  2018), then one backward through the backbone
  (:mod:`.mokd_features` states what differs).
* ``metric='adam'`` (exact mode, Adam-type optimizers): the Gram matrix
  in Adam's preconditioned metric, so that the min-norm point balances
  the directions Adam steps in (:class:`~.mokd_modes.ExactMode`).
* Per-term objectives: ``groups=('task', 'distill.fpn', 'distill.cls')``
  balances each distillation term (``distill.<name>`` of the distiller's
  ``distill_losses``) as its own objective; K >= 3 uses the exact solver.
* The student's optimizer is any torch optimizer: DTO-KD trains its
  detection students with AdamW (lr 1e-4, the ViDT recipe), to which a
  global rescale of the step makes little difference.

**Defaults** ``step_scale='kd', min_weight=0.05`` were chosen on the
paired CPU detection proxy (``benchmarks/RESULTS.md``, section 2, with every
variant measured there). There the distillation log-gradient is several
times shorter than the task's and well aligned with it, so the min-norm
point is the distillation side alone: the literal rule (``step_scale='none',
min_weight=0``) trains on the distillation loss only with a step several
times shorter than KD's. The floor keeps the task in the direction; the
``'kd'`` step keeps the step length of the summed loss, so that MoKD changes
the direction only.

Logs: ``train/kd/pi_<group>`` each update, and in exact mode the gradient
dynamics of :class:`MultiObjectiveOptimWrapper`, the effective weights on
the raw gradients ``train/kd/raw_weight_<group>`` (pi_k / L_k, times the
step scale) and ``train/kd/step_ratio``, the length of the applied gradient
over that of the summed raw gradients (vanilla KD's at the same lr). In
amortized mode with ``step_scale='kd'`` the measuring updates log the same
dynamics and ``train/kd/stretch``, the running stretch.

Notes on faithfulness and options: docs/methods.md (MoKD).
"""
from typing import Dict, Optional, Sequence

import torch
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor

from ..loss_groups import DISTILL, TASK, get_shared_features
from .base import (Grads, MultiObjectiveOptimWrapper, flatten, gram_matrix,
                   loss_value)
from .mokd_features import FeatureExactMode
from .mokd_modes import MODES

STEP_SCALES = ('none', 'c', 'K', 'kd')


@OPTIM_WRAPPERS.register_module()
class MoKDOptimWrapper(MultiObjectiveOptimWrapper):
    """MoKD / DTO-KD (see the module docstring) as an mmengine OptimWrapper.

    Args:
        optimizer: Any torch optimizer.
        mode: ``'exact'`` or ``'amortized'``. Defaults to ``'exact'``.
        groups: The objectives, K >= 2 loss groups. Defaults to
            ``('task', 'distill')``.
        eps: Guard of the closed form's denominator (K = 2) and of log L
            (log(L + eps)). Defaults to 1e-8.
        gram_params: ``'all'`` or ``'shared'`` (exact mode). Defaults to
            ``'all'``.
        weight_update: ``'famo'`` or ``'eq18'`` (amortized mode). Defaults to
            ``'famo'``.
        weight_lr: Learning rate of the weight logits (amortized mode).
            Defaults to 0.025.
        weight_decay: Weight decay of the logits (amortized mode). Defaults
            to 0.01.
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
        weight_signal: ``'recompute'`` (amortized mode: the losses on the
            same batch after the step, recomputed by ``MoKDAmortizedHook``,
            DTO-KD) or ``'next'`` (the next update's losses; no hook, no
            extra forward). Defaults to ``'recompute'``.
        gradients: ``'params'`` (exact mode: each objective's gradient on
            the parameters, two backward passes) or ``'features'`` (at the
            student's shared features, MGDA-UB: one backward through the
            backbone; :mod:`.mokd_features`). Defaults to ``'params'``.
        metric: ``'euclidean'`` or ``'adam'`` (exact mode with an Adam-type
            optimizer: the Gram matrix in Adam's preconditioned metric,
            :class:`~.mokd_modes.ExactMode`). Defaults to ``'euclidean'``
            (the paper).
        **kwargs: See :class:`MultiObjectiveOptimWrapper`.

    Every option is checked whatever the mode. The mode's own state (the
    amortized logits, their optimizer, the running stretch) lives on
    :attr:`rule`.

    Note:
        ``mode='amortized'`` with ``weight_signal='recompute'`` needs
        ``custom_hooks=[dict(type='MoKDAmortizedHook')]``, which recomputes
        the losses after each step; the wrapper raises at the second update
        if the hook is missing. With ``weight_signal='next'`` the hook is
        not needed (where present, it does nothing).
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
                 metric: str = 'euclidean',
                 weight_signal: str = 'recompute',
                 gradients: str = 'params',
                 **kwargs):
        super().__init__(optimizer, groups=groups, **kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be 'exact' or 'amortized', got "
                             f'{mode!r}')
        if len(self.groups) < 2:
            raise ValueError(f'MoKD balances >= 2 groups, got {self.groups}')
        if step_scale not in STEP_SCALES:
            raise ValueError(f"step_scale must be 'none', 'c', 'K' or 'kd', "
                             f'got {step_scale!r}')
        if not 0 <= min_weight * len(self.groups) <= 1:
            raise ValueError(f'min_weight must be in [0, 1/K] = [0, '
                             f'{1 / len(self.groups):.3g}], got {min_weight}')
        self.mode = mode
        self.eps = eps
        self.step_scale = step_scale
        self.min_weight = min_weight
        #: the weights pi the next (or last) update applies, floored
        self.weights = torch.full((len(self.groups), ), 1. / len(self.groups))
        #: this rank's group losses of the iteration, in ``groups`` order
        self.last_values: Optional[Tensor] = None
        options = dict(gram_params=gram_params, balance=balance,
                       weight_update=weight_update, weight_lr=weight_lr,
                       weight_decay=weight_decay,
                       weight_optimizer=weight_optimizer,
                       stretch_interval=stretch_interval, metric=metric,
                       weight_signal=weight_signal, gradients=gradients)
        # every option checked in any mode
        for other in (*MODES.values(), FeatureExactMode):
            other.check(mode, options)
        self.rule = FeatureExactMode(self, **options) \
            if gradients == 'features' else MODES[mode](self, **options)

    # ------------------------------------------------------------ objectives
    @torch.compiler.disable  # run eagerly under compile=True: no graph breaks
    def update_params(self, loss: Tensor, *args, **kwargs) -> None:
        if isinstance(self.rule, FeatureExactMode):
            self.rule.features = get_shared_features(loss)
        try:
            super().update_params(loss, *args, **kwargs)
        finally:
            if isinstance(self.rule, FeatureExactMode):
                self.rule.features = None

    def objective_gradients(self, objectives, params, scale):
        if isinstance(self.rule, FeatureExactMode):
            return self.rule.gradients(objectives, params, scale)
        return super().objective_gradients(objectives, params, scale)

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        for g in self.groups:
            if not groups[g].detach() > 0:
                raise ValueError(
                    f'MoKD takes log L of every group, but loss group {g!r} '
                    f'is {float(groups[g]):.4g} (must be > 0). Log-loss '
                    'balancing needs positive losses.')
        self.last_values = torch.stack(
            [loss_value(groups[g]) for g in self.groups])
        return self.rule.objectives(groups)

    def apply_gradients(self, grads: Dict[str, Grads],
                        values: Dict[str, Tensor]) -> None:
        scale = torch.stack([values[g] for g in self.groups]).cpu().double()
        self.rule.apply_gradients(grads, scale, self.params())

    # --------------------------------------------------------- shared rules
    def step_factor(self, raw_weights: Tensor) -> Tensor:
        """The step scale's factor for weights ``raw_weights`` on the raw
        gradients (pi_k / L_k): 1 (``'none'``; ``'kd'`` is applied to the
        combination, :func:`kd_stretch`), 1 / sum or K / sum."""
        if self.step_scale in ('none', 'kd'):
            return raw_weights.new_ones(())
        factor = 1. if self.step_scale == 'c' else float(len(self.groups))
        return factor / raw_weights.sum()

    def group_gradients(self, grads: Dict[str, Grads], params) -> tuple:
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
        self.log_group_dynamics(gram)
        return flat, present, shared, gram

    def log_group_dynamics(self, gram: Tensor) -> None:
        """The task-distill dynamics (:meth:`log_gradient_dynamics`) from
        the groups' Gram matrix, when the groups are those two."""
        if len(self.groups) == 2 and set(self.groups) == {TASK, DISTILL}:
            t, d = self.groups.index(TASK), self.groups.index(DISTILL)
            self.log_gradient_dynamics(gram[t, t], gram[d, d], gram[t, d])

    def log_weights(self, raw_weights: Optional[Tensor] = None) -> None:
        for k, (g, w) in enumerate(zip(self.groups, self.weights)):
            self.log_scalar(f'kd/pi_{g}', w)
            if raw_weights is not None:
                self.log_scalar(f'kd/raw_weight_{g}', raw_weights[k])

    # ------------------------------------------------------ amortized hooks
    @property
    def recomputes(self) -> bool:
        """Whether each step's losses must be recomputed after it
        (amortized mode with ``weight_signal='recompute'``)."""
        return bool(getattr(self.rule, 'recomputes', False))

    def pending_losses(self) -> Optional[Tensor]:
        """Amortized mode, after a step: this rank's group losses (in
        ``groups`` order) on the last batch before the step, waiting for
        their recomputation after it; None otherwise (and in exact mode)."""
        return getattr(self.rule, 'pending', None)

    def update_weights(self, before: Tensor, after: Tensor) -> None:
        """Amortized mode: updates the weight logits from the group losses
        on one batch before and after the step (``groups`` order; averaged
        over ranks by the caller, :class:`~mokd_det.hooks.
        MoKDAmortizedHook`)."""
        self.rule.update_weights(before, after)

    # ----------------------------------------------------------------- state
    def method_state_dict(self) -> dict:
        return dict(self.rule.state_dict(), weights=self.weights.clone())

    def load_method_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.weights = state['weights']
        self.rule.load_state_dict(state)
