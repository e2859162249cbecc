"""The student's shared features a distiller attaches to its loss (for
MoKDOptimWrapper(gradients='features')): the neck's output, the
parameters below it, and a refusal when a term taps below it."""
import pytest
import torch

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
    """A feature term on the first backbone layer (below the neck, the
    shared features): the first update refuses, naming the term and the
    tap to use."""
    from tests.toy import ToyDistiller
    toy_distiller(tmp_path)  # the teacher's checkpoint
    model = ToyDistiller(
        student=dict(type='ToyNet', width=4),
        teacher=dict(model=dict(type='ToyNet', width=6),
                     checkpoint=str(tmp_path / 'toy_teacher_0.pth')),
        distill_losses=dict(feat=dict(
            type='FeatureMSELoss', student='backbone.0',
            teacher='backbone.0',
            neck=dict(type='SubspaceProjectionNeck', standardize=False))),
        probe_input_size=(4, 4))
    wrapper = MoKDOptimWrapper(
        torch.optim.SGD(model.student.parameters(), lr=0.1),
        gradients='features')
    x, y = toy_batch(4)
    total, _ = model.parse_losses(model.loss(x, y))
    with pytest.raises(ValueError, match=r"feat \("
                       r'"backbone.0"\).*Tap "neck"'):
        wrapper.update_params(total)
