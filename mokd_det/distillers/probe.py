"""The build-time tap probe: one dry forward of student and teacher.

Every tap is checked when the distiller is built, on a dummy batch (2
images of ``probe_input_size``, 128 x 128 by default, under ``no_grad``,
the student in eval mode so that no BatchNorm statistics change):

* the student runs its full network forward (``mode='tensor'``: backbone,
  neck and heads, without losses; a tap on a loss module fails), the
  teacher what the distiller runs of it in training (``extract_feat`` and
  ``run_teacher_heads``); modules are traced through their ``forward``, as
  mmdet's tensor-mode forwards call their heads' ``forward`` directly;
* a tapped module that did not run fails with the tap as the user wrote it,
  the modules that ran (a module list's stages, the top-level modules) and,
  for the teacher, what the distiller runs of it;
* a teacher head that cannot run the way the distiller calls it fails
  naming the teacher taps that need it;
* an output index that does not exist fails naming the tap;
* the shapes of the tapped tensors are returned: the distiller reads the
  channels of its necks from them and checks the channels of feature terms.

The probe leaves every random generator as it found it, except for the
dummy batch, which is drawn from torch's global generator when a student
feature tap exists (as the feature probe before it did), so that a seeded
run's initial weights, drawn after the model is built, do not change.
"""
import difflib
import random
from contextlib import ExitStack, contextmanager
from typing import Dict, Iterator, List, Sequence, Set, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .taps import Tap, wrap_forward

Shapes = Dict[Tuple[str, str], List[Tuple[int, ...]]]


@torch.no_grad()
def probe_taps(distiller: nn.Module, size: Tuple[int, int]) -> Shapes:
    """Runs the probe (see the module docstring) on ``distiller``, a
    :class:`~mokd_det.distillers.base.BaseDistiller` (its ``student``,
    ``teacher``, ``terms``, tap recorders and teacher-head hooks; typed as a
    module so that this module, which the base imports, does not import it
    back).

    Returns:
        ``(role, term name) -> [shape per tensor]`` for every tap whose
        value is a tensor or a sequence of tensors.

    Raises:
        ValueError: A tap's module did not run, its index does not exist,
            the teacher's heads cannot run for its taps, or the student's
            forward failed on the dummy batch.
    """
    if not distiller.terms:
        return {}
    if any(distiller._is_feature_tap(t.student) for t in distiller.terms):
        x = torch.randn(2, 3, *size)
    else:
        x = torch.randn(2, 3, *size,
                        generator=torch.Generator().manual_seed(0))
    student, teacher = distiller.student, distiller.teacher
    ran: Dict[str, Set[str]] = {'student': set(), 'teacher': set()}
    was_training = student.training
    student.eval()
    try:
        with _generators_kept(), ExitStack() as stack:
            stack.enter_context(_ran_modules(student, ran['student']))
            stack.enter_context(_ran_modules(teacher, ran['teacher']))
            stack.enter_context(
                distiller.student_taps.recording(through_forward=True))
            stack.enter_context(
                distiller.teacher_taps.recording(through_forward=True))
            _run_student(distiller, x)
            _run_teacher(distiller, x)
            return _check_records(distiller, ran)
    finally:
        distiller.student_taps.clear()
        distiller.teacher_taps.clear()
        student.train(was_training)


def _run_student(distiller: nn.Module, x: Tensor) -> None:
    try:
        distiller.student(x, distiller.probe_data_samples(x), mode='tensor')
    except Exception as err:
        raise ValueError(
            f"build-time tap probe: the student's forward (mode='tensor') "
            f'failed on a dummy batch of {x.shape[0]} images of '
            f'{x.shape[2]} x {x.shape[3]}: {type(err).__name__}: {err}. If '
            'the model needs larger images, set probe_input_size=(H, W) in '
            'the distiller; probe_input_size=None skips the probe (taps are '
            'then checked at the first iteration, and necks need their '
            'channels in the config).') from err
    for tap in distiller.extra_student_taps():
        if not distiller.student_taps.ran(tap):
            raise ValueError(distiller.missing_extra_tap_message(tap))


def _run_teacher(distiller: nn.Module, x: Tensor) -> None:
    feats = distiller.teacher.extract_feat(x)
    try:
        distiller.run_teacher_heads(
            feats, data_samples=distiller.probe_data_samples(x))
    except Exception as err:
        heads = [t for t in distiller.terms
                 if not distiller._is_feature_tap(t.teacher)]
        taps = ', '.join(f'"{t.teacher}" (term {t.name!r})' for t in heads)
        raise ValueError(
            f'teacher tap{"s" if len(heads) > 1 else ""} {taps}: the '
            "teacher's heads cannot run the way the distiller runs them "
            f'({type(err).__name__}: {err}). '
            f'{distiller.teacher_forward_doc} A head the distiller cannot '
            'run that way cannot be tapped on the teacher: tap its '
            'features instead, e.g. "neck" or '
            '"backbone:3".') from err


def _check_records(distiller: nn.Module,
                   ran: Dict[str, Set[str]]) -> Shapes:
    shapes: Shapes = {}
    for term in distiller.terms:
        for role, recorder in (('student', distiller.student_taps),
                               ('teacher', distiller.teacher_taps)):
            tap: Tap = getattr(term, role)
            if not recorder.ran(tap):
                raise ValueError(_not_run_message(distiller, term.name, role,
                                                  tap, ran[role]))
            try:
                value = recorder.get(tap)
            except IndexError as err:
                raise ValueError(f'distill term {term.name!r}: {err}') \
                    from err
            # feature taps must give tensors; others may (logits)
            if distiller._is_feature_tap(tap) or _is_tensors(value):
                shapes[role, term.name] = tensor_shapes(value)
    return shapes


def _not_run_message(distiller: nn.Module, term: str, role: str,
                     tap: Tap, ran: Set[str]) -> str:
    model = distiller.student if role == 'student' else distiller.teacher
    module = dict(model.named_modules())[tap.path]
    msg = (f'{role} tap "{tap}" of distill term {term!r}: '
           f'{tap.path} ({type(module).__name__}) of the {role} '
           f'({type(model).__name__}) never runs in its forward pass, so '
           'the tap would record nothing.')
    below = _ran_below(tap.path, ran)
    index = '' if tap.index is None else f':{tap.index}'
    if below:
        msg += (f' Its submodules that ran: {below}; tap one of them, e.g. '
                f'"{below[0]}{index}".')
    else:
        top = sorted({n.split('.')[0] for n in ran})
        close = difflib.get_close_matches(tap.path, sorted(ran), n=3,
                                          cutoff=0.5)
        msg += f' Modules of the {role} that ran: {top}'
        msg += f' (closest: {close}).' if close else '.'
    if role == 'teacher':
        msg += ' ' + distiller.teacher_forward_doc
    return msg


def _ran_below(path: str, ran: Set[str], limit: int = 6) -> List[str]:
    """The shallowest modules under ``path`` that ran (a module list's
    entries, say)."""
    below = [n for n in ran if n.startswith(path + '.')]
    if not below:
        return []
    depth = min(n.count('.') for n in below)
    return sorted((n for n in below if n.count('.') == depth),
                  key=_natural)[:limit]


def _natural(name: str):
    return [int(p) if p.isdigit() else p for p in name.split('.')]


def _is_tensors(value) -> bool:
    return isinstance(value, Tensor) or (
        isinstance(value, Sequence) and len(value) > 0 and
        all(isinstance(v, Tensor) for v in value))


def tensor_shapes(value) -> List[Tuple[int, ...]]:
    """The shape of a tensor, or of each tensor of a sequence.

    Raises:
        TypeError: Neither.
    """
    if not _is_tensors(value):
        raise TypeError(f'a feature tap must give a tensor or a sequence '
                        f'of tensors, got {type(value).__name__}')
    if isinstance(value, Tensor):
        return [tuple(value.shape)]
    return [tuple(v.shape) for v in value]


@contextmanager
def _ran_modules(model: nn.Module, ran: Set[str]) -> Iterator[None]:
    """Collects the names of ``model``'s submodules whose forward runs."""
    with ExitStack() as stack:
        for name, module in model.named_modules():
            if name:
                stack.enter_context(wrap_forward(
                    module, lambda args, output, _name=name: ran.add(_name)))
        yield


@contextmanager
def _generators_kept() -> Iterator[None]:
    """Restores torch's (CPU and CUDA), Python's and numpy's global random
    states on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) \
        if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)

