"""The distillation demo: the calibrated CPU proxy set-up, one seed.

Runs ``benchmarks/proxy_accuracy.py`` (preset ``cpu``, seed 0): generates
the COCO-format shapes set (1024 training / 256 validation images of 128
px), trains the RetinaNet R18 teacher (20 epochs), then the quarter-width
R18 student from scratch, with vanilla KD, DOT and MoKD (exact), all from
the same initial weights on the same image order (8 epochs each, warm-up
and cosine decay), each with ``tools/train.py`` in its own process as a
user would. Prints the COCO bbox mAP table (pycocotools, via mmdet's
``CocoMetric``) and writes the KD-dynamics plot of the MoKD run.

The runs live in the proxy study's work directory (``work_dirs/proxy/cpu``
by default): finished runs are reused, an interrupted one resumes, and a
later ``python benchmarks/proxy_accuracy.py --preset cpu`` reuses these.
The runs are deterministic at a fixed thread count: a rerun on this machine
prints the same table (``benchmarks/RESULTS.md``).

Example:
    python tools/demo.py [--runs scratch kd dot mokd-exact] [--work-dir W]
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
           'bbox_mAP_m', 'bbox_mAP_l')
RUNS = ['scratch', 'kd', 'dot', 'mokd-exact']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', nargs='+', default=RUNS,
                   help='proxy runs to train (benchmarks/proxy/runs.py); '
                   f'default: {" ".join(RUNS)}')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--preset', default='cpu',
                   help='proxy preset (cpu-smoke: the pipeline in seconds)')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/proxy/<preset>, the study\'s')
    p.add_argument('--plot', default='mokd-exact',
                   help='the run whose KD dynamics are plotted')
    return p.parse_args(argv)


def coco_row(run_dir: str) -> dict:
    """The last validation's COCO metrics of a run (nan where absent)."""
    from mokd_det.utils import last_coco_metrics
    metrics = last_coco_metrics(run_dir)
    return {m: metrics.get(m, float('nan')) for m in METRICS}


def minutes(run_dir: str) -> float:
    with open(osp.join(run_dir, 'metrics.json')) as f:
        return json.load(f)['minutes']


def table(rows) -> str:
    header = ['run'] + list(METRICS) + ['train min']
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for name, metrics, mins in rows:
        # COCO's -1: no ground truth of that size in the set
        cells = [name] + [f'{metrics[m]:.3f}' if metrics[m] >= 0 else 'n/a'
                          for m in METRICS] + [f'{mins:.1f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    work_dir = osp.abspath(args.work_dir or osp.join(
        ROOT, 'work_dirs', 'proxy', args.preset))
    cmd = [sys.executable, osp.join(ROOT, 'benchmarks', 'proxy_accuracy.py'),
           '--preset', args.preset, '--seeds', str(args.seed), '--runs',
           *args.runs, '--work-dir', work_dir,
           '--results', osp.join(work_dir, 'demo.json')]
    print('[demo] ' + ' '.join(osp.relpath(c, ROOT) if osp.isabs(c) else c
                               for c in cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    sys.path.insert(0, ROOT)
    names = ['teacher'] + list(args.runs)
    rows = []
    for name in names:
        seed = 0 if name == 'teacher' else args.seed
        run_dir = osp.join(work_dir, 'runs', f'{name}_seed{seed}')
        rows.append((name, coco_row(run_dir), minutes(run_dir)))
    print('\n' + table(rows))
    print(f'\n[demo] COCO bbox mAP on {work_dir}/data/annotations/'
          f'instances_val.json, seed {args.seed}; train min: each run\'s own '
          'wall time (two students at a time on one thread each)')
    if args.plot in args.runs:
        plot = osp.join(work_dir, 'kd_dynamics.png')
        subprocess.run([sys.executable, osp.join(ROOT, 'tools',
                                                 'plot_kd_dynamics.py'),
                        osp.join(work_dir, 'runs',
                                 f'{args.plot}_seed{args.seed}'),
                        '--out', plot], check=True)
        print(f'[demo] KD dynamics of the {args.plot} run: '
              f'{osp.relpath(plot, ROOT)}')
    print(f'[demo] total {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
