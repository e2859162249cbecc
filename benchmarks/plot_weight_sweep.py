"""mAP against the distillation weight, one line per method: whether a
method removes the weight tuning that vanilla KD needs.

Reads the finished runs ``<method>@wx=<w>[+<options>]`` of a proxy work dir
(``benchmarks/proxy_accuracy.py`` or ``proxy_tune.py`` trained them) on the
given seeds and plots each method's mean over the seeds with its seed
range, on a log axis of ``wx`` (the multiplier of every distillation
weight). A point is drawn only where every seed has finished; ``wx=1`` is
the run without the option (the method as shipped). Also writes the points
as JSON beside the image.

Example:
    python benchmarks/plot_weight_sweep.py --methods kd mokd-exact \\
        --weights 0.3 1 3 10 30 100 --seeds 0 1 2 \\
        --out docs/images/weight_sweep_proxy_cpu.png
"""
import argparse
import json
import os.path as osp
import statistics
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from common import ROOT  # noqa: E402


def run_name(method: str, weight: float, options: str) -> str:
    """The run of ``method`` at distillation weight x ``weight``: the
    option ``wx`` first, then ``options`` (``lrx=2``, ...)."""
    weight = int(weight) if float(weight).is_integer() else weight
    opts = [] if weight == 1 else [f'wx={weight}']
    opts += [o for o in options.split('+') if o]
    base, sep, own = method.partition('@')
    opts = ([own] if sep else []) + opts
    return base + ('@' + '+'.join(opts) if opts else '')


def points(work_dir: str, method: str, weights, seeds, options: str = ''):
    """``[(weight, mean, low, high)]`` over the weights every seed has."""
    out = []
    for w in weights:
        scores = []
        for s in seeds:
            path = osp.join(work_dir, 'runs', f'{run_name(method, w, options)}'
                            f'_seed{s}', 'metrics.json')
            if not osp.isfile(path):
                break
            with open(path) as f:
                scores.append(100 * json.load(f)['bbox_mAP'])
        if len(scores) == len(seeds):
            out.append((w, statistics.fmean(scores), min(scores),
                        max(scores)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir',
                   default=osp.join(ROOT, 'work_dirs', 'proxy', 'cpu'))
    p.add_argument('--methods', nargs='+', required=True,
                   help='runs without wx (kd, mokd-exact, kd@adamw, ...)')
    p.add_argument('--weights', type=float, nargs='+', required=True)
    p.add_argument('--seeds', type=int, nargs='+', required=True)
    p.add_argument('--options', default='',
                   help='options every run carries besides wx (lrx=2)')
    p.add_argument('--title', default=None)
    p.add_argument('--out', required=True, help='the PNG; its points go to '
                   'the same name with .json')
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = {}
    for method in args.methods:
        pts = points(args.work_dir, method, args.weights, args.seeds,
                     args.options)
        data[method] = [dict(wx=w, mean=m, low=lo, high=hi)
                        for w, m, lo, hi in pts]
        if not pts:
            print(f'[sweep] {method}: no weight with every seed finished')
            continue
        ws, means, lows, highs = zip(*pts)
        line, = ax.plot(ws, means, marker='o', label=method)
        ax.fill_between(ws, lows, highs, alpha=0.15, color=line.get_color())
    ax.set_xscale('log')
    ax.set_xlabel('distillation weight (x the shipped weights)')
    ax.set_ylabel('bbox mAP x100')
    ax.set_title(args.title or f'seeds {args.seeds}' + (
        f', {args.options}' if args.options else ''), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
        json.dump(dict(command=' '.join(['python'] + sys.argv),
                       seeds=args.seeds, options=args.options, points=data),
                  f, indent=1)
    print(f'[sweep] wrote {args.out}')


if __name__ == '__main__':
    main()
