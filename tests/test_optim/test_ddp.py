"""2-process gloo DDP equals a 1-process run over the same global batch,
for every method (contract 3: one gradient sync per update, no reducer
conflicts)."""
import torch
import torch.multiprocessing as mp

from tests.test_optim.ddp_worker import run_method, temperature, worker
from tests.test_optim.harness import METHODS, method_state
from tests.toy import toy_distiller

TOLERANCE = 1e-5


def test_two_process_ddp_equals_one_process(tmp_path):
    methods = list(METHODS)
    # the teacher checkpoint is written once, before the workers read it
    singles = {m: run_method(m, str(tmp_path)) for m in methods}
    mp.spawn(worker, args=(2, str(tmp_path), methods), nprocs=2, join=True)
    worst = {}
    for method in methods:
        ddp = torch.load(tmp_path / f'ddp_{method}.pth', weights_only=True)
        single = singles[method]
        assert ddp.keys() == single.keys()
        worst[method] = max(float((ddp[k].float() - single[k].float())
                                  .abs().max()) for k in single)
        # and it did train: the student moved away from its initial weights
        initial = method_state(toy_distiller(tmp_path, temperature(method)))
        moved = max(float((ddp[k] - v).abs().max())
                    for k, v in initial.items() if k.startswith('student.'))
        assert moved > 1e-3, (method, moved)
    print(f'max |DDP - single| per method: {worst}')
    assert all(v <= TOLERANCE for v in worst.values()), worst
