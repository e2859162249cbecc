"""Every configuration mistake the distiller can detect fails at build time
with a message that says what is wrong and how to fix it."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope

from mokd_det.distillers import DetDistiller
from mokd_det.utils import load_config
from tests.helpers import DET_FAMILIES, small_detector


@pytest.fixture(scope='module')
def scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='module')
def student():
    return small_detector(load_config(DET_FAMILIES['retinanet']).model)


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory, student):
    from mmdet.registry import MODELS
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=MODELS.build(copy.deepcopy(student))
                    .state_dict()), path)
    return path


def build(student, teacher_model, checkpoint, **terms):
    return DetDistiller(
        student=copy.deepcopy(student),
        teacher=dict(model=copy.deepcopy(teacher_model),
                     checkpoint=checkpoint),
        distill_losses=terms or dict(
            fpn=dict(type='FeatureMSELoss', student='neck', teacher='neck')))


def test_valid_config_builds(scope, student, teacher_ckpt):
    model = build(student, student, teacher_ckpt)
    assert set(model.distill_losses) == {'fpn'}


def test_a_built_teacher_is_used_as_it_is_and_frozen(scope, student,
                                                     teacher_ckpt):
    """A teacher module built by the caller: its weights are used as they
    are (no checkpoint), it is frozen, in eval mode and not a submodule;
    the distiller equals one built from the teacher's dict and checkpoint
    with the same weights."""
    from mmdet.registry import MODELS
    from mokd_det.distillers import load_teacher_checkpoint
    teacher = MODELS.build(copy.deepcopy(student))
    load_teacher_checkpoint(teacher, teacher_ckpt)
    teacher.train()
    terms = dict(fpn=dict(type='FeatureMSELoss', student='neck',
                          teacher='neck'))
    torch.manual_seed(0)
    built = DetDistiller(student=copy.deepcopy(student), teacher=teacher,
                         distill_losses=copy.deepcopy(terms))
    assert built.teacher is teacher and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith('teacher.') for k in built.state_dict())
    torch.manual_seed(0)
    from_dict = build(student, student, teacher_ckpt, **terms)
    for key, value in from_dict.teacher.state_dict().items():
        assert torch.equal(value, teacher.state_dict()[key]), key
    assert built.state_dict().keys() == from_dict.state_dict().keys()


def test_untrained_teacher_is_an_explicit_smoke_test(scope, student,
                                                    teacher_ckpt):
    with pytest.raises(ValueError, match='untrained=True'):
        build(student, student, None)
    model = DetDistiller(
        student=copy.deepcopy(student),
        teacher=dict(model=copy.deepcopy(student), untrained=True),
        distill_losses=dict(
            fpn=dict(type='FeatureMSELoss', student='neck', teacher='neck')))
    assert not any(p.requires_grad for p in model.teacher.parameters())
    with pytest.raises(ValueError, match='contradict'):
        DetDistiller(student=copy.deepcopy(student),
                     teacher=dict(model=copy.deepcopy(student),
                                  checkpoint=teacher_ckpt, untrained=True))


def test_missing_checkpoint_file(scope, student):
    with pytest.raises(FileNotFoundError, match='Train the teacher first'):
        build(student, student, 'checkpoints/nope.pth')
    with pytest.raises(ValueError, match='teacher.checkpoint is required'):
        build(student, student, None)


def test_checkpoint_keys_that_do_not_fit(scope, student, teacher_ckpt,
                                         tmp_path):
    wider = small_detector(copy.deepcopy(student), width=96)
    with pytest.raises(KeyError,
                       match=r'shape mismatch .*checkpoint \(64,\) vs model'):
        build(student, wider, teacher_ckpt)
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    state.pop('bbox_head.retina_cls.bias')
    state['extra.weight'] = torch.zeros(1)
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(KeyError) as info:
        build(student, student, path)
    assert "missing ['bbox_head.retina_cls.bias']" in str(info.value)
    assert "unexpected ['extra.weight']" in str(info.value)


def test_class_count_mismatch(scope, student, tmp_path):
    from mmdet.registry import MODELS
    teacher = copy.deepcopy(student)
    teacher.bbox_head.num_classes = 80
    path = str(tmp_path / 't80.pth')
    torch.save(dict(state_dict=MODELS.build(copy.deepcopy(teacher))
                    .state_dict()), path)
    with pytest.raises(ValueError, match='teacher predicts 80 classes, '
                       'student 6'):
        build(student, teacher, path)


def test_channel_mismatch_without_neck(scope, student, tmp_path):
    from mmdet.registry import MODELS
    wider = small_detector(copy.deepcopy(student), width=96)
    path = str(tmp_path / 'wide.pth')
    torch.save(dict(state_dict=MODELS.build(copy.deepcopy(wider))
                    .state_dict()), path)
    with pytest.raises(ValueError, match=r"channels \[64, 64, 64, 64, 64\], "
                       r"teacher tap \"neck\" has \[96.*SubspaceProjection"):
        build(student, wider, path)
    # the neck resolves it, with channels read from the probe
    model = build(student, wider, path, fpn=dict(
        type='FeatureMSELoss', student='neck', teacher='neck',
        neck=dict(type='SubspaceProjectionNeck')))
    neck = model.distill_necks['fpn']
    assert neck.dim == 192 and len(neck.student_proj) == 5


def test_tap_that_matches_no_module(scope, student, teacher_ckpt):
    with pytest.raises(ValueError, match=r'student \(fpn\) tap "nek" '
                       r"matches no module.*Closest names: \['neck'"):
        build(student, student, teacher_ckpt, fpn=dict(
            type='FeatureMSELoss', student='nek', teacher='neck'))
    with pytest.raises(ValueError, match='teacher .* tap "backbone.layer9"'):
        build(student, student, teacher_ckpt, fpn=dict(
            type='FeatureMSELoss', student='neck',
            teacher='backbone.layer9'))


def test_logit_loss_takes_the_heads_activation(scope, student, teacher_ckpt):
    model = build(student, student, teacher_ckpt, cls=dict(
        type='LogitKDLoss', student='bbox_head:0', teacher='bbox_head:0'))
    assert model.distill_losses['cls'].activation == 'sigmoid'
    assert model.distill_losses['cls'].channels == 6


def test_teacher_hidden_from_module_tree(scope, student, teacher_ckpt):
    model = build(student, student, teacher_ckpt)
    assert not any(k.startswith('teacher') for k in model.state_dict())
    teacher_params = {id(p) for p in model.teacher.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    model.train()
    assert model.student.training and not model.teacher.training
    model.to(torch.float64)
    assert next(model.teacher.parameters()).dtype == torch.float64


def test_student_only_checkpoint_loads_into_the_student(
        scope, student, teacher_ckpt):
    from mmengine.runner.checkpoint import load_checkpoint
    model = build(student, student, teacher_ckpt)
    plain = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    load_checkpoint(model, teacher_ckpt, strict=False)
    for k, v in plain.items():
        assert torch.equal(model.student.state_dict()[k], v)


def test_teacher_sees_its_own_normalisation(scope, student, tmp_path):
    from mmdet.registry import MODELS
    teacher = copy.deepcopy(student)
    teacher.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.],
                                     bgr_to_rgb=False)
    path = str(tmp_path / 'raw.pth')
    torch.save(dict(state_dict=MODELS.build(copy.deepcopy(teacher))
                    .state_dict()), path)
    model = build(student, teacher, path)
    raw = torch.rand(1, 3, 4, 4) * 255  # BGR as loaded
    data = model.data_preprocessor(dict(inputs=[raw[0]]), False)['inputs']
    # (the preprocessor pads to a multiple of 32)
    torch.testing.assert_close(model.teacher_inputs(data)[..., :4, :4], raw)


def test_backbone_stage_taps_and_default_fpn_tap(scope, student,
                                                 teacher_ckpt):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = build(student, student, teacher_ckpt,
                  stage=dict(type='PKDLoss', student='backbone:3',
                             teacher='backbone:3'),
                  fpn=dict(type='FeatureMSELoss'))  # taps default to 'neck'
    assert str(model.terms[1].student) == 'neck'
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64),
                                         pad_shape=(64, 64),
                                         batch_input_shape=(64, 64)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4., 4., 40., 40.]]), labels=torch.tensor([1]))
    from mmengine.runner.checkpoint import load_checkpoint
    load_checkpoint(model, teacher_ckpt)  # the student = the teacher
    model.eval()  # BN on running statistics on both sides
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    # identical student and teacher weights: both terms vanish exactly
    assert losses['distill.stage'].item() == pytest.approx(0, abs=1e-6)
    assert losses['distill.fpn'].item() == pytest.approx(0, abs=1e-6)
    assert losses['task.loss_cls'][0].requires_grad


@pytest.mark.parametrize('weight', [-1.0, float('nan')])
def test_negative_loss_weight_is_refused(scope, student, teacher_ckpt,
                                         weight):
    with pytest.raises(ValueError, match="term 'fpn': loss_weight=.*"
                       'negative'):
        build(student, student, teacher_ckpt, fpn=dict(
            type='FeatureMSELoss', student='neck', teacher='neck',
            loss_weight=weight))


def test_zero_loss_weight_needs_to_be_explicit(scope, student, teacher_ckpt):
    term = dict(type='FeatureMSELoss', student='neck', teacher='neck',
                loss_weight=0.0)
    with pytest.raises(ValueError, match='allow_zero_weight=True'):
        build(student, student, teacher_ckpt, fpn=dict(term))
    model = build(student, student, teacher_ckpt,
                  fpn=dict(term, allow_zero_weight=True))
    assert model.distill_losses['fpn'].loss_weight == 0.0


def test_paa_student_without_scikit_learn_fails_at_build(scope, monkeypatch):
    from mmdet.models.dense_heads import paa_head
    monkeypatch.setattr(paa_head, 'skm', None)  # as without scikit-learn
    paa = small_detector(load_config('mmdet::paa/paa_r50_fpn_1x_coco.py')
                         .model)
    with pytest.raises(ImportError, match='pip install scikit-learn'):
        DetDistiller(student=paa, teacher=dict(model=paa, untrained=True))
