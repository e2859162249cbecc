"""MoKD / DTO-KD weights against the closed form, a brute-force minimiser,
and a hand computation of the amortized update."""
import math

import pytest
import torch
from torch import nn

from mokd_det.loss_groups import parse_grouped_losses
from mokd_det.optim import MoKDOptimWrapper, min_norm_weights
from mokd_det.optim.min_norm import two_objective_weights


#: the rule as DTO-KD writes it (the wrapper's defaults rescale the step and
#: floor the weights: chosen on the proxy)
LITERAL = dict(step_scale='none', min_weight=0.)


def grouped(**groups):
    total, _ = parse_grouped_losses(
        {f'{g}.loss': v for g, v in groups.items()})
    return total


def brute_force_pi(g1, g2, n=200001):
    """argmin over pi in [0, 1] of |pi g1 + (1 - pi) g2|."""
    pis = torch.linspace(0, 1, n, dtype=torch.float64)
    norms = (pis[:, None] * g1 + (1 - pis[:, None]) * g2).norm(dim=1)
    return float(pis[norms.argmin()])


@pytest.mark.parametrize('seed', range(5))
def test_closed_form_is_the_min_norm_point(seed):
    g = torch.randn(2, 6, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    g1, g2 = g[0], g[1] * (seed + 1)  # different scales
    pi = two_objective_weights(g1 @ g1, g2 @ g2, g1 @ g2)
    expected = float((g2 @ g2 - g1 @ g2) / (g1 @ g1 + g2 @ g2 - 2 * g1 @ g2))
    assert float(pi[0]) == pytest.approx(min(max(expected, 0), 1), abs=1e-12)
    assert float(pi[0]) == pytest.approx(brute_force_pi(g1, g2), abs=1e-5)
    assert float(pi.sum()) == pytest.approx(1)


def test_clipping_at_the_edges():
    g1 = torch.tensor([1., 0.], dtype=torch.float64)
    # g2 = 3 g1: the min-norm point of the segment is g1 itself (pi1 = 1)
    pi = two_objective_weights(g1 @ g1, 9 * (g1 @ g1), 3 * (g1 @ g1))
    assert pi.tolist() == [1., 0.]
    pi = two_objective_weights(9 * (g1 @ g1), g1 @ g1, 3 * (g1 @ g1))
    assert pi.tolist() == [0., 1.]
    # identical gradients: the epsilon guard keeps it finite
    pi = two_objective_weights(g1 @ g1, g1 @ g1, g1 @ g1)
    assert torch.isfinite(pi).all() and float(pi.sum()) == 1


def test_three_objectives_match_a_grid_search():
    g = torch.randn(3, 4, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(3))
    pi = min_norm_weights(g @ g.T)
    best = min(
        (float((a * g[0] + b * g[1] + (1 - a - b) * g[2]).norm()), a, b)
        for a in [i / 400 for i in range(401)]
        for b in [j / 400 for j in range(401 - round(a * 400))])
    assert float((pi @ g).norm()) == pytest.approx(best[0], abs=1e-3)
    assert float((pi @ g).norm()) <= best[0] + 1e-9


def exact_step(scale_task=1.0, scale_distill=1.0):
    """One exact-mode SGD step on two quadratic objectives; returns the
    update and the wrapper."""
    torch.manual_seed(0)
    theta = nn.Parameter(torch.tensor([1., -2., 0.5], dtype=torch.float64))
    a = torch.tensor([0., 1., 2.], dtype=torch.float64)
    b = torch.tensor([3., -1., 0.], dtype=torch.float64)
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), **LITERAL)
    before = theta.detach().clone()
    wrapper.update_params(grouped(
        task=scale_task * (theta - a).pow(2).sum(),
        distill=scale_distill * (theta - b).pow(2).sum()))
    return theta.detach() - before, wrapper


def test_exact_step_uses_log_loss_gradients_with_the_closed_form():
    update, wrapper = exact_step()
    theta = torch.tensor([1., -2., 0.5], dtype=torch.float64)
    a = torch.tensor([0., 1., 2.], dtype=torch.float64)
    b = torch.tensor([3., -1., 0.], dtype=torch.float64)
    l_t, l_d = (theta - a).pow(2).sum(), (theta - b).pow(2).sum()
    g_t, g_d = 2 * (theta - a) / l_t, 2 * (theta - b) / l_d
    pi_t = two_objective_weights(g_t @ g_t, g_d @ g_d, g_t @ g_d)[0]
    expected = -0.1 * (pi_t * g_t + (1 - pi_t) * g_d)
    torch.testing.assert_close(update, expected)
    assert float(wrapper.weights[0]) == pytest.approx(float(pi_t))


def test_exact_step_is_invariant_to_rescaling_either_loss():
    reference, _ = exact_step()
    for scales in ((100., 1.), (1., 1e-3), (7., 0.2)):
        update, _ = exact_step(*scales)
        torch.testing.assert_close(update, reference)


def test_non_positive_loss_is_an_error():
    theta = nn.Parameter(torch.ones(2))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), **LITERAL)
    with pytest.raises(ValueError, match="'distill' is -1"):
        wrapper.update_params(grouped(task=theta.sum() ** 2,
                                      distill=-theta.sum() / 2))


def test_amortized_logit_update_by_hand():
    """z = (0.5, 0.5); the task loss halves (delta = log 2), the distill loss
    stays: grad_w = J^T delta = (0.25 log 2, -0.25 log 2) and AdamW's first
    step moves each logit by lr against the gradient's sign."""
    theta = nn.Parameter(torch.ones(2))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized', **LITERAL)
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    assert wrapper.pending_losses().tolist() == [4., 2.]
    # the objective was 0.5 log L_task + 0.5 log L_distill
    assert theta.tolist() == pytest.approx([1 - 0.1 * (0.25 + 0.25)] * 2)
    wrapper.update_weights(torch.tensor([4., 2.]), torch.tensor([2., 2.]))
    grad = torch.tensor([0.25 * math.log(2), -0.25 * math.log(2)])
    adam_step = 0.025 * grad / (grad.abs() + 1e-8)
    torch.testing.assert_close(wrapper.rule.logits.detach(), -adam_step)
    assert float(wrapper.weights[0]) < 0.5  # the improved group loses
    assert wrapper.pending_losses() is None


@pytest.mark.parametrize('weight_optimizer', ['adamw', 'adam'])
def test_weight_optimizer_decay_by_hand(weight_optimizer):
    """From logits (1, -1), one update with the gradient of the test above:
    AdamW decays the logits apart from the step, w (1 - lr wd) - lr
    sign(g); FAMO's Adam adds wd w to the gradient first, so its first step
    is lr sign(g + wd w)."""
    theta = nn.Parameter(torch.ones(2))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized',
                               weight_optimizer=weight_optimizer, **LITERAL)
    with torch.no_grad():
        wrapper.rule.logits.copy_(torch.tensor([1., -1.]))
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    z = torch.softmax(torch.tensor([1., -1.]), 0)
    delta = torch.tensor([math.log(2), 0.])
    jac = torch.diag(z) - z[:, None] * z[None, :]
    grad = jac.T @ delta
    w = torch.tensor([1., -1.])
    if weight_optimizer == 'adamw':
        expected = w * (1 - 0.025 * 0.01) - 0.025 * grad / (grad.abs() + 1e-8)
    else:
        g = grad + 0.01 * w
        expected = w - 0.025 * g / (g.abs() + 1e-8)
    wrapper.update_weights(torch.tensor([4., 2.]), torch.tensor([2., 2.]))
    torch.testing.assert_close(wrapper.rule.logits.detach(), expected)
    with pytest.raises(ValueError, match="'adam' .FAMO's code."):
        MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                         weight_optimizer='sgd', **LITERAL)


def test_amortized_without_recomputation_is_an_error():
    theta = nn.Parameter(torch.ones(2))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized', **LITERAL)
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    with pytest.raises(RuntimeError, match='MoKDAmortizedHook'):
        wrapper.update_params(grouped(task=2 * theta.sum(),
                                      distill=theta.sum()))


def test_amortized_next_signal_by_hand():
    """weight_signal='next': update 1 keeps its losses (4, 2); update 2's
    batch is harder for the task (task 3 sum theta): its losses at the
    updated theta (5.7, 1.9) set the logits before its gradient: delta =
    (log 4/5.7, log 2/1.9), grad_w = J^T delta = 0.25 (d_t - d_d) (1, -1)
    < 0 on the task, so AdamW's first step raises the task's logit by lr.
    No recomputation is asked for: pending stays None, no hook runs."""
    f64 = dict(dtype=torch.float64)
    theta = nn.Parameter(torch.ones(2, **f64))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized', weight_signal='next',
                               **LITERAL)
    assert not wrapper.recomputes
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    assert wrapper.pending_losses() is None
    # z = (.5, .5): .5 * 2 / 4 + .5 * 1 / 2 per coordinate
    torch.testing.assert_close(theta.detach(), torch.full((2, ), 0.95, **f64))
    torch.testing.assert_close(wrapper.rule.logits.detach(),
                               torch.zeros(2))  # nothing to compare yet
    wrapper.update_params(grouped(task=3 * theta.sum(), distill=theta.sum()))
    logits = torch.tensor([0.025, -0.025])
    torch.testing.assert_close(wrapper.rule.logits.detach(), logits)
    z_t, z_d = torch.softmax(logits.double(), 0).tolist()
    torch.testing.assert_close(
        theta.detach(),
        torch.full((2, ), 0.95 - 0.1 * (z_t * 3 / 5.7 + z_d * 1 / 1.9),
                   **f64))
    assert wrapper.rule.before.tolist() == pytest.approx([5.7, 1.9])
    # a third update: no error for the missing hook
    wrapper.update_params(grouped(task=3 * theta.sum(), distill=theta.sum()))
    with pytest.raises(ValueError, match="weight_signal must be"):
        MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), mode='amortized',
                         weight_signal='same')


def test_model_without_groups_fails_with_a_clear_message():
    theta = nn.Parameter(torch.ones(2))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), **LITERAL)
    with pytest.raises(TypeError, match='did not group its losses'):
        wrapper.update_params(theta.sum())
    with pytest.raises(KeyError, match=r"\['distill'\] missing"):
        wrapper.update_params(grouped(task=theta.sum() ** 2))


@pytest.mark.parametrize('gram_params', ['shared', 'all'])
def test_gram_over_shared_or_all_parameters(gram_params):
    """A trunk with both gradients and one head per loss: 'shared' weighs
    by the trunk's Gram matrix alone, 'all' by every parameter's; either
    way every parameter steps along pi_k / L_k times its raw gradients."""
    f64 = dict(dtype=torch.float64)
    trunk0, head_t0, head_d0 = ([1., 2.], [0.5], [-1.])
    trunk, head_t, head_d = (nn.Parameter(torch.tensor(v, **f64))
                             for v in (trunk0, head_t0, head_d0))
    a, b = torch.tensor([0., 1.], **f64), torch.tensor([3., -1.], **f64)
    wrapper = MoKDOptimWrapper(
        torch.optim.SGD([trunk, head_t, head_d], lr=0.1),
        gram_params=gram_params, **LITERAL)
    task = (trunk - a).pow(2).sum() + 25 * head_t.pow(2).sum()
    distill = (trunk - b).pow(2).sum() + (head_d - 2).pow(2).sum()
    l_t, l_d = float(task), float(distill)
    wrapper.update_params(grouped(task=task, distill=distill))

    t0, ht0, hd0 = (torch.tensor(v, **f64) for v in (trunk0, head_t0,
                                                       head_d0))
    g_task = torch.cat([2 * (t0 - a), 50 * ht0, torch.zeros(1, **f64)])
    g_dist = torch.cat([2 * (t0 - b), torch.zeros(1, **f64), 2 * (hd0 - 2)])
    keep = slice(0, 2) if gram_params == 'shared' else slice(None)
    gt, gd = g_task[keep] / l_t, g_dist[keep] / l_d
    pi = two_objective_weights(gt @ gt, gd @ gd, gt @ gd)  # (task, distill)
    torch.testing.assert_close(wrapper.weights.double(), pi, atol=1e-7,
                               rtol=0)  # weights are kept as float32
    step = -0.1 * (pi[0] * g_task / l_t + pi[1] * g_dist / l_d)
    new = torch.cat([trunk.detach(), head_t.detach(), head_d.detach()])
    torch.testing.assert_close(new - torch.cat([t0, ht0, hd0]), step,
                               atol=1e-12, rtol=0)
    other = slice(None) if gram_params == 'shared' else slice(0, 2)
    gt, gd = g_task[other] / l_t, g_dist[other] / l_d
    assert abs(float(two_objective_weights(gt @ gt, gd @ gd, gt @ gd)[0]) -
               float(pi[0])) > 0.05  # the two choices differ here


def test_float64_model_keeps_float64_loss_values():
    """The log normalisation divides by the loss values; a float64 model's
    values stay float64 (cast to float32 they moved pi by ~1e-3 where the
    two log-gradients nearly coincide, as here)."""
    theta0 = torch.tensor([1., -2., 0.5], dtype=torch.float64)
    a = torch.tensor([0., 1., 2.], dtype=torch.float64)
    # theta0 - b: theta0 - a turned by about 1e-3 rad and 1e-7 longer
    d = theta0 - a
    e = torch.tensor([3., 0., 2.], dtype=torch.float64)  # e . d = 0
    d2 = (d + 1e-3 * e) * (d.norm() / (d + 1e-3 * e).norm()) * (1 + 1e-7)
    b = theta0 - d2
    theta = nn.Parameter(theta0.clone())
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), **LITERAL)
    wrapper.update_params(grouped(task=(theta - a).pow(2).sum() / 3,
                                  distill=(theta - b).pow(2).sum() * 1.7))
    g_t = 2 * (theta0 - a) / (theta0 - a).pow(2).sum()
    g_d = 2 * (theta0 - b) / (theta0 - b).pow(2).sum()
    pi_t = two_objective_weights(g_t @ g_t, g_d @ g_d, g_t @ g_d)[0]
    assert 0.01 < float(pi_t) < 0.99  # an interior, sensitive point
    torch.testing.assert_close(theta.detach(),
                               theta0 - 0.1 * (pi_t * g_t + (1 - pi_t) * g_d),
                               rtol=1e-12, atol=1e-14)
    # the logged weights are float32
    assert float(wrapper.weights[0]) == pytest.approx(float(pi_t), abs=1e-7)


@pytest.mark.parametrize('step_scale', ['none', 'c', 'K', 'kd'])
def test_exact_step_scale_by_hand(step_scale):
    """'none': sum_k pi_k grad L_k / L_k; 'c': the raw weights pi_k / L_k
    divided by their sum (FAMO's LOG_MGDA); 'K': times K / sum (Nash-MTL's
    MGDA); 'kd': stretched to the length of g_task + g_distill (vanilla
    KD's step). The logged step ratio is |applied| / |g_task + g_distill|.
    """
    theta0 = torch.tensor([1., -2., 0.5], dtype=torch.float64)
    a = torch.tensor([0., 1., 2.], dtype=torch.float64)
    b = torch.tensor([3., -1., 0.], dtype=torch.float64)
    theta = nn.Parameter(theta0.clone())
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               step_scale=step_scale, min_weight=0.)
    wrapper.update_params(grouped(task=(theta - a).pow(2).sum(),
                                  distill=5 * (theta - b).pow(2).sum()))
    l_t, l_d = (theta0 - a).pow(2).sum(), 5 * (theta0 - b).pow(2).sum()
    raw_t, raw_d = 2 * (theta0 - a), 10 * (theta0 - b)
    g_t, g_d = raw_t / l_t, raw_d / l_d
    pi_t, pi_d = two_objective_weights(g_t @ g_t, g_d @ g_d, g_t @ g_d)
    w_t, w_d = pi_t / l_t, pi_d / l_d
    factor = {'none': 1., 'c': 1 / (w_t + w_d), 'K': 2 / (w_t + w_d),
              'kd': (raw_t + raw_d).norm() / (w_t * raw_t + w_d * raw_d).norm()}
    applied = factor[step_scale] * (w_t * raw_t + w_d * raw_d)
    torch.testing.assert_close(theta.detach(), theta0 - 0.1 * applied,
                               rtol=1e-12, atol=1e-14)
    ratio = wrapper.message_hub.get_scalar('train/kd/step_ratio').current()
    assert ratio == pytest.approx(float(applied.norm() /
                                        (raw_t + raw_d).norm()), rel=1e-9)
    raw_logged = wrapper.message_hub.get_scalar(
        'train/kd/raw_weight_task').current()
    assert raw_logged == pytest.approx(float(factor[step_scale] * w_t))
    if step_scale == 'kd':
        assert ratio == pytest.approx(1., rel=1e-12)


@pytest.mark.parametrize('interval', [1, 10])
def test_amortized_step_scale_kd_by_hand(interval):
    """Amortized step_scale='kd': the first update measures both group
    gradients and stretches sum_k z_k grad L_k / L_k to |sum_k grad L_k|;
    later updates take one weighted gradient times the running stretch,
    which a measuring update (every ``interval``) moves by 0.2 of the way
    to its new measurement."""
    f64 = dict(dtype=torch.float64)
    theta = nn.Parameter(torch.ones(2, **f64))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized', step_scale='kd',
                               min_weight=0., stretch_interval=interval)
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    # z = (.5, .5), L = (4, 2), raw gradients (2, 2) and (1, 1): the
    # combination .5 * 2 / 4 + .5 * 1 / 2 = .5 per coordinate, KD's 3
    assert wrapper.rule.stretch == pytest.approx(6.)
    torch.testing.assert_close(theta.detach(), torch.full((2, ), 0.7, **f64))
    wrapper.update_weights(torch.tensor([4., 2.]), torch.tensor([3., 1.4]))
    z_t, z_d = (float(w) for w in wrapper.weights)
    assert z_t != pytest.approx(0.5)  # the FAMO update moved them
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    combined = z_t * 2 / 2.8 + z_d * 1 / 1.4
    stretch = 6. if interval == 10 else 0.8 * 6. + 0.2 * 3. / combined
    assert wrapper.rule.stretch == pytest.approx(stretch)
    torch.testing.assert_close(
        theta.detach(), torch.full((2, ), 0.7 - 0.1 * stretch * combined,
                                   **f64))
    state = wrapper.method_state_dict()
    assert (state['stretch'], state['since_stretch']) == (
        pytest.approx(stretch), 1 if interval == 10 else 0)


def test_stretch_interval_is_checked():
    with pytest.raises(ValueError, match='stretch_interval'):
        MoKDOptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))],
                                         lr=0.1), mode='amortized',
                         step_scale='kd', stretch_interval=0)


@pytest.mark.parametrize('step_scale,expected', [
    ('none', 0.5 * 2 / 4 + 0.5 * 1 / 2),
    ('c', (0.5 * 2 / 4 + 0.5 * 1 / 2) / (0.5 / 4 + 0.5 / 2)),
    ('K', 2 * (0.5 * 2 / 4 + 0.5 * 1 / 2) / (0.5 / 4 + 0.5 / 2))])
def test_amortized_step_scale_by_hand(step_scale, expected):
    """z = (0.5, 0.5), L = (4, 2), d L / d theta_i = (2, 1): the gradient
    is sum_k z_k grad L_k / L_k, divided by c = sum_k z_k / L_k ('c'), and
    times K ('K')."""
    theta = nn.Parameter(torch.ones(2, dtype=torch.float64))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               mode='amortized', step_scale=step_scale,
                               min_weight=0.)
    wrapper.update_params(grouped(task=2 * theta.sum(), distill=theta.sum()))
    torch.testing.assert_close(
        theta.detach(), torch.full((2, ), 1 - 0.1 * expected,
                                   dtype=torch.float64))


def test_floor_weights_by_hand():
    from mokd_det.optim.min_norm import floor_weights
    t = torch.tensor
    # MGDA's two-task clamp to [0.001, 0.999]
    torch.testing.assert_close(floor_weights(t([0.0005, 0.9995]), 0.001),
                               t([0.001, 0.999]))
    torch.testing.assert_close(floor_weights(t([0., .3, .7]), 0.1),
                               t([0.1, 0.27, 0.63]))
    # a weight pushed under the floor by the first rescale is floored too
    torch.testing.assert_close(floor_weights(t([.05, .08, .87]), 0.1),
                               t([0.1, 0.1, 0.8]))
    assert floor_weights(t([.2, .8]), 0.).tolist() == t([.2, .8]).tolist()
    with pytest.raises(ValueError, match='min_weight'):
        MoKDOptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))],
                                         lr=0.1), min_weight=0.6)


def test_min_weight_keeps_the_task_in_the_step():
    """g2 = 3 g1: the closed form gives pi = (1, 0); a floor of 0.001 keeps
    0.001 on the second objective."""
    theta0 = torch.tensor([1., 2.], dtype=torch.float64)
    theta = nn.Parameter(theta0.clone())
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               min_weight=0.001, step_scale='none')
    # log-gradients: task (theta.sum()) 1/3 of... both along (1, 1)
    wrapper.update_params(grouped(task=theta.sum(),
                                  distill=theta.sum() ** 2))
    l_t, l_d = 3., 9.
    g_t = torch.ones(2, dtype=torch.float64) / l_t
    g_d = 2 * 3 * torch.ones(2, dtype=torch.float64) / l_d
    pi = two_objective_weights(g_t @ g_t, g_d @ g_d, g_t @ g_d)
    assert pi.tolist() == [1., 0.]
    assert wrapper.weights.tolist() == pytest.approx([0.999, 0.001])
    torch.testing.assert_close(theta.detach(),
                               theta0 - 0.1 * (0.999 * g_t + 0.001 * g_d))


def test_defaults_floor_the_weights_and_keep_kd_step_length():
    """The shipped defaults (step_scale='kd', min_weight=0.05) on the
    example above: pi = (1, 0) floored to (0.95, 0.05); the raw-gradient
    weights pi_k / L_k, stretched so that the step is as long as vanilla
    KD's. The
    two gradients are parallel here, so the step is vanilla KD's itself
    (non-parallel cases: test_exact_step_scale_by_hand)."""
    theta0 = torch.tensor([1., 2.], dtype=torch.float64)
    theta = nn.Parameter(theta0.clone())
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1))
    assert (wrapper.step_scale, wrapper.min_weight) == ('kd', 0.05)
    wrapper.update_params(grouped(task=theta.sum(),
                                  distill=theta.sum() ** 2))
    raw_t = torch.ones(2, dtype=torch.float64)        # grad of theta.sum()
    raw_d = 6 * torch.ones(2, dtype=torch.float64)    # grad of its square
    assert wrapper.weights.tolist() == pytest.approx([0.95, 0.05])
    torch.testing.assert_close(theta.detach(),
                               theta0 - 0.1 * (raw_t + raw_d))
    # the logged raw weights: (0.95 / 3, 0.05 / 9) stretched by
    # |7| / |w . raw|
    w_t, w_d = 0.95 / 3., 0.05 / 9.
    stretch = 7 / (w_t + 6 * w_d)
    assert wrapper.message_hub.get_scalar(
        'train/kd/raw_weight_task').current() == pytest.approx(w_t * stretch)


@pytest.mark.parametrize('step_scale', ['none', 'kd'])
def test_balance_shared_gives_one_objective_parameters_their_raw_grad(
        step_scale):
    """LibMTL's rule: the trunk (both gradients) takes the weighted
    combination with weights from the trunk's Gram matrix; each head
    (one loss) its own raw gradient. With ``step_scale='kd'`` only the
    trunk's combination is stretched, to the length of KD's trunk gradient
    (the sum of the raw gradients there): every part of the step, and the
    whole, is as long as KD's (step_ratio 1)."""
    f64 = dict(dtype=torch.float64)
    t0, ht0, hd0 = (torch.tensor(v, **f64) for v in ([1., 2.], [.5], [-1.]))
    trunk, head_t, head_d = (nn.Parameter(v.clone()) for v in (t0, ht0, hd0))
    a, b = torch.tensor([0., 1.], **f64), torch.tensor([3., -1.], **f64)
    wrapper = MoKDOptimWrapper(
        torch.optim.SGD([trunk, head_t, head_d], lr=0.1), balance='shared',
        step_scale=step_scale, min_weight=0.)
    task = (trunk - a).pow(2).sum() + 25 * head_t.pow(2).sum()
    distill = (trunk - b).pow(2).sum() + (head_d - 2).pow(2).sum()
    l_t, l_d = float(task), float(distill)
    wrapper.update_params(grouped(task=task, distill=distill))
    raw_t, raw_d = 2 * (t0 - a), 2 * (t0 - b)
    gt, gd = raw_t / l_t, raw_d / l_d
    pi_t, pi_d = two_objective_weights(gt @ gt, gd @ gd, gt @ gd)
    trunk_step = pi_t * gt + pi_d * gd
    if step_scale == 'kd':
        trunk_step = trunk_step * (raw_t + raw_d).norm() / trunk_step.norm()
        ratio = wrapper.message_hub.get_scalar(
            'train/kd/step_ratio').current()
        assert ratio == pytest.approx(1., rel=1e-9)
    torch.testing.assert_close(trunk.detach(), t0 - 0.1 * trunk_step)
    torch.testing.assert_close(head_t.detach(), ht0 - 0.1 * 50 * ht0)
    torch.testing.assert_close(head_d.detach(), hd0 - 0.1 * 2 * (hd0 - 2))
    with pytest.raises(ValueError, match="only mode='exact'"):
        MoKDOptimWrapper(torch.optim.SGD([trunk], lr=0.1), mode='amortized',
                         balance='shared', **LITERAL)


def test_per_term_groups_balance_three_objectives():
    """groups=('task', 'distill.a', 'distill.b'): each distillation term is
    an objective; the weights are the exact min-norm point of the three
    log-gradients."""
    theta0 = torch.tensor([1., -2., 0.5], dtype=torch.float64)
    targets = [torch.tensor(v, dtype=torch.float64)
               for v in ([0., 1., 2.], [3., -1., 0.], [-1., -3., -1.])]
    theta = nn.Parameter(theta0.clone())
    wrapper = MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1),
                               groups=('task', 'distill.a', 'distill.b'),
                               **LITERAL)
    losses = [(theta - t).pow(2).sum() for t in targets]
    total, _ = parse_grouped_losses({'task.loss': losses[0],
                                     'distill.a': losses[1],
                                     'distill.b': losses[2]})
    wrapper.update_params(total)
    g = torch.stack([2 * (theta0 - t) / (theta0 - t).pow(2).sum()
                     for t in targets])
    pi = min_norm_weights(g @ g.T)
    assert (pi > 0.01).all()  # an interior point of the triangle
    torch.testing.assert_close(theta.detach(), theta0 - 0.1 * (pi @ g),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(KeyError, match=r"distill\.c.*distill\.a"):
        MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), **LITERAL,
                         groups=('task', 'distill.c')).update_params(
            parse_grouped_losses({'task.loss': theta.sum() ** 2,
                                  'distill.a': theta.pow(2).sum()})[0])


def test_adam_metric_weights_by_hand():
    """``metric='adam'``: the min-norm weights of the log-loss gradients in
    Adam's metric g^T diag(1 / (sqrt(v_hat) + eps)) g, v_hat from the
    optimizer's second moment before the step; the Euclidean metric on the
    first update (no second moment yet)."""
    f64 = dict(dtype=torch.float64)
    theta0 = torch.tensor([1., -2., 0.5], **f64)
    a = torch.tensor([0., 1., 2.], **f64)
    b = torch.tensor([3., -1., 0.], **f64)
    v = torch.tensor([4., 1e-4, 0.25], **f64)  # Adam's second moment

    def weights(metric, state):
        theta = nn.Parameter(theta0.clone())
        # a parameter no objective reaches: Adam never gives it a moment,
        # and it must not hold the metric at the Euclidean one
        unused = nn.Parameter(torch.ones(2, **f64))
        optimizer = torch.optim.Adam([theta, unused], lr=0.1,
                                     betas=(0.9, 0.99), eps=1e-8)
        if state:
            optimizer.state[theta] = dict(step=torch.tensor(3.),
                                          exp_avg=torch.zeros(3, **f64),
                                          exp_avg_sq=v.clone())
        wrapper = MoKDOptimWrapper(optimizer, metric=metric, **LITERAL)
        wrapper.update_params(grouped(task=(theta - a).pow(2).sum(),
                                      distill=(theta - b).pow(2).sum()))
        return wrapper.weights.double()

    l_t, l_d = (theta0 - a).pow(2).sum(), (theta0 - b).pow(2).sum()
    g_t, g_d = 2 * (theta0 - a) / l_t, 2 * (theta0 - b) / l_d
    p = 1 / ((v / (1 - 0.99**3)).sqrt() + 1e-8)
    by_hand = two_objective_weights(g_t @ (p * g_t), g_d @ (p * g_d),
                                    g_t @ (p * g_d))
    euclidean = two_objective_weights(g_t @ g_t, g_d @ g_d, g_t @ g_d)
    assert abs(float(by_hand[0] - euclidean[0])) > 0.1  # the metric matters
    torch.testing.assert_close(weights('adam', True), by_hand.double())
    torch.testing.assert_close(weights('euclidean', True),
                               euclidean.double())
    # no second moment yet: the Euclidean weights
    torch.testing.assert_close(weights('adam', False), euclidean.double())


def test_adam_metric_needs_adam_and_exact_mode():
    theta = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="Adam-type optimizer.*AdamW"):
        MoKDOptimWrapper(torch.optim.SGD([theta], lr=0.1), metric='adam')
    with pytest.raises(ValueError, match="only mode='exact'"):
        MoKDOptimWrapper(torch.optim.Adam([theta]), mode='amortized',
                         metric='adam')
    with pytest.raises(ValueError, match="metric must be 'euclidean' or"):
        MoKDOptimWrapper(torch.optim.Adam([theta]), metric='sgd')


def feature_step(**options):
    """z = a (the shared features, computed by the 'below' parameter a =
    (1, 1)); L_task = (z1 + b)^2 = 4 with b = 1, L_distill = c (z1 + 2 z2)
    = 3 with c = 1: at z the raw gradients are (4, 0) and (1, 2), the
    log-gradients (1, 0) and (1/3, 2/3)."""
    from mokd_det.loss_groups import SharedFeatures, attach_shared_features
    f64 = dict(dtype=torch.float64)
    a = nn.Parameter(torch.ones(2, **f64))
    b = nn.Parameter(torch.ones((), **f64))
    c = nn.Parameter(torch.ones((), **f64))
    wrapper = MoKDOptimWrapper(torch.optim.SGD([a, b, c], lr=0.1),
                               gradients='features', **options)
    z = a * 1.
    loss = grouped(task=(z[0] + b)**2, distill=c * (z[0] + 2 * z[1]))
    attach_shared_features(loss, SharedFeatures([z], [a]))
    wrapper.update_params(loss)
    return wrapper, a, b, c


def test_feature_gradients_weights_and_one_backward_by_hand():
    """At z: g_tt = 1, g_dd = 5/9, g_td = 1/3, so pi_task = (5/9 - 3/9) /
    (1 + 5/9 - 6/9) = 1/4; raw weights (1/16, 1/4). a's gradient is the
    combination at z (1/16 (4, 0) + 1/4 (1, 2) = (0.5, 0.5)), b's 4/16,
    c's 3/4: the full backward of the weighted loss."""
    wrapper, a, b, c = feature_step(**LITERAL)
    torch.testing.assert_close(wrapper.weights.double(),
                               torch.tensor([0.25, 0.75],
                                            dtype=torch.float64))
    torch.testing.assert_close(a.detach(), torch.full(
        (2, ), 1 - 0.1 * 0.5, dtype=torch.float64))
    assert float(b) == pytest.approx(1 - 0.1 * 0.25)
    assert float(c) == pytest.approx(1 - 0.1 * 0.75)


def test_feature_gradients_kd_stretch_by_hand():
    """step_scale='kd': the combination at z, (0.5, 0.5), stretched to
    the summed raw gradients' length there, |(5, 2)| = sqrt(29): the
    factor sqrt(29 / 0.5) multiplies every parameter's gradient."""
    wrapper, a, b, c = feature_step(step_scale='kd', min_weight=0.)
    s = math.sqrt(29 / 0.5)
    torch.testing.assert_close(a.detach(), torch.full(
        (2, ), 1 - 0.1 * 0.5 * s, dtype=torch.float64))
    assert float(b) == pytest.approx(1 - 0.1 * 0.25 * s)
    assert float(c) == pytest.approx(1 - 0.1 * 0.75 * s)


def test_feature_gradients_are_refused_where_they_cannot_act():
    theta = nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([theta], lr=0.1)
    for options, match in ((dict(mode='amortized'), 'one backward'),
                           (dict(balance='shared'), "balance='shared'"),
                           (dict(gradients='feature'), 'gradients must')):
        with pytest.raises(ValueError, match=match):
            MoKDOptimWrapper(sgd, **dict(dict(gradients='features'),
                                         **options))
    wrapper = MoKDOptimWrapper(sgd, gradients='features')
    with pytest.raises(TypeError, match='attaches none'):
        wrapper.update_params(grouped(task=theta.sum()**2 + 1,
                                      distill=theta.sum()**2 + 2))
