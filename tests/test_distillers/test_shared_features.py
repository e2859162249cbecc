"""The student's shared features a distiller attaches to its loss (for
MoKDOptimWrapper(gradients='features')): the neck's output, the
parameters below it, and a refusal when a term taps below it."""
import pytest
import torch

from mokd_det.distillers.taps import Tap
from mokd_det.loss_groups import get_shared_features
from mokd_det.optim import MoKDOptimWrapper
from tests.toy import toy_batch, toy_distiller


def test_distiller_attaches_the_neck_output_and_the_parameters_below(
        tmp_path):
    model = toy_distiller(tmp_path)
    x, y = toy_batch(4)
    recorded = []
    handle = model.student.neck.register_forward_hook(
        lambda mod, args, out: recorded.append(out))
    total, _ = model.parse_losses(model.loss(x, y))
    handle.remove()
    feats = get_shared_features(total)
    assert feats.unusable is None
    assert len(feats.tensors) == 1 and feats.tensors[0] is recorded[0]
    assert {id(p) for p in feats.below} == {
        id(p) for p in model.student.backbone.parameters()}  # pool: none
    assert model._shared is None  # handed over, not kept


def test_a_term_below_the_shared_features_is_refused_at_the_first_step(
        tmp_path):
    model = toy_distiller(tmp_path)
    model.terms[1].student = Tap('backbone.0')  # the 'feat' term
    wrapper = MoKDOptimWrapper(
        torch.optim.SGD(model.student.parameters(), lr=0.1),
        gradients='features')
    x, y = toy_batch(4)
    model.student_taps = type(model.student_taps)(
        model.student, [t.student for t in model.terms] + [model.shared_tap],
        'student')
    total, _ = model.parse_losses(model.loss(x, y))
    with pytest.raises(ValueError, match=r"feat \("
                       r'"backbone.0"\).*Tap "neck"'):
        wrapper.update_params(total)
