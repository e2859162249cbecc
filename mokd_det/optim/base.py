"""The multi-objective OptimWrapper that DOT, MoKD and MKD build on.

A distiller attaches its loss groups (``task``, ``distill``, ...) to the
loss it hands to ``update_params`` (:mod:`mokd_det.loss_groups`).
This wrapper turns them into gradients, one set per *objective* (what a
method differentiates: each group for DOT and exact MoKD, one weighted sum
for amortized MoKD and MKD), and lets the method combine them.

How it keeps mmengine's OptimWrapper semantics:

* **One gradient sync per update** (DDP): per-objective gradients come from
  ``torch.autograd.grad``, which never fires DDP's reducer hooks, and
  :meth:`optim_context` enters ``model.no_sync()`` for every forward, so the
  reducer never waits for a backward either (two backward passes on one DDP
  forward are fragile, pytorch#47260). At each update the wrapper
  all-reduces everything it accumulated (every objective's gradients, which
  parameters received them, and the group loss values) in **one** flat
  all-reduce. A 2-process run therefore equals a 1-process run over the
  same global batch.
* **Gradient accumulation**: gradients and loss values are accumulated over
  ``accumulative_counts`` micro-batches (each scaled as mmengine scales the
  loss) and combined once, at the update.
* ``clip_grad``: applied by :meth:`step` to the combined gradient in
  ``p.grad``, as ``OptimWrapper`` does.
* **Several parameter groups** (``paramwise_cfg``): every parameter of every
  group of the optimizer takes part; methods read each group's settings.
* **AMP**: see :mod:`mokd_det.optim.amp` (one loss scale for every
  objective, one inf check over all of them).
* **State**: ``state_dict()`` holds the optimizer's state and
  :meth:`method_state_dict`, so ``--resume`` continues exactly.

Errors and skips: a model that does not group its losses fails at the first
step with a message saying so; a missing group is an error. Non-finite
values (:mod:`mokd_det.optim.guard`): an iteration whose group losses are
not finite is skipped (no gradient is accumulated, the normalisation
statistics its forward moved are put back) on every rank; an update whose
gradients are not finite is skipped; ``train/kd/skipped_steps`` counts both,
and ``max_nonfinite_steps`` of them in a row stop the run with a message.

Subclasses implement :meth:`objectives` and :meth:`apply_gradients`.
"""
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.optim import OptimWrapper
from torch import Tensor
from torch.profiler import record_function

from ..loss_groups import DISTILL, TASK, get_loss_groups
from .guard import NonFiniteGuard, all_finite, all_ranks_agree

Grads = List[Optional[Tensor]]


class MultiObjectiveOptimWrapper(NonFiniteGuard, OptimWrapper):
    """Base of the KD optim wrappers (see the module docstring).

    Args:
        optimizer: The student's optimizer.
        groups: Loss groups every iteration must provide.
            Defaults to ``('task', 'distill')``.
        log_dynamics: Log cos(g_task, g_distill), the norm ratio
            ||g_distill|| / ||g_task|| and both norms each update when the
            method has per-group gradients. Defaults to True.
        max_nonfinite_steps: Consecutive non-finite iterations (skipped)
            after which training stops with ``NonFiniteTrainingError``.
            Defaults to 20.
        **kwargs: ``accumulative_counts``, ``clip_grad`` as for
            ``OptimWrapper``.
    """

    def __init__(self,
                 optimizer,
                 groups: Sequence[str] = (TASK, DISTILL),
                 log_dynamics: bool = True,
                 max_nonfinite_steps: int = 20,
                 **kwargs):
        super().__init__(optimizer, **kwargs)
        self.init_guard(max_nonfinite_steps)
        self._compile_checked = False
        self.groups = tuple(groups)
        self.log_dynamics = log_dynamics
        self._acc_grads: Dict[str, Grads] = OrderedDict()
        self._acc_values: Dict[str, Tensor] = OrderedDict()
        #: updates applied so far (skipped ones excluded), and whether the
        #: last ``update_params`` applied one
        self.applied_steps = 0
        self.stepped = False

    # ----------------------------------------------------------- interface
    def objectives(self, groups: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """What to differentiate, by name, from the group totals."""
        raise NotImplementedError

    def apply_gradients(self, grads: Dict[str, Grads],
                        values: Dict[str, Tensor]) -> None:
        """Combines the (synchronised, unscaled, accumulated) objective
        gradients into ``p.grad`` for :meth:`step`, or updates the
        parameters itself (then it overrides :meth:`step` too).

        Args:
            grads: Objective name -> one gradient (or None) per parameter of
                :meth:`params`, in order. The method may consume it (clear
                it to free the gradients early); the wrapper discards it
                after the update.
            values: Group name -> its loss value, averaged like the
                gradients (over micro-batches and ranks).
        """
        raise NotImplementedError

    def method_state_dict(self) -> dict:
        """Method state beyond the optimizer's (weights, logits, ...)."""
        return {}

    def load_method_state_dict(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------- helpers
    def params(self) -> List[Tensor]:
        """Every trainable parameter of every optimizer group, in order."""
        return [p for g in self.optimizer.param_groups for p in g['params']
                if p.requires_grad]

    def log_scalar(self, name: str, value) -> None:
        self.message_hub.update_scalar(f'train/{name}', float(value))

    @property
    def loss_scale(self) -> float:
        """Multiplier of every objective before differentiation (AMP)."""
        return 1.0

    def unscale_and_check(self, grads: Dict[str, Grads]) -> bool:
        """Unscales AMP gradients in place; True if all are finite (fp32:
        the check alone)."""
        return all_finite([g for gs in grads.values() for g in gs])

    #: whether a gradient overflow is a sign of divergence (fp32) rather
    #: than of a loss scale still settling (fp16 AMP)
    overflow_is_divergence = True

    def autocast_context(self):
        """The mixed-precision context of the forward (none in fp32)."""
        return nullcontext()

    # ---------------------------------------------------------- the update
    def optim_context(self, model):
        # the forward may move normalisation statistics: kept, to put them
        # back if its loss is not finite
        self.snapshot_buffers(model)
        # no_sync for every forward: the wrapper syncs gradients itself
        if hasattr(model, 'no_sync'):
            return model.no_sync()
        return super().optim_context(model)

    def _checked_groups(self, loss: Tensor) -> Optional[Dict[str, Tensor]]:
        # per-term objectives ('distill.fpn') come with the group totals
        groups = get_loss_groups(loss, with_terms=any(
            '.' in g for g in self.groups))
        missing = [g for g in self.groups if g not in groups]
        if missing:
            raise KeyError(
                f'{type(self).__name__}: loss groups {missing} missing from '
                f'this iteration (got {list(groups)}). A distiller with no '
                'distill_losses has no distill group.')
        finite = all(bool(torch.isfinite(v.detach()).all())
                     for v in groups.values())
        device = next(iter(groups.values())).device
        if not all_ranks_agree(finite, device):
            bad = [g for g, v in groups.items()
                   if not torch.isfinite(v.detach()).all()]
            self.record_skip(f'loss groups {bad or "(on another rank)"}')
            return None
        return groups

    #: whether the method differentiates one forward more than once (per
    #: objective, ``retain_graph``), which ``torch.compile`` gets wrong
    differentiates_twice = True

    @torch.compiler.disable  # run eagerly under compile=True: no graph breaks
    def update_params(self,
                      loss: Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        if not self._compile_checked:
            self._compile_checked = True
            if self.differentiates_twice and from_compiled_graph(loss):
                raise RuntimeError(
                    f'{type(self).__name__} differentiates each forward once '
                    'per objective (retain_graph), and through a '
                    'torch.compile-d forward (compile=True in the config) '
                    'the second gradient comes out wrong on torch '
                    f'{torch.__version__} (tests/test_optim/'
                    'test_semantics.py: MoKD exact\'s distill gradient at '
                    'half its eager norm). Set compile=False (or remove '
                    'it); KDOptimWrapper and MKDOptimWrapper support '
                    'compile=True.')
        self.stepped = False
        groups = self._checked_groups(loss)
        if groups is not None:
            self._accumulate(groups)
        self._inner_count += 1
        if self.should_update():
            if self._acc_grads:
                with record_function('mokd_det.sync'):
                    grads, values = self._synchronize()
                if self.unscale_and_check(grads):
                    with record_function('mokd_det.apply_gradients'):
                        self.apply_gradients(grads, values)
                    with record_function('mokd_det.step'):
                        self.step(**(step_kwargs or {}))
                    self.applied_steps += 1
                    self.stepped = True
                    self.record_update()
                else:
                    self.record_skip('gradients',
                                     counts=self.overflow_is_divergence)
            self.zero_grad(**(zero_kwargs or {}))
            self._acc_grads.clear()
            self._acc_values.clear()

    def _loss_factor(self) -> float:
        one = torch.ones(())
        return float(one / self.scale_loss(one))

    def _accumulate(self, groups: Dict[str, Tensor]) -> None:
        factor = self._loss_factor()
        params = self.params()
        objectives = self.objectives(groups)
        new = self.objective_gradients(objectives, params,
                                       self.loss_scale / factor)
        for name, grads in new.items():
            acc = self._acc_grads.get(name)
            if acc is None:
                self._acc_grads[name] = list(grads)
            else:
                self._acc_grads[name] = [
                    a if g is None else (g if a is None else a.add_(g))
                    for a, g in zip(acc, grads)
                ]
        for g, value in groups.items():
            value = loss_value(value) / factor
            self._acc_values[g] = value if g not in self._acc_values \
                else self._acc_values[g] + value

    def objective_gradients(self, objectives: Dict[str, Tensor],
                            params: List[Tensor],
                            scale: float) -> Dict[str, Grads]:
        """Each objective's gradient (times ``scale``: the AMP loss scale
        over the accumulation count) on ``params``, one
        ``torch.autograd.grad`` each. A method that differentiates
        otherwise overrides it."""
        out: Dict[str, Grads] = OrderedDict()
        names = list(objectives)
        for i, name in enumerate(names):
            with record_function(f'mokd_det.grad.{name}'):
                out[name] = list(torch.autograd.grad(
                    objectives[name] * scale, params,
                    retain_graph=i < len(names) - 1, allow_unused=True))
        return out

    def _synchronize(self) -> Tuple[Dict[str, Grads], Dict[str, Tensor]]:
        """Averages the accumulated gradients and loss values over ranks in
        one all-reduce. A gradient is None only if no rank produced it."""
        grads, values = self._acc_grads, self._acc_values
        if get_world_size() == 1:
            return grads, values
        params = self.params()
        dtype = flat_dtype(params)
        pieces, presence = [], []
        for name, gs in grads.items():
            for p, g in zip(params, gs):
                pieces.append((torch.zeros_like(p) if g is None else g)
                              .reshape(-1).to(dtype))
                presence.append(0. if g is None else 1.)
        ref = params[0]
        flat = torch.cat(pieces + [
            torch.tensor(presence, dtype=dtype, device=ref.device),
            torch.stack(list(values.values())).to(ref.device, dtype)
        ])
        all_reduce(flat, op='mean')
        out_grads: Dict[str, Grads] = OrderedDict()
        offset, k = 0, 0
        n_presence = len(presence)
        presence_t = flat[-len(values) - n_presence:-len(values)]
        for name in grads:
            out = []
            for p in params:
                n = p.numel()
                g = flat[offset:offset + n].view_as(p).to(p.dtype)
                out.append(g if presence_t[k] > 0 else None)
                offset += n
                k += 1
            out_grads[name] = out
        out_values = OrderedDict(
            (g, v) for g, v in zip(values, flat[-len(values):]))
        return out_grads, out_values

    # --------------------------------------------------------- dynamics
    def task_distill_gram(self, g_task: Grads, g_distill: Grads) -> Tuple:
        """(tt, dd, td): the dot products of the task and distill gradients
        over all parameters, from one GEMM."""
        gram = gram_matrix(flatten([g_task, g_distill], self.params()))
        return gram[0, 0], gram[1, 1], gram[0, 1]

    def log_gradient_dynamics(self, tt: Tensor, dd: Tensor,
                              td: Tensor) -> None:
        """Logs cos(g_task, g_distill), ||g_distill|| / ||g_task|| and both
        norms, given the dot products (tt, dd, td) over all parameters."""
        if not self.log_dynamics:
            return
        nt, nd = tt.sqrt(), dd.sqrt()
        self.log_scalar('kd/cos', td / (nt * nd).clamp_min(1e-30))
        self.log_scalar('kd/norm_ratio', nd / nt.clamp_min(1e-30))
        self.log_scalar('kd/grad_norm_task', nt)
        self.log_scalar('kd/grad_norm_distill', nd)

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state['mokd_method'] = self.method_state_dict()
        state.update(self.guard_state())
        state['mokd_applied_steps'] = self.applied_steps
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self.load_method_state_dict(state_dict.pop('mokd_method', {}))
        self.pop_guard_state(state_dict)
        self.applied_steps = state_dict.pop('mokd_applied_steps', 0)
        super().load_state_dict(state_dict)


def from_compiled_graph(loss: Tensor, limit: int = 100000) -> bool:
    """Whether ``loss`` was computed (in part) by a ``torch.compile``-d
    function: a ``CompiledFunctionBackward`` node in its autograd graph
    (searched breadth first, at most ``limit`` nodes)."""
    seen, queue = set(), [loss.grad_fn]
    while queue and len(seen) < limit:
        fn = queue.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn.name() == 'CompiledFunctionBackward':
            return True
        queue.extend(f for f, _ in fn.next_functions)
    return False


def loss_value(loss: Tensor) -> Tensor:
    """A loss's detached value in float32, or float64 when it is float64
    (half and bfloat16 values are widened; a float64 model's values are not
    narrowed: the log normalisation divides by them)."""
    loss = loss.detach()
    return loss if loss.dtype == torch.float64 else loss.float()


def flat_dtype(params: Sequence[Tensor]) -> torch.dtype:
    """float32, or float64 if any parameter is."""
    return torch.float64 if any(p.dtype == torch.float64 for p in params) \
        else torch.float32


def flatten(grads: Sequence[Grads], params: Sequence[Tensor]) -> Tensor:
    """The (K, N) matrix whose row k is the k-th gradient list flattened
    over ``params`` (None counts as zero); one copy per list, so that dot
    products and combinations are single BLAS calls instead of a kernel per
    parameter. float32, or float64 if any parameter is."""
    n = sum(p.numel() for p in params)
    out = torch.empty(len(grads), n, dtype=flat_dtype(params), device=params[0].device)
    for row, gs in zip(out, grads):
        torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                   for p, g in zip(params, gs)], out=row)
    return out


def gram_matrix(flat: Tensor) -> Tensor:
    """The K x K matrix of <g_i, g_j> of the rows of :func:`flatten`'s
    matrix (one GEMM), as float64 on the CPU.

    A float32 GEMM overflows once |g|^2 exceeds 3.4e38 (a diverging run);
    then it is recomputed in float64, which cannot overflow for finite
    float32 rows (N * (3.4e38)^2 < 1.8e308 for N < 1e229)."""
    gram = (flat @ flat.T).double().cpu()
    if flat.dtype != torch.float64 and not torch.isfinite(gram).all():
        wide = flat.double()
        gram = (wide @ wide.T).cpu()
    return gram


def unflatten_into_grads(flat: Tensor, params: Sequence[Tensor],
                         present: Sequence[bool]) -> None:
    """Sets ``p.grad`` to ``p``'s slice of the flat vector ``flat`` (a view,
    no copy, where the dtypes agree), or None where ``present`` is False."""
    offset = 0
    for p, has in zip(params, present):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype) \
            if has else None
        offset += n
