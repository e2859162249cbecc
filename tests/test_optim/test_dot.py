"""DOT against the reference semantics and hand-computed numbers."""
import pytest
import torch
from torch import nn

from mokd_det.loss_groups import parse_grouped_losses
from mokd_det.optim import DOTOptimWrapper


def grouped(task, distill):
    total, _ = parse_grouped_losses({'task.loss': task,
                                     'distill.kd': distill})
    return total


def linear_losses(theta, g_task, g_kd):
    """Losses whose gradients are exactly g_task and g_kd."""
    return grouped(g_task * theta.sum(), g_kd * theta.sum())


def run_scalar(steps, delta, wd, lr=0.1, mu=0.9):
    theta = nn.Parameter(torch.ones(1, dtype=torch.float64))
    wrapper = DOTOptimWrapper(
        torch.optim.SGD([theta], lr=lr, momentum=mu, weight_decay=wd),
        delta=delta)
    out = []
    for g_task, g_kd in steps:
        wrapper.update_params(linear_losses(theta, g_task, g_kd))
        out.append(theta.item())
    return out


def test_worked_example_of_the_reference():
    """algorithms.md section 1.3."""
    steps = [(1., 2.), (0.5, -1.)]
    assert run_scalar(steps, 0.075, 0.) == pytest.approx([0.7, 0.4725],
                                                         abs=1e-6)
    assert run_scalar(steps, 0.075, 0.1) == pytest.approx([0.69, 0.44735],
                                                          abs=1e-6)
    assert run_scalar(steps + [(0.3, 0.2)], 0., 0.1) == pytest.approx(
        [0.69, 0.4541, 0.187249], abs=1e-6)


class TwoHeads(nn.Module):
    """A shared trunk (both gradients), a task-only head, a distill-only
    projector; several parameter groups."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.proj = nn.Linear(4, 3)

    def losses(self, x, with_proj=True):
        h = torch.tanh(self.trunk(x))
        task = self.head(h).pow(2).mean()
        distill = (h - x.flip(1)).pow(2).mean()
        if with_proj:
            distill = distill + self.proj(h).pow(2).mean()
        return task, distill


def param_groups(model, wd=1e-2):
    return [dict(params=list(model.trunk.parameters()), lr=0.1),
            dict(params=list(model.head.parameters()) +
                 list(model.proj.parameters()),
                 lr=0.05, weight_decay=0.)]


def test_delta_zero_equals_sgd_on_the_summed_loss():
    """Trunk gets both gradients, head only the task one (the projector is
    left out: its first distill-only step differs from SGD by design)."""
    dot_model, sgd_model = TwoHeads(), TwoHeads()
    dot = DOTOptimWrapper(torch.optim.SGD(
        param_groups(dot_model), lr=0.1, momentum=0.9, weight_decay=1e-2),
        delta=0.)
    sgd = torch.optim.SGD(param_groups(sgd_model), lr=0.1, momentum=0.9,
                          weight_decay=1e-2)
    for step in range(5):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
        dot.update_params(grouped(*dot_model.losses(x, with_proj=False)))
        sgd.zero_grad()
        sum(sgd_model.losses(x, with_proj=False)).backward()
        sgd.step()
    for a, b in zip(dot_model.parameters(), sgd_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_task_only_and_distill_only_parameters_by_hand():
    """Task-only: plain momentum mu with weight decay. Distill-only: momentum
    mu, first buffer the raw gradient (no weight decay), as the reference."""
    task_p = nn.Parameter(torch.ones(1, dtype=torch.float64))
    kd_p = nn.Parameter(torch.ones(1, dtype=torch.float64))
    wrapper = DOTOptimWrapper(torch.optim.SGD(
        [task_p, kd_p], lr=0.1, momentum=0.9, weight_decay=0.1), delta=0.075)
    for g_task, g_kd in ((1., 2.), (0.5, -1.)):
        wrapper.update_params(grouped(g_task * task_p.sum(),
                                      g_kd * kd_p.sum()))
    # task-only: buf 1 + 0.1 = 1.1 -> 0.89; buf 0.9*1.1 + 0.5 + 0.089
    assert task_p.item() == pytest.approx(0.89 - 0.1 * 1.579, abs=1e-9)
    # distill-only: buf 2 -> 0.8; buf 0.9*2 + (-1 + 0.08) = 0.88 -> 0.712
    assert kd_p.item() == pytest.approx(0.712, abs=1e-9)
    state = wrapper.optimizer.state
    assert 'momentum_kd_buffer' in state[kd_p]
    assert 'momentum_buffer' not in state[kd_p]
    assert 'momentum_buffer' in state[task_p]


def test_dot_rejects_what_it_cannot_do():
    p = nn.Parameter(torch.ones(1))
    with pytest.raises(TypeError, match='SGD'):
        DOTOptimWrapper(torch.optim.RMSprop([p]))
    with pytest.raises(ValueError, match='momentum \\+ delta'):
        DOTOptimWrapper(torch.optim.SGD([p], lr=1, momentum=0.95),
                        delta=0.075)
    with pytest.raises(ValueError, match='Nesterov'):
        DOTOptimWrapper(torch.optim.SGD([p], lr=1, momentum=0.9,
                                        nesterov=True))
    # mu == Delta: the reference's task-only parameters would lose their
    # momentum (its `if momentum != 0`), a side effect refused here
    with pytest.raises(ValueError, match='momentum == delta'):
        DOTOptimWrapper(torch.optim.SGD([p], lr=1, momentum=0.1), delta=0.1)
    # mu = Delta = 0 is momentum-free SGD in both
    DOTOptimWrapper(torch.optim.SGD([p], lr=1, momentum=0.), delta=0.)
