"""MoKD's two modes: how the weights of the objectives are found and applied
(:class:`~mokd_det.optim.mokd.MoKDOptimWrapper` holds what they share, and
its module docstring states both rules and their sources).

* :class:`ExactMode`: per-group gradients every update; the min-norm point
  of the log-loss gradients (DTO-KD Theorem 3.1; Wolfe's algorithm for
  K >= 3) weighs them.
* :class:`AmortizedMode`: one gradient of the weighted log-losses per
  update, weights z = softmax(w) from logits that a FAMO step updates from
  the losses recomputed after the step (DTO-KD Algorithm 1).

A mode object belongs to one wrapper (``self.w``) and keeps its own state.

Notes on faithfulness and options: docs/methods.md (MoKD).
"""
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from torch import Tensor

from .base import Grads, gram_matrix, loss_value, unflatten_into_grads
from .min_norm import floor_weights, min_norm_weights


def kd_stretch(step2: Tensor, gram: Tensor) -> Tensor:
    """The ``'kd'`` step scale: |sum_k G_k| / |d|, from |d|^2 = ``step2``
    and the Gram matrix of the raw group gradients G_k, i.e. vanilla KD's
    step length over the combination's (float64; 1 when ``step2`` is 0)."""
    if not bool(step2 > 0):
        return step2.new_ones(())
    return (gram.double().sum().clamp_min(0) / step2).sqrt()


def adam_metric(optimizer, params: List[Tensor],
                present: List[bool]) -> Optional[Tensor]:
    """The square root of Adam's diagonal preconditioner over ``params``
    (flattened in order): 1 / sqrt(sqrt(v_hat) + eps), v_hat the
    bias-corrected second moment of the optimizer's state, so that
    |d * g|^2 = g^T diag(1 / (sqrt(v_hat) + eps)) g, the metric in which
    Adam's step is a gradient step. None while a parameter that some group
    reaches (``present``) has no second moment yet (the first update: the
    Euclidean metric); a parameter no group reaches has a zero gradient
    row, and Adam never gives it a second moment, so its entries are 1."""
    hyper = {id(p): g for g in optimizer.param_groups for p in g['params']}
    parts = []
    for p, reached in zip(params, present):
        state = optimizer.state.get(p, {})
        if 'exp_avg_sq' not in state:
            if reached:
                return None
            parts.append(p.new_ones(p.numel()))
            continue
        group = hyper[id(p)]
        step = float(state['step'])
        v_hat = state['exp_avg_sq'] / (1 - group['betas'][1]**step)
        parts.append((v_hat.sqrt() + group['eps']).rsqrt().reshape(-1))
    return torch.cat(parts)


class ExactMode:
    """Exact MoKD: the min-norm weights of the groups' log-loss gradients,
    computed from their Gram matrix at every update.

    ``metric='adam'`` (an option, not in DTO-KD) builds that Gram matrix in
    the metric of an Adam-type student optimizer, <g_i, g_j>_P = g_i^T P
    g_j with P = diag(1 / (sqrt(v_hat) + eps)) from the optimizer's second
    moments before this step (:func:`adam_metric`): the min-norm point of
    the preconditioned directions Adam actually takes, instead of the raw
    gradients that it rescales per coordinate (issue 20's direction; the
    idea of balancing in the update's geometry is that of Sener and
    Koltun's MGDA applied to the preconditioned problem). The combination
    and the ``'kd'`` stretch stay on the raw gradients, which the optimizer
    then preconditions as usual.
    """

    def __init__(self, wrapper, gram_params: str = 'all',
                 balance: str = 'all', metric: str = 'euclidean', **_):
        self.w = wrapper
        self.gram_params = gram_params
        self.balance = balance
        self.metric = metric
        if metric == 'adam':
            for group in wrapper.optimizer.param_groups:
                if 'betas' not in group or 'eps' not in group:
                    raise ValueError(
                        "MoKD metric='adam' balances in Adam's "
                        'preconditioned metric and needs an Adam-type '
                        f'optimizer (Adam, AdamW), got '
                        f'{type(wrapper.optimizer).__name__}: use '
                        "optimizer=dict(type='AdamW', ...) or "
                        "metric='euclidean'")

    @staticmethod
    def check(mode: str, options: dict) -> None:
        if options['gram_params'] not in ('all', 'shared'):
            raise ValueError(f"gram_params must be 'all' or 'shared', got "
                             f"{options['gram_params']!r}")
        if options['balance'] not in ('all', 'shared'):
            raise ValueError(f"balance must be 'all' or 'shared', got "
                             f"{options['balance']!r}")
        if options['metric'] not in ('euclidean', 'adam'):
            raise ValueError(f"metric must be 'euclidean' or 'adam', got "
                             f"{options['metric']!r}")
        if mode == 'amortized' and options['metric'] != 'euclidean':
            raise ValueError(
                "metric='adam' weighs the groups' own gradients, which only "
                "mode='exact' computes")

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return OrderedDict((g, groups[g]) for g in self.w.groups)

    def raw_weights(self, gram: Tensor, scale: Tensor) -> Tensor:
        """The weights on the raw gradients, pi_k / L_k times the step
        factor, from the Gram matrix ``gram`` of the raw gradients and the
        losses ``scale``; pi (floored) becomes the wrapper's weights."""
        w = self.w
        # Gram matrix of the log-loss gradients g_i = G_i / L_i
        log_matrix = gram / (scale[:, None] * scale[None, :])
        pi = min_norm_weights(log_matrix, eps=w.eps)
        if not torch.isfinite(pi).all():  # e.g. a zero-norm gradient pair
            raise FloatingPointError(
                f'MoKD exact: non-finite min-norm weights {pi.tolist()} from '
                f'the log-gradient Gram matrix {log_matrix.tolist()}')
        pi = floor_weights(pi, w.min_weight)
        w.weights = pi.float()
        coeffs = pi / scale
        return coeffs * w.step_factor(coeffs)

    def apply_gradients(self, grads: Dict[str, Grads], scale: Tensor,
                        params: List[Tensor]) -> None:
        w = self.w
        flat, present, shared, raw_matrix = w.group_gradients(grads, params)
        balanced = raw_matrix  # Gram matrix of what the weights apply to
        # weights from the parameters every objective reaches only
        restrict = self.gram_params == 'shared' or self.balance == 'shared'
        if restrict:
            mask = torch.repeat_interleave(
                torch.tensor(shared, dtype=flat.dtype),
                torch.tensor([p.numel() for p in params])).to(flat.device)
            balanced = gram_matrix(flat * mask)
        metric = adam_metric(w.optimizer, params, present) \
            if self.metric == 'adam' else None
        weighing = balanced  # the Gram matrix the weights come from
        if metric is not None:
            rows = flat * metric.to(flat)
            if restrict:
                rows = rows * mask
            weighing = gram_matrix(rows)
        coeffs = self.raw_weights(weighing, scale)
        direction = coeffs.to(flat) @ flat
        if self.balance == 'shared':
            if w.step_scale == 'kd':  # the shared part as long as KD's
                stretch = kd_stretch(coeffs @ balanced.double() @ coeffs,
                                     balanced)
                direction *= float(stretch)
                coeffs = coeffs * stretch
            # one objective's parameters: its raw gradient, as in KD
            alone = mask == 0
            direction[alone] = flat[:, alone].sum(0)
            # disjoint supports: |shared part|^2 + |raw one-objective part|^2
            step2 = coeffs @ balanced.double() @ coeffs + (
                raw_matrix - balanced).double().sum()
        else:
            step2 = coeffs @ raw_matrix.double() @ coeffs
            if w.step_scale == 'kd':
                stretch = kd_stretch(step2, raw_matrix)
                direction *= float(stretch)
                coeffs = coeffs * stretch
                step2 = step2 * stretch**2
        kd2 = raw_matrix.double().sum()  # |sum of raw gradients|^2: KD's
        unflatten_into_grads(direction, params, present)
        w.log_scalar('kd/step_ratio',
                     (step2.clamp_min(0) / kd2.clamp_min(1e-300)).sqrt())
        w.log_weights(coeffs)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class AmortizedMode:
    """Amortized MoKD: weight logits updated FAMO-style from how much each
    group's log-loss fell over one step; with ``step_scale='kd'`` every
    ``stretch_interval``-th update measures both group gradients for the
    running stretch.

    Where the "after" losses come from (``weight_signal``):

    * ``'recompute'`` (DTO-KD Algorithm 1, FAMO): the same batch, recomputed
      after the step by ``MoKDAmortizedHook`` (:meth:`update_weights`): a
      no-grad forward of the student and the losses per iteration.
    * ``'next'`` (an option, not in DTO-KD or FAMO; issue 21): the losses
      the next update computes anyway, on its own batch, at the updated
      parameters: delta_k = log L_k(theta_t; b_t) - log L_k(theta_{t+1};
      b_{t+1}), the losses of each update's first micro-batch averaged
      over ranks. No extra forward; the weights of update t+1 are set
      from delta_t before its gradient, as in ``'recompute'``. What
      changes: delta compares two batches, so it adds the batches'
      difference to the improvement. Its expectation over the batches is
      still the expected improvement (b_t and b_{t+1} are drawn alike),
      and a difficulty common to all groups (a harder batch raising every
      log-loss by the same amount) cancels in FAMO's gradient, since the
      softmax Jacobian maps a constant vector to 0; what remains is the
      groups' relative difficulty from batch to batch, noise that the
      logits' Adam averages over its momentum.
    """

    def __init__(self, wrapper, weight_update: str = 'famo',
                 weight_lr: float = 0.025, weight_decay: float = 0.01,
                 weight_optimizer: str = 'adamw', stretch_interval: int = 10,
                 weight_signal: str = 'recompute', **_):
        self.w = wrapper
        self.weight_update = weight_update
        self.weight_signal = weight_signal
        self.stretch_interval = stretch_interval
        optimizers = dict(adamw=torch.optim.AdamW, adam=torch.optim.Adam)
        self.logits = torch.zeros(len(wrapper.groups), requires_grad=True)
        self.logit_optimizer = optimizers[weight_optimizer](
            [self.logits], lr=weight_lr, weight_decay=weight_decay)
        #: the running stretch (``step_scale='kd'``) and the updates since
        #: it was measured (a measurement at the first update)
        self.stretch: Optional[float] = None
        self.since_stretch = 0
        #: this rank's losses before the step, awaiting their recomputation
        self.pending: Optional[Tensor] = None
        self.skipped_weight_updates = 0
        #: ``weight_signal='next'``: the rank-averaged losses of the first
        #: micro-batch after the last weight update, and whether a step
        #: has been taken since (the next first micro-batch then updates)
        self.before: Optional[Tensor] = None
        self.stepped = False

    @staticmethod
    def check(mode: str, options: dict) -> None:
        if options['weight_update'] not in ('famo', 'eq18'):
            raise ValueError(f"weight_update must be 'famo' or 'eq18', got "
                             f"{options['weight_update']!r}")
        if options['weight_optimizer'] not in ('adamw', 'adam'):
            raise ValueError(
                "weight_optimizer must be 'adamw' (DTO-KD) or 'adam' (FAMO's "
                f"code), got {options['weight_optimizer']!r}")
        interval = options['stretch_interval']
        if not (isinstance(interval, int) and interval >= 1):
            raise ValueError('stretch_interval must be an int >= 1, got '
                             f'{interval!r}')
        if options['weight_signal'] not in ('recompute', 'next'):
            raise ValueError(
                "weight_signal must be 'recompute' (DTO-KD: the same batch "
                "after the step) or 'next' (the next update's losses, no "
                f"extra forward), got {options['weight_signal']!r}")
        if mode == 'amortized' and options['balance'] == 'shared':
            raise ValueError(
                "balance='shared' needs each objective's own gradient, which "
                "only mode='exact' computes (amortized mode differentiates "
                'one weighted loss)')

    def _floored(self) -> Tensor:
        return floor_weights(F.softmax(self.logits.detach(), -1),
                             self.w.min_weight)

    def _measures_stretch(self) -> bool:
        """Whether this update measures the stretch (every group's gradient
        instead of the weighted one). The same on every rank and for every
        micro-batch of one update."""
        return self.w.step_scale == 'kd' and (
            self.stretch is None
            or self.since_stretch >= self.stretch_interval - 1)

    @property
    def recomputes(self) -> bool:
        """Whether the losses are recomputed after each step (by
        ``MoKDAmortizedHook``)."""
        return self.weight_signal == 'recompute'

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        w = self.w
        losses = torch.stack([groups[g] for g in w.groups])
        mean = None  # the losses over all ranks (one all-reduce of K)
        if not self.recomputes:
            mean = loss_value(losses).clone()
            all_reduce(mean, op='mean')
            self._next_signal(mean)
        if self._measures_stretch():
            return OrderedDict((g, groups[g]) for g in w.groups)
        if self.pending is not None:
            raise RuntimeError(
                "MoKDOptimWrapper(mode='amortized') got no loss recomputation "
                'after its last step: add the hook to the config, keeping '
                "the base config's hooks: custom_hooks = [*_base_.get("
                "'custom_hooks', []), dict(type='MoKDAmortizedHook')], or "
                "set weight_signal='next' (no recomputation)")
        z = self._floored().to(groups[w.groups[0]])
        # grad log(L) = grad L / L with L the loss over all ranks (averaged
        # like the gradients), so DDP equals one process on the whole batch:
        # L_k / sg(mean_ranks L_k) has that gradient
        if mean is None:
            mean = loss_value(losses).clone()
            all_reduce(mean, op='mean')
        norm = (mean + w.eps).to(losses.dtype)
        objective = (z * losses / norm).sum()
        factor = w.step_factor(z / norm)
        if w.step_scale == 'kd':
            factor = factor * self.stretch
        return {'weighted': objective * factor}

    def _next_signal(self, mean: Tensor) -> None:
        """``weight_signal='next'``: the first micro-batch after a step
        updates the logits from the last such losses to ``mean`` (this
        micro-batch's, over all ranks) and keeps ``mean`` for the next."""
        if self.before is None:
            self.before = mean.detach().cpu()
        elif self.stepped:
            self.update_weights(self.before, mean)
            self.before = mean.detach().cpu()
        self.stepped = False

    def apply_gradients(self, grads: Dict[str, Grads], scale: Tensor,
                        params: List[Tensor]) -> None:
        w = self.w
        if self.recomputes:
            # compared with the recomputation on the same (last) batch
            self.pending = w.last_values
        else:
            self.stepped = True
        w.weights = self._floored()
        if 'weighted' in grads:
            self.since_stretch += 1
            for p, g in zip(params, grads['weighted']):
                p.grad = g
            w.log_weights()
            return
        # a measuring update: the weighted combination of the groups' raw
        # gradients (raw weights z_k / L_k), its stretch to vanilla KD's
        # step length folded into the running stretch, and the step scaled
        # by the running stretch
        flat, present, _, gram = w.group_gradients(grads, params)
        gram = gram.double()
        coeffs = w.weights.double() / scale
        measured = float(kd_stretch(coeffs @ gram @ coeffs, gram))
        self.stretch = measured if self.stretch is None else \
            0.8 * self.stretch + 0.2 * measured
        self.since_stretch = 0
        w.log_scalar('kd/stretch', self.stretch)
        coeffs = coeffs * self.stretch
        w.log_scalar('kd/step_ratio', (coeffs @ gram @ coeffs).clamp_min(
            0).sqrt() / gram.sum().clamp_min(0).sqrt().clamp_min(1e-300))
        unflatten_into_grads(coeffs.to(flat) @ flat, params, present)
        w.log_weights(coeffs)

    def update_weights(self, before: Tensor, after: Tensor) -> None:
        """Updates the logits from the group losses on one batch before and
        after the step (``groups`` order, averaged over ranks); a
        non-finite value skips the update (counted in
        ``train/kd/skipped_weight_updates``)."""
        w = self.w
        old = before.detach().double().cpu().add(w.eps).log()
        new = after.detach().double().cpu().add(w.eps).log()
        self.pending = None
        if not (torch.isfinite(old).all() and torch.isfinite(new).all()):
            # a non-finite recomputation must not reach the logits (nor,
            # through them, the next steps)
            self.skipped_weight_updates += 1
            w.log_scalar('kd/skipped_weight_updates',
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
        w.weights = self._floored()  # what the next step applies
        for g, pi in zip(w.groups, w.weights):
            w.log_scalar(f'kd/pi_{g}', pi)

    def state_dict(self) -> dict:
        return dict(logits=self.logits.detach().clone(),
                    logit_optimizer=self.logit_optimizer.state_dict(),
                    pending=self.pending, stretch=self.stretch,
                    since_stretch=self.since_stretch, before=self.before,
                    stepped=self.stepped)

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.logits.copy_(state['logits'])
        self.logit_optimizer.load_state_dict(state['logit_optimizer'])
        self.pending = state.get('pending')
        self.stretch = state.get('stretch')
        self.since_stretch = state.get('since_stretch', 0)
        self.before = state.get('before')
        self.stepped = state.get('stepped', False)


MODES = dict(exact=ExactMode, amortized=AmortizedMode)
