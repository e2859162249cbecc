import math

import pytest
import torch

from mokd_det.losses import ChannelWiseDivergence, FeatureMSELoss, PKDLoss

KL_75_50 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def test_mse_per_level_summed():
    s = [torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 1)]
    t = [torch.tensor([[[[1., 3.]]]]), torch.tensor([[[[2.]]]])]
    # level 0: mean(1, 9) = 5; level 1: 4
    assert FeatureMSELoss(loss_weight=2.)(s, t).item() == pytest.approx(18.)


def test_cwd_hand_value():
    # one image, one channel, two locations: softmax over locations gives
    # p_t = (0.75, 0.25), p_s = (0.5, 0.5)
    s = torch.zeros(1, 1, 1, 2)
    t = torch.tensor([[[[math.log(3.), 0.]]]])
    assert ChannelWiseDivergence(tau=1.)(s, t).item() == \
        pytest.approx(KL_75_50, abs=1e-6)
    # tau=2 with teacher logits doubled: same distributions, times tau^2
    assert ChannelWiseDivergence(tau=2.)(s, 2 * t).item() == \
        pytest.approx(4 * KL_75_50, abs=1e-6)
    # averaged over images and channels: a second, matching channel halves it
    s2 = torch.zeros(1, 2, 1, 2)
    t2 = torch.cat([t, torch.zeros(1, 1, 1, 2)], dim=1)
    assert ChannelWiseDivergence()(s2, t2).item() == \
        pytest.approx(KL_75_50 / 2, abs=1e-6)


def test_cwd_refuses_maps_without_spatial_extent():
    """A 1x1 map (ResNet's last stage on 32-px images) or a pooled vector
    gives every channel a one-point softmax: KL 0 whatever the features."""
    for shape in ((2, 4, 1, 1), (2, 4)):
        with pytest.raises(ValueError, match='1x1'):
            ChannelWiseDivergence()(torch.randn(shape), torch.randn(shape))
    # one 1x1 level among others (a small image's top FPN level) adds 0
    s, t = torch.zeros(1, 1, 1, 2), torch.tensor([[[[math.log(3.), 0.]]]])
    one = torch.randn(1, 1, 1, 1)
    assert ChannelWiseDivergence()([s, one], [t, 2 * one]).item() == \
        pytest.approx(KL_75_50, abs=1e-6)


def test_pkd_is_invariant_to_affine_maps_and_measures_correlation():
    t = torch.randn(2, 3, 4, 4)
    assert PKDLoss()(2 * t + 1, t).item() == pytest.approx(0, abs=1e-5)
    # perfectly anti-correlated: the standardised maps z and -z differ by
    # 2z; with the unbiased std over n values mean(z^2) = (n-1)/n, so the
    # loss is 4 (n-1)/n / 2
    n = 2 * 4 * 4
    assert PKDLoss()(-t, t).item() == pytest.approx(2 * (n - 1) / n,
                                                    abs=1e-4)


def test_pkd_resizes_the_student():
    s, t = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 8, 8)
    assert PKDLoss()(s, t).item() > 0
    with pytest.raises(ValueError, match='spatial'):
        PKDLoss(resize_student=False)(s, t)


def test_channel_mismatch_points_to_a_neck():
    with pytest.raises(ValueError, match='projection neck'):
        FeatureMSELoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match='levels'):
        PKDLoss()([torch.zeros(1, 2, 2, 2)], [])
