"""The crash-safe CheckpointHook: a kill -9 at any moment of a checkpoint
write leaves a resumable work directory (last_checkpoint names a complete
file), old checkpoints go only after the new one is complete, and a state
holding NaN is never written."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

import mokd_det  # noqa: F401
from mokd_det.hooks import CrashSafeCheckpointHook
from mokd_det.hooks.checkpoint import atomic_write_text, nonfinite_entries
from tests.helpers import REPO_ROOT

WORKER = osp.join(REPO_ROOT, 'tests', 'test_hooks', 'ckpt_worker.py')


def _env():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    return env


def test_configs_get_the_crash_safe_hook():
    hook = HOOKS.build(dict(type='CheckpointHook', interval=1))
    assert isinstance(hook, CrashSafeCheckpointHook)
    assert isinstance(hook, CheckpointHook)


def _kill_inside_a_write(work_dir, nth_write, fraction):
    """Starts the slow-writing worker and kills it (SIGKILL) ``fraction``
    of the way into its ``nth_write``-th checkpoint write."""
    proc = subprocess.Popen(
        [sys.executable, WORKER, work_dir, '50', '--slow'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_env(), cwd=REPO_ROOT)
    starts = 0
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith('write-start') and '.pth' in line:
            starts += 1
            if starts == nth_write:
                # a checkpoint write takes 20 x 20 ms: kill inside it
                time.sleep(0.4 * fraction)
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert starts == nth_write, ''.join(output)[-3000:]


def test_kill_during_checkpoint_write_always_resumes(tmp_path):
    rng = random.Random(0)
    for trial in range(3):
        work_dir = str(tmp_path / f'trial{trial}' / 'work')
        os.makedirs(work_dir)
        nth = rng.randint(2, 4)
        _kill_inside_a_write(work_dir, nth, rng.random())
        # what a resume finds: a complete, loadable checkpoint
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            last = f.read().strip()
        assert osp.basename(last) == f'iter_{nth - 1}.pth', trial
        torch.load(last, map_location='cpu', weights_only=False)
        proc = subprocess.run(
            [sys.executable, WORKER, work_dir, str(nth + 1), '--resume'],
            capture_output=True, text=True, env=_env(), cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + \
            proc.stderr[-3000:]
        assert f'trained {nth + 1}' in proc.stdout
        left = sorted(os.listdir(work_dir))
        assert not [n for n in left if 'tmp' in n], left
        assert f'iter_{nth + 1}.pth' in left and \
            f'iter_{nth - 1}.pth' not in left  # max_keep_ckpts=1


def test_nonfinite_entries_names_the_tensors():
    state = dict(model=dict(w=torch.ones(2), b=torch.tensor([float('nan')]),
                            n=torch.tensor(3)),
                 optimizer=dict(state={0: dict(momentum_buffer=torch.tensor(
                     [float('inf')]))}))
    assert nonfinite_entries(state) == [
        'model.b', 'optimizer.state.0.momentum_buffer']


def test_atomic_write_text(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    atomic_write_text(path, 'a')
    atomic_write_text(path, 'bb')
    with open(path) as f:
        assert f.read() == 'bb'
    assert os.listdir(tmp_path) == ['last_checkpoint']


@pytest.mark.parametrize('by_epoch', [False])
def test_nan_state_is_not_written(by_epoch, tmp_path):
    """A bare mmengine OptimWrapper lets NaN into the weights: the hook
    refuses to save, says so, and keeps the older checkpoint."""
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    from tests.toy import ToyBatches, toy_collate, toy_distiller
    model = toy_distiller(tmp_path)
    runner = Runner(
        model=model, work_dir=str(tmp_path / 'work'),
        experiment_name=f'nan_state_{tmp_path.name}',
        train_dataloader=DataLoader(ToyBatches(1000), batch_size=4,
                                    collate_fn=toy_collate),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(
            type='SGD', lr=0.05)),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', by_epoch=False, interval=1,
            max_keep_ckpts=1)),
        randomness=dict(seed=0))
    loss = model.distill_losses['kd']
    forward = loss.forward
    calls = [0]

    def nan_from_the_third(*args, **kwargs):
        calls[0] += 1
        out = forward(*args, **kwargs)
        return out * float('nan') if calls[0] >= 3 else out

    loss.forward = nan_from_the_third
    from mokd_det.optim import NonFiniteTrainingError
    with pytest.raises(NonFiniteTrainingError, match='iter_2.pth'):
        runner.train()
    assert sorted(os.listdir(runner.work_dir)).count('iter_2.pth') == 1
    assert not osp.exists(osp.join(runner.work_dir, 'iter_3.pth'))


class _FakeRunner:
    """What the hook touches of a Runner; ``save_checkpoint`` records the
    files that exist while each checkpoint is written."""

    def __init__(self, work_dir):
        from mmengine.logging import MessageHub, MMLogger
        self.work_dir = work_dir
        self.message_hub = MessageHub.get_instance('fake_ckpt_runner')
        self.logger = MMLogger.get_instance('fake_ckpt_runner')
        self.model = torch.nn.Linear(1, 1)
        self.optim_wrapper = None
        self.epoch, self.iter = 0, 0
        self.writes = []

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        self.writes.append((filename, sorted(os.listdir(out_dir))))
        torch.save(dict(x=1), osp.join(out_dir, filename))


def test_save_best_removes_the_old_best_only_after_the_new_one(tmp_path):
    runner = _FakeRunner(str(tmp_path))
    hook = CrashSafeCheckpointHook(interval=1, by_epoch=False,
                                   save_best='acc', rule='greater',
                                   max_keep_ckpts=1)
    hook.before_train(runner)
    for it, acc in [(1, 0.5), (2, 0.7), (3, 0.6)]:
        runner.iter = it - 1  # as in after_train_iter of iteration it
        hook._save_checkpoint(runner)        # iter_N.pth, last_checkpoint
        runner.iter = it      # the loop has counted the iteration
        hook.after_val_epoch(runner, dict(acc=acc))
    names = sorted(os.listdir(tmp_path))
    # each with its SHA-256 (mokd_det.checkpoint.integrity); the old best
    # and old iter_N files are gone with theirs
    assert names == ['best_acc_iter_2.pth', 'best_acc_iter_2.pth.sha256',
                     'iter_3.pth', 'iter_3.pth.sha256', 'last_checkpoint']
    writing_best_2 = [files for name, files in runner.writes
                      if name.startswith('best_acc_iter_2')]
    # the new best was written (under a temporary name) while the old
    # one was still there
    assert writing_best_2 and 'best_acc_iter_1.pth' in writing_best_2[0]
    assert hook.best_ckpt_path.endswith('best_acc_iter_2.pth')
    assert runner.message_hub.get_info('best_score') == 0.7
