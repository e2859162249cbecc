"""Proxy accuracy study: KD methods on generated data, paired by seed.

Trains the preset's teacher once, then, for each seed, the student from
scratch and with each distillation run, every run with ``tools/train.py`` in
its own process as a user would. Within a seed all runs start from the same
student weights and see the same images in the same order with the same
augmentation (``benchmarks/proxy/study.py``), so the table reports each
run's mean and seed std and its **paired difference to vanilla KD with a
95% Student-t interval** over the seeds; "beats KD" means the interval's
lower end is above 0. The figures also go to a JSON file
(``benchmarks/results/proxy_<preset>.json`` by default).

Runs are ``<loss>+<optimiser>`` pairs or the study's names
(``benchmarks/proxy/runs.py``): ``--runs kd pkd+dot`` picks some, ``--grid
kd,pkd:sgd,dot,mokd-amortized`` adds every loss with every optimiser.
Finished runs are kept (``runs/<run>_seed<S>/metrics.json``) and an
interrupted one resumes from its last epoch, so a killed study continues
where it stopped; ``--shard i/n`` runs every n-th run (several machines or
terminals on one work dir).

Presets (``benchmarks/proxy/presets.py``): ``cpu`` (RetinaNet R18 ->
half-width R18 on 128 px shapes), ``cls-cpu`` (ResNet-18 widths 32 -> 8
on 32 px shape images), their ``-smoke`` versions (seconds, in CI) and
``gpu`` (R50 -> R18, not yet calibrated).

Examples:
    python benchmarks/proxy_accuracy.py --preset cpu
    python benchmarks/proxy_accuracy.py --preset cpu --quick --runs mkd
    python benchmarks/proxy_accuracy.py --preset cpu \\
        --grid kd,pkd:sgd,dot,mokd-amortized
    python benchmarks/proxy_accuracy.py --preset cpu --runs kd@adamw \\
        mokd-exact@adamw --reference kd@adamw
    python benchmarks/proxy_accuracy.py --preset cpu --runs kd kd-tuned \\
        mokd-exact --reference kd-tuned

``<run>-tuned`` is the run's point chosen on the tuning seeds by
``benchmarks/proxy_tune.py`` (``benchmarks/proxy/tuning.py``); a study on
one of those seeds is refused.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

from common import ROOT, markdown_table
from proxy import stats, tuning
from proxy.families import FAMILIES
from proxy.presets import PRESETS, QUICK, with_overrides
from proxy.runs import STUDY, grid, parse_run
from proxy.study import Study, add_parallel_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    p.add_argument('--runs', nargs='+', default=None,
                   help='runs to train (default: the whole study: '
                   f'{" ".join(STUDY)}); with --quick: the runs compared '
                   'with kd')
    p.add_argument('--grid', default=None, metavar='LOSSES:OPTIMISERS',
                   help='add every loss with every optimiser, e.g. '
                   'kd,pkd:sgd,dot,mokd-amortized')
    p.add_argument('--quick', action='store_true',
                   help='kd and the --runs (default mokd-amortized), '
                   f'seeds {QUICK["seeds"]}: for iterating on one method')
    p.add_argument('--seeds', type=int, nargs='+', default=None)
    p.add_argument('--rerun', default=None, metavar='RUN',
                   help='train RUN of the first seed twice and report the '
                   'run-to-run difference (determinism)')
    p.add_argument('--reference', default='kd', metavar='RUN',
                   help='the run every other is paired with (default: kd; '
                   'e.g. kd@adamw for a study of AdamW students); it must '
                   'be one of the runs')
    p.add_argument('--tuned', default=None, metavar='JSON',
                   help='the tuned points that <run>-tuned names (default: '
                   'benchmarks/results/tuned_<preset>.json)')
    p.add_argument('--half-width', type=float, default=0.5,
                   help='report the seeds each paired interval needs to be '
                   'this narrow on each side, in the reported unit '
                   '(default 0.5: DTO-KD\'s reported optimiser gain)')
    add_parallel_args(p)
    p.add_argument('--shard', default=None, metavar='I/N',
                   help='run only every N-th run, starting at I')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/proxy/<preset>')
    p.add_argument('--results', default=None,
                   help='JSON of the figures (default: '
                   'benchmarks/results/proxy_<preset>.json)')
    p.add_argument('--plan', action='store_true',
                   help='write every config and print the runs; train '
                   'nothing')
    for key in ('teacher_epochs', 'student_epochs'):
        p.add_argument('--' + key.replace('_', '-'), type=int, default=None,
                       help='override the preset')
    p.add_argument('--min-gap', type=float, default=None,
                   help="override the preset's required lead of the teacher "
                   'over the scratch student (negative: no check)')
    args = p.parse_args(argv)
    if args.shard is not None:
        try:
            i, n = (int(v) for v in args.shard.split('/'))
            assert 0 <= i < n
        except (ValueError, AssertionError):
            p.error(f'--shard {args.shard}: expected I/N with 0 <= I < N')
        args.shard = (i, n)
    args.tuned = args.tuned or tuning.tuned_file(args.preset)
    return args


def plan_runs(args, preset) -> tuple:
    """``(names, seeds)`` of the students to train (a ``<run>-tuned`` name
    stays as it is: :func:`proxy.tuning.resolve` gives its run)."""
    seeds = args.seeds or (QUICK['seeds'] if args.quick else preset['seeds'])
    if args.quick:
        names = ['kd'] + [r for r in (args.runs or ['mokd-amortized'])
                          if r != 'kd']
    else:
        names = list(args.runs or (STUDY if not args.grid else ['kd']))
    if args.grid:
        names += [n for n in grid(args.grid) if n not in names]
    if args.reference != 'kd' and args.reference not in names:
        raise SystemExit(f'[proxy] --reference {args.reference} is not one '
                         f'of the runs ({" ".join(names)}): add it to --runs')
    for name in names:
        parse_run(tuning.resolve(name, args.tuned, seeds))  # a typo fails
    return names, seeds


def check_gap(study, preset, seed) -> None:
    if preset['min_gap'] is None or study.score('scratch', seed) is None:
        return
    scale = study.family.scale
    gap = scale * (study.score('teacher', 0) - study.score('scratch', seed))
    print(f'[proxy] the teacher leads the scratch student by {gap:.1f} '
          f'({study.family.unit})', flush=True)
    if gap < preset['min_gap']:
        raise SystemExit(
            f'[proxy] the teacher leads by {gap:.1f} < {preset["min_gap"]}: '
            'too small a gap for a distillation study; make the data harder '
            'or the teacher stronger (benchmarks/proxy/presets.py)')


def report(study, preset_name, names, seeds, args, minutes) -> dict:
    scale = study.family.scale
    scores = {}
    for name in names:
        run = tuning.resolve(name, args.tuned)
        per_seed = {s: study.score(run, s) for s in seeds}
        scores[name] = {s: v for s, v in per_seed.items() if v is not None}
    scores = {k: v for k, v in scores.items() if v}
    summary = stats.paired_summary(scores, reference=args.reference)
    teacher = study.score('teacher', 0)
    label = 'KD' if args.reference == 'kd' else args.reference
    rows = [['teacher', f'{scale * teacher:.2f}', '-', '-', '-', '-']] + \
        stats.format_rows(summary, scale=scale, reference=label)
    table = markdown_table(stats.header(label), rows)
    print(f'\n[proxy] preset {preset_name}, seeds {seeds}, '
          f'{study.family.unit}; {minutes:.1f} min\n')
    print(table)
    out = dict(preset=preset_name, unit=study.family.unit, scale=scale,
               seeds=seeds, teacher=teacher, runs=summary, minutes=minutes,
               reference=args.reference,
               command=' '.join(['python'] + sys.argv), table=table,
               tuned={n: tuning.resolve(n, args.tuned) for n in names
                      if n.endswith(tuning.SUFFIX)})
    resolution = []
    for name, row in summary.items():
        if row.get('diff_low') is not None:  # seeds for +-args.half_width
            row['seeds_for_half_width'] = stats.seeds_needed(
                scale * row['diff_std'], args.half_width)
            resolution.append(
                f'{name} +-{scale * (row["diff_high"] - row["diff_mean"]):.2f}'
                f' (+-{args.half_width}: {row["seeds_for_half_width"]} seeds)')
    if resolution:
        out['half_width'] = args.half_width
        print('\n[proxy] interval half-widths reached, and the seeds a '
              f'half-width of {args.half_width} needs at the same spread: ' +
              '; '.join(resolution))
    if 'scratch' in summary and teacher is not None:
        out['teacher_lead'] = teacher - summary['scratch']['mean']
    if args.rerun:
        first, again = (study.score(args.rerun, seeds[0]),
                        study.score(args.rerun + '~1', seeds[0]))
        if first is not None and again is not None:
            out['rerun'] = dict(run=args.rerun, seed=seeds[0],
                                first=first, again=again,
                                abs_diff=abs(first - again))
            print(f'\n[proxy] run-to-run: {args.rerun} seed {seeds[0]} '
                  f'twice: {scale * first:.2f} / {scale * again:.2f} '
                  f'(|diff| {scale * abs(first - again):.2f})')
    return out


def main(argv=None):
    args = parse_args(argv)
    preset = with_overrides(args.preset, args, (
        'teacher_epochs', 'student_epochs', 'jobs', 'threads', 'min_gap'))
    if preset['min_gap'] is not None and preset['min_gap'] < 0:
        preset['min_gap'] = None
    names, seeds = plan_runs(args, preset)
    work_dir = osp.abspath(args.work_dir or osp.join(
        ROOT, 'work_dirs', 'proxy', args.preset))
    os.chdir(ROOT)
    study = Study(preset, FAMILIES[preset['family']], work_dir)
    if not args.plan:  # the plan needs the spec, not the images
        study.ensure_data()
    runs = [(tuning.resolve(n, args.tuned), s) for s in seeds
            for n in names]
    if args.rerun:
        runs.append((args.rerun + '~1', seeds[0]))
    if args.shard:
        i, n = args.shard
        runs = runs[i::n]
    if args.plan:
        for name, seed in [('teacher', 0)] + runs:
            print(f'[proxy] plan: {name} seed {seed}: '
                  f'{osp.relpath(study.config(name, seed), ROOT)}')
        return
    start = time.time()
    if args.shard and args.shard[0] != 0:
        while study.metrics('teacher', 0) is None:  # shard 0 trains it
            time.sleep(30)
    study.ensure_teacher()
    first = [r for r in runs if r == ('scratch', seeds[0])]
    failed = study.run_all(first, preset['jobs'], preset['threads'])
    check_gap(study, preset, seeds[0])
    failed += study.run_all(runs, preset['jobs'], preset['threads'])
    out = report(study, args.preset, names, seeds, args,
                 (time.time() - start) / 60)
    results = args.results or osp.join(ROOT, 'benchmarks', 'results',
                                       f'proxy_{args.preset}.json')
    os.makedirs(osp.dirname(osp.abspath(results)), exist_ok=True)
    # the study's own summary in its work dir; a run with --results (the
    # demo, a grid) leaves it to the study
    paths = [results] + ([] if args.results else
                         [osp.join(work_dir, 'summary.json')])
    for path in paths:
        with open(path, 'w') as f:
            json.dump(out, f, indent=1)
    print(f'\n[proxy] figures written to {results}')
    if failed:
        raise SystemExit('[proxy] failed runs (left out of the table): ' +
                         ', '.join(f'{n} seed {s}' for n, s in failed))


if __name__ == '__main__':
    main()
