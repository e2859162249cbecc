"""Worker of the 2-process gloo DDP test (spawned by test_ddp.py)."""
import os
import pathlib

import torch
import torch.distributed as dist

STEPS = 3


def batches():
    from tests.toy import toy_batch
    return [toy_batch(4, seed=s) for s in range(STEPS)]


def temperature(method):
    return dict(type='MetaTemperature', init=2.0) \
        if method.startswith('mkd') else 2.0


def run_method(method, tmp, rank=None, world=1):
    """Trains the toy distiller for STEPS global batches of 4, on this
    rank's share of each batch; returns the trained state."""
    from mmengine.model import MMDistributedDataParallel

    from tests.test_optim.harness import make_runner, method_state, train
    from tests.toy import toy_distiller
    model = toy_distiller(pathlib.Path(tmp), temperature(method))
    train_model = None
    if world > 1:
        train_model = MMDistributedDataParallel(module=model)
    runner = make_runner(method, model, train_model=train_model,
                         **(dict(interval=1) if method.startswith('mkd')
                            else {}))
    share = 4 // world
    lo = 0 if rank is None else rank * share
    train(runner, [(x[lo:lo + share], y[lo:lo + share])
                   for x, y in batches()])
    state = method_state(model)
    if method.startswith('mokd'):
        state['weights'] = runner.optim_wrapper.weights.clone()
    return state


def worker(rank, world, tmp, methods):
    os.environ.update(MASTER_ADDR='127.0.0.1')
    dist.init_process_group('gloo', init_method=f'file://{tmp}/rendezvous',
                            rank=rank, world_size=world)
    torch.set_num_threads(1)
    import mokd_det  # noqa: F401
    for method in methods:
        state = run_method(method, tmp, rank, world)
        if rank == 0:
            torch.save(state, f'{tmp}/ddp_{method}.pth')
    # no rank tears its connections down while the other still uses them
    # (once, under a loaded machine, gloo aborted the slower rank: SIGABRT)
    dist.barrier()
    dist.destroy_process_group()
