"""Non-finite values never reach the weights nor a checkpoint: plain KD
(KDOptimWrapper) and every KD method skip non-finite updates, put back the
normalisation statistics of a non-finite forward, skip a non-finite
recomputation (amortized MoKD) or meta update (MKD), and a diverging run
stops with a message while its last finite checkpoint survives."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader

import mokd_det  # noqa: F401  registers the wrappers and hooks
from mokd_det.hooks.checkpoint import nonfinite_entries
from mokd_det.optim import (KDOptimWrapper, MKDOptimWrapper,
                            NonFiniteTrainingError)
from mokd_det.optim.base import gram_matrix
from mokd_det.optim.min_norm import min_norm_weights
from tests.test_optim.harness import make_runner, method_state, train
from tests.toy import ToyBatches, toy_batch, toy_collate, toy_distiller

WRAPPERS = {
    'kd': (dict(type='KDOptimWrapper'), []),
    'dot': (dict(type='DOTOptimWrapper', delta=0.075), []),
    'mokd_exact': (dict(type='MoKDOptimWrapper', mode='exact'), []),
    'mokd_amortized': (dict(type='MoKDOptimWrapper', mode='amortized'),
                       [dict(type='MoKDAmortizedHook')]),
    # the temperatures' meta step alone: the call counts below are its
    'mkd': (dict(type='MKDOptimWrapper', interval=1, learn_weight=False),
            [dict(type='MKDMetaHook')]),
}


def _runner(method, tmp_path, lr=0.05, iters=6, ckpt_interval=2,
            max_nonfinite_steps=20):
    wrapper, hooks = WRAPPERS[method]
    temperature = dict(type='MetaTemperature', init=2.0) \
        if method == 'mkd' else 2.0
    model = toy_distiller(tmp_path, temperature, student_norm='bn')
    return Runner(
        model=model,
        work_dir=str(tmp_path / method),
        # unique: Runners of one second share a timestamp name, and with it
        # an older MessageHub than the one the optim wrapper logs to
        experiment_name=f'{method}_{tmp_path.name}',
        train_dataloader=DataLoader(ToyBatches(64), batch_size=4,
                                    collate_fn=toy_collate),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        optim_wrapper=dict(
            wrapper, max_nonfinite_steps=max_nonfinite_steps,
            optimizer=dict(type='SGD', lr=lr, momentum=0.9,
                           weight_decay=1e-4)),
        custom_hooks=hooks,
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=ckpt_interval, max_keep_ckpts=1),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0))


def _nan_on_calls(loss_module, calls):
    """Makes ``loss_module`` return NaN on the given (0-based) calls."""
    forward = loss_module.forward
    count = [0]

    def patched(*args, **kwargs):
        out = forward(*args, **kwargs)
        count[0] += 1
        return out * float('nan') if count[0] - 1 in calls else out

    loss_module.forward = patched
    return count


def _nonfinite_tensors(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return nonfinite_entries(dict(state_dict=ckpt['state_dict'],
                                  optimizer=ckpt['optimizer']))


# calls of the logit term: amortized MoKD recomputes once per iteration
# (forward, recomputation, ...), MKD (interval 1) runs three more forwards
# per iteration (v, and the two finite-difference forwards)
NAN_CALLS = {
    'kd': {1, 2},
    'dot': {1, 2},
    'mokd_exact': {1, 2},
    'mokd_amortized': {3},   # the recomputation after iteration 1's step
    'mkd': {6},              # a finite-difference forward of iteration 1
}


@pytest.mark.parametrize('method', list(WRAPPERS))
def test_nan_distill_loss_never_reaches_a_checkpoint(method, tmp_path):
    runner = _runner(method, tmp_path)
    model = runner.model
    _nan_on_calls(model.distill_losses['kd'], NAN_CALLS[method])
    runner.train()
    ckpts = glob.glob(osp.join(runner.work_dir, 'iter_*.pth'))
    assert ckpts
    for path in ckpts:
        assert _nonfinite_tensors(path) == [], path
    hub = runner.message_hub
    if method == 'mokd_amortized':
        assert runner.optim_wrapper.rule.skipped_weight_updates == 1
        assert torch.isfinite(runner.optim_wrapper.rule.logits).all()
    elif method == 'mkd':
        assert runner.optim_wrapper.skipped_meta_updates == 1
        assert runner.optim_wrapper.meta_updates == 5
    else:
        assert hub.get_scalar('train/kd/skipped_steps').current() == 2


def test_skipped_step_leaves_weights_and_norm_statistics(tmp_path):
    """A non-finite forward moves BatchNorm statistics to inf/NaN; the
    skipped update puts them back, with the weights untouched."""
    model = toy_distiller(tmp_path, student_norm='bn')
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1,
        momentum=0.9)
    wrapper = KDOptimWrapper(optimizer)
    train_runner = type('R', (), {})()
    train_runner.model, train_runner.optim_wrapper = model, wrapper
    train_runner.hooks = []
    train(train_runner, [toy_batch(4, seed=0)])
    state = method_state(model)
    x, y = toy_batch(4, seed=1)
    x[0] = float('inf')
    train(train_runner, [(x, y)])
    after = method_state(model)
    for k, v in state.items():
        assert torch.equal(v, after[k]), k
    assert wrapper._skipped == 1
    train(train_runner, [toy_batch(4, seed=2)])  # and training goes on
    assert not torch.equal(state['student.head.weight'],
                           model.student.head.weight)


@pytest.mark.parametrize('method', list(WRAPPERS))
def test_diverging_run_stops_and_keeps_the_last_finite_checkpoint(
        method, tmp_path):
    runner = _runner(method, tmp_path, iters=40, ckpt_interval=2,
                     max_nonfinite_steps=2)
    # finite for 4 iterations (checkpoints at 2 and 4), then every loss
    # is NaN: the run stops in the 6th, and iter_4.pth must survive
    calls_per_iter = {'mokd_amortized': 2, 'mkd': 4}.get(method, 1)
    _nan_on_calls(runner.model.distill_losses['kd'],
                  set(range(4 * calls_per_iter, 1000)))
    with pytest.raises(NonFiniteTrainingError, match='consecutive') as err:
        runner.train()
    assert 'max_nonfinite_steps' in str(err.value)
    ckpts = sorted(glob.glob(osp.join(runner.work_dir, 'iter_*.pth')))
    assert [osp.basename(c) for c in ckpts] == ['iter_4.pth']
    assert _nonfinite_tensors(ckpts[0]) == []
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        assert f.read().endswith('iter_4.pth')


def test_lr_1e6_stops_with_a_message(tmp_path):
    """A real divergence (lr 1e6) under MoKD exact: the Gram matrix stays
    finite (float64 fallback), the run stops, no non-finite checkpoint."""
    runner = _runner('mokd_exact', tmp_path, lr=1e6, iters=200,
                     ckpt_interval=1, max_nonfinite_steps=3)
    with pytest.raises(NonFiniteTrainingError):
        runner.train()
    for path in glob.glob(osp.join(runner.work_dir, 'iter_*.pth')):
        assert _nonfinite_tensors(path) == [], path


def test_gram_matrix_cannot_overflow():
    rows = torch.full((2, 1000), 1e20)  # |g|^2 = 1e43 > float32's max
    rows[1] *= -0.5
    gram = gram_matrix(rows)
    assert torch.isfinite(gram).all()
    assert gram[0, 0].item() == pytest.approx(1e43, rel=1e-6)
    pi = min_norm_weights(gram)
    assert torch.isfinite(pi).all()
    assert pi.sum().item() == pytest.approx(1.0)


def test_mkd_without_its_hook_fails_at_the_first_update(tmp_path):
    model = toy_distiller(tmp_path,
                          dict(type='MetaTemperature', init=2.0))
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1)
    runner = type('R', (), {})()
    runner.model, runner.hooks = model, []
    runner.optim_wrapper = MKDOptimWrapper(optimizer, interval=1)
    with pytest.raises(RuntimeError, match='MKDMetaHook'):
        train(runner, [toy_batch(4)])


def test_max_nonfinite_steps_is_validated():
    with pytest.raises(ValueError, match='max_nonfinite_steps'):
        KDOptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))],
                                       lr=0.1), max_nonfinite_steps=0)


def test_harness_runner_counts_skips(tmp_path):
    """The method wrappers count a non-finite group as before."""
    model = toy_distiller(tmp_path)
    runner = make_runner('dot', model)
    x, y = toy_batch(4)
    x[1] = float('nan')
    train(runner, [(x, y)])
    assert runner.optim_wrapper._skipped == 1
    assert runner.optim_wrapper._consecutive_nonfinite == 1
