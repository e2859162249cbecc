"""Runs of the proxy study as (loss, optimiser) pairs.

DOT, MoKD and MKD are optimisers (optim wrappers and their hooks); the
projected-feature + logit terms of the shipped pairs, CWD and PKD are
losses. A run is named ``<loss>+<optimiser>`` (``pkd+dot``: PKD's terms
trained with DOT), or by one of the study's names, which are such pairs
(a suffix ``~N`` names a repeat of the same run, for the run-to-run
check):

============== ========== ================
name           loss       optimiser
============== ========== ================
scratch        none       sgd
kd             kd         sgd
dot            kd         dot
mokd-exact     kd         mokd-exact
mokd-amortized kd         mokd-amortized
mkd            kd         mkd
cwd            cwd        sgd
pkd            pkd        sgd
============== ========== ================

Options: ``<run>@<option>+<option>...`` changes the run's config, for
ablations (``kd+mokd-exact@step_scale=K+min_weight=0.001``,
``mokd-exact@adamw``, ``scratch@adamw``). An option is ``key=value``
(``value`` a Python literal, else a string; ``key`` dotted: into
``optim_wrapper``, or from the config's root when it starts with ``cfg.``)
or the name of a set in :data:`VARIANTS`. ``groups=terms`` names the task
and each of the loss's terms (``('task', 'distill.fpn', 'distill.cls')``).
Two keys multiply instead of set, after every other option (so
``kd@adamw+lrx=2`` is AdamW at twice AdamW's learning rate): ``wx=X``
multiplies every distillation term's ``loss_weight`` (1 where unset) by X,
``lrx=X`` the optimizer's learning rate. They are the axes of the tuned
baselines (``benchmarks/proxy_tune.py``).

Both halves come from the shipped leaf configs of a preset's family
(``configs/quickstart/<method>_...`` for detection): the loss's
``model.distill_losses`` and the optimiser's ``optim_wrapper`` type and
arguments and ``custom_hooks``. ``sgd`` is the pair's own optimiser
(``KDOptimWrapper``: the summed loss). MKD learns the temperature of every
term that has one (the logit terms), with the ``MetaTemperature`` of its
leaf config; a loss with no temperature cannot take it.
"""
import ast
import copy
from typing import Dict, List, Tuple

from mmengine.config import Config, ConfigDict

#: the shipped leaf config whose distill_losses are each loss
LOSSES = ('kd', 'cwd', 'pkd')
#: the shipped leaf config whose optim_wrapper and hooks are each optimiser
OPTIMISERS = {'sgd': 'kd', 'dot': 'dot', 'mokd-exact': 'mokd-exact',
              'mokd-amortized': 'mokd-amortized', 'mkd': 'mkd'}
NAMED = {'scratch': (None, 'sgd'), 'kd': ('kd', 'sgd'),
         'dot': ('kd', 'dot'), 'mokd-exact': ('kd', 'mokd-exact'),
         'mokd-amortized': ('kd', 'mokd-amortized'), 'mkd': ('kd', 'mkd'),
         'cwd': ('cwd', 'sgd'), 'pkd': ('pkd', 'sgd')}
STUDY = tuple(NAMED)

#: named option sets (``<run>@adamw``)
VARIANTS = {
    # the student optimiser DTO-KD trains with (its classification recipe:
    # lr 1e-3, weight decay 0.05)
    'adamw': {'optimizer': dict(type='AdamW', lr=1e-3, weight_decay=0.05)},
    # every distillation term its own objective
    'terms': {'groups': 'terms'},
}


def split_options(name: str) -> Tuple[str, Dict[str, object]]:
    """``(run, options)`` of ``<run>@<option>+...`` (a ``~N`` repeat
    suffix dropped).

    Raises:
        ValueError: An option that is neither ``key=value`` nor a variant.
    """
    name = name.split('~')[0]
    base, sep, spec = name.partition('@')
    options: Dict[str, object] = {}
    for item in spec.split('+') if sep else []:
        key, eq, value = item.partition('=')
        if eq:
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                options[key] = value
        elif item in VARIANTS:
            options.update(copy.deepcopy(VARIANTS[item]))
        else:
            raise ValueError(
                f'run {name!r}: option {item!r} is neither key=value nor '
                f'one of {", ".join(VARIANTS)}')
    return base, options


#: options that multiply a value of the composed config (applied last)
MULTIPLIERS = ('wx', 'lrx')


def apply_options(cfg: Config, name: str) -> None:
    """Applies run ``name``'s options (see the module docstring) to its
    composed config, in place.

    Raises:
        ValueError: A multiplier that is not a positive number, or ``wx``
            on a run without distillation terms.
    """
    _, options = split_options(name)
    factors = {k: options.pop(k) for k in MULTIPLIERS if k in options}
    for key, value in options.items():
        if key == 'groups' and value == 'terms':
            value = ('task', ) + tuple(
                f'distill.{t}' for t in cfg.model.get('distill_losses', {}))
        node = cfg if key.startswith('cfg.') else cfg.optim_wrapper
        path = key[4:].split('.') if key.startswith('cfg.') else \
            key.split('.')
        for part in path[:-1]:
            node = node.setdefault(part, ConfigDict())
        node[path[-1]] = value
    for key, factor in factors.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
                or not factor > 0:
            raise ValueError(f'run {name!r}: {key}={factor!r} must be a '
                             'positive number')
        if key == 'lrx':
            cfg.optim_wrapper.optimizer.lr *= factor
            continue
        terms = cfg.model.get('distill_losses')
        if not terms:
            raise ValueError(f'run {name!r}: wx scales the distillation '
                             'terms, and this run has none')
        for term in terms.values():
            term.loss_weight = term.get('loss_weight', 1.0) * factor


def parse_run(name: str) -> Tuple[str, str]:
    """``(loss, optimiser)`` of a run name (loss None: no distillation).

    Raises:
        ValueError: An unknown name, loss or optimiser.
    """
    name, _ = split_options(name)  # kd~1: a repeat of kd (run-to-run)
    if name in NAMED:
        return NAMED[name]
    loss, sep, optimiser = name.partition('+')
    if not sep or loss not in LOSSES or optimiser not in OPTIMISERS:
        raise ValueError(
            f'run {name!r}: expected one of {", ".join(NAMED)} or '
            f'<loss>+<optimiser> with loss in {", ".join(LOSSES)} and '
            f'optimiser in {", ".join(OPTIMISERS)}')
    return loss, optimiser


def canonical(name: str) -> str:
    """The study's name of a run when it has one (``kd+dot`` -> ``dot``,
    ``kd+dot@x=1`` -> ``dot@x=1``)."""
    pair = parse_run(name)
    _, sep, spec = name.partition('@')
    for named, named_pair in NAMED.items():
        if named_pair == pair:
            return named + sep + spec
    return name


def grid(spec: str) -> List[str]:
    """Run names of a ``--grid`` spec ``LOSS,LOSS:OPT,OPT`` (every loss
    with every optimiser), e.g. ``kd,pkd:sgd,dot,mokd-amortized``."""
    try:
        losses, optimisers = spec.split(':')
    except ValueError:
        raise ValueError(f'--grid {spec!r}: expected LOSS,...:OPTIMISER,...'
                         ) from None
    names = [f'{loss}+{opt}' for loss in losses.split(',')
             for opt in optimisers.split(',')]
    for name in names:
        parse_run(name)
    return [canonical(n) for n in names]


def _temperature_terms(losses: ConfigDict) -> List[str]:
    return [k for k, v in losses.items()
            if isinstance(v, dict) and 'temperature' in v]


def compose(name: str, leaf: Dict[str, Config]) -> Config:
    """The distillation config of run ``name`` from the family's leaf
    configs (``leaf[method]``, loaded); not for ``scratch``.

    Raises:
        ValueError: MKD with a loss that has no temperature to learn.
    """
    loss, optimiser = parse_run(name)
    if loss is None:
        raise ValueError('scratch has no distillation config')
    cfg = copy.deepcopy(leaf[OPTIMISERS[optimiser]])
    losses = copy.deepcopy(leaf[loss].model.distill_losses)
    if optimiser == 'mkd':
        meta = leaf['mkd'].model.distill_losses
        learned = [meta[k].temperature for k in _temperature_terms(meta)
                   if isinstance(meta[k].temperature, dict)]
        terms = _temperature_terms(losses)
        if not terms or not learned:
            raise ValueError(
                f'run {name!r}: MKD learns the temperature of a logit term; '
                f'the {loss} loss has none (terms: {", ".join(losses)})')
        for term in terms:
            losses[term].temperature = copy.deepcopy(learned[0])
    cfg.model.distill_losses = losses
    return cfg
