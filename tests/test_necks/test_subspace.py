import pytest
import torch
from torch import nn

from mokd_det.losses import FeatureMSELoss
from mokd_det.necks import OrthogonalProjection, SubspaceProjectionNeck


@pytest.mark.parametrize('orthogonal_map', ['cayley', 'matrix_exp'])
def test_projection_keeps_orthonormal_columns_while_training(orthogonal_map):
    proj = OrthogonalProjection(8, 20, orthogonal_map)
    # momentum and weight decay, as the students' optimizers have: torch's
    # Householder map loses orthonormality under them (refused, below)
    opt = torch.optim.SGD(proj.parameters(), lr=0.5, momentum=0.9,
                          weight_decay=1e-4)
    for _ in range(30):
        loss = proj(torch.randn(2, 8, 3, 3)).pow(3).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w = proj.weight
        torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5,
                                   rtol=0)
    x = torch.randn(2, 8, 3, 3)
    # an isometry: per-location norms are preserved
    torch.testing.assert_close(proj(x).norm(dim=1), x.norm(dim=1))


def test_cayley_map_is_the_default_and_householder_is_refused():
    neck = SubspaceProjectionNeck(4, 6)
    assert neck.student_proj[0].linear.parametrizations.weight[0] \
        .orthogonal_map.name == 'cayley'
    with pytest.raises(ValueError, match='Householder'):
        SubspaceProjectionNeck(4, 6, orthogonal_map='householder')


def test_shared_space_is_wider_than_both_and_handles_different_channels():
    neck = SubspaceProjectionNeck(student_channels=16, teacher_channels=32,
                                  num_levels=2)
    assert neck.dim == 64
    s, t = neck([torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2, 2)],
                [torch.randn(2, 32, 4, 4), torch.randn(2, 32, 2, 2)])
    assert [x.shape[1] for x in s + t] == [64] * 4
    with pytest.raises(ValueError, match='exceed'):
        SubspaceProjectionNeck(16, 32, dim=32)


def _fit(neck, student, teacher, steps=300):
    opt = torch.optim.Adam(neck.parameters(), lr=0.05)
    for _ in range(steps):
        loss = FeatureMSELoss()(*neck([student], [teacher]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


class _FreeLinearPair(nn.Module):
    """The unconstrained alternative: plain learnable 1x1 projections."""

    def __init__(self, cs, ct, dim):
        super().__init__()
        self.s = nn.Conv2d(cs, dim, 1, bias=False)
        self.t = nn.Conv2d(ct, dim, 1, bias=False)

    def forward(self, s, t):
        return [self.s(s[0])], [self.t(t[0])]


def test_cannot_collapse_to_zero_loss():
    """On unrelated features, free projections drive the loss to ~0 by
    shrinking both sides; the orthogonal subspace neck cannot."""
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 8, 6, 6), torch.randn(4, 12, 6, 6)
    free = _fit(_FreeLinearPair(8, 12, 24), student, teacher)
    neck = SubspaceProjectionNeck(8, 12, dim=24)
    constrained = _fit(neck, student, teacher)
    assert free < 1e-3
    # standardised inputs: mean squared norm per location is C_s + C_t = 20
    # spread over 24 dims; the best contraction between unrelated features
    # recovers only a small part of it
    assert constrained > 0.5
    w = neck.student_proj[0].weight
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)


def test_linear_connector_maps_the_student_to_the_teacher_channels():
    from mokd_det.necks import LinearConnector
    conn = LinearConnector(8, 12, num_levels=2)
    t = [torch.randn(2, 12, 3, 3), torch.randn(2, 12, 1, 1)]
    s, t_out = conn([torch.randn(2, 8, 3, 3), torch.randn(2, 8, 1, 1)], t)
    assert [x.shape for x in s] == [x.shape for x in t]
    assert all(a is b for a, b in zip(t_out, t))  # the teacher is untouched
    vec, _ = conn([torch.randn(2, 8)], [torch.randn(2, 12)])
    assert vec[0].shape == (2, 12)
