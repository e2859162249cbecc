"""Tuned baselines of the proxy study: grids on reserved seeds, the chosen
point, and the ``<run>-tuned`` names that train it on other seeds.

Protocol (issue 20): a run's knobs (for KD: the distillation weight
``wx`` and the learning rate ``lrx``, :mod:`proxy.runs`) are searched on the
preset's **tuning seeds** (``tune_seeds``, 100 and 101), which no reported
study uses; the point with the best mean over those seeds is the run's
tuned point, and ``<run>-tuned`` names it in a study on the evaluation
seeds (0, 1, ...). A study that asks for a tuned run on one of its tuning
seeds is refused, so a tuned point is never reported on the seeds it was
chosen on.

Every grid of one run adds its points to the run's entry in
``benchmarks/results/tuned_<preset>.json`` (several grids make a
coordinate search), and the choice is over all points evaluated so far.
A choice is *on the edge* along an axis when the evaluated points lack a
value on one side of it with the other axes fixed: the grid should then be
extended (:func:`edges`).
"""
import itertools
import json
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from common import ROOT

from .runs import split_options

SUFFIX = '-tuned'


def tuned_file(preset: str) -> str:
    return osp.join(ROOT, 'benchmarks', 'results', f'tuned_{preset}.json')


def load(path: str) -> Dict[str, dict]:
    """The tuned entries (run -> entry) in ``path``; empty when none."""
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def with_options(base: str, options: str) -> str:
    """``base`` with ``options`` (``k=v+k=v``) appended."""
    if not options:
        return base
    return base + ('+' if '@' in base else '@') + options


def parse_axes(specs: Sequence[str]) -> Dict[str, List[str]]:
    """``['wx=1,3', 'lrx=1']`` -> ``{'wx': ['1', '3'], 'lrx': ['1']}``.

    Raises:
        ValueError: A spec that is not ``key=v,v,...``.
    """
    axes = {}
    for spec in specs:
        key, eq, values = spec.partition('=')
        if not eq or not key or not values:
            raise ValueError(f'--axis {spec!r}: expected KEY=V1,V2,...')
        axes[key] = values.split(',')
    return axes


def grid_names(base: str, axes: Dict[str, List[str]]) -> List[str]:
    """Every point of the product of ``axes`` as a run name."""
    keys = list(axes)
    return [with_options(base, '+'.join(f'{k}={v}' for k, v in
                                        zip(keys, values)))
            for values in itertools.product(*(axes[k] for k in keys))]


def point_options(base: str, name: str) -> Dict[str, object]:
    """The options ``name`` adds to ``base``."""
    base_options = split_options(base)[1]
    return {k: v for k, v in split_options(name)[1].items()
            if k not in base_options or base_options[k] != v}


def edges(points: Dict[str, dict], chosen: str, base: str) -> List[str]:
    """The axes along which ``chosen`` has no evaluated neighbour on one
    side (the other options equal), as ``'wx (above)'``."""
    best = point_options(base, chosen)
    out = []
    for key, value in best.items():
        if not isinstance(value, (int, float)):
            continue
        values = set()
        for name in points:
            opts = point_options(base, name)
            if key in opts and all(opts.get(k) == v for k, v in best.items()
                                   if k != key):
                values.add(opts[key])
        if not any(v < value for v in values):
            out.append(f'{key} (below)')
        if not any(v > value for v in values):
            out.append(f'{key} (above)')
    return out


def record(path: str, base: str, seeds: Sequence[int],
           scores: Dict[str, Dict[int, float]], command: str) -> dict:
    """Adds the grid's points (run name -> {seed: score}, every point on
    every tuning seed) to ``base``'s entry in ``path``, chooses the best
    mean, writes the file and returns the entry."""
    entries = load(path)
    entry = entries.get(base, dict(base=base, seeds=list(seeds), points={},
                                   commands=[]))
    if sorted(entry['seeds']) != sorted(seeds):
        raise SystemExit(
            f'[tune] {base} was tuned on seeds {entry["seeds"]}, not '
            f'{list(seeds)}: one run is tuned on one set of seeds')
    for name, per_seed in scores.items():
        entry['points'][name] = dict(
            per_seed={str(s): per_seed[s] for s in seeds},
            mean=statistics.fmean(per_seed[s] for s in seeds))
    if command not in entry['commands']:
        entry['commands'].append(command)
    chosen = max(entry['points'], key=lambda n: entry['points'][n]['mean'])
    entry['chosen'] = chosen
    entry['options'] = '+'.join(
        f'{k}={v}' for k, v in point_options(base, chosen).items())
    entry['edges'] = edges(entry['points'], chosen, base)
    entries[base] = entry
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(entries, f, indent=1)
    return entry


def resolve(name: str, path: str,
            seeds: Optional[Sequence[int]] = None) -> str:
    """The run that ``name`` trains: ``<run>-tuned`` -> ``<run>``'s chosen
    point in the tuned file ``path``; other names unchanged.

    Raises:
        SystemExit: ``<run>`` has no tuned point in ``path``, or a seed of
            ``seeds`` is one of its tuning seeds.
    """
    if not name.endswith(SUFFIX):
        return name
    base = name[:-len(SUFFIX)]
    entry = load(path).get(base)
    if entry is None:
        raise SystemExit(
            f'[proxy] {name}: {base} has no tuned point in {path}; tune it '
            f'first: python benchmarks/proxy_tune.py --base {base} '
            '--axis wx=1,3,10 --axis lrx=0.5,1,2')
    overlap = sorted(set(seeds or ()) & set(entry['seeds']))
    if overlap:
        raise SystemExit(
            f'[proxy] {name} was chosen on seeds {entry["seeds"]}; report '
            f'it on other seeds (asked for {overlap})')
    return entry['chosen']
