"""What a distiller keeps from an iteration's forward so that the losses of
the same batch can be recomputed after the step, exactly and cheaply
(amortized MoKD's "frozen model inference", DTO-KD Algorithm 1 line 10;
MKD's meta step).

A recomputation needs the same batch, and gives the same values for
everything that does not depend on the student's parameters. So it reuses:

* the **preprocessed batch** (no second preprocessing or host-to-device
  copy);
* the **teacher's outputs** (frozen teacher, same batch): its features and
  the records of its taps that depend only on the input
  (``BaseDistiller.student_dependent_prefix`` names the others);
* the **label assignment** of the student's heads whose targets depend only
  on the priors and the ground truth, not on the predictions: mmdet's
  ``AnchorHead`` (RetinaNet, RPN, ... that keep its ``get_targets``),
  ``ATSSHead``, ``GFLHead`` and ``FCOSHead`` implementations. A head counts
  only if its class uses those exact ``get_targets`` *and*
  ``_get_targets_single`` functions; a subclass that overrides either is
  recomputed. Assignment is a large share of a detector's loss (per-image
  IoU matrices over every anchor). A replayed call is checked against the
  recorded one (same ground-truth boxes and labels, same image shapes) and
  falls back to computing when they differ. A replayed call also leaves the
  random state as the recorded call left it (RPN's random sampler draws
  from it), so what follows, RoI sampling for instance, draws the same.

Random choices of the recomputed losses (RoI sampling) repeat through the
hooks' RNG replay (:mod:`mokd_det.hooks.recompute`).
"""
import inspect
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmdet.models.dense_heads import (AnchorHead, ATSSHead, FCOSHead,
                                      GFLHead)
from torch import Tensor, nn
from torch.profiler import record_function

#: (get_targets, _get_targets_single) pairs whose targets depend only on the
#: priors and the ground truth
PURE_TARGETS = tuple((cls.get_targets, cls._get_targets_single)
                     for cls in (AnchorHead, ATSSHead, GFLHead, FCOSHead))


def has_pure_targets(module: nn.Module) -> bool:
    cls = type(module)
    return (getattr(cls, 'get_targets', None),
            getattr(cls, '_get_targets_single', None)) in PURE_TARGETS


def _box_tensor(boxes) -> Tensor:
    return getattr(boxes, 'tensor', boxes)


def _gt_key(call_args: Dict[str, Any]) -> Tuple:
    """What the targets depend on besides the priors: per image, the
    ground-truth boxes and labels (and the image shapes)."""
    gts = call_args['batch_gt_instances']
    metas = call_args.get('batch_img_metas') or [{}] * len(gts)
    return tuple((_box_tensor(g.bboxes), g.labels, m.get('img_shape'),
                  m.get('pad_shape')) for g, m in zip(gts, metas))


def _rng_state() -> Tuple:
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_initialized() \
        else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: Tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def _same_key(a: Tuple, b: Tuple) -> bool:
    if len(a) != len(b):
        return False
    for (box_a, lab_a, *shape_a), (box_b, lab_b, *shape_b) in zip(a, b):
        if shape_a != shape_b:
            return False
        for x, y in ((box_a, box_b), (lab_a, lab_b)):
            if x is not y and (x.shape != y.shape or not torch.equal(x, y)):
                return False
    return True


class TargetCache:
    """Records the ``get_targets`` results of a model's pure-target heads
    during one forward and replays them in the next (see the module
    docstring)."""

    def __init__(self):
        #: per head: (ground-truth key, targets, random state after)
        self._calls: Dict[int, List[Tuple[Tuple, Any, Tuple]]] = {}
        #: replayed / recomputed calls so far (for tests and benchmarks)
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._calls = {}

    @staticmethod
    @torch.compiler.disable  # compile=True: dynamo would recompile the
    # class check once per module type, up to its recompile limit
    def _heads(model: nn.Module) -> List[nn.Module]:
        return [m for m in model.modules() if has_pure_targets(m)]

    @contextmanager
    def _patched(self, model: nn.Module, make):
        heads = self._heads(model)
        for head in heads:
            head.get_targets = make(head, type(head).get_targets.__get__(head))
        try:
            yield
        finally:
            for head in heads:
                del head.get_targets  # the class's method again

    @contextmanager
    def record(self, model: nn.Module):
        """Records every ``get_targets`` call of ``model``'s pure-target
        heads inside the context (previous records are dropped)."""
        self._calls = {}

        def make(head, original):
            sig = inspect.signature(original)
            calls = self._calls.setdefault(id(head), [])

            def get_targets(*args, **kwargs):
                with record_function('mokd_det.get_targets'):
                    out = original(*args, **kwargs)
                bound = sig.bind(*args, **kwargs).arguments
                calls.append((_gt_key(bound), out, _rng_state()))
                return out

            return get_targets

        with self._patched(model, make):
            yield

    @contextmanager
    def replay(self, model: nn.Module):
        """Inside the context, each head's ``get_targets`` calls return the
        recorded results in order when their ground truth matches, and are
        computed otherwise."""

        def make(head, original):
            sig = inspect.signature(original)
            calls = iter(self._calls.get(id(head), []))

            def get_targets(*args, **kwargs):
                recorded: Optional[Tuple] = next(calls, None)
                if recorded is not None and _same_key(
                        recorded[0],
                        _gt_key(sig.bind(*args, **kwargs).arguments)):
                    self.hits += 1
                    _set_rng_state(recorded[2])
                    return recorded[1]
                self.misses += 1
                return original(*args, **kwargs)

            return get_targets

        with self._patched(model, make):
            yield


class RecomputeCache:
    """The batch, teacher outputs and targets of a distiller's last
    ``loss()`` call, for :meth:`BaseDistiller.recompute_loss`."""

    def __init__(self):
        self.inputs: Optional[Tensor] = None
        self.data_samples = None
        #: (teacher features, records of its input-only taps)
        self.teacher: Optional[Tuple[Any, Any]] = None
        self.targets = TargetCache()

    @property
    def ready(self) -> bool:
        return self.inputs is not None

    def clear(self) -> None:
        self.inputs = self.data_samples = self.teacher = None
        self.targets.clear()
