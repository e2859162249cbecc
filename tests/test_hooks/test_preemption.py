"""Preemption: a SIGTERM or SIGUSR1 mid-epoch finishes the iteration,
writes its checkpoint and exits 75; --resume then continues the epoch
after its trained batches, trains the next epoch whole, and ends where the
uninterrupted run ends (shuffled seeded sampler, a persistent worker)."""
import os
import signal

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mokd_det.hooks.preemption import PREEMPTED_EXIT_CODE
from tests.toy import ToyBatches, toy_collate, toy_distiller


class SignalAt(Hook):
    """Sends ``signum`` to this process before iteration ``at``."""

    def __init__(self, at, signum):
        self.at, self.signum = at, signum

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), self.signum)


def make_runner(root, resume=False, hooks=(), name='run'):
    os.makedirs(root, exist_ok=True)
    return Runner(
        model=toy_distiller(root), work_dir=str(root / 'work'),
        # unique per test: mmengine keeps one logger per experiment name,
        # writing to the stdout of the test that made it
        experiment_name=f'{name}_{resume}_{root.parent.name}_{root.name}_'
        f'{len(hooks)}',
        train_dataloader=dict(
            dataset=ToyBatches(32), batch_size=4, num_workers=1,
            persistent_workers=True, collate_fn=toy_collate,
            sampler=dict(type='DefaultSampler', shuffle=True)),
        # an epoch after the resumed one: a persistent worker's iterator
        # must not keep skipping there
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(type='KDOptimWrapper', optimizer=dict(
            type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', by_epoch=True,
                             milestones=[1]),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        custom_hooks=list(hooks), randomness=dict(seed=0), resume=resume)


def weights(runner):
    return {k: v.clone() for k, v in runner.model.student.state_dict()
            .items()}


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_epoch_checkpoints_exits_75_and_resumes_exactly(
        tmp_path, signum, capsys):
    straight = make_runner(tmp_path / 'straight', name='straight')
    straight.train()
    # 8 iterations an epoch: iteration 11 is the 4th of epoch 2
    with pytest.raises(SystemExit) as info:
        make_runner(tmp_path / 'run', hooks=[SignalAt(11, signum)]).train()
    assert info.value.code == PREEMPTED_EXIT_CODE
    log = capsys.readouterr().out
    assert f'{signal.Signals(signum).name} received' in log
    work = tmp_path / 'run' / 'work'
    assert (work / 'last_checkpoint').read_text().endswith('iter_12.pth')
    assert (work / 'iter_12.pth.sha256').is_file()
    # the handlers are put back after the run
    assert signal.getsignal(signum) in (signal.SIG_DFL,
                                        signal.default_int_handler)
    resumed = make_runner(tmp_path / 'run', resume=True)
    resumed.train()
    log = capsys.readouterr().out
    assert 'after its first 4 batches' in log
    assert resumed.iter == 24 and resumed.epoch == 3
    for k, v in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[k], v, rtol=0, atol=0)


def _torchrun(work_dir, *extra, restarts=0):
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT
    from tests.test_tools.test_dist_train import cpu_env
    env = cpu_env(REPO_ROOT)
    # the toy teacher's checkpoint, written once before the ranks read it
    os.makedirs(work_dir.parent, exist_ok=True)
    toy_distiller(work_dir.parent)
    cmd = [os.path.join(os.path.dirname(sys.executable), 'torchrun'),
           '--nproc_per_node', '2', '--max-restarts', str(restarts),
           '--rdzv-backend', 'c10d', '--rdzv-endpoint',
           f'127.0.0.1:{env["PORT"]}',
           os.path.join(REPO_ROOT, 'tests', 'test_hooks',
                        'preempt_worker.py'),
           str(work_dir), '--launcher', 'pytorch', *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)


def test_two_process_preemption_stops_every_rank_and_resumes_exactly(
        tmp_path):
    """2 processes (gloo), MoKD exact: SIGTERM to rank 0 alone mid-epoch;
    both ranks stop after the same iteration and exit 75, one checkpoint is
    written, and --resume ends where the uninterrupted 2-process run
    ends."""
    straight = _torchrun(tmp_path / 'straight' / 'work')
    assert straight.returncode == 0, straight.stderr[-3000:]
    preempted = _torchrun(tmp_path / 'run' / 'work', '--signal-at', '11')
    out = preempted.stdout + preempted.stderr
    assert preempted.returncode != 0, out[-3000:]
    # torchrun reports each rank's exit code
    assert out.count(f'exitcode  : {PREEMPTED_EXIT_CODE}') + out.count(
        f'exitcode: {PREEMPTED_EXIT_CODE}') >= 1, out[-3000:]
    work = tmp_path / 'run' / 'work'
    assert (work / 'last_checkpoint').read_text().endswith('iter_12.pth')
    resumed = _torchrun(work, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        a = torch.load(tmp_path / 'straight' / 'work' /
                       f'student_rank{rank}.pth')
        b = torch.load(work / f'student_rank{rank}.pth')
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_a_second_signal_gets_the_previous_handler():
    """The first SIGUSR1 is recorded for the checkpoint; a second one, with
    no iteration boundary in between, reaches the handler installed
    before (the process would end under the default one)."""
    from mokd_det.hooks.preemption import PreemptionSignals
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    try:
        signals = PreemptionSignals(('SIGUSR1', ))
        assert signals.install()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signals.received == signal.SIGUSR1 and seen == []
        os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) != signals._record
        with pytest.raises(ValueError, match='not a signal name'):
            PreemptionSignals(('SIGNOPE', ))
    finally:
        signal.signal(signal.SIGUSR1, previous)

