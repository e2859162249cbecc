import math

import pytest
import torch

from mokd_det.losses import LogitKDLoss, flatten_logits, probs_to_logits

# p_t = (0.75, 0.25) vs p_s = (0.5, 0.5):
# KL = 0.75 ln 1.5 + 0.25 ln 0.5
KL_75_50 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # 0.130812...


def test_softmax_kd_hand_value():
    loss = LogitKDLoss(temperature=1.0, activation='softmax')
    value = loss(torch.zeros(1, 2), torch.tensor([[math.log(3.), 0.]]))
    assert value.item() == pytest.approx(KL_75_50, abs=1e-6)


def test_temperature_scales_logits_and_multiplies_by_t_squared():
    loss = LogitKDLoss(temperature=2.0, activation='softmax', loss_weight=3.)
    # teacher logits / T give p_t = (0.75, 0.25) again
    value = loss(torch.zeros(1, 2), torch.tensor([[2 * math.log(3.), 0.]]))
    assert value.item() == pytest.approx(3 * 4 * KL_75_50, abs=1e-6)


def test_sigmoid_kd_is_per_class_bernoulli_kl():
    loss = LogitKDLoss(temperature=1.0, activation='sigmoid')
    # one class: Bern(0.75) vs Bern(0.5), same numbers as above
    value = loss(torch.zeros(1, 1), torch.tensor([[math.log(3.)]]))
    assert value.item() == pytest.approx(KL_75_50, abs=1e-6)
    # two classes sum, two rows average
    s = torch.zeros(2, 2)
    t = torch.tensor([[math.log(3.), math.log(3.)], [0., 0.]])
    assert loss(s, t).item() == pytest.approx(KL_75_50, abs=1e-6)


def test_matching_logits_give_zero():
    for act in ('softmax', 'sigmoid'):
        x = torch.randn(5, 4)
        assert LogitKDLoss(activation=act)(x, x).item() == \
            pytest.approx(0, abs=1e-6)


def test_dense_maps_split_per_prior_like_mmdet():
    # (B, A*K, H, W) with A=2 priors, K=3 classes, 2x1 locations
    x = torch.arange(12.).reshape(1, 6, 2, 1)
    rows = flatten_logits([x], channels=3)
    # mmdet: cls_score.permute(0, 2, 3, 1).reshape(-1, K)
    expected = x.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(rows, expected)
    # levels are concatenated and averaged together
    loss = LogitKDLoss(activation='sigmoid', channels=3)
    s, t = torch.randn(1, 6, 2, 2), torch.randn(1, 6, 2, 2)
    s2, t2 = torch.randn(1, 6, 1, 1), torch.randn(1, 6, 1, 1)
    rows_s = torch.cat([flatten_logits(s, 3), flatten_logits(s2, 3)])
    rows_t = torch.cat([flatten_logits(t, 3), flatten_logits(t2, 3)])
    direct = LogitKDLoss(activation='sigmoid')(rows_s, rows_t)
    torch.testing.assert_close(loss([s, s2], [t, t2]), direct)


def test_probability_inputs_are_turned_into_logits_first():
    # sigmoid: Bern(0.75) vs Bern(0.5) given as probabilities, T = 1
    loss = LogitKDLoss(activation='sigmoid', inputs='probs')
    value = loss(torch.tensor([[0.5]]), torch.tensor([[0.75]]))
    assert value.item() == pytest.approx(KL_75_50, abs=1e-6)
    # the temperature divides the logit: T=2 on p = sigmoid(2 ln 3) = 0.9
    # is T^2 * KL(Bern(0.75) || Bern(0.5))
    loss = LogitKDLoss(temperature=2.0, activation='sigmoid', inputs='probs')
    value = loss(torch.tensor([[0.5]]), torch.tensor([[0.9]]))
    assert value.item() == pytest.approx(4 * KL_75_50, abs=1e-5)
    # softmax: log-probabilities are logits up to a constant per row
    loss = LogitKDLoss(activation='softmax', inputs='probs')
    value = loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.75, 0.25]]))
    assert value.item() == pytest.approx(KL_75_50, abs=1e-6)


def test_probabilities_taken_as_logits_give_a_near_zero_term():
    """What LogitKDLoss computed on TOOD's probabilities before it knew."""
    p_s, p_t = torch.full((1, 1), 0.01), torch.full((1, 1), 0.05)
    as_logits = LogitKDLoss(activation='sigmoid', inputs='logits')(p_s, p_t)
    as_probs = LogitKDLoss(activation='sigmoid', inputs='probs')(p_s, p_t)
    expected = 0.05 * math.log(5) + 0.95 * math.log(0.95 / 0.99)
    assert as_probs.item() == pytest.approx(expected, rel=1e-5)
    assert as_logits.item() < as_probs.item() / 100


def test_inputs_per_side_and_clamping():
    # a probability teacher and a logit student: Bern(0.75) vs Bern(0.5)
    loss = LogitKDLoss(activation='sigmoid',
                       inputs=dict(student='logits', teacher='probs'))
    value = loss(torch.zeros(1, 1), torch.tensor([[0.75]]))
    assert value.item() == pytest.approx(KL_75_50, abs=1e-6)
    # saturated probabilities give finite logits, +-log((1 - eps) / eps)
    logits = probs_to_logits(torch.tensor([0., 1.]), 'sigmoid')
    bound = math.log((1 - 1e-6) / 1e-6)
    torch.testing.assert_close(logits, torch.tensor([-bound, bound]))
    p = torch.tensor([[0., 1.]], requires_grad=True)
    out = LogitKDLoss(activation='sigmoid', inputs='probs')(
        p, torch.tensor([[0.3, 0.6]]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(p.grad).all()


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="inputs must be 'auto', 'logits'"):
        LogitKDLoss(inputs='scores')
    with pytest.raises(ValueError, match='student=..., teacher=...'):
        LogitKDLoss(inputs=dict(student='probs'))
    with pytest.raises(ValueError, match='activation'):
        LogitKDLoss(activation='relu')
    with pytest.raises(ValueError, match='temperature'):
        LogitKDLoss(temperature=0)
    with pytest.raises(RuntimeError, match='auto'):
        LogitKDLoss()(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match='channels'):
        LogitKDLoss(activation='sigmoid')(torch.zeros(1, 6, 2, 2),
                                          torch.zeros(1, 6, 2, 2))
    with pytest.raises(ValueError, match='shape'):
        LogitKDLoss(activation='softmax')(torch.zeros(2, 3),
                                          torch.zeros(2, 4))
