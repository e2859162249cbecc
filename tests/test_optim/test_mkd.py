"""MKD's meta update on a toy problem where the right direction is known.

The student is a logit vector s (2 classes, label 0), the teacher's logits
t are fixed. With the KD factor tau_t * tau_s, the KD gradient on s is
tau_t (p_s - p_t), whose pull towards the teacher's class grows with tau_t
(tau (sigmoid(a / tau) - 1/2) increases with tau). So the step after which
the task loss is lowest has a larger tau_t when the teacher is right
(t = (a, 0)) and a smaller one when it is wrong (t = (0, a)): the meta
update must move tau_t that way from s = 0 (the first update; later ones
start from a student that has moved, where this analysis no longer holds),
and keep it in its bounds."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mokd_det.loss_groups import parse_grouped_losses
from mokd_det.losses import LogitKDLoss
from mokd_det.optim import MKDOptimWrapper


class LogitStudent(nn.Module):

    def __init__(self, teacher_logits, init=4.0, bounds=(1.0, 10.0)):
        super().__init__()
        self.s = nn.Parameter(torch.zeros(1, 2))
        self.t = teacher_logits
        self.kd = LogitKDLoss(activation='softmax', temperature=dict(
            type='MetaTemperature', init=init, bounds=bounds))

    def loss(self):
        total, _ = parse_grouped_losses({
            'task.loss_cls': F.cross_entropy(self.s, torch.tensor([0])),
            'distill.kd': self.kd(self.s, self.t)})
        return total


def run(teacher_logits, steps=10, meta_mode='finite_difference', **kw):
    model = LogitStudent(teacher_logits, **kw)
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.s], lr=0.5),
                              interval=1, meta_lr=0.2, meta_mode=meta_mode,
                              learn_weight=False)
    wrapper.bind(model)
    taus = [float(model.kd.temperature.teacher())]
    for _ in range(steps):
        wrapper.update_params(model.loss())
        wrapper.meta_update(model.loss)
        taus.append(float(model.kd.temperature.teacher()))
    return taus, model


@pytest.mark.parametrize('meta_mode', ['finite_difference', 'second_order'])
def test_teacher_temperature_moves_the_right_way(meta_mode):
    right, _ = run(torch.tensor([[3., 0.]]), meta_mode=meta_mode)
    wrong, _ = run(torch.tensor([[0., 3.]]), meta_mode=meta_mode)
    assert right[1] > right[0] + 0.1
    assert wrong[1] < wrong[0] - 0.1
    # a wrong teacher keeps being turned down
    assert all(b < a for a, b in zip(wrong, wrong[1:]))


def test_finite_difference_matches_second_order():
    fd, _ = run(torch.tensor([[3., 0.]]), steps=1)
    so, _ = run(torch.tensor([[3., 0.]]), steps=1, meta_mode='second_order')
    assert fd[1] == pytest.approx(so[1], abs=1e-4)


def test_temperatures_stay_in_bounds():
    taus, model = run(torch.tensor([[0., 3.]]), steps=60,
                      bounds=(1.0, 10.0))
    assert all(1.0 <= t <= 10.0 for t in taus)
    assert taus[-1] < 2.0  # pushed towards the lower bound, not past it
    student_tau = float(model.kd.temperature.student())
    assert 1.0 <= student_tau <= 10.0


def test_temperatures_are_buffers_outside_the_optimizer():
    model = LogitStudent(torch.tensor([[3., 0.]]))
    assert [n for n, _ in model.named_parameters()] == ['s']
    assert {'kd.temperature.raw_teacher', 'kd.temperature.raw_student'} <= \
        set(model.state_dict())


def test_missing_temperature_is_a_clear_error():
    wrapper = MKDOptimWrapper(torch.optim.SGD([nn.Parameter(
        torch.ones(1))], lr=0.1), learn_weight=False)
    with pytest.raises(ValueError, match='MetaTemperature'):
        wrapper.bind(nn.Linear(2, 2))


@pytest.mark.parametrize('meta_mode', ['finite_difference', 'second_order'])
def test_meta_update_leaves_the_student_as_the_step_left_it(meta_mode):
    """The meta step moves theta (to the expansion point and by +-eps v)
    and must put it back exactly, with its requires_grad flags."""
    model = LogitStudent(torch.tensor([[3., 0.]]))
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.s], lr=0.5),
                              interval=1, meta_mode=meta_mode,
                              learn_weight=False)
    wrapper.bind(model)
    wrapper.update_params(model.loss())
    after_step = model.s.detach().clone()
    tau = float(model.kd.temperature.teacher())
    wrapper.meta_update(model.loss)
    assert torch.equal(model.s.detach(), after_step)
    assert model.s.requires_grad
    assert float(model.kd.temperature.teacher()) != tau  # it did update


def test_tied_temperature_is_one_value_for_both():
    """tied=True: one buffer, the same tau for teacher and student, moved
    by the meta update; the KD factor is then Hinton's T^2."""
    model = LogitStudent(torch.tensor([[3., 0.]]))
    model.kd = LogitKDLoss(activation='softmax', temperature=dict(
        type='MetaTemperature', init=4.0, tied=True))
    temperature = model.kd.temperature
    assert len(temperature.raw()) == 1
    assert 'kd.temperature.raw_student' not in model.state_dict()
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.s], lr=0.5),
                              interval=1, meta_lr=0.2, learn_weight=False)
    wrapper.bind(model)
    wrapper.update_params(model.loss())
    wrapper.meta_update(model.loss)
    tau = float(temperature.teacher())
    assert tau != pytest.approx(4.0) and float(temperature.student()) == tau
    s, t = torch.randn(3, 2), torch.randn(3, 2)
    expected = F.kl_div(F.log_softmax(s / tau, -1), F.log_softmax(t / tau, -1),
                        log_target=True, reduction='batchmean') * tau ** 2
    assert float(model.kd(s, t)) == pytest.approx(float(expected), rel=1e-5)
