"""Trains the toy distiller with a checkpoint every iteration, for the
crash-during-write test: ``python ckpt_worker.py WORK_DIR MAX_ITERS
[--slow] [--resume]``. With ``--slow`` every file mmengine writes through
its local back-end is written in small chunks with pauses (a slow disk), and
``write-start`` / ``write-end`` are printed around each checkpoint write, so
that the test can kill the process inside one."""
import argparse
import sys
import time

from mmengine.fileio import LocalBackend
from mmengine.runner import Runner
from torch.utils.data import DataLoader

import mokd_det  # noqa: F401  the crash-safe CheckpointHook
from tests.toy import ToyBatches, toy_collate, toy_distiller


def slow_put(self, obj, filepath):
    print('write-start', filepath, flush=True)
    with open(filepath, 'wb') as f:
        step = max(1, len(obj) // 20)
        for i in range(0, len(obj), step):
            f.write(obj[i:i + step])
            f.flush()
            time.sleep(0.02)
    print('write-end', filepath, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('max_iters', type=int)
    parser.add_argument('--slow', action='store_true')
    parser.add_argument('--resume', action='store_true')
    args = parser.parse_args()
    if args.slow:
        LocalBackend.put = slow_put
    import pathlib
    model = toy_distiller(pathlib.Path(args.work_dir).parent)
    runner = Runner(
        model=model,
        work_dir=args.work_dir,
        train_dataloader=DataLoader(ToyBatches(1000), batch_size=4,
                                    collate_fn=toy_collate),
        train_cfg=dict(by_epoch=False, max_iters=args.max_iters),
        optim_wrapper=dict(type='KDOptimWrapper', optimizer=dict(
            type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', by_epoch=False, interval=1,
            max_keep_ckpts=1)),
        randomness=dict(seed=0),
        resume=args.resume)
    runner.train()
    print('trained', runner.iter, flush=True)


if __name__ == '__main__':
    sys.exit(main())
