"""DOT's Adam analogue (mokd_det/optim/dot_adam.py): hand-computed steps,
Delta = 0 equal to torch's Adam/AdamW on the summed loss, state and
refusals."""
import copy

import pytest
import torch
from torch import nn

from mokd_det.loss_groups import parse_grouped_losses
from mokd_det.optim import DOTOptimWrapper


def grouped(task, distill):
    total, _ = parse_grouped_losses({'task.loss': task,
                                     'distill.kd': distill})
    return total


def test_two_steps_by_hand():
    """theta = 1, lr 0.1, betas (0.9, 0.999), Delta 0.05 (b_t 0.85, b_k
    0.95); gradients (g_t, g_k) = (1, 2) then (0.5, -1).
    Step 1: m_t = 0.15, m_k = 0.1, v = 0.009; bias-corrected 1, 2 and 9:
    theta = 1 - 0.1 * 3 / (3 + 1e-8) = 0.9.
    Step 2: m_t = 0.2025, m_k = 0.045, v = 0.009241; corrections 0.2775,
    0.0975, 0.001999: direction 0.729730 + 0.461538, sqrt(v_hat) 2.150072:
    theta = 0.9 - 0.1 * 1.191268 / 2.150072 = 0.844594."""
    theta = nn.Parameter(torch.ones(1, dtype=torch.float64))
    wrapper = DOTOptimWrapper(torch.optim.Adam([theta], lr=0.1), delta=0.05)
    out = []
    for g_t, g_k in [(1., 2.), (0.5, -1.)]:
        wrapper.update_params(grouped(g_t * theta.sum(), g_k * theta.sum()))
        out.append(theta.item())
    assert out == pytest.approx([0.9, 0.844594], abs=1e-6)
    state = wrapper.optimizer.state[theta]
    assert float(state['step']) == 2
    assert state['exp_avg'].item() == pytest.approx(0.2025)
    assert state['exp_avg_kd'].item() == pytest.approx(0.045)
    assert state['exp_avg_sq'].item() == pytest.approx(0.009241)


class ThreeWays(nn.Module):
    """Parameters reached by both losses, by the task only, by the
    distillation only."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.both = nn.Parameter(torch.randn(4, generator=gen))
        self.task = nn.Parameter(torch.randn(3, generator=gen))
        self.kd = nn.Parameter(torch.randn(2, generator=gen))

    def losses(self, step):
        t = ((self.both - step)**2).sum() + (self.task**3).sum()
        k = ((self.both + 1)**2).sum() * 0.5 + (self.kd**2).sum()
        return t, k


@pytest.mark.parametrize('opt_type,wd', [(torch.optim.AdamW, 0.05),
                                         (torch.optim.Adam, 0.01),
                                         (torch.optim.Adam, 0.0)])
def test_delta_zero_is_torch_adam_on_the_summed_loss(opt_type, wd):
    model = ThreeWays()
    ref = copy.deepcopy(model)
    wrapper = DOTOptimWrapper(
        opt_type(model.parameters(), lr=0.05, weight_decay=wd), delta=0.0)
    ref_opt = opt_type(ref.parameters(), lr=0.05, weight_decay=wd)
    for step in range(5):
        wrapper.update_params(grouped(*model.losses(step)))
        ref_opt.zero_grad()
        sum(ref.losses(step)).backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_single_gradient_parameters_follow_adam_with_beta1():
    """Delta = 0.075: parameters reached by one loss only take plain AdamW
    steps with beta1 (the table's last two rows); those reached by both
    differ from AdamW on the summed loss."""
    model = ThreeWays()
    ref = copy.deepcopy(model)
    wrapper = DOTOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.05),
        delta=0.075)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.05)
    for step in range(5):
        wrapper.update_params(grouped(*model.losses(step)))
        ref_opt.zero_grad()
        sum(ref.losses(step)).backward()
        ref_opt.step()
    torch.testing.assert_close(model.task, ref.task, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.kd, ref.kd, rtol=1e-5, atol=1e-6)
    assert (model.both - ref.both).abs().max() > 1e-4


def test_resume_continues_exactly():
    def build(model):
        return DOTOptimWrapper(torch.optim.AdamW(model.parameters(), lr=0.05),
                               delta=0.075)
    model = ThreeWays()
    whole = copy.deepcopy(model)
    w_whole = build(whole)
    for step in range(4):
        w_whole.update_params(grouped(*whole.losses(step)))
    w_first = build(model)
    for step in range(2):
        w_first.update_params(grouped(*model.losses(step)))
    resumed = copy.deepcopy(model)
    w_resumed = build(resumed)
    w_resumed.load_state_dict(copy.deepcopy(w_first.state_dict()))
    for step in range(2, 4):
        w_resumed.update_params(grouped(*resumed.losses(step)))
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_refusals():
    p = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match='amsgrad'):
        DOTOptimWrapper(torch.optim.Adam([p], amsgrad=True))
    with pytest.raises(ValueError, match='beta1 \\+ delta'):
        DOTOptimWrapper(torch.optim.AdamW([p], betas=(0.95, 0.999)),
                        delta=0.075)
