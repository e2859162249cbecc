"""Multi-process training and testing on a machine without CUDA, through the
stock launchers (``tools/dist_train.sh`` / ``tools/dist_test.sh``: torchrun,
``--launcher pytorch``): the tools set up a gloo process group and CPU DDP.

A 2-process distillation (2 x batch 2) ends with the same student as one
process over the same global batch (1 x batch 4): same seed, no random
augmentation, a detector whose losses are normalised over all ranks (FCOS:
``reduce_mean`` of the positives) and whose BatchNorm layers use running
statistics (per-rank batch statistics would differ from the global batch's).
The ranks draw disjoint halves of each global batch, and with
``randomness.seed=None`` they agree on the seed mmengine draws.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

from mokd_det.checkpoint import safe_torch_load
from mokd_det.utils import load_config
from tests.helpers import (DET_FAMILIES, REPO_ROOT, retarget_detection_data,
                           small_detector)
from tests.test_distillers.test_det_distiller import save_teacher

TOLERANCE = 1e-4

# records, per rank, the images of every training batch and the run's seed
PROBE = textwrap.dedent('''
    import json
    import os.path as osp

    from mmengine.dist import get_rank
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS


    @HOOKS.register_module()
    class DistProbeHook(Hook):

        def _write(self, runner, record):
            path = osp.join(runner.work_dir, f'probe_rank{get_rank()}.jsonl')
            with open(path, 'a') as f:
                f.write(json.dumps(record) + '\\n')

        def before_run(self, runner):
            self._write(runner, dict(seed=runner.seed))

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._write(runner, dict(iter=runner.iter, img_ids=[
                s.img_id for s in data_batch['data_samples']]))
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def cpu_env(probe_dir: str) -> dict:
    """The environment of a CPU-only machine (CUDA hidden), the probe module
    importable."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               PORT=str(free_port()))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (probe_dir, REPO_ROOT, env.get('PYTHONPATH')) if p)
    # torchrun is in the venv's bin, next to this interpreter
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    return env


def run(cmd, env) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed:\n' + out[-5000:]
    return out


def probe(work_dir: str, rank: int):
    with open(osp.join(work_dir, f'probe_rank{rank}.jsonl')) as f:
        records = [json.loads(line) for line in f]
    seeds = [r['seed'] for r in records if 'seed' in r]
    batches = {r['iter']: r['img_ids'] for r in records if 'iter' in r}
    return seeds, batches


def distill_config(data_root: str, tmp_path) -> str:
    """A small FCOS distillation (teacher written here), 2 epochs of 8
    images, the DOT wrapper; returns the dumped config's path."""
    cfg = load_config(DET_FAMILIES['fcos'])
    retarget_detection_data(cfg, data_root, str(tmp_path / 'unused'),
                            batch_size=4, flip=False)
    student = small_detector(cfg.model)
    student.backbone.norm_eval = True
    teacher = small_detector(load_config(DET_FAMILIES['fcos']).model)
    save_teacher(teacher, str(tmp_path / 'teacher.pth'))
    cfg.model = dict(
        type='DetDistiller', student=student,
        teacher=dict(model=teacher, checkpoint=str(tmp_path / 'teacher.pth')),
        distill_losses=dict(
            fpn=dict(type='FeatureMSELoss', student='neck', teacher='neck',
                     loss_weight=0.01),
            logits=dict(type='LogitKDLoss', student='bbox_head:0',
                        teacher='bbox_head:0', temperature=2.0)))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.param_scheduler = []
    cfg.optim_wrapper = dict(
        type='DOTOptimWrapper', delta=0.075,
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        clip_grad=dict(max_norm=35, norm_type=2))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.custom_imports = dict(imports=['mokd_det', 'dist_probe'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='DistProbeHook')]
    path = str(tmp_path / 'distill.py')
    cfg.dump(path)
    return path


def student_state(path: str) -> dict:
    state = safe_torch_load(path)['state_dict']
    return {k: v.float() for k, v in state.items() if k.startswith('student.')}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def map_line(log: str) -> str:
    return [line for line in log.splitlines()
            if 'bbox_mAP_copypaste' in line][-1].split('copypaste: ')[1]


def test_two_process_cpu_training_equals_one_process(shapes_det_root,
                                                     tmp_path):
    with open(tmp_path / 'dist_probe.py', 'w') as f:
        f.write(PROBE)
    env = cpu_env(str(tmp_path))
    config = distill_config(shapes_det_root, tmp_path)
    ddp, single = str(tmp_path / 'ddp'), str(tmp_path / 'single')

    log = run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', ddp,
               '--cfg-options', 'train_dataloader.batch_size=2'], env)
    assert 'DDP on the CPU with the gloo backend' in log
    run([sys.executable, 'tools/train.py', config, '--work-dir', single],
        env)

    # the ranks split each global batch: disjoint halves of the batch the
    # single process draws (mmengine's sampler over the gloo group)
    _, rank0 = probe(ddp, 0)
    _, rank1 = probe(ddp, 1)
    _, one = probe(single, 0)
    assert sorted(rank0) == sorted(rank1) == sorted(one) == [0, 1, 2, 3]
    for it in one:
        assert len(rank0[it]) == len(rank1[it]) == 2
        assert not set(rank0[it]) & set(rank1[it]), it
        assert sorted(rank0[it] + rank1[it]) == sorted(one[it]), it

    # the same student after every epoch; and it did train
    diffs = [max_diff(student_state(osp.join(ddp, f'epoch_{e}.pth')),
                      student_state(osp.join(single, f'epoch_{e}.pth')))
             for e in (1, 2)]
    moved = max_diff(student_state(osp.join(single, 'epoch_1.pth')),
                     student_state(osp.join(single, 'epoch_2.pth')))
    print(f'max |2-process DDP - 1 process| of the student weights: '
          f'epoch 1 {diffs[0]:.3g}, epoch 2 {diffs[1]:.3g} (epoch 1 -> 2 '
          f'moved them by up to {moved:.3g})')
    assert moved > 1e-3
    assert max(diffs) <= TOLERANCE, diffs

    # tools/dist_test.sh: 2-process evaluation, the same metrics as one
    # process; with randomness.seed=None the ranks agree on mmengine's seed
    ckpt = osp.join(single, 'epoch_2.pth')
    log2 = run(['bash', 'tools/dist_test.sh', config, ckpt, '2',
                '--work-dir', str(tmp_path / 'test_ddp'), '--cfg-options',
                'randomness.seed=None'], env)
    log1 = run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir',
                str(tmp_path / 'test_single')], env)
    assert map_line(log2) == map_line(log1)
    seeds = [probe(str(tmp_path / 'test_ddp'), r)[0] for r in (0, 1)]
    assert len(seeds[0]) == 1 and seeds[0] == seeds[1], seeds
