"""Cost of QueryKDLoss's query matching on DINO's shapes: the batched path
against matching each image alone.

DINO-4scale trains with 900 matching queries per image, 80 classes and 6
decoder layers (``mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py``). The
timed work is what one training step's ``QueryKDLoss`` does for its batch:

* ``per-image``: for each image, its costs, a copy to the host and scipy's
  Hungarian solver (:func:`mokd_det.losses.match_queries` per image, the
  path before the batched one);
* ``batched``: :func:`mokd_det.losses.match_query_batch`: the costs of the
  whole batch in one computation on a GPU, image by image on the CPU
  (where the batch's intermediates outgrow the caches: 0.77x of per-image
  at batch 8 before that change), one copy, the solver per image;
* ``solver only``: scipy's solver alone on the same cost matrices, the part
  neither path can batch;
* ``loss``: the whole ``QueryKDLoss`` forward (matching and KD of every
  layer's matched logits).

Predictions are random (a student and a teacher disagreeing, as early in
training); medians over ``--repeats`` after one warm-up.

Example:
    python benchmarks/query_matching.py --batch 2 8 \\
        --out benchmarks/results/query_matching_cpu.json
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
from scipy.optimize import linear_sum_assignment

from mokd_det.losses import QueryKDLoss, match_queries, match_query_batch
from mokd_det.losses.query_kd import matching_costs


def predictions(batch, queries, classes, layers, device, seed):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(layers, batch, queries, classes, generator=g)
    xy = torch.rand(layers, batch, queries, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(layers, batch, queries, 2, generator=g) * 0.2 + 0.02
    return cls.to(device), torch.cat([xy, wh], -1).to(device)


def timed(fn, repeats, device):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, nargs='+', default=[2, 8])
    p.add_argument('--queries', type=int, default=900)
    p.add_argument('--classes', type=int, default=80)
    p.add_argument('--layers', type=int, default=6)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', help='also write the results as JSON here')
    args = p.parse_args()
    device = torch.device(args.device)
    rows, results = [], {}
    for batch in args.batch:
        s_cls, s_box = predictions(batch, args.queries, args.classes,
                                   args.layers, device, 0)
        t_cls, t_box = predictions(batch, args.queries, args.classes,
                                   args.layers, device, 1)
        last = (s_cls[-1], s_box[-1], t_cls[-1], t_box[-1])
        costs = matching_costs(*last, 'sigmoid').cpu().numpy()
        loss = QueryKDLoss(temperature=2.0, activation='sigmoid',
                           layers='all')
        ms = {
            'per-image': timed(lambda: [match_queries(
                *(x[b] for x in last), 'sigmoid') for b in range(batch)],
                args.repeats, device),
            'batched': timed(lambda: match_query_batch(*last, 'sigmoid'),
                             args.repeats, device),
            'solver only': timed(lambda: [linear_sum_assignment(c)
                                          for c in costs], args.repeats,
                                 device),
            'loss': timed(lambda: loss((s_cls, s_box), (t_cls, t_box)),
                          args.repeats, device),
        }
        results[str(batch)] = ms
        rows.append(f'| {batch} | ' + ' | '.join(
            f'{ms[k]:.1f}' for k in ms) +
            f" | {ms['per-image'] / ms['batched']:.2f} |")
    machine = torch.cuda.get_device_name(device) if device.type == 'cuda' \
        else f'{platform.machine()}, {torch.get_num_threads()} threads'
    print(f'QueryKDLoss matching, {args.queries} queries, {args.classes} '
          f'classes, {args.layers} layers; {machine}; ms per step\n')
    print('| batch | per-image | batched | solver only | loss | '
          'per-image / batched |')
    print('|---|---|---|---|---|---|')
    print('\n'.join(rows))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=machine, queries=args.queries,
                           classes=args.classes, layers=args.layers,
                           ms=results, command=' '.join(
                               ['python', 'benchmarks/query_matching.py'] +
                               sys.argv[1:])), f, indent=1)


if __name__ == '__main__':
    main()
