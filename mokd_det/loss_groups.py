"""Loss groups: the one place where a distiller's losses are split into
objectives, and the seam between the distillers, which produce them, and
the optim wrappers and hooks, which consume them. It sits on the package's
ground floor and imports nothing of ``mokd_det``, so that an optim wrapper
needs no detector (or mmdet) to read the groups.

A distiller's ``loss()`` returns keys ``'<group>.<name>'``:

* ``task.<name>``: the student's own losses, names unchanged from mmdet /
  mmpretrain (``task.loss_cls``, ``task.loss_bbox``, ``task.loss_rpn_cls``);
* ``distill.<name>``: one entry per distillation term (``distill.fpn``);
* more groups where a method needs them (any other prefix).

Besides the group totals, the entries of every group but ``task`` are
attached one by one under their keys (``distill.fpn``), so that a method can
balance each distillation term as its own objective
(``MoKDOptimWrapper(groups=('task', 'distill.fpn', 'distill.cls'))``):
:func:`get_loss_terms`.

:func:`parse_grouped_losses` (the distillers' ``parse_losses``) reduces them
as mmengine does, logs every term (``distill.fpn`` as ``distill.loss_fpn``,
so that mmengine averages it over the log interval like every ``loss``
key), the per-group totals (``loss_task``,
``loss_distill``) and the total ``loss``, and attaches the group totals to
the returned total loss tensor. The attachment is how the groups reach an
optim wrapper on both of mmengine's paths: ``BaseModel.train_step`` and
``MMDistributedDataParallel.train_step`` both call ``parse_losses`` and hand
its tensor to ``optim_wrapper.update_params``. A plain ``OptimWrapper``
ignores the attachment and trains on the sum; a multi-objective wrapper reads
it with :func:`get_loss_groups`.

The distillers also attach the student's **shared features**
(:class:`SharedFeatures`: the outputs of its ``extract_feat``, through which
every objective reaches the backbone and neck), for the methods that
weigh the objectives by their gradients there instead of on the
parameters (``MoKDOptimWrapper(gradients='features')``):
:func:`get_shared_features`.

Which entries count: in the task group, keys containing ``'loss'`` (mmdet's
convention: ``task.acc`` is logged, not optimised); in every other group,
all entries.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from mmengine.utils import is_list_of
from torch import Tensor

TASK = 'task'
DISTILL = 'distill'
_ATTR = '_mokd_loss_groups'
_TERMS = '_mokd_loss_terms'
_SHARED = '_mokd_shared_features'


class SharedFeatures(NamedTuple):
    """The student's features that every objective reaches, from one
    forward.

    Attributes:
        tensors: The feature tensors (the FPN levels of a detector, the
            pooled features of a classifier).
        below: The parameters that compute them (the student's backbone
            and neck): every objective reaches them through ``tensors``
            only.
        unusable: None, or why the objectives do not all pass through
            ``tensors`` (a distillation term tapping the backbone), for the
            method to refuse with.
    """
    tensors: List[Tensor]
    below: List[Tensor]
    unusable: Optional[str] = None


def split_key(key: str) -> Tuple[str, str]:
    """``'distill.fpn'`` -> ``('distill', 'fpn')``; ungrouped keys belong to
    the task group."""
    group, sep, name = key.partition('.')
    return (group, name) if sep else (TASK, key)


def _reduce(name: str, value) -> Tensor:
    if isinstance(value, Tensor):
        return value.mean()
    if is_list_of(value, Tensor):
        return sum(v.mean() for v in value)
    raise TypeError(f'{name} is not a tensor or list of tensors')


def parse_grouped_losses(
        losses: Mapping[str, object]) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Reduces grouped losses; returns the total (with the groups attached)
    and the log variables."""
    log_vars: Dict[str, Tensor] = OrderedDict()
    groups: Dict[str, Tensor] = OrderedDict()
    terms: Dict[str, Tensor] = OrderedDict()
    for key, value in losses.items():
        value = _reduce(key, value)
        group, name = split_key(key)
        # logged as distill.loss_<term>: mmengine's LogProcessor averages
        # over the log interval only keys that contain 'loss' (its
        # mean_pattern) and prints the others' current value, which made
        # distill.<term> disagree with the averaged loss_distill
        log_vars[key if group == TASK or 'loss' in name
                 else f'{group}.loss_{name}'] = value
        if group != TASK:
            terms[key] = value
        if group != TASK or 'loss' in name:
            groups[group] = groups[group] + value if group in groups \
                else value
    if not groups:
        raise ValueError(f'no losses to optimise among {list(losses)}')
    total = sum(groups.values())
    out = OrderedDict(loss=total)
    out.update((f'loss_{g}', v) for g, v in groups.items())
    out.update(log_vars)
    attach_loss_groups(total, groups, terms)
    return total, out


def attach_loss_groups(loss: Tensor, groups: Mapping[str, Tensor],
                       terms: Optional[Mapping[str, Tensor]] = None) -> None:
    """Attaches the per-group totals (and the terms of the groups other
    than ``task``, keyed ``<group>.<name>``) to the total loss tensor."""
    setattr(loss, _ATTR, OrderedDict(groups))
    setattr(loss, _TERMS, OrderedDict(terms or {}))


def get_loss_terms(loss: Tensor) -> Dict[str, Tensor]:
    """The per-term entries attached to ``loss`` (``distill.fpn``, ...);
    empty if there are none."""
    return getattr(loss, _TERMS, OrderedDict())


def get_loss_groups(loss: Tensor,
                    with_terms: bool = False) -> Dict[str, Tensor]:
    """The per-group totals attached to ``loss``; with ``with_terms``
    followed by the per-term entries (:func:`get_loss_terms`).

    Raises:
        TypeError: The loss carries no groups: the model is not a distiller
            (or its ``parse_losses`` does not group).
    """
    groups = getattr(loss, _ATTR, None)
    if groups is None:
        raise TypeError(
            'this optim wrapper balances loss groups, but the model did not '
            'group its losses. Use a mokd_det distiller (DetDistiller, '
            'ClsDistiller) as the model, or a model whose parse_losses calls '
            'mokd_det.loss_groups.parse_grouped_losses; for plain training '
            "use optim_wrapper=dict(type='OptimWrapper').")
    if with_terms:
        return OrderedDict(groups, **get_loss_terms(loss))
    return groups


def attach_shared_features(loss: Tensor, features: SharedFeatures) -> None:
    """Attaches the student's shared features to the total loss tensor."""
    setattr(loss, _SHARED, features)


def get_shared_features(loss: Tensor) -> Optional[SharedFeatures]:
    """The shared features attached to ``loss``; None if there are none."""
    return getattr(loss, _SHARED, None)
