"""The distillation demo on generated COCO-format data.

Generates ``data/shapes`` if it is missing, trains the quickstart teacher
(RetinaNet R18; reused when its checkpoint already exists), then the
half-width student from scratch, with MoKD and with DOT, all with the same
schedule, each with ``tools/train.py`` in its own process as a user would.
Prints one COCO bbox mAP table (pycocotools, via mmdet's ``CocoMetric``) and
writes the KD-dynamics plot of the MoKD run.

Example:
    python tools/demo.py [--epochs N] [--retrain-teacher]
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

WORK_ROOT = osp.join(ROOT, 'work_dirs', 'quickstart')
TEACHER = 'configs/quickstart/retinanet_r18_fpn_shapes.py'
# (name, config): trained in this order, after the teacher
RUNS = [
    ('student R18-half, scratch',
     'configs/quickstart/retinanet_r18-half_fpn_shapes.py'),
    ('student R18-half, MoKD (exact)',
     'configs/quickstart/mokd-exact_r18-r18half_retinanet_3e_shapes.py'),
    ('student R18-half, DOT',
     'configs/quickstart/dot_r18-r18half_retinanet_3e_shapes.py'),
]
PLOTTED = RUNS[1][1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=None,
                   help='override max_epochs of the students (the teacher '
                   'trains its 6)')
    p.add_argument('--retrain-teacher', action='store_true',
                   help='train the teacher even if its checkpoint exists')
    p.add_argument('--num-train', type=int, default=768)
    p.add_argument('--num-val', type=int, default=64)
    return p.parse_args()


def ensure_data(num_train: int, num_val: int) -> None:
    ann = osp.join(DATA_ROOT, 'annotations', 'instances_{}.json')
    if osp.isfile(ann.format('val')):
        with open(ann.format('train')) as f:
            if len(json.load(f)['images']) == num_train:
                print(f'[demo] using existing {DATA_ROOT}')
                return
        print(f'[demo] regenerating {DATA_ROOT} with {num_train} images')
    sys.path.insert(0, ROOT)
    from mokd_det.datasets import generate_coco_detection
    generate_coco_detection(DATA_ROOT, num_train=num_train, num_val=num_val)


def work_dir_of(config: str) -> str:
    return osp.join(WORK_ROOT, osp.splitext(osp.basename(config))[0])


def last_val_metrics(work_dir: str) -> dict:
    """The last validation's metrics of a run (nan where absent)."""
    from mokd_det.utils import last_coco_metrics
    metrics = last_coco_metrics(work_dir)
    return {m: metrics.get(m, float('nan')) for m in METRICS}


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
    header = ['model'] + list(METRICS) + ['train min']
    widths = [max(len(header[0]), *(len(r[0]) for r in rows))] + \
        [max(len(h), 6) for h in header[1:]]
    line = '  '.join(h.ljust(w) for h, w in zip(header, widths))
    print('\n' + line + '\n' + '-' * len(line))
    for name, metrics, seconds in rows:
        cells = [name] + [f'{metrics[m]:.3f}' for m in METRICS] + \
            ['reused' if seconds is None else f'{seconds / 60:.1f}']
        print('  '.join(c.ljust(w) for c, w in zip(cells, widths)))


def main():
    args = parse_args()
    start = time.time()
    os.chdir(ROOT)
    ensure_data(args.num_train, args.num_val)
    teacher_dir = work_dir_of(TEACHER)
    if args.retrain_teacher or not glob(osp.join(teacher_dir, 'epoch_*.pth')):
        seconds = train(TEACHER, teacher_dir, None)
    else:
        seconds = None
        print(f'[demo] reusing the teacher in {teacher_dir}')
    rows = [('teacher R18', last_val_metrics(teacher_dir), seconds)]
    for name, config in RUNS:
        work_dir = work_dir_of(config)
        seconds = train(config, work_dir, args.epochs)
        rows.append((name, last_val_metrics(work_dir), seconds))
    print_table(rows)
    plot = osp.join(WORK_ROOT, 'kd_dynamics.png')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools',
                                             'plot_kd_dynamics.py'),
                    work_dir_of(PLOTTED), '--out', plot], check=True)
    print(f'\n[demo] COCO bbox mAP on {DATA_ROOT}/annotations/'
          'instances_val.json (the students share one 3-epoch '
          'schedule; the teacher had 6); '
          f'KD dynamics of the MoKD run: {osp.relpath(plot, ROOT)}; '
          f'total {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
