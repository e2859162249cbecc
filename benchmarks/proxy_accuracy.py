"""Proxy accuracy study: every method on one generated detection set.

Trains a RetinaNet teacher once, then the student from scratch, with vanilla
KD, DOT, MoKD (exact and amortized), MKD and the CWD and PKD baselines, for
each seed, all with the same schedule, each with ``tools/train.py`` in its
own process as a user would; prints the COCO bbox mAP (pycocotools, via
mmdet's ``CocoMetric``) as mean, sample standard deviation and the per-seed
values, and each method's difference to vanilla KD.

The method of each run is the shipped quickstart config of that method
(``configs/quickstart/<method>_r18-r18half_retinanet_3e_shapes.py``: its
optim wrapper, hooks and distillation terms), applied to the preset's
teacher/student pair, data and schedule; the config of every run is written
to ``<work-dir>/configs/`` and can be rerun alone with ``tools/train.py``.
Before the students, the teacher's lead over the scratch student (seed 0) is
checked against ``min_gap`` mAP points; a smaller lead stops the study (the
set is too easy to say anything about distillation). Finished runs are
skipped when the study is rerun (their metrics are kept in
``<run>/metrics.json``), so an interrupted study continues.

Presets (``--preset``):

* ``cpu-smoke``: 16 tiny images, one epoch, one seed: the pipeline, in CI.
* ``cpu``: the quickstart pair (RetinaNet R18 -> half-width R18) on the
  quickstart data (768 images at 192 px), teacher 6 epochs, students 3.
* ``gpu``: RetinaNet R50 -> R18 (full width, stock FPN and head, from
  scratch) on a harder generated set (10 classes, mostly small objects,
  more clutter and noise); teacher 24 epochs, students 12; ``--jobs`` runs
  in parallel. Its sizes are not yet calibrated on a GPU.

Examples:
    python benchmarks/proxy_accuracy.py --preset cpu --seeds 0 1 2
    python benchmarks/proxy_accuracy.py --preset gpu --jobs 8
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

from mmengine.config import Config

from common import ROOT, markdown_table
from mokd_det.utils import last_coco_metrics

METHODS = ('scratch', 'kd', 'dot', 'mokd-exact', 'mokd-amortized', 'mkd',
           'cwd', 'pkd')
TEACHER_CFG = 'configs/quickstart/retinanet_r18_fpn_shapes.py'
STUDENT_CFG = 'configs/quickstart/retinanet_r18-half_fpn_shapes.py'
LEAF = 'configs/quickstart/{}_r18-r18half_retinanet_3e_shapes.py'

# full-width R18 / R50 RetinaNet, stock FPN and head, from scratch
R18 = dict(backbone=dict(depth=18, base_channels=64),
           neck=dict(in_channels=[64, 128, 256, 512], out_channels=256),
           bbox_head=dict(in_channels=256, feat_channels=256,
                          stacked_convs=4))
R50 = dict(backbone=dict(depth=50, base_channels=64),
           neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=256),
           bbox_head=dict(in_channels=256, feat_channels=256,
                          stacked_convs=4))

PRESETS = {
    'cpu-smoke': dict(
        data=dict(num_train=16, num_val=8,
                  shapes=dict(img_size=(64, 64), objects_per_image=(1, 3))),
        img_scale=(64, 64), batch=4, teacher_epochs=1, student_epochs=1,
        # untrained models score below the default 0.05: keep detections
        # so that the COCO evaluation runs
        teacher_model=dict(test_cfg=dict(score_thr=0.0)),
        student_model=dict(test_cfg=dict(score_thr=0.0)), seeds=[0],
        min_gap=None, jobs=1),
    'cpu': dict(
        data=dict(num_train=768, num_val=128, shapes={}),
        img_scale=(192, 192), batch=8, teacher_epochs=6, student_epochs=3,
        teacher_model={}, student_model={}, seeds=[0, 1, 2], min_gap=5.0,
        jobs=1),
    # not yet calibrated on a GPU (none lent so far): sizes are a first
    # guess at fitting teacher + 24 student runs into ~20 GPU minutes
    'gpu': dict(
        data=dict(num_train=2000, num_val=300,
                  shapes=dict(num_classes=10, img_size=(256, 256),
                              objects_per_image=(4, 12),
                              scale_mix=(0.5, 0.35, 0.15), min_visible=0.4,
                              clutter=(4, 12), noise_std=12.0)),
        img_scale=(256, 256), batch=16, teacher_epochs=24,
        student_epochs=12, teacher_model=R50, student_model=R18,
        seeds=[0, 1, 2], min_gap=5.0, jobs=8),
}


def ensure_data(root: str, spec: dict) -> None:
    """Generates the preset's set under ``root`` once (in parallel where
    there are cores to spare); refuses a set generated with another spec,
    since finished runs were measured on it."""
    spec_file = osp.join(root, 'spec.json')
    if osp.isfile(spec_file):
        with open(spec_file) as f:
            if json.load(f) != json.loads(json.dumps(spec)):
                raise SystemExit(
                    f'[proxy] {root} holds a set generated with another '
                    'spec; use another --work-dir or delete it (and the '
                    'runs measured on it)')
        return
    from mokd_det.datasets import ShapesConfig, generate_coco_detection
    print(f'[proxy] generating {root}', flush=True)
    workers = os.cpu_count() if (os.cpu_count() or 1) > 2 else 0
    generate_coco_detection(root, num_train=spec['num_train'],
                            num_val=spec['num_val'], seed=0,
                            cfg=ShapesConfig(**spec['shapes']),
                            progress=False, workers=workers)
    with open(spec_file, 'w') as f:
        json.dump(spec, f)


def retarget(cfg: Config, preset: dict, data_root: str, epochs: int,
             seed: int) -> None:
    """The preset's data, image size, batch, schedule and seed."""
    from mokd_det.datasets import ShapesConfig
    classes = tuple(ShapesConfig(**preset['data']['shapes']).class_names)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.batch_size = preset['batch']
        ds = loader.dataset
        ds.data_root = data_root
        ds.metainfo = dict(classes=classes)
        for t in ds.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = preset['img_scale']
    for split in ('val', 'test'):
        cfg[f'{split}_evaluator'].ann_file = osp.join(
            data_root, 'annotations', 'instances_val.json')
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=preset['batch'])
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                         val_interval=epochs)
    # the quickstart schedule, stretched: warm-up, then /10 at 2/3 and 5/6
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=50),
        dict(type='MultiStepLR', begin=0, end=epochs, by_epoch=True,
             milestones=sorted({max(1, 2 * epochs // 3),
                                max(1, 5 * epochs // 6)}), gamma=0.1)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=epochs, max_keep_ckpts=1)
    cfg.randomness = dict(seed=seed)


class Study:
    """The runs of one preset under ``work_dir``."""

    def __init__(self, preset: dict, work_dir: str):
        self.preset, self.work_dir = preset, work_dir
        self.data_root = osp.join(work_dir, 'data')
        self.config_dir = osp.join(work_dir, 'configs')
        os.makedirs(self.config_dir, exist_ok=True)

    def _classes(self) -> int:
        from mokd_det.datasets import ShapesConfig
        return ShapesConfig(**self.preset['data']['shapes']).num_classes

    def _model(self, overrides: dict) -> dict:
        return dict(overrides, bbox_head=dict(
            overrides.get('bbox_head', {}), num_classes=self._classes()))

    def config(self, name: str, seed: int) -> str:
        """Writes the config of run ``name`` (``teacher`` or a method) and
        returns its path."""
        p = self.preset
        if name == 'teacher':
            cfg = Config.fromfile(osp.join(ROOT, TEACHER_CFG))
            cfg.merge_from_dict(dict(model=self._model(p['teacher_model'])))
            epochs = p['teacher_epochs']
        elif name == 'scratch':
            cfg = Config.fromfile(osp.join(ROOT, STUDENT_CFG))
            cfg.merge_from_dict(dict(model=self._model(p['student_model'])))
            epochs = p['student_epochs']
        else:
            cfg = Config.fromfile(osp.join(ROOT, LEAF.format(name)))
            cfg.merge_from_dict(dict(model=dict(
                student=self._model(p['student_model']),
                teacher=dict(config=self.config_path('teacher', 0),
                             checkpoint=self.teacher_checkpoint()))))
            epochs = p['student_epochs']
        retarget(cfg, p, self.data_root, epochs, seed)
        path = self.config_path(name, seed)
        cfg.dump(path)
        return path

    def config_path(self, name: str, seed: int) -> str:
        return osp.join(self.config_dir, f'{name}_seed{seed}.py')

    def run_dir(self, name: str, seed: int) -> str:
        return osp.join(self.work_dir, 'runs', f'{name}_seed{seed}')

    def teacher_checkpoint(self) -> str:
        return osp.join(self.run_dir('teacher', 0),
                        f'epoch_{self.preset["teacher_epochs"]}.pth')

    def metrics(self, name: str, seed: int) -> Optional[dict]:
        path = osp.join(self.run_dir(name, seed), 'metrics.json')
        if not osp.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    def start(self, name: str, seed: int) -> subprocess.Popen:
        config = self.config(name, seed)
        run_dir = self.run_dir(name, seed)
        os.makedirs(run_dir, exist_ok=True)
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
               '--work-dir', run_dir]
        print('[proxy] ' + ' '.join(osp.relpath(c, ROOT) for c in cmd[1:]),
              flush=True)
        log = open(osp.join(run_dir, 'train.log'), 'w')
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        return proc, (name, seed, time.time(), log)

    def finish(self, proc: subprocess.Popen, run: tuple) -> None:
        name, seed, start, log = run
        log.close()
        run_dir = self.run_dir(name, seed)
        if proc.returncode != 0:
            raise RuntimeError(f'{name} (seed {seed}) failed; see '
                               f'{osp.join(run_dir, "train.log")}')
        result = dict(last_val_metrics(run_dir),
                      minutes=(time.time() - start) / 60)
        with open(osp.join(run_dir, 'metrics.json'), 'w') as f:
            json.dump(result, f)
        print(f'[proxy] {name} seed {seed}: bbox mAP '
              f'{result["bbox_mAP"]:.3f} ({result["minutes"]:.1f} min)',
              flush=True)

    def run_all(self, runs: List[tuple], jobs: int) -> None:
        """Runs the unfinished ``(name, seed)`` runs, ``jobs`` at a time."""
        todo = [r for r in runs if self.metrics(*r) is None]
        running: Dict[subprocess.Popen, tuple] = {}
        while todo or running:
            while todo and len(running) < jobs:
                proc, run = self.start(*todo.pop(0))
                running[proc] = run
            time.sleep(1)
            for proc in [p for p in running if p.poll() is not None]:
                self.finish(proc, running.pop(proc))


def last_val_metrics(run_dir: str) -> Dict[str, float]:
    """The last validation's COCO metrics of a run; 0 mAP when the model
    made no detections (mmdet's CocoMetric then logs nothing)."""
    metrics = last_coco_metrics(run_dir)
    if not metrics:
        with open(osp.join(run_dir, 'train.log')) as f:
            if 'results of the whole dataset is empty' not in f.read():
                raise RuntimeError(f'no COCO metrics logged under {run_dir}')
        return dict(bbox_mAP=0.0, no_detections=True)
    return metrics


def summary(study: Study, methods, seeds) -> dict:
    out = {'teacher': [study.metrics('teacher', 0)['bbox_mAP']]}
    for m in methods:
        out[m] = [study.metrics(m, s)['bbox_mAP'] for s in seeds]
    return out


def print_table(maps: Dict[str, List[float]]) -> str:
    kd = statistics.mean(maps['kd']) if 'kd' in maps else None
    rows = []
    for name, values in maps.items():
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        delta = 'n/a' if kd is None or name == 'teacher' else \
            f'{100 * (mean - kd):+.1f}'
        rows.append([name, f'{100 * mean:.1f}', f'{100 * std:.1f}',
                     ' / '.join(f'{100 * v:.1f}' for v in values), delta])
    table = markdown_table(['run', 'mAP (mean)', 'std', 'per seed',
                            'vs KD (points)'], rows)
    print(table)
    return table


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    p.add_argument('--seeds', type=int, nargs='+', default=None)
    p.add_argument('--methods', nargs='+', choices=METHODS, default=METHODS)
    p.add_argument('--jobs', type=int, default=None,
                   help='runs in parallel (default: the preset\'s)')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/proxy/<preset>')
    for key in ('teacher_epochs', 'student_epochs'):
        p.add_argument('--' + key.replace('_', '-'), type=int, default=None,
                       help='override the preset')
    return p.parse_args()


def main():
    args = parse_args()
    preset = dict(PRESETS[args.preset])
    for key in ('teacher_epochs', 'student_epochs'):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    seeds = args.seeds or preset['seeds']
    jobs = args.jobs or preset['jobs']
    work_dir = osp.abspath(args.work_dir or osp.join(
        ROOT, 'work_dirs', 'proxy', args.preset))
    os.chdir(ROOT)
    study = Study(preset, work_dir)
    ensure_data(study.data_root, preset['data'])
    start = time.time()
    study.run_all([('teacher', 0)] + ([('scratch', seeds[0])]
                                      if 'scratch' in args.methods else []),
                  jobs)
    if preset['min_gap'] is not None and 'scratch' in args.methods:
        gap = 100 * (study.metrics('teacher', 0)['bbox_mAP'] -
                     study.metrics('scratch', seeds[0])['bbox_mAP'])
        print(f'[proxy] teacher leads the scratch student by {gap:.1f} '
              'mAP points', flush=True)
        if gap < preset['min_gap']:
            raise SystemExit(
                f'[proxy] the teacher leads by {gap:.1f} < '
                f'{preset["min_gap"]} points: the set is too easy (or the '
                'teacher too weak) for a distillation study; make the data '
                'harder (PRESETS[...]["data"]) or train the teacher longer')
    study.run_all([(m, s) for s in seeds for m in args.methods], jobs)
    maps = summary(study, args.methods, seeds)
    print(f'\n[proxy] preset {args.preset}, seeds {seeds}, COCO bbox mAP '
          f'(x100) on {study.data_root}; {(time.time() - start) / 60:.1f} '
          'min\n')
    table = print_table(maps)
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(dict(preset=args.preset, seeds=seeds, bbox_mAP=maps,
                       table=table), f, indent=1)


if __name__ == '__main__':
    main()
