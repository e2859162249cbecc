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

Both halves come from the shipped leaf configs of a preset's family
(``configs/quickstart/<method>_...`` for detection): the loss's
``model.distill_losses`` and the optimiser's ``optim_wrapper`` type and
arguments and ``custom_hooks``. ``sgd`` is the pair's own optimiser
(``KDOptimWrapper``: the summed loss). MKD learns the temperature of every
term that has one (the logit terms), with the ``MetaTemperature`` of its
leaf config; a loss with no temperature cannot take it.
"""
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


def parse_run(name: str) -> Tuple[str, str]:
    """``(loss, optimiser)`` of a run name (loss None: no distillation).

    Raises:
        ValueError: An unknown name, loss or optimiser.
    """
    name = name.split('~')[0]  # kd~1: a repeat of kd (determinism check)
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
    """The study's name of a run when it has one (``kd+dot`` -> ``dot``)."""
    pair = parse_run(name)
    for named, named_pair in NAMED.items():
        if named_pair == pair:
            return named
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
