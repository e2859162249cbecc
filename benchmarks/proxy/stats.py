"""Paired statistics of the proxy study.

Within a seed every run starts from the same student weights and sees the
same images in the same order with the same augmentation, so a method's
score minus vanilla KD's *in the same seed* removes what the seed does to
both. Over ``n`` seeds the mean paired difference gets a Student-t interval
with ``n - 1`` degrees of freedom:

    mean(d) +- t_{0.975, n-1} * std(d) / sqrt(n)

"Beats KD" means the interval's lower end is above 0, nothing weaker. With
one seed there is no interval (reported as None).
"""
import math
import statistics
from typing import Dict, List, Optional, Sequence

from scipy.stats import t as student_t

CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def t_interval(diffs: Sequence[float],
               confidence: float = CONFIDENCE) -> tuple:
    """``(low, high)`` of the Student-t interval of the mean of ``diffs``;
    ``(None, None)`` for fewer than two values."""
    n = len(diffs)
    if n < 2:
        return None, None
    mean, std = mean_std(diffs)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * std / \
        math.sqrt(n)
    return mean - half, mean + half


def seeds_needed(std: float, half_width: float,
                 confidence: float = CONFIDENCE, limit: int = 1000
                 ) -> Optional[int]:
    """The fewest seeds n >= 2 whose paired interval, at a paired-difference
    standard deviation ``std``, is at most ``half_width`` wide on each side:
    t_{n-1} * std / sqrt(n) <= half_width; None beyond ``limit``."""
    for n in range(2, limit + 1):
        t = float(student_t.ppf(0.5 + confidence / 2, n - 1))
        if t * std / math.sqrt(n) <= half_width:
            return n
    return None


def paired_summary(scores: Dict[str, Dict[int, float]],
                   reference: str = 'kd') -> Dict[str, dict]:
    """Per run: per-seed scores, mean, std, and the paired difference to
    ``reference`` over the seeds both have (mean, interval, verdict).

    Args:
        scores: run name -> {seed: score}.
        reference: The run the others are paired with. Defaults to 'kd'.

    Returns:
        run name -> dict(per_seed, mean, std, and when ``reference`` is
        there and shares at least one seed: diff_mean, diff_low, diff_high,
        diff_seeds, beats (True / False / None without an interval)).
    """
    out = {}
    ref = scores.get(reference)
    for name, per_seed in scores.items():
        values = [per_seed[s] for s in sorted(per_seed)]
        mean, std = mean_std(values)
        row = dict(per_seed={str(s): per_seed[s] for s in sorted(per_seed)},
                   mean=mean, std=std)
        shared = sorted(set(per_seed) & set(ref or {}))
        if ref is not None and name != reference and shared:
            diffs = [per_seed[s] - ref[s] for s in shared]
            low, high = t_interval(diffs)
            row.update(diff_mean=statistics.fmean(diffs), diff_low=low,
                       diff_high=high, diff_seeds=shared,
                       diff_std=mean_std(diffs)[1],
                       beats=None if low is None else bool(low > 0))
        out[name] = row
    return out


def verdict(row: dict, reference: str = 'KD') -> str:
    """``beats KD`` / ``below KD`` / ``not separated`` / ``n/a`` for a
    summary row (``reference`` names what the row is paired with)."""
    if row.get('diff_low') is None:
        return 'n/a'
    if row['diff_low'] > 0:
        return f'beats {reference}'
    if row['diff_high'] < 0:
        return f'below {reference}'
    return 'not separated'


def format_rows(summary: Dict[str, dict], scale: float = 100.0,
                order: Optional[List[str]] = None,
                reference: str = 'KD') -> List[list]:
    """Markdown rows: run, mean, std, per seed, paired diff [interval],
    verdict; scores multiplied by ``scale`` (mAP x100); ``reference``
    names the run paired with in the verdicts."""
    rows = []
    for name in order or list(summary):
        row = summary[name]
        seeds = ' / '.join(f'{scale * v:.1f}'
                           for v in row['per_seed'].values())
        if 'diff_mean' in row:
            diff = f'{scale * row["diff_mean"]:+.2f}'
            if row['diff_low'] is not None:
                diff += (f' [{scale * row["diff_low"]:+.2f}, '
                         f'{scale * row["diff_high"]:+.2f}]')
        else:
            diff = '-'
        rows.append([name, f'{scale * row["mean"]:.2f}',
                     f'{scale * row["std"]:.2f}', seeds, diff,
                     verdict(row, reference) if 'diff_mean' in row
                     else '-'])
    return rows


def header(reference: str = 'KD') -> List[str]:
    """The columns of :func:`format_rows`."""
    return ['run', 'mean', 'seed std', 'per seed',
            f'paired diff to {reference} [95% CI]', 'verdict']
