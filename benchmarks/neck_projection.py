"""Cost of one orthogonally parametrised projection of the
SubspaceProjectionNeck (the weight's forward and backward, what every
training step pays per level and side) for each of torch's orthogonal maps,
at the widths of the shipped pairs; all maps timed in one process.

Example:
    python benchmarks/neck_projection.py [--device cuda]
"""
import argparse
import time

import torch

from common import markdown_table
from mokd_det.necks import OrthogonalProjection

MAPS = ('cayley', 'householder', 'matrix_exp')
# (C_in, D): quickstart student/teacher (64/128 -> 256), COCO FPN (256 -> 512)
WIDTHS = ((64, 256), (128, 256), (256, 512))


def time_map(c_in, dim, orthogonal_map, device, reps) -> float:
    proj = OrthogonalProjection(c_in, dim, orthogonal_map).to(device)
    for i in range(reps + 1):
        if i == 1:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        proj.weight.sum().backward()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--reps', type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    rows = []
    for c_in, dim in WIDTHS:
        ms = {m: 1e3 * time_map(c_in, dim, m, device, args.reps)
              for m in MAPS}
        rows.append([f'{c_in} -> {dim}'] + [f'{ms[m]:.1f}' for m in MAPS] +
                    [f'{ms["householder"] / ms["cayley"]:.1f}'])
    print(f'ms per weight forward+backward, {args.reps} reps, '
          f'{args.device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
    print(markdown_table(['projection'] + [f'{m}' for m in MAPS] +
                         ['householder / cayley'], rows))


if __name__ == '__main__':
    main()
