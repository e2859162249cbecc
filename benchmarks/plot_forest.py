"""Forest plot of a proxy study: each run's paired difference to the
study's reference run, with its 95% interval, one panel per result JSON.

Reads the JSON that ``benchmarks/proxy_accuracy.py`` writes (``runs`` with
``diff_mean``, ``diff_low``, ``diff_high`` per run, ``reference``,
``seeds``, ``scale``); runs without a difference (the reference, the
teacher) are left out. A panel's title says what the reference is and on
which seeds, so a reader sees at once whether a gain is over KD as shipped
or over a tuned KD. Also writes the plotted points as JSON beside the
image.

Example:
    python benchmarks/plot_forest.py \\
        --results benchmarks/results/proxy_cpu_mkd_weight_floor005.json \\
                  benchmarks/results/proxy_cpu_tuned_sgd.json \\
        --titles 'SGD, vs KD as shipped' 'SGD, vs tuned KD' \\
        --out docs/images/forest_proxy_cpu.png
"""
import argparse
import json
import os.path as osp
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def rows(result: dict, runs=None):
    """``[(run, mean, low, high)]`` in the study's units (x scale), in the
    order of ``runs`` (default: the JSON's)."""
    scale = result.get('scale', 100.0)
    entries = result['runs']
    out = []
    for name in runs or entries:
        entry = entries.get(name)
        if not isinstance(entry, dict) or entry.get('diff_mean') is None:
            continue
        low, high = entry.get('diff_low'), entry.get('diff_high')
        out.append((name, scale * entry['diff_mean'],
                    None if low is None else scale * low,
                    None if high is None else scale * high))
    return out


def panel_title(result: dict, title=None) -> str:
    seeds = result.get('seeds', [])
    ref = result.get('reference', 'kd')
    head = f'{title}\n' if title else ''
    return f'{head}vs {ref}, seeds {", ".join(map(str, seeds))}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--results', nargs='+', required=True,
                   help='result JSONs of benchmarks/proxy_accuracy.py')
    p.add_argument('--titles', nargs='+', default=None,
                   help='one per result JSON')
    p.add_argument('--runs', nargs='+', default=None,
                   help='only these runs, in this order (default: all)')
    p.add_argument('--rename', nargs='+', default=[], metavar='RUN=LABEL',
                   help="row labels, split at the last '=' "
                   '(mkd@learn_weight=True=MKD)')
    p.add_argument('--unit', default='bbox mAP x100')
    p.add_argument('--out', required=True, help='the PNG; its points go to '
                   'the same name with .json')
    args = p.parse_args(argv)
    if args.titles and len(args.titles) != len(args.results):
        p.error(f'--titles: {len(args.titles)} titles for '
                f'{len(args.results)} result files; give one per file')
    labels = {}
    for item in args.rename:
        run, eq, label = item.rpartition('=')  # run names hold '='
        if not eq:
            p.error(f'--rename {item!r}: expected RUN=LABEL')
        labels[run] = label
    panels = []
    for i, path in enumerate(args.results):
        with open(path) as f:
            result = json.load(f)
        title = args.titles[i] if args.titles else None
        points = [(labels.get(n, n), *rest)
                  for n, *rest in rows(result, args.runs)]
        if not points:
            sys.exit(f'{path}: no run with a paired difference'
                     + (f' among {args.runs}' if args.runs else ''))
        panels.append((panel_title(result, title), points, path))
    height = max(len(pts) for _, pts, _ in panels) * 0.45 + 1.4
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(5.2 * len(panels), height))
    for ax, (title, points, _) in zip(axes[0], panels):
        for y, (name, mean, low, high) in enumerate(reversed(points)):
            if low is not None and high is not None:
                ax.plot([low, high], [y, y], color='tab:blue', lw=2)
                colour = ('tab:green' if low > 0 else
                          'tab:red' if high < 0 else 'tab:gray')
            else:
                colour = 'tab:gray'
            ax.plot(mean, y, 'o', color=colour, ms=7)
        ax.axvline(0, color='black', lw=0.8)
        ax.set_yticks(range(len(points)))
        ax.set_yticklabels([n for n, *_ in reversed(points)], fontsize=8)
        ax.set_ylim(-0.6, len(points) - 0.4)
        ax.set_xlabel(f'difference, {args.unit} (95% CI)')
        ax.set_title(title, fontsize=9)
        ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    data = [dict(title=t, source=osp.relpath(src), points=[
        dict(run=n, diff=m, low=lo, high=hi) for n, m, lo, hi in pts])
        for t, pts, src in panels]
    with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
        json.dump(data, f, indent=1)
    print(f'[forest] wrote {args.out}')


if __name__ == '__main__':
    main()
