"""Logit KD on heads whose forward outputs probabilities (TOOD): the
distiller takes the tapped values as probabilities, and the term is the
temperature-scaled Bernoulli KL of the head's real logits, not a sigmoid of
probabilities."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mokd_det.distillers import DetDistiller, head_activation, head_inputs
from mokd_det.losses.logit_kd import sigmoid_kd
from mokd_det.utils import load_config
from tests.helpers import small_detector

T = 2.0


@pytest.fixture(scope='module')
def scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _tood(seed: int):
    """A small TOOD (R18, 64-channel FPN and head: GN needs 32 groups),
    mmdet's own initialisation (class prior 0.01), then seeded noise so
    that student and teacher predict different scores."""
    from mmdet.registry import MODELS
    cfg = small_detector(
        load_config('mmdet::tood/tood_r50_fpn_1x_coco.py').model)
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return cfg, model


@pytest.fixture(scope='module')
def tood_pair(scope, tmp_path_factory):
    cfg, teacher = _tood(seed=1)
    path = str(tmp_path_factory.mktemp('tood') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return cfg, path


def _sample(size=128):
    sample = DetDataSample(metainfo=dict(
        img_shape=(size, size), pad_shape=(size, size),
        batch_input_shape=(size, size), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 8., 70., 90.]]), labels=torch.tensor([2]))
    return sample


def _record(module, store):
    return module.register_forward_hook(
        lambda mod, args, out: store.append(out))


def test_tood_head_is_known_to_output_probabilities(tood_pair):
    from mmdet.models.dense_heads import ATSSHead, TOODHead
    cfg, _ = tood_pair
    from mmdet.registry import MODELS
    head = MODELS.build(copy.deepcopy(cfg.bbox_head))
    assert isinstance(head, TOODHead)
    assert head_inputs(head) == 'probs'
    assert head_activation(head) == ('sigmoid', 6)
    atss = small_detector(load_config('mmdet::atss/atss_r50_fpn_1x_coco.py')
                          .model).bbox_head
    assert head_inputs(MODELS.build(atss)) == 'logits'
    assert not issubclass(ATSSHead, TOODHead)


def test_tood_logit_term_is_the_kd_of_the_heads_real_logits(tood_pair):
    cfg, path = tood_pair
    torch.manual_seed(0)
    model = DetDistiller(
        student=copy.deepcopy(cfg),
        teacher=dict(model=copy.deepcopy(cfg), checkpoint=path),
        distill_losses=dict(cls=dict(
            type='LogitKDLoss', student='bbox_head:0', teacher='bbox_head:0',
            temperature=T)))
    model.student.init_weights()  # as the Runner does: prior 0.01
    loss = model.distill_losses['cls']
    assert (loss.student_inputs, loss.teacher_inputs) == ('probs', 'probs')
    assert (loss.activation, loss.channels) == ('sigmoid', 6)

    # the two logits TOOD combines into its score, recorded on both sides
    rec = {}
    handles = []
    for role, net in (('s', model.student), ('t', model.teacher)):
        for name in ('tood_cls', 'cls_prob_module'):
            rec[role, name] = []
            handles.append(_record(getattr(net.bbox_head, name),
                                   rec[role, name]))
    MessageHub.get_current_instance().update_info('epoch', 0)  # TOOD reads it
    torch.manual_seed(0)
    try:
        losses = model.loss(torch.randn(1, 3, 128, 128), [_sample()])
    finally:
        for h in handles:
            h.remove()
    value = losses['distill.cls']

    def real_logits(role):
        """logit(sqrt(sigmoid(a) sigmoid(b))) per prior and class, in float64,
        from the head's own two logit maps (5 FPN levels)."""
        rows = []
        for a, b in zip(rec[role, 'tood_cls'], rec[role, 'cls_prob_module']):
            a, b = a.double(), b.double()
            log_p = 0.5 * (F.logsigmoid(a) + F.logsigmoid(b))
            logit = log_p - torch.log1p(-log_p.exp())
            rows.append(logit.permute(0, 2, 3, 1).reshape(-1, 6))
        return torch.cat(rows)

    s, t = real_logits('s'), real_logits('t')
    assert len(s) == 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1
    # Bernoulli KL of the tempered logits, by hand
    p_t, p_s = torch.sigmoid(t / T), torch.sigmoid(s / T)
    kl = p_t * (p_t / p_s).log() + (1 - p_t) * ((1 - p_t) / (1 - p_s)).log()
    expected = (kl.sum(-1) * T * T).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    assert value.requires_grad

    # the old reading (the probabilities taken as logits) is ~0: a sigmoid
    # of values in (0, 1) barely moves; the term now is far from it
    probs_s, probs_t = torch.sigmoid(s), torch.sigmoid(t)
    old = sigmoid_kd(probs_s.float(), probs_t.float(), T, T).item()
    assert old < 1e-4
    assert value.item() > 100 * old


def test_mixed_pair_resolves_each_side(tood_pair):
    """An ATSS student distilled from a TOOD teacher: the teacher's values
    are probabilities, the student's logits."""
    cfg, path = tood_pair
    student = small_detector(
        load_config('mmdet::atss/atss_r50_fpn_1x_coco.py').model)
    model = DetDistiller(
        student=student,
        teacher=dict(model=copy.deepcopy(cfg), checkpoint=path),
        distill_losses=dict(cls=dict(
            type='LogitKDLoss', student='bbox_head:0', teacher='bbox_head:0',
            temperature=T)))
    loss = model.distill_losses['cls']
    assert (loss.student_inputs, loss.teacher_inputs) == ('logits', 'probs')
