"""Trains the toy distiller for the preemption tests, one process or a
rank of ``torchrun``: ``python preempt_worker.py WORK_DIR [--signal-at N]
[--kill-at N] [--resume] [--launcher pytorch]``. With ``--signal-at N``
rank 0 sends itself SIGTERM before iteration N (the other ranks get no
signal); with ``--kill-at N`` rank 1 kills itself (SIGKILL) there, in
torchrun's first attempt only. Prints
``exit <code>`` and writes the student's weights to
``WORK_DIR/student_rank<R>.pth`` when training ends."""
import argparse
import os
import pathlib
import signal
import sys

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mokd_det.utils.config import (init_cpu_distributed,
                                   shutdown_cpu_distributed)
from tests.toy import ToyBatches, toy_collate, toy_distiller


class SignalAt(Hook):
    """Before iteration ``at``, rank ``rank`` sends itself ``signum`` (only
    in torchrun's first attempt: a restarted worker goes on)."""

    def __init__(self, at, signum=signal.SIGTERM, rank=0):
        self.at, self.signum, self.rank = at, signum, rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at and get_rank() == self.rank and \
                os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0':
            os.kill(os.getpid(), self.signum)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--signal-at', type=int, default=None)
    parser.add_argument('--kill-at', type=int, default=None,
                        help='rank 1 kills itself (SIGKILL) before this '
                        'iteration, in the first attempt')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--launcher', default='none')
    args = parser.parse_args()
    root = pathlib.Path(args.work_dir).parent
    # as tools/train.py does: gloo and CPU DDP under torchrun
    dist = Config(dict(launcher=args.launcher,
                       env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    cpu_dist = init_cpu_distributed(dist)
    runner = Runner(
        model=toy_distiller(root), work_dir=args.work_dir,
        train_dataloader=dict(
            dataset=ToyBatches(32), batch_size=2, num_workers=1,
            persistent_workers=True, collate_fn=toy_collate,
            sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=2),
        optim_wrapper=dict(type='MoKDOptimWrapper', optimizer=dict(
            type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        custom_hooks=([SignalAt(args.signal_at)]
                      if args.signal_at is not None else []) +
        ([SignalAt(args.kill_at, signal.SIGKILL, rank=1)]
         if args.kill_at is not None else []),
        launcher=args.launcher, env_cfg=dist.env_cfg,
        cfg=dict(model_wrapper_cfg=dist.get('model_wrapper_cfg')),
        randomness=dict(seed=0), resume=args.resume)
    try:
        runner.train()
        torch.save(runner.model.module.student.state_dict()
                   if hasattr(runner.model, 'module') else
                   runner.model.student.state_dict(),
                   os.path.join(args.work_dir,
                                f'student_rank{get_rank()}.pth'))
    finally:
        if cpu_dist:
            shutdown_cpu_distributed()


if __name__ == '__main__':
    sys.exit(main())
