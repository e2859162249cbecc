"""MKD: Meta Knowledge Distillation with learnable temperatures (and, beyond
the abstract, a learnable distillation weight).

Liu, Liu, Li and Liu, "Meta Knowledge Distillation", arXiv 2202.07940
(2022). Only the abstract was available: the teacher and student softmax
temperatures are "learnable meta temperature parameters" that are
"adaptively adjusted during training according to the gradients of the
learning objective". The paper's exact procedure (parametrisation, meta
objective, frequency) could not be consulted; **this module implements its
own formulation** and does not claim to reproduce the paper:

* temperatures: :class:`~mokd_det.losses.MetaTemperature` inside each
  ``LogitKDLoss`` (scalar by default, per class optional), bounded to
  ``[low, high]`` by a sigmoid parametrisation, kept out of the student's
  optimizer and saved with the model;
* the student step is ordinary: the gradient of task + lambda * distill
  losses (lambda = 1 without ``learn_weight``);
* after every ``interval``-th applied update (skipped, non-finite updates
  do not count), after the student step theta -> theta', a
  **one-step lookahead** meta update (DARTS, Liu et al. ICLR 2019): the meta
  objective is the task loss after the step, L_task(theta'), on the same
  batch; its gradient with respect to the temperatures tau is, to first
  order in the step size xi (the current learning rate),

      d L_task(theta') / d tau = -xi * d/dtau <grad_theta L_train(theta,
      tau), v>,   v = grad_theta L_task(theta'),

  computed by default with DARTS' **finite difference**
  ``-xi * (grad_tau L_train(theta + eps v) - grad_tau L_train(theta - eps
  v)) / (2 eps)``, eps = ``fd_eps`` / |v|, at the parameters theta *before*
  the step (kept for the steps that get a meta update), which costs one
  forward-backward (for v) and two forwards that differentiate only with
  respect to tau (the student's parameters are excluded from the graph), the
  teacher's outputs and the label assignment reused.
  ``meta_mode='second_order'`` uses the exact Hessian-vector product through
  double backpropagation instead (more memory). xi = lr makes the formula
  exact for SGD with momentum and weight decay (the momentum history and the
  decay do not depend on tau); for adaptive optimizers it approximates;
* the temperatures then take an Adam step (``meta_lr``) on their raw
  parametrisation. A meta update meeting a non-finite value (the task
  gradient or the meta-gradient) is skipped and counted
  (``train/kd/skipped_meta_updates``): the temperatures stay as they were.

* **the distillation weight** (``learn_weight=True``, the default): one
  more meta parameter, lambda in [0.1, 10] (sigmoid-bounded, init 1), the
  weight of the distillation group in the student's gradient g_task +
  lambda g_distill, meta-updated by the same lookahead:
  dL_task(theta')/dlambda = -xi <grad_theta L_distill(theta), v> (one more
  forward-backward per meta update). The temperatures' meta-gradient is
  then taken through lambda * L_distill. With it the temperatures are
  optional, so MKD also runs on models without a logit term (feature
  terms only). Cascades (per-stage RoI logits) and DETRs (``QueryKDLoss``)
  have logit terms too, and learn their temperatures like any other.

Why the weight: on the paired CPU detection proxy the temperatures alone
did not beat vanilla KD, while the distillation weight moved the student
(KD with larger weights gains); the lookahead's meta-gradient for lambda was
positive from the first updates on, so lambda rises through training.
The figures, and every variant measured, are in ``benchmarks/RESULTS.md``
(section 2).

Logs ``train/kd/tau_teacher_<term>`` and ``train/kd/tau_student_<term>``
(means for per-class temperatures) and ``train/kd/distill_weight`` every
iteration.

Notes on faithfulness and options: docs/methods.md (MKD).
"""
import logging
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce_params
from mmengine.logging import print_log
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor

from ..loss_groups import DISTILL, TASK, get_loss_groups
from ..losses.temperature import MetaTemperature
from .base import MultiObjectiveOptimWrapper
from .guard import all_finite


@OPTIM_WRAPPERS.register_module()
class MKDOptimWrapper(MultiObjectiveOptimWrapper):
    """MKD (see the module docstring) as an mmengine OptimWrapper.

    Args:
        optimizer: The student's optimizer (any).
        interval: A meta update after every ``interval``-th applied update
            of the student (skipped updates do not count). Defaults to 20.
        meta_lr: Adam learning rate of the raw temperatures. Defaults to
            0.05.
        meta_mode: ``'finite_difference'`` or ``'second_order'``. Defaults
            to ``'finite_difference'``.
        fd_eps: Finite-difference radius relative to |v|. Defaults to 0.01.
        learn_weight: Also meta-learn one weight lambda of the distillation
            group (the student's gradient becomes g_task + lambda *
            g_distill), by the same lookahead: dL_task(theta')/dlambda =
            -xi <grad_theta L_distill(theta), v>, exact to first order for
            SGD. One more forward-backward per meta update. With it the
            temperatures are optional (MKD on models without a logit term).
            Defaults to True (measured: benchmarks/RESULTS.md); False is
            the temperatures alone, this module's first formulation.
        weight_init: Initial lambda. Defaults to 1.0 (KD's weighting).
        weight_bounds: ``(low, high)``, lambda = low + (high - low) *
            sigmoid(raw). Defaults to (0.1, 10.0).
        **kwargs: See :class:`MultiObjectiveOptimWrapper`.

    Note:
        Needs ``custom_hooks=[dict(type='MKDMetaHook')]`` (the meta update
        needs the batch) and at least one ``LogitKDLoss`` with
        ``temperature=dict(type='MetaTemperature', ...)``, or
        ``learn_weight=True``.
    """
    amp_variant = 'AmpMKDOptimWrapper'
    #: one gradient per forward (its meta step runs forwards of its own),
    #: so compile=True works (tests/test_optim/test_semantics.py)
    differentiates_twice = False

    def __init__(self,
                 optimizer,
                 interval: int = 20,
                 meta_lr: float = 0.05,
                 meta_mode: str = 'finite_difference',
                 fd_eps: float = 0.01,
                 learn_weight: bool = True,
                 weight_init: float = 1.0,
                 weight_bounds: Tuple[float, float] = (0.1, 10.0),
                 **kwargs):
        super().__init__(optimizer, **kwargs)
        self.raw_weight: Optional[Tensor] = None
        if learn_weight:
            low, high = (float(b) for b in weight_bounds)
            if not 0 <= low < weight_init < high:
                raise ValueError(
                    f'learn_weight needs 0 <= low < weight_init < high, got '
                    f'weight_init {weight_init}, weight_bounds '
                    f'{weight_bounds}')
            self.weight_bounds = (low, high)
            self.raw_weight = torch.logit(
                torch.tensor((weight_init - low) / (high - low)))
        if meta_mode not in ('finite_difference', 'second_order'):
            raise ValueError("meta_mode must be 'finite_difference' or "
                             f"'second_order', got {meta_mode!r}")
        self.interval = interval
        self.meta_lr = meta_lr
        self.meta_mode = meta_mode
        self.fd_eps = fd_eps
        self.temperatures: Dict[str, MetaTemperature] = {}
        self.meta_optimizer: Optional[torch.optim.Optimizer] = None
        self._pending_meta_state: Optional[dict] = None
        self._theta_before: Optional[List[Tensor]] = None
        self.meta_updates = 0
        self.skipped_meta_updates = 0

    # --------------------------------------------------------- student step
    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        if self.raw_weight is None:
            return {'total': sum(groups.values())}
        return {'total': sum(v for k, v in groups.items() if k != DISTILL) +
                self.distill_weight() * groups[DISTILL]}

    def distill_weight(self) -> Tensor:
        """lambda, the distillation group's weight (1 without
        ``learn_weight``)."""
        if self.raw_weight is None:
            return torch.tensor(1.0)
        low, high = self.weight_bounds
        return low + (high - low) * torch.sigmoid(self.raw_weight)

    def apply_gradients(self, grads, values) -> None:
        if self.meta_optimizer is None:
            raise RuntimeError(
                'MKDOptimWrapper was never bound to its meta parameters, so '
                'they would stay frozen: add MKDMetaHook to the config (it '
                'binds them and runs the meta update), keeping the base '
                "config's hooks: custom_hooks = [*_base_.get('custom_hooks', "
                "[]), dict(type='MKDMetaHook')]")
        for p, g in zip(self.params(), grads['total']):
            p.grad = g
        self.log_temperatures()

    def step(self, **kwargs) -> None:
        """Keeps theta before the steps that get a meta update (the
        expansion point of the lookahead), then steps."""
        if self._meta_params() and \
                (self.applied_steps + 1) % self.interval == 0:
            self._theta_before = [p.detach().clone() for p in self.params()]
        super().step(**kwargs)

    # ----------------------------------------------------------- meta step
    def bind(self, model) -> None:
        """Finds the model's MetaTemperatures (one per logit-KD term)."""
        self.temperatures = {
            name.split('.')[-2] if name.endswith('.temperature') else name:
            module
            for name, module in model.named_modules()
            if isinstance(module, MetaTemperature)
        }
        if not self.temperatures and self.raw_weight is None:
            raise ValueError(
                'MKDOptimWrapper found no learnable temperature: give a '
                "LogitKDLoss temperature=dict(type='MetaTemperature', "
                'init=4.0) in the distiller\'s distill_losses, or learn the '
                'distillation weight instead (optim_wrapper=dict('
                "type='MKDOptimWrapper', learn_weight=True)), which needs "
                'no logit term')
        if self.raw_weight is not None:
            device = next(model.parameters()).device
            self.raw_weight = self.raw_weight.to(device)
        self.meta_optimizer = torch.optim.Adam(self._meta_params(),
                                               lr=self.meta_lr)
        if self._pending_meta_state is not None:
            self.meta_optimizer.load_state_dict(self._pending_meta_state)
            self._pending_meta_state = None

    def log_temperatures(self) -> None:
        for name, t in self.temperatures.items():
            self.log_scalar(f'kd/tau_teacher_{name}', t.teacher().mean())
            self.log_scalar(f'kd/tau_student_{name}', t.student().mean())
        if self.raw_weight is not None:
            self.log_scalar('kd/distill_weight', self.distill_weight())

    def _raw(self) -> List[Tensor]:
        """The temperatures' raw buffers."""
        return [b for t in self.temperatures.values() for b in t.raw()]

    def _meta_params(self) -> List[Tensor]:
        """Everything the meta optimizer updates: the temperatures' raw
        buffers, then lambda's."""
        return self._raw() + ([] if self.raw_weight is None
                              else [self.raw_weight])

    def meta_update(self, loss_fn) -> None:
        """One meta update of the temperatures (and of lambda).

        Args:
            loss_fn: Callable returning the grouped total loss of the
                current batch at the current student parameters (the hook
                supplies it, with the teacher reused and the iteration's
                random state).
        """
        params = self.params()
        xi = self.optimizer.param_groups[0]['lr']
        if self._theta_before is None:
            raise RuntimeError('MKD meta update without the parameters '
                               'before the step; call it right after an '
                               'update of this wrapper (MKDMetaHook does)')
        # v = grad_theta L_task(theta') on this batch
        groups = get_loss_groups(loss_fn())
        v = torch.autograd.grad(groups[TASK], params, allow_unused=True)
        v = [torch.zeros_like(p) if g is None else g
             for p, g in zip(params, v)]
        all_reduce_params(v, op='mean')
        if not all_finite(v):
            self._skip_meta_update('the task gradient after the step')
            return
        theta_after = [p.detach().clone() for p in params]
        with torch.no_grad():  # the expansion point: theta before the step
            for p, b in zip(params, self._theta_before):
                p.copy_(b)
        # lambda's first: the temperatures' finite difference leaves the
        # parameters at theta - eps v
        weight_grad = [] if self.raw_weight is None else \
            [self._weight_grad(loss_fn, params, v, xi)]
        meta_grad = self._temperature_meta_grad(loss_fn, params, v,
                                                xi) + weight_grad
        with torch.no_grad():
            for p, a in zip(params, theta_after):
                p.copy_(a)
        self._theta_before = None
        all_reduce_params(meta_grad, op='mean')
        if not all_finite(meta_grad):
            self._skip_meta_update('the temperatures\' meta-gradient')
            return
        self.meta_optimizer.zero_grad()
        for r, g in zip(self._meta_params(), meta_grad):
            r.grad = g.to(r.dtype)
        self.meta_optimizer.step()
        for r in self._meta_params():
            r.grad = None
        self.meta_updates += 1
        self.log_temperatures()

    def _temperature_meta_grad(self, loss_fn, params: List[Tensor],
                               v: List[Tensor], xi: float) -> List[Tensor]:
        """d L_task(theta') / d raw_tau = -xi d/draw_tau <grad_theta
        L_train(theta, tau), v> at theta (the parameters before the step),
        one tensor per raw temperature: by the exact Hessian-vector product
        (``'second_order'``) or DARTS' central difference along v."""
        raw = self._raw()
        if not raw:
            return []
        lam = self.distill_weight().to(v[0].device)
        if self.meta_mode == 'second_order':
            for r in raw:
                r.requires_grad_(True)
            try:
                groups = get_loss_groups(loss_fn())
                g_theta = torch.autograd.grad(
                    groups[TASK] + lam * groups[DISTILL], params,
                    create_graph=True, allow_unused=True)
                dot = sum((g * u).sum() for g, u in zip(g_theta, v)
                          if g is not None)
                hvp = torch.autograd.grad(dot, raw, allow_unused=True)
                return [-xi * (torch.zeros_like(r) if h is None else h)
                        for r, h in zip(raw, hvp)]
            finally:
                for r in raw:
                    r.requires_grad_(False)
        norm = torch.sqrt(sum((u.float()**2).sum() for u in v))
        eps = self.fd_eps / float(norm.clamp_min(1e-12))
        grads = []
        for step in (eps, -2 * eps):  # theta + eps v, then theta - eps v
            with torch.no_grad():
                torch._foreach_add_(params, v, alpha=step)
            with _excluded_from_graph(params):
                grads.append(self._tau_grad(loss_fn, raw))
        # the temperatures act through lambda * L_distill
        return [-xi * lam * (gp - gm) / (2 * eps) for gp, gm in zip(*grads)]

    def _skip_meta_update(self, what: str) -> None:
        """A meta update with a non-finite value is skipped: temperatures
        and their optimizer stay as they were (the student too)."""
        self._theta_before = None
        self.skipped_meta_updates += 1
        self.log_scalar('kd/skipped_meta_updates', self.skipped_meta_updates)
        print_log(f'MKD: meta update skipped, {what} is not finite',
                  logger='current', level=logging.WARNING)

    def _weight_grad(self, loss_fn, params: List[Tensor], v: List[Tensor],
                     xi: float) -> Tensor:
        """d L_task(theta') / d raw_lambda = -xi <grad_theta L_distill(theta),
        v> * dlambda/draw, at theta (the parameters before the step)."""
        groups = get_loss_groups(loss_fn())
        g_distill = torch.autograd.grad(groups[DISTILL], params,
                                        allow_unused=True)
        dot = sum((g.float() * u.float()).sum()
                  for g, u in zip(g_distill, v) if g is not None)
        low, high = self.weight_bounds
        s = torch.sigmoid(self.raw_weight)
        return (-xi * dot * (high - low) * s * (1 - s)).to(
            self.raw_weight.dtype).detach()

    @staticmethod
    def _tau_grad(loss_fn, raw: List[Tensor]) -> List[Tensor]:
        """grad_tau of L_train at the current parameters."""
        for r in raw:
            r.requires_grad_(True)
        try:
            groups = get_loss_groups(loss_fn())
            grads = torch.autograd.grad(groups[DISTILL], raw,
                                        allow_unused=True)
        finally:
            for r in raw:
                r.requires_grad_(False)
        return [torch.zeros_like(r) if g is None else g.detach()
                for r, g in zip(raw, grads)]

    # --------------------------------------------------------------- state
    def method_state_dict(self) -> dict:
        state = dict(meta_updates=self.meta_updates)
        if self.raw_weight is not None:
            state['raw_weight'] = self.raw_weight.detach().clone()
        if self.meta_optimizer is not None:
            state['meta_optimizer'] = self.meta_optimizer.state_dict()
        return state

    def load_method_state_dict(self, state: dict) -> None:
        self.meta_updates = state.get('meta_updates', 0)
        if self.raw_weight is not None and 'raw_weight' in state:
            self.raw_weight.copy_(state['raw_weight'])
        meta = state.get('meta_optimizer')
        if meta is None:
            return
        if self.meta_optimizer is None:
            self._pending_meta_state = meta  # applied by bind()
        else:
            self.meta_optimizer.load_state_dict(meta)


@contextmanager
def _excluded_from_graph(params: List[Tensor]):
    """Parameters that do not require grad inside the context, so that a
    forward records only what depends on the temperatures."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
