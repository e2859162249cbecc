"""MKD's meta-learned distillation weight (``learn_weight=True``) on a
quadratic toy where every quantity has a closed form.

Student theta in R^2, task loss 1/2 |theta - a|^2, distillation loss
1/2 |theta - b|^2, plain SGD with learning rate xi. The student step is
theta' = theta - xi ((theta - a) + lambda (theta - b)); the lookahead
gradient of the task loss after the step with respect to lambda is
-xi <theta - b, theta' - a>, and with respect to the raw parameter it is
that times dlambda/draw = (high - low) s (1 - s), s = sigmoid(raw)."""
import pytest
import torch
from torch import nn

from mokd_det.loss_groups import parse_grouped_losses
from mokd_det.optim import MKDOptimWrapper


class Quadratic(nn.Module):

    def __init__(self, a, b, theta):
        super().__init__()
        self.a, self.b = torch.tensor(a), torch.tensor(b)
        self.theta = nn.Parameter(torch.tensor(theta))

    def loss(self):
        total, _ = parse_grouped_losses({
            'task.loss': 0.5 * ((self.theta - self.a)**2).sum(),
            'distill.l2': 0.5 * ((self.theta - self.b)**2).sum()})
        return total


def build(a, b, theta, xi=0.1, init=2.0, bounds=(0.0, 4.0), meta_lr=0.05):
    model = Quadratic(a, b, theta)
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.theta], lr=xi),
                              interval=1, meta_lr=meta_lr, learn_weight=True,
                              weight_init=init, weight_bounds=bounds)
    wrapper.bind(model)
    return model, wrapper


def test_student_step_uses_the_weight():
    model, wrapper = build([1., 0.], [0., 1.], [0., 0.], init=2.0)
    wrapper.update_params(model.loss())
    # theta' = 0 - 0.1 * ((0 - a) + 2 (0 - b)) = 0.1 a + 0.2 b
    torch.testing.assert_close(model.theta.detach(),
                               torch.tensor([0.1, 0.2]))


def test_weight_meta_gradient_by_hand():
    a, b, theta, xi, init = [1., 0.], [0.6, 0.8], [0., 0.], 0.1, 2.0
    model, wrapper = build(a, b, theta, xi=xi, init=init)
    wrapper.update_params(model.loss())
    theta_t, a_t, b_t = (torch.tensor(x) for x in (theta, a, b))
    theta1 = theta_t - xi * ((theta_t - a_t) + init * (theta_t - b_t))
    d_lambda = -xi * torch.dot(theta_t - b_t, theta1 - a_t)
    s = torch.sigmoid(wrapper.raw_weight)
    expected = d_lambda * 4.0 * s * (1 - s)
    # the formula at theta (before the step), as meta_update evaluates it
    v = [theta1 - a_t]
    with torch.no_grad():
        model.theta.copy_(theta_t)
    got = wrapper._weight_grad(model.loss, [model.theta], v, xi)
    torch.testing.assert_close(got, expected)
    # here <theta - b, theta' - a> = -0.6 * -0.78 + -0.8 * 0.24 = 0.276 > 0:
    # the distillation gradient helps the task after the step, so a
    # meta update raises lambda (Adam's first step: meta_lr * sign)
    assert float(d_lambda) < 0
    with torch.no_grad():
        model.theta.copy_(theta1)
    wrapper._theta_before = [theta_t.clone()]
    raw0 = float(wrapper.raw_weight)
    wrapper.meta_update(model.loss)
    assert float(wrapper.raw_weight) == pytest.approx(raw0 + 0.05)
    # the student is left where its step put it
    torch.testing.assert_close(model.theta.detach(), theta1)


def test_conflicting_distillation_lowers_the_weight():
    # the distillation target opposite to the task's: lambda goes down at
    # every meta update and stays in its bounds
    model, wrapper = build([1., 0.], [-1., 0.], [0., 0.], init=2.0,
                           bounds=(0.1, 4.0), meta_lr=0.5)
    weights = [float(wrapper.distill_weight())]
    for _ in range(20):
        wrapper.update_params(model.loss())
        wrapper.meta_update(model.loss)
        weights.append(float(wrapper.distill_weight()))
    assert all(w1 < w0 for w0, w1 in zip(weights, weights[1:]))
    assert 0.1 <= weights[-1] < 0.5


def test_weight_needs_no_temperature_and_is_checkpointed():
    model, wrapper = build([1., 0.], [0.6, 0.8], [0., 0.])
    for _ in range(3):
        wrapper.update_params(model.loss())
        wrapper.meta_update(model.loss)
    state = wrapper.state_dict()
    model2, wrapper2 = build([1., 0.], [0.6, 0.8], [0., 0.])
    wrapper2.load_state_dict(state)
    assert float(wrapper2.raw_weight) == float(wrapper.raw_weight)
    assert float(wrapper2.distill_weight()) != 2.0
    assert wrapper2.meta_updates == 3


def test_no_temperature_and_no_weight_is_a_clear_error():
    model = Quadratic([1., 0.], [0., 1.], [0., 0.])
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.theta], lr=0.1),
                              learn_weight=False)
    with pytest.raises(ValueError, match='learn_weight=True'):
        wrapper.bind(model)


@pytest.mark.parametrize('init,bounds', [(0.05, (0.1, 10.)),
                                         (10., (0.1, 10.)),
                                         (1., (-1., 10.))])
def test_weight_bounds_are_validated(init, bounds):
    with pytest.raises(ValueError, match='weight_init'):
        MKDOptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))],
                                        lr=0.1),
                        learn_weight=True, weight_init=init,
                        weight_bounds=bounds)


class LogitsAndWeight(nn.Module):
    """A softmax logit-KD term with learnable temperatures, trained with a
    learnt weight lambda as well."""

    def __init__(self):
        super().__init__()
        from mokd_det.losses import LogitKDLoss
        self.s = nn.Parameter(torch.tensor([[0.5, -0.2, 0.1]]))
        self.t = torch.tensor([[2.0, 0.0, -1.0]])
        self.kd = LogitKDLoss(activation='softmax', temperature=dict(
            type='MetaTemperature', init=3.0, bounds=(1.0, 10.0)))

    def loss(self):
        import torch.nn.functional as F
        total, _ = parse_grouped_losses({
            'task.loss_cls': F.cross_entropy(self.s, torch.tensor([0])),
            'distill.kd': self.kd(self.s, self.t)})
        return total


def meta_gradients(meta_mode):
    model = LogitsAndWeight()
    wrapper = MKDOptimWrapper(torch.optim.SGD([model.s], lr=0.5),
                              interval=1, meta_mode=meta_mode,
                              learn_weight=True, weight_init=3.0,
                              weight_bounds=(0.1, 10.0))
    wrapper.bind(model)
    seen = []
    step = wrapper.meta_optimizer.step

    def record():
        seen.extend(r.grad.clone() for r in wrapper._meta_params())
        step()

    wrapper.meta_optimizer.step = record
    wrapper.update_params(model.loss())
    wrapper.meta_update(model.loss)
    return seen


def test_temperature_meta_gradient_carries_the_weight():
    """The temperatures act through lambda * L_distill: the finite
    difference (which scales the temperatures' gradient by lambda) equals
    the exact second-order meta-gradient (which differentiates
    L_task + lambda L_distill) at lambda = 3; lambda's own gradient is the
    same closed form in both modes."""
    fd = meta_gradients('finite_difference')
    so = meta_gradients('second_order')
    assert len(fd) == len(so) == 3  # tau_teacher, tau_student, lambda
    for a, b in zip(fd, so):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-7)
    assert all(float(g) != 0 for g in fd)
