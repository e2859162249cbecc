"""The main demo: generated COCO-format data -> training -> COCO mAP table.

Generates ``data/shapes`` if it is missing, trains each run below with
``tools/train.py`` (its own process, as a user would), then prints one COCO
bbox mAP table (pycocotools, via mmdet's ``CocoMetric``).

Example:
    python tools/demo.py [--work-dir work_dirs/demo] [--epochs N]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from glob import glob

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATA_ROOT = osp.join(ROOT, 'data', 'shapes')
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
           'bbox_mAP_m', 'bbox_mAP_l')

# (name, config): trained in this order
RUNS = [
    ('RetinaNet R18 (scratch)',
     'configs/quickstart/retinanet_r18_fpn_shapes.py'),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--epochs', type=int, default=None,
                   help='override max_epochs of every run')
    p.add_argument('--num-train', type=int, default=256)
    p.add_argument('--num-val', type=int, default=64)
    return p.parse_args()


def ensure_data(num_train: int, num_val: int) -> None:
    if osp.isfile(osp.join(DATA_ROOT, 'annotations', 'instances_val.json')):
        print(f'[demo] using existing {DATA_ROOT}')
        return
    sys.path.insert(0, ROOT)
    from mokd_det.datasets import generate_coco_detection
    generate_coco_detection(DATA_ROOT, num_train=num_train, num_val=num_val)


def last_val_metrics(work_dir: str) -> dict:
    """The last validation entry of mmengine's JSON scalar log."""
    logs = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise RuntimeError(f'no scalars.json under {work_dir}')
    metrics = {}
    with open(logs[-1]) as f:
        for line in f:
            entry = json.loads(line)
            if 'coco/bbox_mAP' in entry:
                metrics = entry
    return {m: metrics.get(f'coco/{m}', float('nan')) for m in METRICS}


def train(config: str, work_dir: str, epochs) -> float:
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
           '--work-dir', work_dir]
    if epochs is not None:
        cmd += ['--cfg-options', f'train_cfg.max_epochs={epochs}',
                f'train_cfg.val_interval={epochs}']
    print('[demo] ' + ' '.join(osp.relpath(c, ROOT) if osp.isabs(c) else c
                                for c in cmd[1:]), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.time() - start


def print_table(rows) -> None:
    header = ['run'] + list(METRICS) + ['train min']
    widths = [max(len(header[0]), *(len(r[0]) for r in rows))] + \
        [max(len(h), 6) for h in header[1:]]
    line = '  '.join(h.ljust(w) for h, w in zip(header, widths))
    print('\n' + line + '\n' + '-' * len(line))
    for name, metrics, seconds in rows:
        cells = [name] + [f'{metrics[m]:.3f}' for m in METRICS] + \
            [f'{seconds / 60:.1f}']
        print('  '.join(c.ljust(w) for c, w in zip(cells, widths)))


def main():
    args = parse_args()
    start = time.time()
    os.chdir(ROOT)
    ensure_data(args.num_train, args.num_val)
    rows = []
    for name, config in RUNS:
        work_dir = osp.join(args.work_dir,
                            osp.splitext(osp.basename(config))[0])
        seconds = train(config, work_dir, args.epochs)
        rows.append((name, last_val_metrics(work_dir), seconds))
    print_table(rows)
    print(f'\n[demo] COCO bbox mAP on {DATA_ROOT}/annotations/'
          f'instances_val.json; total {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
