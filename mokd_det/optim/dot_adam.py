"""DOT's Adam analogue: separate first moments for the task and the
distillation gradients.

DOT (Zhao et al., ICCV 2023; :mod:`mokd_det.optim.dot`) is defined for SGD
with momentum: the task gradient accumulates with momentum mu - Delta, the
distillation gradient with mu + Delta. The paper and its reference code
have no adaptive-optimiser form. This module's analogue for ``Adam`` /
``AdamW`` (what DETRs and RTMDet ship with) keeps **two first moments** and
**one second moment**, per parameter:

===================  ====================================================
gradients received   update (s: the parameter's step count)
===================  ====================================================
task and distill     m_t = b_t m_t + (1 - b_t) g_t,  b_t = beta1 - Delta
                     m_k = b_k m_k + (1 - b_k) g_k,  b_k = beta1 + Delta
                     v = beta2 v + (1 - beta2) (g_t + g_k)^2
                     p -= lr (m_t / (1 - b_t^s) + m_k / (1 - b_k^s))
                     / (sqrt(v / (1 - beta2^s)) + eps)
task only            Adam with beta1 on g_t
distill only         Adam with beta1 on g_k
===================  ====================================================

Weight decay as the optimiser does it: ``AdamW`` (decoupled) multiplies
every parameter by 1 - lr wd before the update; ``Adam`` (L2) adds wd p to
the task gradient (to the distillation gradient of a distill-only
parameter), as DOT's SGD table does. The second moment is the summed
gradient's, so the per-coordinate step size is the one Adam would use on
the summed loss; only the averaging of the direction differs. With Delta =
0 the update is exactly ``torch.optim.Adam``/``AdamW`` on the summed loss
(tested). Not supported: ``amsgrad``, ``maximize``.

State (in the optimizer's state, so in every checkpoint): ``step``,
``exp_avg`` (the task moment, or the only one), ``exp_avg_kd``,
``exp_avg_sq``.

How it compares with vanilla KD under the same AdamW on the paired CPU
detection proxy: ``benchmarks/RESULTS.md`` (section 2).

Notes on faithfulness and options: docs/methods.md (DOT).
"""
from typing import List, Optional

import torch
from torch import Tensor


def is_adam(optimizer: torch.optim.Optimizer) -> bool:
    """Adam or AdamW (torch's classes or subclasses)."""
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))


def check_adam(optimizer: torch.optim.Optimizer, delta: float) -> None:
    """Refuses the settings the analogue does not cover.

    Raises:
        ValueError: ``amsgrad``/``maximize``, or beta1 -/+ delta outside
            [0, 1).
    """
    for group in optimizer.param_groups:
        if group.get('amsgrad') or group.get('maximize'):
            raise ValueError('DOT with Adam supports neither amsgrad nor '
                             'maximize')
        beta1 = group['betas'][0]
        if not 0 <= beta1 - delta or beta1 + delta >= 1:
            raise ValueError(
                f'DOT with Adam needs 0 <= beta1 - delta and beta1 + delta '
                f'< 1; got beta1 {beta1}, delta {delta}')


def _decoupled(optimizer: torch.optim.Optimizer, group: dict) -> bool:
    return isinstance(optimizer, torch.optim.AdamW) or \
        bool(group.get('decoupled_weight_decay', False))


@torch.no_grad()
def dot_adam_update(optimizer: torch.optim.Optimizer, params: List[Tensor],
                    g_task: List[Optional[Tensor]],
                    g_kd: List[Optional[Tensor]], delta: float) -> None:
    """One DOT-Adam step of every parameter of ``optimizer`` that is in
    ``params`` (the gradients are aligned with ``params``)."""
    index = {id(p): i for i, p in enumerate(params)}
    for group in optimizer.param_groups:
        lr, eps, wd = group['lr'], group['eps'], group['weight_decay']
        beta1, beta2 = group['betas']
        decoupled = _decoupled(optimizer, group)
        for p in group['params']:
            i = index.get(id(p))
            if i is None or (g_task[i] is None and g_kd[i] is None):
                continue
            gt, gk = g_task[i], g_kd[i]
            if not decoupled and wd:  # L2 on the task side, as DOT's SGD
                if gt is not None:
                    gt = gt + wd * p
                else:
                    gk = gk + wd * p
            if decoupled and wd:
                p.mul_(1 - lr * wd)
            state = optimizer.state[p]
            if 'step' not in state:
                state['step'] = torch.zeros((), dtype=torch.float32)
                state['exp_avg_sq'] = torch.zeros_like(p)
            state['step'] += 1
            s = float(state['step'])
            total = gt if gk is None else gk if gt is None else gt + gk
            v = state['exp_avg_sq']
            v.mul_(beta2).addcmul_(total, total, value=1 - beta2)
            denom = (v / (1 - beta2**s)).sqrt_().add_(eps)
            if gt is not None and gk is not None:
                moments = [('exp_avg', gt, beta1 - delta),
                           ('exp_avg_kd', gk, beta1 + delta)]
            elif gt is not None:
                moments = [('exp_avg', gt, beta1)]
            else:
                moments = [('exp_avg_kd', gk, beta1)]
            direction = torch.zeros_like(p)
            for key, g, b in moments:
                m = state.setdefault(key, torch.zeros_like(p))
                m.mul_(b).add_(g, alpha=1 - b)
                direction.add_(m, alpha=1 / (1 - b**s))
            p.addcdiv_(direction, denom, value=-lr)
