"""The min-norm point of the convex hull of K gradients, from their Gram
matrix: the weights pi (pi >= 0, sum pi = 1) minimising |sum_k pi_k g_k|^2 =
pi^T G pi.

* K = 2: the closed form of DTO-KD's Theorem 3.1 (MGDA's two-task rule).
* K >= 3: Wolfe's min-norm-point algorithm (P. Wolfe, "Finding the nearest
  point in a polytope", Math. Programming 11, 1976), an active-set method
  that ends, after finitely many steps, at the exact minimiser up to the
  round-off of small linear solves. It replaces the Frank-Wolfe loop of
  MGDA's code (Sener and Koltun, NeurIPS 2018), which converges slowly (off
  by 2e-3 after 250 iterations) and, with an absolute tolerance, stops at
  the uniform start when the Gram entries are tiny.

Scale invariance: G is divided by its largest diagonal entry before the
solve (the minimiser of pi^T G pi does not change under a positive scale),
and every tolerance is relative to that unit scale; the solve runs in
float64. ``tests/test_optim/test_min_norm.py`` checks the solver against an
exhaustive KKT enumeration on random instances whose entries range from
1e-30 to 1e30, to 1e-8.
"""
import torch
from torch import Tensor


def two_objective_weights(g11: Tensor, g22: Tensor, g12: Tensor,
                          eps: float = 1e-8) -> Tensor:
    """DTO-KD's closed form: pi1 = (g22 - g12) / (g11 + g22 - 2 g12),
    clipped to [0, 1]; the denominator is guarded by eps * (g11 + g22)."""
    denom = (g11 + g22 - 2 * g12).clamp_min(eps * (g11 + g22) + 1e-30)
    pi1 = ((g22 - g12) / denom).clamp(0., 1.)
    return torch.stack([pi1, 1 - pi1])


def _affine_min_norm(gram: Tensor, support: list) -> Tensor:
    """The weights (summing to 1, of any sign) of the min-norm point of the
    affine hull of the support's gradients: the KKT system
    [[G_S, 1], [1^T, 0]] [y; -lambda] = [0; 1], solved by least squares
    (exact when the support is affinely independent, as Wolfe's keeps it)."""
    n = len(support)
    kkt = gram.new_zeros(n + 1, n + 1)
    kkt[:n, :n] = gram[support][:, support]
    kkt[:n, n] = 1.
    kkt[n, :n] = 1.
    rhs = gram.new_zeros(n + 1, 1)
    rhs[n] = 1.
    y = torch.linalg.lstsq(kkt, rhs, driver='gelsd').solution[:n, 0]
    return y / y.sum()


def min_norm_weights(gram_matrix: Tensor, tol: float = 1e-12,
                     max_iters: int = 1000, eps: float = 1e-8) -> Tensor:
    """The min-norm weights of K gradients given their Gram matrix.

    Args:
        gram_matrix: (K, K) positive semi-definite Gram matrix, any scale.
        tol: Optimality and zero tolerance, relative to the largest squared
            gradient norm (K >= 3). Defaults to 1e-12.
        max_iters: Bound on Wolfe's major + minor iterations (it ends in
            far fewer: at most a few times K). Defaults to 1000.
        eps: Guard of the two-objective closed form's denominator
            (:func:`two_objective_weights`; K = 2). Defaults to 1e-8.

    Returns:
        (K,) weights in the Gram matrix's dtype: non-negative, summing to 1.
        Uniform when every gradient is zero.
    """
    k = gram_matrix.size(0)
    if k == 1:
        return gram_matrix.new_ones(1)
    if k == 2:
        return two_objective_weights(gram_matrix[0, 0], gram_matrix[1, 1],
                                     gram_matrix[0, 1], eps)
    g = gram_matrix.detach().to(torch.float64)
    unit = g.diagonal().max()
    if not bool(unit > 0):
        return gram_matrix.new_full((k, ), 1. / k)
    g = g / unit
    g = (g + g.T) / 2
    # start at the shortest gradient
    first = int(torch.argmin(g.diagonal()))
    support = [first]
    x = g.new_zeros(k)
    x[first] = 1.
    steps = 0
    while steps < max_iters:
        steps += 1
        # major step: is the current point optimal over the whole hull?
        w = g @ x
        norm2 = x @ w
        j = int(torch.argmin(w))
        if w[j] >= norm2 - tol or j in support:
            break
        support.append(j)
        # minor steps: move towards the affine min-norm point of the
        # support, dropping the vertices whose weight reaches zero
        while steps < max_iters:
            steps += 1
            y = x.new_zeros(k)
            y[support] = _affine_min_norm(g, support)
            if bool((y[support] > tol).all()):
                x = y
                break
            # the largest step from x towards y that keeps x >= 0
            s = torch.tensor(support)
            neg = y[s] <= tol
            ratio = x[s][neg] / (x[s][neg] - y[s][neg]).clamp_min(1e-300)
            theta = float(ratio.min().clamp(0., 1.))
            x = (1 - theta) * x + theta * y
            x = x.clamp_min(0.)
            support = [i for i in support if x[i] > tol]
            x[[i for i in range(k) if i not in support]] = 0.
            x = x / x.sum()
    return x.to(gram_matrix.dtype)


def floor_weights(pi: Tensor, floor: float) -> Tensor:
    """``pi`` with every weight at least ``floor``, the rest scaled to keep
    the sum 1: MGDA's clamp of the two-task weights to [floor, 1 - floor]
    (Sener and Koltun's code: [0.001, 0.999]), for any K.

    Raises:
        ValueError: ``floor * K > 1``.
    """
    k = pi.numel()
    if floor <= 0:
        return pi
    if floor * k > 1:
        raise ValueError(f'a weight floor of {floor} cannot hold for {k} '
                         'weights summing to 1')
    out = pi.clone()
    fixed = torch.zeros(k, dtype=torch.bool, device=pi.device)
    for _ in range(k):
        low = (out < floor) & ~fixed
        if not bool(low.any()):
            break
        fixed |= low
        free = ~fixed
        rest = 1 - floor * int(fixed.sum())
        out[fixed] = floor
        mass = pi[free].sum()
        out[free] = pi[free] * (rest / mass) if bool(mass > 0) else \
            rest / int(free.sum())
    return out
