"""Plot the KD dynamics a run logged: cos(g_task, g_distill), the norm
ratio, MoKD's weights and its step length relative to vanilla KD's, MKD's
temperatures, the AMP loss scale, and the task/distill losses, from
mmengine's JSON scalar log.

Example:
    python tools/plot_kd_dynamics.py work_dirs/mokd_run [--out dynamics.png]
"""
import argparse
import json
import os.path as osp
from collections import defaultdict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from mokd_det.utils import find_scalar_log  # noqa: E402

# (title, key prefixes, log scale)
PANELS = [
    ('gradient conflict: cos(g_task, g_distill)', ('kd/cos', ), False),
    ('gradient dominance: |g_distill| / |g_task|', ('kd/norm_ratio', ),
     True),
    ('MoKD weights', ('kd/pi_', ), False),
    ('MoKD weights on the raw gradients (pi_k / L_k, step-scaled)',
     ('kd/raw_weight_', ), False),
    ("step length / vanilla KD's (same lr)", ('kd/step_ratio', ), True),
    ("MoKD amortized: stretch to vanilla KD's step length",
     ('kd/stretch', ), False),
    ('MKD temperatures', ('kd/tau_', ), False),
    ('MKD: learnt distillation weight lambda', ('kd/distill_weight', ),
     False),
    ('losses', ('loss_task', 'loss_distill'), True),
    ('AMP loss scale', ('kd/loss_scale', ), True),
]


def read_series(log: str):
    series = defaultdict(lambda: ([], []))
    with open(log) as f:
        for line in f:
            entry = json.loads(line)
            step = entry.get('iter', entry.get('step'))
            for key, value in entry.items():
                if isinstance(value, (int, float)):
                    series[key][0].append(step)
                    series[key][1].append(value)
    return series


def plot(series, out: str) -> int:
    panels = []
    for title, prefixes, log_scale in PANELS:
        keys = sorted(k for k in series
                      if any(k == p or (p.endswith('_') and k.startswith(p))
                             for p in prefixes))
        if keys:
            panels.append((title, keys, log_scale))
    if not panels:
        raise ValueError('the log holds no KD dynamics (kd/* keys): was the '
                         'run trained with a mokd_det optim wrapper?')
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)),
                             sharex=True, squeeze=False)
    for ax, (title, keys, log_scale) in zip(axes[:, 0], panels):
        for key in keys:
            ax.plot(*series[key], label=key, lw=1)
        values = [v for key in keys for v in series[key][1]]
        # a log axis only for series spanning more than a factor 2 (a
        # constant step ratio of 1 would show as float noise)
        if log_scale and min(values) > 0 and max(values) > 2 * min(values):
            ax.set_yscale('log')
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc='best')
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel('iteration')
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return len(panels)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('path', help='a work dir or a scalars.json')
    p.add_argument('--out', default=None,
                   help='PNG path (default: <work dir>/kd_dynamics.png)')
    args = p.parse_args()
    log = find_scalar_log(args.path)
    out = args.out or osp.join(
        args.path if osp.isdir(args.path) else osp.dirname(log),
        'kd_dynamics.png')
    n = plot(read_series(log), out)
    print(f'wrote {out} ({n} panels from {log})')


if __name__ == '__main__':
    main()
