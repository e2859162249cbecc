"""The teacher-student model shared by the detection and classification
distillers.

A distiller wraps a student (any mmdet detector / mmpretrain classifier
built from its stock config dict, unchanged) and a frozen teacher, and adds
distillation terms. Each term names a student tap and a teacher tap (see
:mod:`mokd_det.distillers.taps`), an optional neck that maps the pair into a
common space, and a loss:

.. code-block:: python

    distill_losses=dict(
        fpn=dict(type='FeatureMSELoss', student='neck', teacher='neck',
                 neck=dict(type='SubspaceProjectionNeck')),
        cls=dict(type='LogitKDLoss', student='bbox_head:0',
                 teacher='bbox_head:0', temperature=2.0))

Loss groups (see :mod:`mokd_det.loss_groups`): ``loss()`` returns
the student's losses as ``task.<name>`` and each term as
``distill.<term>``; ``parse_losses`` attaches the group totals to the loss
for the multi-objective optim wrappers.

The teacher:

* is built from a config path, ``pkg::path`` or inline model dict and
  loaded strictly (:mod:`mokd_det.distillers.teacher`);
* is frozen (``requires_grad=False``, eval mode, run under ``no_grad``);
* is **not a registered submodule**: it stays out of ``parameters()`` (so
  out of the optimizer), out of DDP and out of every checkpoint. ``to()``,
  ``cuda()``, ``half()`` reach it through :meth:`_apply`, and ``train()``
  never switches it out of eval mode.

State dict: ``student.*`` (the student), ``distill_necks.*`` and
``distill_losses.*`` (the distillation modules). A checkpoint of the student
alone (``tools/export_student.py``, ``ExportStudentHook``, or a plain mmdet
checkpoint) loads into the distiller's student: ``load_from`` works with it.

Everything is validated when the model is built: tap paths (closest module
names on a miss), class counts of teacher and student, and, with one dry
forward of both on a dummy batch (:mod:`mokd_det.distillers.probe`), that
every tapped module runs, output indices and the channels of feature terms,
so configuration mistakes fail before the first iteration.
"""
import copy
import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import MODELS, Registry
from torch import Tensor, nn
from torch.profiler import record_function

from ..loss_groups import (DISTILL, TASK, SharedFeatures,
                           attach_shared_features, parse_grouped_losses)
from .probe import probe_taps
from .recompute_cache import RecomputeCache
from .taps import Tap, TapRecorder, find_module
from .teacher import build_teacher

_TERM_KEYS = ('student', 'teacher', 'neck', 'allow_zero_weight')


class DistillTerm:
    """A parsed distillation term: taps, optional neck, loss (the modules
    live in the distiller's ModuleDicts under the same name)."""

    def __init__(self, name: str, student: Tap, teacher: Tap):
        self.name = name
        self.student = student
        self.teacher = teacher


class BaseDistiller(BaseModel):
    """Teacher-student model base; subclasses fix the model family.

    Subclasses set :attr:`model_registry` (where student and teacher types
    live), :attr:`feature_prefixes` (module path prefixes computed by
    ``extract_feat``, probed at build time) and implement
    :meth:`run_teacher_heads` (the teacher forward after ``extract_feat`` that
    the teacher taps need) and :meth:`num_classes`.

    Args:
        student: The student's model dict (e.g. ``_base_.model``).
        teacher: ``dict(config=... | model=..., checkpoint=...,
            cfg_options=...)``, or a built model whose weights are used as
            they are (code that builds and loads its teacher itself, a
            test); either way it is frozen.
        distill_losses: Term name -> dict(type=<loss>, student=<tap>,
            teacher=<tap>, neck=<neck dict, optional>, **loss args); taps
            default to :attr:`default_tap` (``'neck'``: the FPN outputs of
            a detector). A term's ``loss_weight`` must be positive and
            finite; 0 is accepted only with ``allow_zero_weight=True`` in
            the term (computed and logged, not trained on). Defaults to no
            terms (the student trains alone).
        data_preprocessor: Defaults to the student's; when given as a dict
            (a config's top-level ``data_preprocessor``, which the Runner
            passes to the model) the student gets it too.
        probe_input_size: ``(H, W)`` of the dummy batch of the build-time
            tap probe (:mod:`mokd_det.distillers.probe`: every tap's module
            must run, necks read their channels from it); None skips the
            probe (a neck then needs its channels in its config). Defaults
            to (128, 128).
        init_cfg: Initialisation config. Defaults to None.
    """
    model_registry: Registry = MODELS
    feature_prefixes: Tuple[str, ...] = ('backbone', 'neck')
    default_tap: str = 'neck'

    def __init__(self,
                 student: dict,
                 teacher: Union[dict, nn.Module],
                 distill_losses: Optional[Dict[str, dict]] = None,
                 data_preprocessor: Optional[dict] = None,
                 probe_input_size: Optional[Tuple[int, int]] = (128, 128),
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is not None and \
                not isinstance(data_preprocessor, nn.Module):
            # the Runner injects a config's top-level data_preprocessor into
            # the distiller (mmpretrain configs): the student gets it too
            student = dict(student)
            student.setdefault('data_preprocessor', data_preprocessor)
        student_model = self.model_registry.build(student)
        self._check_student(student_model)
        if isinstance(data_preprocessor, dict) and \
                'type' not in data_preprocessor:
            # a type-less dict is typed by the model class that builds it
            # (mmpretrain's ImageClassifier): use the student's module
            data_preprocessor = None
        if data_preprocessor is None:
            data_preprocessor = student_model.data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.student = student_model
        # hidden from nn.Module registration: see the module docstring
        object.__setattr__(self, 'teacher', build_teacher(
            teacher, self.model_registry))
        self._check_num_classes()

        self.terms: List[DistillTerm] = []
        self.distill_losses = nn.ModuleDict()
        self.distill_necks = nn.ModuleDict()
        loss_cfgs = copy.deepcopy(dict(distill_losses or {}))
        for name, cfg in loss_cfgs.items():
            self.terms.append(self._parse_term(name, cfg))
        #: the student's shared features: the output of its neck
        #: (``extract_feat``), or of its backbone when it has no neck or a
        #: term taps the backbone's output
        self.shared_tap = Tap(
            'neck' if getattr(self.student, 'neck', None) is not None and
            all(t.student.path != 'backbone' for t in self.terms)
            else 'backbone')
        self.student_taps = TapRecorder(
            self.student,
            [t.student for t in self.terms] + self.extra_student_taps() +
            [self.shared_tap], 'student')
        self._shared: Optional[SharedFeatures] = None
        # what the shared features need that a forward cannot change: the
        # parameters below them, and the terms that tap below them
        self._below = [p for name in self.feature_prefixes[
            :self.feature_prefixes.index(self.shared_tap.path) + 1]
            if getattr(self.student, name, None) is not None
            for p in getattr(self.student, name).parameters()]
        upstream = [f'{t.name} ("{t.student}")' for t in self.terms
                    if self._is_feature_tap(t.student)
                    and t.student.path != self.shared_tap.path]
        self._upstream = None if not upstream else (
            f'distillation terms {upstream} tap the student below its '
            f'{self.shared_tap.path} output, so their gradients reach the '
            f'backbone without passing through the shared features. Tap '
            f'"{self.shared_tap.path}" (or a level of it, '
            f'"{self.shared_tap.path}:0"), or weigh on the parameters '
            "(gradients='params')")
        self.teacher_taps = TapRecorder(
            self.teacher, [t.teacher for t in self.terms], 'teacher')
        self._build_term_modules(loss_cfgs, probe_input_size)
        #: what the last loss() keeps for :meth:`recompute_loss` (set by
        #: the hooks that recompute losses); not state, not saved
        self.recompute_cache: Optional[RecomputeCache] = None
        self._wrapper_checked = False
        self._register_load_state_dict_pre_hook(self._student_only_hook)

    # ------------------------------------------------------------------ build
    def _parse_term(self, name: str, cfg: dict) -> DistillTerm:
        if '.' in name:
            raise ValueError(f'distill term name {name!r} must not contain '
                             '"."; it becomes the group key distill.<name>')
        if 'type' not in cfg:
            raise KeyError(f'distill term {name!r} needs `type` (its loss)')
        term = DistillTerm(
            name, Tap.parse(cfg.get('student', self.default_tap)),
            Tap.parse(cfg.get('teacher', self.default_tap)))
        find_module(self.student, term.student.path, f'student ({name})')
        find_module(self.teacher, term.teacher.path, f'teacher ({name})')
        _check_loss_weight(name, cfg)
        return term

    def extra_student_taps(self) -> List[Tap]:
        """Taps the distiller itself needs (e.g. the student's RoIs)."""
        return []

    def _is_feature_tap(self, tap: Tap) -> bool:
        return tap.path.split('.')[0] in self.feature_prefixes

    #: what the distiller runs of the teacher, for the probe's messages
    teacher_forward_doc: str = (
        "The distiller runs the teacher's extract_feat and its "
        'run_teacher_heads().')

    def probe_data_samples(self, inputs: Tensor) -> Optional[list]:
        """The data samples of the build-time probe's dummy batch (the
        student's ``mode='tensor'`` forward). Defaults to None."""
        return None

    def missing_extra_tap_message(self, tap: Tap) -> str:
        """The probe's message when a tap of :meth:`extra_student_taps`
        recorded nothing."""
        return (f'the student ({type(self.student).__name__}) does not run '
                f'{tap.path}, which {type(self).__name__} needs.')

    def _build_term_modules(self, loss_cfgs: Dict[str, dict],
                            probe_input_size: Optional[Tuple[int, int]]
                            ) -> None:
        shapes = probe_taps(self, probe_input_size) \
            if probe_input_size is not None else {}
        for term in self.terms:
            cfg = dict(loss_cfgs[term.name])
            for key in _TERM_KEYS:
                cfg.pop(key, None)
            neck_cfg = loss_cfgs[term.name].get('neck')
            s_shapes = shapes.get(('student', term.name))
            t_shapes = shapes.get(('teacher', term.name))
            if neck_cfg is not None:
                neck_cfg = dict(neck_cfg)
                if s_shapes and t_shapes:
                    _check_one_width(term, neck_cfg, s_shapes, t_shapes)
                    neck_cfg.setdefault('student_channels', s_shapes[0][1])
                    neck_cfg.setdefault('teacher_channels', t_shapes[0][1])
                    neck_cfg.setdefault('num_levels', len(s_shapes))
                self.distill_necks[term.name] = MODELS.build(neck_cfg)
            elif s_shapes and t_shapes and self._is_feature_tap(
                    term.student) and self._is_feature_tap(term.teacher):
                _check_same_channels(term, s_shapes, t_shapes)
            loss = MODELS.build(cfg)
            self._resolve_logit_loss(term, loss)
            self.distill_losses[term.name] = loss

    def _resolve_logit_loss(self, term: DistillTerm, loss: nn.Module) -> None:
        """Fills ``activation='auto'`` and dense ``channels`` of logit losses
        from the tapped student head, and ``inputs='auto'`` (logits or
        probabilities) of each side from its own tapped head."""
        head = find_module(self.student, term.student.path, 'student')
        if getattr(loss, 'activation', None) == 'auto':
            activation, channels = head_activation(head)
            loss.activation = activation
            if getattr(loss, 'channels', 'absent') is None:
                loss.channels = channels
        for role, model, tap in (('student', self.student, term.student),
                                 ('teacher', self.teacher, term.teacher)):
            if getattr(loss, f'{role}_inputs', None) == 'auto':
                setattr(loss, f'{role}_inputs', head_inputs(
                    find_module(model, tap.path, role)))

    def _check_student(self, student: nn.Module) -> None:
        """Family-specific checks of the built student, before the teacher
        is loaded (none here)."""

    def _check_num_classes(self) -> None:
        s, t = self.num_classes(self.student), self.num_classes(self.teacher)
        if s is not None and t is not None and s != t:
            raise ValueError(
                f'teacher predicts {t} classes, student {s}: distillation '
                'needs the same label space. Set num_classes of the teacher '
                '(teacher.cfg_options) or use a teacher trained on the '
                "student's classes.")

    @staticmethod
    def num_classes(model: nn.Module) -> Optional[int]:
        """The number of classes ``model`` predicts (None if unknown)."""
        return None

    # ------------------------------------------------------- nn.Module glue
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'BaseDistiller':
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen in eval mode, always
        return self

    def _student_only_hook(self, state_dict, prefix, *args) -> None:
        """Lets ``load_from`` take a student-only checkpoint: when no key
        belongs to the distiller's own layout, all keys are the student's."""
        own = (f'{prefix}student.', f'{prefix}distill_necks.',
               f'{prefix}distill_losses.', f'{prefix}data_preprocessor.')
        keys = [k for k in state_dict if k.startswith(prefix)]
        if keys and not any(k.startswith(own) for k in keys):
            for k in keys:
                state_dict[f'{prefix}student.{k[len(prefix):]}'] = \
                    state_dict.pop(k)

    # --------------------------------------------------------------- forward
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        # predict / tensor: the student alone, as a plain model would
        return self.student(inputs, data_samples, mode=mode)

    def teacher_inputs(self, inputs: Tensor) -> Tensor:
        """The batch as the teacher's preprocessor would have produced it
        (the student's preprocessor made ``inputs``): mean/std and channel
        order are converted when the two preprocessors differ."""
        s, t = self.data_preprocessor, self.teacher.data_preprocessor
        s_norm = getattr(s, '_enable_normalize', False)
        t_norm = getattr(t, '_enable_normalize', False)
        x = inputs
        if s_norm or t_norm:
            if s_norm:
                x = x * s.std + s.mean
            if getattr(s, '_channel_conversion', False) != \
                    getattr(t, '_channel_conversion', False):
                x = x.flip(1)
            if t_norm:
                x = (x - t.mean.to(x)) / t.std.to(x)
        return x

    def run_teacher_heads(self, feats: Any, reused: bool = False,
                          data_samples: Optional[list] = None) -> None:
        """Runs the teacher parts after ``extract_feat`` that its taps need
        (under ``no_grad``, taps recording). With ``reused``, the records of
        the parts that depend only on the input were restored from the
        cache: run only what depends on the student. ``data_samples`` are
        the batch's (image metas, for heads that read them, e.g. a DETR's
        transformer). Subclasses override."""

    #: Teacher taps whose values depend on the student's forward (not only
    #: on the input), so they are never reused; see :meth:`loss`.
    student_dependent_prefix: Optional[str] = None

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        """Task losses (``task.*``) plus one ``distill.<term>`` per term.
        With :attr:`recompute_cache` set, keeps what
        :meth:`recompute_loss` reuses."""
        cache = self.recompute_cache
        if cache is None:
            return self._loss(inputs, data_samples)
        cache.clear()
        cache.inputs, cache.data_samples = inputs, data_samples
        with cache.targets.record(self.student):
            return self._loss(inputs, data_samples, cache=cache)

    def recompute_loss(self) -> Dict[str, Tensor]:
        """The losses of the last :meth:`loss` call's batch at the current
        parameters, reusing its preprocessed batch, the teacher's outputs
        and the prediction-independent label assignment
        (:mod:`mokd_det.distillers.recompute_cache`).

        Raises:
            RuntimeError: :attr:`recompute_cache` was not set before that
                call.
        """
        cache = self.recompute_cache
        if cache is None or not cache.ready:
            raise RuntimeError(
                'recompute_loss() needs recompute_cache = RecomputeCache() '
                'set before the loss() call it repeats (the recomputing '
                'hooks set it in before_run)')
        with record_function('mokd_det.recompute_loss'), \
                cache.targets.replay(self.student):
            return self._loss(cache.inputs, cache.data_samples, cache=cache,
                              reuse=True)

    def _loss(self, inputs: Tensor, data_samples,
              cache: Optional[RecomputeCache] = None,
              reuse: bool = False) -> Dict[str, Tensor]:
        reuse = reuse and cache.teacher is not None
        with self.student_taps.recording(), self.teacher_taps.recording():
            if reuse:
                feats, records = cache.teacher
                self.teacher_taps.restore(records)
            else:
                with torch.no_grad():
                    feats = self.teacher.extract_feat(
                        self.teacher_inputs(inputs))
            task = self.student.loss(inputs, data_samples)
            with torch.no_grad():
                self.run_teacher_heads(feats, reused=reuse,
                                       data_samples=data_samples)
            if cache is not None and not reuse:
                cache.teacher = (feats, self.teacher_taps.snapshot(
                    exclude_prefix=self.student_dependent_prefix))
            losses = {f'{TASK}.{k}': v for k, v in task.items()}
            self._shared = self._shared_features()
            for term in self.terms:
                student = self.student_taps.get(term.student)
                teacher = self.teacher_taps.get(term.teacher)
                if term.name in self.distill_necks:
                    student, teacher = self.distill_necks[term.name](
                        student, teacher)
                losses[f'{DISTILL}.{term.name}'] = \
                    self.distill_losses[term.name](student, teacher)
        self.student_taps.clear()
        self.teacher_taps.clear()
        return losses

    def train_step(self, data, optim_wrapper):
        """mmengine's ``train_step``; warns once when the optim wrapper does
        not guard against non-finite updates (mmengine's bare
        ``OptimWrapper``: a NaN distillation loss reaches the weights)."""
        if not self._wrapper_checked:
            self._wrapper_checked = True
            # exactly mmengine's classes: every mokd_det wrapper subclasses
            # them and guards
            if type(optim_wrapper) in (OptimWrapper, AmpOptimWrapper):
                print_log(
                    f'{type(self).__name__} is trained with mmengine\'s '
                    f'{type(optim_wrapper).__name__}, which applies updates '
                    'with non-finite losses or gradients to the weights. '
                    "Use optim_wrapper=dict(type='KDOptimWrapper') for "
                    'vanilla KD (the same summed loss, with non-finite '
                    'updates skipped).', logger='current',
                    level=logging.WARNING)
        return super().train_step(data, optim_wrapper)

    def parse_losses(self, losses):
        total, log_vars = parse_grouped_losses(losses)
        if self._shared is not None:
            attach_shared_features(total, self._shared)
            self._shared = None
        return total, log_vars

    def _shared_features(self) -> SharedFeatures:
        """The student's :attr:`shared_tap` output of this forward, the
        parameters below it, and why it does not carry every objective's
        gradient where it does not (for the methods that weigh objectives
        there: ``MoKDOptimWrapper(gradients='features')``)."""
        tap = self.shared_tap
        runs = self.student_taps.count(tap)
        if runs != 1:
            return SharedFeatures([], self._below, (
                f"the student's {tap.path} ran {runs} times in one forward; "
                'the gradients at its output are not those of one pass'))
        output = self.student_taps.get(tap)
        tensors = list(output) if isinstance(output, (tuple, list)) \
            else [output]
        unusable = self._upstream
        if unusable is None and not any(t.requires_grad for t in tensors):
            unusable = (f"the student's {tap.path} output does not require "
                        'grad (a frozen backbone and neck)')
        return SharedFeatures(tensors, self._below, unusable)

    # ------------------------------------------------------------ export
    def student_state_dict(self) -> Dict[str, Tensor]:
        """The student's weights under its own (plain model) keys."""
        return self.student.state_dict()


#: Heads (class name, subclasses included) whose ``forward`` returns class
#: probabilities rather than logits, with the activation that made them:
#: mmdet's ``TOODHead`` (``sigmoid_geometric_mean`` of the classification
#: and task-alignment logits) and ``CenterNetHead`` (sigmoid heatmaps).
#: ``LogitKDLoss(inputs='auto')`` takes their outputs as ``'probs'``.
PROBABILITY_HEADS: Dict[str, str] = {
    'TOODHead': 'sigmoid',
    'CenterNetHead': 'sigmoid',
}


def _probability_head(head: nn.Module) -> Optional[str]:
    for cls in type(head).__mro__:
        if cls.__name__ in PROBABILITY_HEADS:
            return cls.__name__
    return None


def head_inputs(head: nn.Module) -> str:
    """``'probs'`` when ``head``'s forward outputs probabilities (a class in
    :data:`PROBABILITY_HEADS`), else ``'logits'``."""
    return 'probs' if _probability_head(head) else 'logits'


def head_activation(head: nn.Module) -> Tuple[str, Optional[int]]:
    """The activation (``'sigmoid'``/``'softmax'``) and classes per prior of
    a classification head: the heads of :data:`PROBABILITY_HEADS`, mmdet
    dense heads (``use_sigmoid_cls``, ``cls_out_channels``), mmdet RoI box
    heads (``loss_cls.use_sigmoid``), mmpretrain heads (softmax; sigmoid
    for multi-label heads)."""
    name = _probability_head(head)
    if name is not None:
        return PROBABILITY_HEADS[name], getattr(
            head, 'cls_out_channels', getattr(head, 'num_classes', None))
    if hasattr(head, 'use_sigmoid_cls'):
        return ('sigmoid' if head.use_sigmoid_cls else 'softmax',
                head.cls_out_channels)
    loss_cls = getattr(head, 'loss_cls', None)
    if loss_cls is not None and hasattr(loss_cls, 'use_sigmoid'):
        return ('sigmoid' if loss_cls.use_sigmoid else 'softmax', None)
    if 'MultiLabel' in type(head).__name__:
        return 'sigmoid', None
    return 'softmax', None


def _check_loss_weight(name: str, cfg: dict) -> None:
    """A distillation term's ``loss_weight`` must be a positive number; 0
    only with ``allow_zero_weight=True`` (a term kept for its logs)."""
    weight = cfg.get('loss_weight', 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f'distill term {name!r}: loss_weight must be a '
                        f'number, got {weight!r}')
    if weight < 0 or weight != weight:
        raise ValueError(
            f'distill term {name!r}: loss_weight={weight} is negative (or '
            'NaN): the optimiser would then push the student away from the '
            'teacher. Use a positive weight, or remove the term.')
    if weight == 0 and not cfg.get('allow_zero_weight', False):
        raise ValueError(
            f'distill term {name!r}: loss_weight=0 turns the term off while '
            'it still costs its forward. Remove the term, or set '
            'allow_zero_weight=True in it if you want it computed and '
            'logged without effect.')


def _check_one_width(term: DistillTerm, neck_cfg: dict, s_shapes,
                     t_shapes) -> None:
    """A neck maps every level with one channel count per side: a tap whose
    levels differ in channels (a Swin or ResNet ``backbone``) is refused."""
    for role, shapes in (('student', s_shapes), ('teacher', t_shapes)):
        channels = [s[1] for s in shapes]
        if len(set(channels)) > 1:
            tap = getattr(term, role)
            last = len(channels) - 1
            levels = ', '.join(f'level {i}: {c}'
                               for i, c in enumerate(channels))
            raise ValueError(
                f'distill term {term.name!r}: {role} tap "{tap}" gives '
                f'{len(channels)} levels with different channels '
                f'({levels}), and {neck_cfg.get("type", "the neck")} maps '
                'every level with one channel count. Tap features of one '
                'width, e.g. "neck" (the FPN outputs), or one level, e.g. '
                f'"{tap.path}:{last}" ({channels[last]} channels), on both '
                'sides.')


def _check_same_channels(term: DistillTerm, s_shapes, t_shapes) -> None:
    s_ch = [s[1] for s in s_shapes]
    t_ch = [t[1] for t in t_shapes]
    if len(s_ch) != len(t_ch) or s_ch != t_ch:
        raise ValueError(
            f'distill term {term.name!r}: student tap "{term.student}" has '
            f'channels {s_ch}, teacher tap "{term.teacher}" has {t_ch}. '
            'Add a neck that maps both into one space, e.g. '
            "neck=dict(type='SubspaceProjectionNeck'), or tap features "
            'with matching channels.')
