"""The runs of one proxy preset under a work directory: configs, paired
student initialisation, resumable and shardable execution with progress.

Layout of ``<work_dir>``::

    data/                 the generated set (spec.json records its spec)
    init/student_seedS_<arch>.pth  the student's initial weights for
                          seed S (<arch>: a hash of its model config)
    configs/<run>_seedS.py  every run's config, rerunnable alone
    runs/<run>_seedS/       its work dir: train.log, checkpoints,
                            metrics.json once finished

Pairing: within a seed every student run loads
``init/student_seedS_<arch>.pth`` (``init_cfg=dict(type='Pretrained')`` on
the student; the preset's ``shared_init`` modules, the detection backbone,
are seed 0's in every seed), and its training
loader is mmengine's ``DefaultSampler`` order seeded with S, with each
sample's augmentation drawn from (S, epoch, index)
(``SeededAugmentationSampler``): scratch and every method see the same
images in the same order, flipped the same way. What the distillation terms
add (their necks) is initialised after the student from the same seed.

Resuming: a run with ``metrics.json`` is done and skipped; an unfinished
one restarts with ``--resume`` from its last epoch checkpoint (checkpoints
are written every epoch, atomically).
"""
import copy
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from common import ROOT
from mokd_det.utils import last_coco_metrics
from mokd_det.utils.logs import last_entry_with

from .families import Family, _merge
from .runs import apply_options, compose, parse_run

_PROGRESS = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')


def schedule(preset: dict, epochs: int) -> list:
    """Linear warm-up over ``warmup_iters``, then cosine decay to
    ``min_lr_ratio`` of the learning rate at the last iteration."""
    return [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=preset['warmup_iters']),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs,
             T_max=epochs, eta_min_ratio=preset['min_lr_ratio'],
             convert_to_iter_based=True)]


def add_parallel_args(parser) -> None:
    """``--jobs`` and ``--threads``, which override the preset's."""
    parser.add_argument('--jobs', type=int, default=None,
                        help="runs in parallel (default: the preset's)")
    parser.add_argument('--threads', type=int, default=None,
                        help="threads per run (default: the preset's)")


class Study:
    """The runs of ``preset`` (a dict of :mod:`proxy.presets`) in
    ``work_dir``."""

    def __init__(self, preset: dict, family: Family, work_dir: str):
        self.preset, self.family, self.work_dir = preset, family, work_dir
        self.data_root = osp.join(work_dir, 'data')
        self.config_dir = osp.join(work_dir, 'configs')
        self.init_dir = osp.join(work_dir, 'init')
        for d in (self.config_dir, self.init_dir):
            os.makedirs(d, exist_ok=True)
        self._leaf = None

    # ------------------------------------------------------------ data
    def ensure_data(self) -> None:
        """Generates the set once; refuses one of another spec (finished
        runs were measured on it)."""
        spec = self.preset['data']
        spec_file = osp.join(self.data_root, 'spec.json')
        if osp.isfile(spec_file):
            with open(spec_file) as f:
                if json.load(f) != json.loads(json.dumps(spec)):
                    raise SystemExit(
                        f'[proxy] {self.data_root} holds a set generated '
                        'with another spec; use another --work-dir or '
                        'delete it (and the runs measured on it)')
            return
        print(f'[proxy] generating {self.data_root}', flush=True)
        workers = os.cpu_count() if (os.cpu_count() or 1) > 2 else 0
        self.family.generate(self.data_root, spec, workers)
        with open(spec_file, 'w') as f:
            json.dump(spec, f)

    # --------------------------------------------------------- configs
    def _retarget(self, cfg: Config, epochs: int, seed: int) -> None:
        p = self.preset
        self.family.retarget_data(cfg, p, self.data_root)
        cfg.train_dataloader.sampler = dict(
            type='SeededAugmentationSampler', shuffle=True, seed=seed)
        cfg.auto_scale_lr = dict(enable=False, base_batch_size=p['batch'])
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                             val_interval=epochs)
        cfg.param_scheduler = schedule(p, epochs)
        cfg.optim_wrapper.optimizer = dict(p['optimizer'])
        cfg.optim_wrapper.clip_grad = p.get('clip_grad')
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=1, max_keep_ckpts=2)
        cfg.default_hooks.logger = dict(type='LoggerHook',
                                        interval=p['log_interval'])
        cfg.randomness = dict(seed=seed)

    def _model(self, role: str, cfg: Config) -> dict:
        model = copy.deepcopy(cfg.model)
        self.family.model_overrides(cfg, model, self.preset, role)
        return model

    def student_model(self, seed: int) -> dict:
        """The student's model dict, initialised from the seed's file."""
        model = self._model('student', self.family.base_config('student'))
        model.init_cfg = dict(type='Pretrained',
                              checkpoint=self.student_init(seed, model))
        return model

    def student_init(self, seed: int, model_cfg: dict) -> str:
        """``init/student_seedS_<arch>.pth``: the initialisation of the
        student ``model_cfg`` (no ``init_cfg`` of its own yet) under torch
        seed S, written once per architecture. The parameters under the
        preset's ``shared_init`` prefixes (``('backbone',)``) are seed 0's
        in every seed, as real detection students share their pretrained
        backbone; the rest (neck, head) is seed S's."""
        shared = tuple(self.preset.get('shared_init', ()))
        # named after the architecture: a changed preset gets new weights
        arch = hashlib.sha256(repr((model_cfg, shared) if shared else
                                   model_cfg).encode()).hexdigest()[:8]
        path = osp.join(self.init_dir, f'student_seed{seed}_{arch}.pth')
        if osp.isfile(path):
            return path
        state = self._initialised(seed, model_cfg)
        if shared and seed != 0:
            base = torch.load(self.student_init(0, model_cfg))['state_dict']
            for key in state:
                if key.split('.')[0] in shared:
                    state[key] = base[key]
        tmp = path + '.tmp-partial'
        torch.save(dict(state_dict=state), tmp)
        os.replace(tmp, path)
        return path

    def _initialised(self, seed: int, model_cfg: dict) -> dict:
        from mmengine.registry import MODELS
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope(self.family.scope):
            model = MODELS.build(copy.deepcopy(model_cfg))
            model.init_weights()
        return model.state_dict()

    def config(self, name: str, seed: int) -> str:
        """Writes run ``name``'s config for ``seed``; returns its path."""
        p = self.preset
        if name == 'teacher':
            cfg = self.family.base_config('teacher')
            cfg.model = self._model('teacher', cfg)
            epochs = p['teacher_epochs']
        elif parse_run(name)[0] is None:  # scratch
            cfg = self.family.base_config('student')
            cfg.model = self.student_model(seed)
            epochs = p['student_epochs']
        else:
            if self._leaf is None:
                self._leaf = self.family.leaf_configs()
            cfg = compose(name, self._leaf)
            self.family.adapt_losses(cfg.model.distill_losses)
            cfg.model.student = self.student_model(seed)
            teacher = self.config_path('teacher', 0)
            if not osp.isfile(teacher):  # a finished teacher's configs gone
                self.config('teacher', 0)
            cfg.model.teacher = dict(config=teacher,
                                     checkpoint=self.teacher_checkpoint())
            epochs = p['student_epochs']
            _merge(cfg.model, copy.deepcopy(p.get('distiller', {})))
        self._retarget(cfg, epochs, seed)
        if name != 'teacher' and p.get('student_train'):
            # the students learn from the first N labelled images; the
            # teacher saw them all (a teacher trained on more data)
            cfg.train_dataloader.dataset.indices = p['student_train']
        apply_options(cfg, name)
        cfg.custom_imports = dict(imports=['mokd_det'],
                                  allow_failed_imports=False)
        if name == 'teacher' or parse_run(name)[0] is None:
            # the guard of the distillation runs, for a fair comparison
            cfg.optim_wrapper.type = 'KDOptimWrapper'
        if name == 'teacher':
            cfg.optim_wrapper.optimizer = dict(
                p.get('teacher_optimizer', p['optimizer']))
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

    # --------------------------------------------------------- results
    def metrics(self, name: str, seed: int) -> Optional[dict]:
        path = osp.join(self.run_dir(name, seed), 'metrics.json')
        if not osp.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    def score(self, name: str, seed: int) -> Optional[float]:
        m = self.metrics(name, seed)
        return None if m is None else m[self.family.metric]

    def last_val_metrics(self, run_dir: str) -> Dict[str, float]:
        if self.family.name == 'det':
            metrics = last_coco_metrics(run_dir)
            if not metrics:
                with open(osp.join(run_dir, 'train.log')) as f:
                    if 'results of the whole dataset is empty' not in \
                            f.read():
                        raise RuntimeError(
                            f'no COCO metrics logged under {run_dir}')
                return dict(bbox_mAP=0.0, no_detections=True)
            return metrics
        entry = last_entry_with(run_dir, self.family.metric)
        if not entry:
            raise RuntimeError(f'no {self.family.metric} logged under '
                               f'{run_dir}')
        return {self.family.metric: entry[self.family.metric]}

    # ------------------------------------------------------- execution
    def _start(self, name: str, seed: int, threads: int):
        config = self.config(name, seed)
        run_dir = self.run_dir(name, seed)
        resume = osp.isfile(osp.join(run_dir, 'last_checkpoint'))
        os.makedirs(run_dir, exist_ok=True)
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
               '--work-dir', run_dir] + (['--resume'] if resume else [])
        print('[proxy] ' + ' '.join(osp.relpath(c, ROOT) for c in cmd[1:]),
              flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        log = open(osp.join(run_dir, 'train.log'), 'a' if resume else 'w')
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, env=env,
                                stderr=subprocess.STDOUT)
        return proc, dict(name=name, seed=seed, start=time.time(), log=log,
                          run_dir=run_dir)

    def _finish(self, proc, run: dict) -> Optional[float]:
        """Records a finished run's metrics; None if it failed."""
        run['log'].close()
        if proc.returncode != 0:
            print(f'[proxy] {run["name"]} seed {run["seed"]} FAILED (exit '
                  f'{proc.returncode}); see '
                  f'{osp.join(run["run_dir"], "train.log")}', flush=True)
            return None
        minutes = (time.time() - run['start']) / 60
        result = dict(self.last_val_metrics(run['run_dir']), minutes=minutes)
        with open(osp.join(run['run_dir'], 'metrics.json'), 'w') as f:
            json.dump(result, f)
        value = result[self.family.metric] * self.family.scale
        print(f'[proxy] {run["name"]} seed {run["seed"]}: '
              f'{self.family.unit} {value:.2f} ({minutes:.1f} min)',
              flush=True)
        return minutes

    @staticmethod
    def _position(run: dict) -> str:
        """``epoch e/E iter i/I`` from the tail of a run's log."""
        try:
            with open(osp.join(run['run_dir'], 'train.log'), 'rb') as f:
                f.seek(max(0, osp.getsize(f.name) - 4000))
                tail = f.read().decode(errors='replace')
        except OSError:
            return 'starting'
        found = _PROGRESS.findall(tail)
        if not found:
            return 'starting'
        epoch, it, total = found[-1]
        return f'epoch {epoch} iter {it}/{total}'

    def ensure_teacher(self) -> None:
        """Trains the preset's teacher (seed 0) unless it is done, on all
        the preset's threads.

        Raises:
            SystemExit: The teacher failed.
        """
        p = self.preset
        if self.run_all([('teacher', 0)], jobs=1,
                        threads=p['jobs'] * p['threads']):
            raise SystemExit('[proxy] the teacher failed: nothing to distil')

    def run_all(self, runs: List[Tuple[str, int]], jobs: int,
                threads: int, heartbeat: float = 60.0) -> List[tuple]:
        """Runs the unfinished ``(name, seed)`` runs, ``jobs`` at a time,
        printing progress and an estimate of the time left. A failed run
        does not stop the others.

        Returns:
            The ``(name, seed)`` runs that failed.
        """
        todo = [r for r in runs if self.metrics(*r) is None]
        total, done, spent, failed = len(todo), 0, [], []
        running: Dict[subprocess.Popen, dict] = {}
        last_beat = time.time()
        while todo or running:
            while todo and len(running) < jobs:
                proc, run = self._start(*todo.pop(0), threads=threads)
                running[proc] = run
            time.sleep(1)
            for proc in [p for p in running if p.poll() is not None]:
                run = running.pop(proc)
                minutes = self._finish(proc, run)
                if minutes is None:
                    failed.append((run['name'], run['seed']))
                else:
                    spent.append(minutes)
                done += 1
                mean = sum(spent) / len(spent) if spent else 0.0
                left = (total - done) * mean / jobs
                print(f'[proxy] {done}/{total} runs done; about '
                      f'{left:.0f} min left', flush=True)
            if running and time.time() - last_beat > heartbeat:
                last_beat = time.time()
                print('[proxy] running: ' + '; '.join(
                    f'{r["name"]} seed {r["seed"]} ({self._position(r)})'
                    for r in running.values()), flush=True)
        return failed
