"""Tunes one run of the proxy study on the preset's tuning seeds.

Trains every point of the product of the ``--axis`` values on the tuning
seeds (the preset's ``tune_seeds``: 100 and 101, which no reported study
uses), adds them to the run's entry in
``benchmarks/results/tuned_<preset>.json`` and chooses the best mean over
all the points evaluated so far (``benchmarks/proxy/tuning.py``). A study
then reports the chosen point on the evaluation seeds as
``<run>-tuned``. Runs are kept in the study's work dir, so points repeated
across grids train once.

Examples:
    python benchmarks/proxy_tune.py --preset cpu --base kd \\
        --axis wx=10,30,100 --axis lrx=1
    python benchmarks/proxy_tune.py --preset cpu --base kd@adamw \\
        --axis wx=1,3,10 --axis lrx=0.5,1,2
    python benchmarks/proxy_accuracy.py --preset cpu \\
        --runs kd kd-tuned mokd-exact --reference kd-tuned
"""
import argparse
import os
import os.path as osp
import sys
import time

from common import ROOT, markdown_table
from proxy import tuning
from proxy.families import FAMILIES
from proxy.presets import PRESETS, with_overrides
from proxy.runs import parse_run
from proxy.study import Study, add_parallel_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    p.add_argument('--base', required=True,
                   help='the run to tune (kd, kd@adamw, mokd-exact, ...)')
    p.add_argument('--axis', action='append', required=True,
                   metavar='KEY=V1,V2', help='one knob and its values '
                   '(repeatable; the grid is their product), e.g. '
                   'wx=1,3,10 lrx=0.5,1,2 min_weight=0.02,0.05')
    p.add_argument('--seeds', type=int, nargs='+', default=None,
                   help="default: the preset's tune_seeds")
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/proxy/<preset>')
    p.add_argument('--tuned', default=None, metavar='JSON',
                   help='the tuned points (default: '
                   'benchmarks/results/tuned_<preset>.json)')
    add_parallel_args(p)
    p.add_argument('--plan', action='store_true',
                   help='print the runs; train nothing')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    preset = with_overrides(args.preset, args, ('jobs', 'threads'))
    seeds = args.seeds or preset['tune_seeds']
    overlap = sorted(set(seeds) & set(preset['seeds']))
    if overlap:
        raise SystemExit(f'[tune] seeds {overlap} are evaluation seeds of '
                         f'preset {args.preset}: tune on others')
    names = tuning.grid_names(args.base, tuning.parse_axes(args.axis))
    for name in names:
        parse_run(name)  # fails early on a typo
    runs = [(n, s) for s in seeds for n in names]
    if args.plan:
        for name, seed in runs:
            print(f'[tune] plan: {name} seed {seed}')
        return
    work_dir = osp.abspath(args.work_dir or osp.join(
        ROOT, 'work_dirs', 'proxy', args.preset))
    os.chdir(ROOT)
    study = Study(preset, FAMILIES[preset['family']], work_dir)
    study.ensure_data()
    start = time.time()
    study.ensure_teacher()
    failed = study.run_all(runs, preset['jobs'], preset['threads'])
    if failed:
        raise SystemExit('[tune] failed runs (nothing recorded): ' +
                         ', '.join(f'{n} seed {s}' for n, s in failed))
    scores = {n: {s: study.score(n, s) for s in seeds} for n in names}
    entry = tuning.record(args.tuned or tuning.tuned_file(args.preset),
                          args.base, seeds, scores,
                          ' '.join(['python'] + sys.argv))
    scale = study.family.scale
    rows = sorted(entry['points'].items(), key=lambda kv: -kv[1]['mean'])
    print(f'\n[tune] {args.base} on preset {args.preset}, tuning seeds '
          f'{seeds}, {study.family.unit}; '
          f'{(time.time() - start) / 60:.1f} min\n')
    print(markdown_table(
        ['point', 'mean', 'per seed'],
        [[n, f'{scale * p["mean"]:.2f}',
          ' / '.join(f'{scale * v:.1f}' for v in p['per_seed'].values())]
         for n, p in rows]))
    print(f'\n[tune] chosen: {entry["chosen"]}' + (
        f'; ON THE EDGE along {", ".join(entry["edges"])}: extend the grid'
        if entry['edges'] else ' (inside the grid)'))


if __name__ == '__main__':
    main()
