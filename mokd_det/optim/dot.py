"""DOT: Distillation-Oriented Trainer.

Zhao, Cui, Song and Liang, "DOT: A Distillation-Oriented Trainer", ICCV 2023
(arXiv 2307.08436); reference implementation ``mdistiller/engine/dot.py``
(megvii-research/mdistiller @ a08d46f).

SGD with two momentum buffers: the task gradient accumulates with momentum
mu - Delta, the distillation gradient with mu + Delta, and the step is
lr * (v_task + v_kd). Per parameter, as the reference does:

===================  =====================================  ================
gradients received   update                                 weight decay on
===================  =====================================  ================
task and distill     v_t = (mu-D) v_t + (g_t + wd p);        the task side
                     v_k = (mu+D) v_k + g_k; p -= lr v_t;
                     p -= lr v_k
task only            v_t = mu v_t + (g_t + wd p)             the task side
distill only         v_k = mu v_k + (g_k + wd p)             the distill side
===================  =====================================  ================

Buffers start as the first gradient (with its weight decay), as in
``torch.optim.SGD``, except that a distill-only parameter's first buffer is
the raw g_k without weight decay (reference L46-48; reproduced). With
Delta = 0 the update equals ``torch.optim.SGD(momentum=mu,
weight_decay=wd)`` on the summed loss. ``momentum == delta`` is refused:
the reference's ``if momentum != 0`` (its task momentum mu - Delta) then
turns momentum off for task-only parameters as well, which this per-
parameter table does not reproduce.

Beyond the reference: any number of parameter groups (each with its own lr,
momentum and weight decay, so ``paramwise_cfg`` works), DDP, gradient
accumulation and AMP through :class:`MultiObjectiveOptimWrapper`, and
``clip_grad`` applied to the summed gradient (both sets scaled by the same
factor; the reference does not clip). The buffers live in the optimizer's
state (``momentum_buffer`` and ``momentum_kd_buffer``) and so in every
checkpoint. The update uses fused multi-tensor (``torch._foreach_*``) ops.

With ``Adam``/``AdamW`` as the optimizer, the wrapper runs DOT's Adam
analogue instead (not in the paper; :mod:`mokd_det.optim.dot_adam`).

Notes on faithfulness and options: docs/methods.md (DOT).
"""
from typing import Dict, List

import torch
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor

from ..loss_groups import DISTILL, TASK
from .base import Grads, MultiObjectiveOptimWrapper
from .dot_adam import check_adam, dot_adam_update, is_adam


@OPTIM_WRAPPERS.register_module()
class DOTOptimWrapper(MultiObjectiveOptimWrapper):
    """DOT (see the module docstring) as an mmengine OptimWrapper.

    Args:
        optimizer: ``torch.optim.SGD`` (no Nesterov, no dampening); its
            momentum is DOT's mu. ``Adam``/``AdamW`` select the Adam
            analogue (:mod:`mokd_det.optim.dot_adam`: beta1 -/+ delta for
            the two first moments, one second moment).
        delta: DOT's Delta; mu + Delta must stay below 1. Defaults to 0.075
            (the reference's default; its ImageNet configs use 0.09).
        **kwargs: See :class:`MultiObjectiveOptimWrapper`.

    Examples:
        >>> optim_wrapper = dict(
        ...     type='DOTOptimWrapper', delta=0.075,
        ...     optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
        ...                    weight_decay=1e-4))
    """
    amp_variant = 'AmpDOTOptimWrapper'

    def __init__(self, optimizer, delta: float = 0.075, **kwargs):
        super().__init__(optimizer, **kwargs)
        self.delta = delta
        self._grads: Dict[str, Grads] = {}
        if is_adam(self.optimizer):
            check_adam(self.optimizer, delta)
            return
        if not isinstance(self.optimizer, torch.optim.SGD):
            raise TypeError(
                f'DOT is SGD with two momenta (or its Adam analogue); got '
                f'{type(self.optimizer).__name__}. Use optimizer=dict('
                "type='SGD', momentum=0.9, ...) or Adam/AdamW.")
        for group in self.optimizer.param_groups:
            if group.get('nesterov') or group.get('dampening'):
                raise ValueError('DOT supports neither Nesterov momentum nor '
                                 'dampening (as the reference)')
            if not 0 <= group['momentum'] - delta or \
                    group['momentum'] + delta >= 1:
                raise ValueError(
                    f'DOT needs 0 <= momentum - delta and momentum + delta '
                    f'< 1; got momentum {group["momentum"]}, delta {delta}')
            if delta > 0 and group['momentum'] == delta:
                # mdistiller's dot() guards all task-gradient momentum with
                # `if momentum != 0` (momentum: its task momentum mu - D), so
                # there task-only parameters then lose their momentum mu too
                raise ValueError(
                    f'DOT with momentum == delta ({delta}): the task momentum '
                    'mu - delta is 0, and the reference (mdistiller) then '
                    'also turns momentum off for task-only parameters, a '
                    'side effect this implementation does not reproduce. '
                    'Use delta < momentum (the papers use momentum 0.9, '
                    'delta 0.075-0.09).')

    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {TASK: groups[TASK], DISTILL: groups[DISTILL]}

    def apply_gradients(self, grads, values) -> None:
        self._gram = self.task_distill_gram(grads[TASK], grads[DISTILL])
        self.log_gradient_dynamics(*self._gram)
        self._grads = grads

    def step(self, **kwargs) -> None:
        """Clips (the summed gradient), then the DOT update."""
        if self.clip_grad_kwargs:
            self._clip_both()
        if is_adam(self.optimizer):
            dot_adam_update(self.optimizer, self.params(), self._grads[TASK],
                            self._grads[DISTILL], self.delta)
        else:
            self._dot_update(self.params())
        self._grads = {}

    def _clip_both(self) -> None:
        """``clip_grad`` by the 2-norm of g_task + g_distill, scaling both
        sets by torch's clip coefficient. The norm comes from the Gram
        entries already computed: ||g_t + g_k||^2 = tt + kk + 2 tk."""
        kwargs = dict(self.clip_grad_kwargs)
        if self.clip_func is not torch.nn.utils.clip_grad_norm_ or \
                float(kwargs.get('norm_type', 2)) != 2.:
            raise ValueError('DOT supports clip_grad by 2-norm only (one '
                             'factor for both gradient sets)')
        tt, kk, tk = self._gram
        total = (tt + kk + 2 * tk).clamp_min(0).sqrt()
        self.message_hub.update_scalar(f'train/{self.grad_name}',
                                       float(total))
        coef = torch.clamp(kwargs['max_norm'] / (total + 1e-6), max=1.0)
        for name in (TASK, DISTILL):
            present = [g for g in self._grads[name] if g is not None]
            if present:
                torch._foreach_mul_(present, coef.to(present[0].device))

    @torch.no_grad()
    def _dot_update(self, params: List[Tensor]) -> None:
        index = {id(p): i for i, p in enumerate(params)}
        g_task, g_kd = self._grads[TASK], self._grads[DISTILL]
        for group in self.optimizer.param_groups:
            lr, mu, wd = group['lr'], group['momentum'], group['weight_decay']
            both, task_only, kd_only = [], [], []
            for p in group['params']:
                i = index.get(id(p))
                if i is None:
                    continue
                gt, gk = g_task[i], g_kd[i]
                if gt is not None and gk is not None:
                    both.append((p, gt, gk))
                elif gt is not None:
                    task_only.append((p, gt))
                elif gk is not None:
                    kd_only.append((p, gk))
            if both:
                ps, gts, gks = map(list, zip(*both))
                v_t = self._momentum(ps, gts, 'momentum_buffer',
                                     mu - self.delta, wd, wd_on_init=True)
                v_k = self._momentum(ps, gks, 'momentum_kd_buffer',
                                     mu + self.delta, 0., wd_on_init=True)
                torch._foreach_add_(ps, v_t, alpha=-lr)
                torch._foreach_add_(ps, v_k, alpha=-lr)
            if task_only:
                ps, gs = map(list, zip(*task_only))
                v = self._momentum(ps, gs, 'momentum_buffer', mu, wd,
                                   wd_on_init=True)
                torch._foreach_add_(ps, v, alpha=-lr)
            if kd_only:
                ps, gs = map(list, zip(*kd_only))
                v = self._momentum(ps, gs, 'momentum_kd_buffer', mu, wd,
                                   wd_on_init=False)
                torch._foreach_add_(ps, v, alpha=-lr)

    def _momentum(self, params, grads, key, momentum, wd, wd_on_init):
        """buf = momentum * buf + (g + wd * p), buffers created as the first
        d_p (the raw g when ``wd_on_init`` is False); returns the buffers."""
        state = self.optimizer.state
        d_p = list(grads)
        if wd:
            d_p = torch._foreach_add(d_p, params, alpha=wd)
        fresh = [i for i, p in enumerate(params) if key not in state[p]]
        for i in fresh:
            init = d_p[i] if wd_on_init else grads[i]
            state[params[i]][key] = torch.clone(init).detach()
        old = [i for i in range(len(params)) if i not in set(fresh)]
        if old:
            bufs = [state[params[i]][key] for i in old]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [d_p[i] for i in old])
        return [state[p][key] for p in params]
