"""The min-norm solver against an independent exhaustive KKT enumeration."""
import itertools

import pytest
import torch

from mokd_det.optim.min_norm import min_norm_weights, two_objective_weights


def enumerate_min_norm(gram: torch.Tensor) -> torch.Tensor:
    """Brute force: for every support S, the stationary point of pi^T G pi
    on {sum pi = 1, pi_i = 0 off S} (a KKT solve); the best one with pi >=
    0. The optimum's support is among them (a smallest support of the
    min-norm point is affinely independent, so its KKT system is regular)."""
    k = gram.size(0)
    g = gram / gram.diagonal().max()
    best, best_val = None, float('inf')
    for n in range(1, k + 1):
        for s in itertools.combinations(range(k), n):
            kkt = torch.zeros(n + 1, n + 1, dtype=torch.float64)
            kkt[:n, :n] = g[list(s)][:, list(s)]
            kkt[:n, n] = kkt[n, :n] = 1.
            rhs = torch.zeros(n + 1, dtype=torch.float64)
            rhs[n] = 1.
            try:
                sol = torch.linalg.solve(kkt, rhs)[:n]
            except RuntimeError:  # singular: not an affinely independent set
                continue
            if (sol < -1e-12).any():
                continue
            pi = torch.zeros(k, dtype=torch.float64)
            pi[list(s)] = sol.clamp_min(0)
            pi /= pi.sum()
            val = float(pi @ g @ pi)
            if val < best_val - 1e-15:
                best, best_val = pi, val
    return best


@pytest.mark.parametrize('k,dim', [(3, 2), (3, 5), (4, 3), (5, 8), (6, 4)])
@pytest.mark.parametrize('scale', [1e-30, 1e-5, 1.0, 1e30])
def test_exact_against_enumeration_at_any_scale(k, dim, scale):
    gen = torch.Generator().manual_seed(100 * k + dim)
    for trial in range(20):
        g = torch.randn(k, dim, dtype=torch.float64, generator=gen)
        # mixed lengths, as task and distillation gradients have
        g = g * torch.logspace(-2, 1, k, dtype=torch.float64)[torch.randperm(
            k, generator=gen)][:, None]
        gram = scale * (g @ g.T)
        pi = min_norm_weights(gram)
        ref = enumerate_min_norm(gram)
        assert pi.min() >= 0 and float(pi.sum()) == pytest.approx(1, abs=1e-12)
        if k <= dim + 1:  # affinely independent: one minimiser
            assert torch.allclose(pi, ref, atol=1e-8, rtol=0), (trial, pi,
                                                                ref)
        else:  # more gradients than that: compare the min-norm value
            unit = gram.diagonal().max()
            assert float(pi @ gram @ pi / unit) == pytest.approx(
                float(ref @ gram @ ref / unit), abs=1e-12)


def test_kkt_conditions_hold():
    """Optimality certificate: every gradient's inner product with the
    min-norm point is at least its squared norm (with equality on the
    support), for Gram entries down to 1e-30 (the old absolute tolerance
    stopped there at the uniform start)."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(5, 7, dtype=torch.float64, generator=gen) * 1e-15
    pi = min_norm_weights(g @ g.T)
    point = pi @ g
    inner = g @ point
    norm2 = point @ point
    assert (inner >= norm2 * (1 - 1e-9)).all()
    assert torch.allclose(inner[pi > 0], norm2.expand(int((pi > 0).sum())),
                          rtol=1e-9)
    assert not torch.allclose(pi, torch.full_like(pi, 0.2))


def test_degenerate_cases():
    # zero gradients: uniform
    assert torch.equal(min_norm_weights(torch.zeros(3, 3)),
                       torch.full((3, ), 1 / 3))
    # a zero gradient among others: it is the min-norm point
    g = torch.tensor([[1., 0.], [0., 0.], [0., 1.]], dtype=torch.float64)
    assert min_norm_weights(g @ g.T).tolist() == [0., 1., 0.]
    # duplicated gradients (a rank-deficient Gram matrix) and dtype kept
    g = torch.tensor([[1., 1.], [1., 1.], [-1., 1.], [3., -1.]])
    pi = min_norm_weights(g @ g.T)
    assert pi.dtype == torch.float32
    assert float((pi @ g).norm()) <= 1e-6 + float(
        (enumerate_min_norm((g @ g.T).double()).float() @ g).norm())
    # K = 2 is the closed form
    g = torch.tensor([[1., 0.], [1., 2.]], dtype=torch.float64)
    gram = g @ g.T
    assert torch.equal(min_norm_weights(gram),
                       two_objective_weights(gram[0, 0], gram[1, 1],
                                             gram[0, 1]))
