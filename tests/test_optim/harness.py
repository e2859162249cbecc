"""Drives a distiller and a KD optim wrapper through mmengine's train_step
and the method hooks, as the Runner's loop does."""
from types import SimpleNamespace

import torch

from mokd_det.hooks import MKDMetaHook, MoKDAmortizedHook
from mokd_det.optim import (AmpDOTOptimWrapper, AmpKDOptimWrapper,
                            AmpMKDOptimWrapper, AmpMoKDOptimWrapper,
                            DOTOptimWrapper, KDOptimWrapper, MKDOptimWrapper,
                            MoKDOptimWrapper)

#: vanilla KD, for tests that run it beside the methods
KD = (KDOptimWrapper, AmpKDOptimWrapper, {}, [])

METHODS = {
    'dot': (DOTOptimWrapper, AmpDOTOptimWrapper, dict(delta=0.075), []),
    'mokd_exact': (MoKDOptimWrapper, AmpMoKDOptimWrapper,
                   dict(mode='exact'), []),
    'mokd_amortized': (MoKDOptimWrapper, AmpMoKDOptimWrapper,
                       dict(mode='amortized'), [MoKDAmortizedHook]),
    # the weights from the gradients at the shared features, one backward
    'mokd_exact_features': (MoKDOptimWrapper, AmpMoKDOptimWrapper,
                            dict(mode='exact', gradients='features'), []),
    # the weights from the next update's losses: no recomputation, no hook
    'mokd_amortized_next': (MoKDOptimWrapper, AmpMoKDOptimWrapper,
                            dict(mode='amortized', weight_signal='next'),
                            []),
    # the learnt distillation weight (and the temperatures where the toy
    # has them)
    'mkd': (MKDOptimWrapper, AmpMKDOptimWrapper, dict(interval=2),
            [MKDMetaHook]),
    # the temperatures alone (learn_weight=False)
    'mkd_temperatures': (MKDOptimWrapper, AmpMKDOptimWrapper,
                         dict(interval=2, learn_weight=False),
                         [MKDMetaHook]),
}


def make_runner(method, model, amp=False, train_model=None,
                optimizer='sgd', **kwargs):
    """A minimal runner (model, optim_wrapper, hooks) for ``method`` (one
    of :data:`METHODS`, or ``'kd'``), with
    SGD (momentum 0.9) or ``optimizer='adamw'`` (lr 1e-4, as DETRs and
    RTMDet ship)."""
    cls, amp_cls, defaults, hook_types = KD if method == 'kd' else \
        METHODS[method]
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == 'adamw':
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    else:
        optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9,
                                    weight_decay=1e-4)
    if amp:  # the AMP semantics, tested on the CPU
        kwargs = dict(kwargs, allow_cpu=True)
    wrapper = (amp_cls if amp else cls)(optimizer, **{**defaults, **kwargs})
    runner = SimpleNamespace(model=train_model or model,
                             optim_wrapper=wrapper,
                             hooks=[h() for h in hook_types])
    for hook in runner.hooks:
        hook.before_run(runner)
    return runner


def train(runner, batches):
    """Returns the logged variables of every iteration."""
    logs = []
    for i, (x, y) in enumerate(batches):
        data = dict(inputs=x, data_samples=y)
        for hook in runner.hooks:
            hook.before_train_iter(runner, i, data)
        logs.append(runner.model.train_step(data, runner.optim_wrapper))
        for hook in runner.hooks:
            hook.after_train_iter(runner, i, data)
    return logs


def method_state(model):
    """Everything a method trains: student, necks, temperatures."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)
