"""Every KD optim wrapper's ``--amp`` variant builds from the config that
``enable_amp`` writes, where CUDA is present (faked here: CI has none).

On the H100 (2026-11-25) ``AmpKDOptimWrapper`` failed to build with
``AmpOptimWrapper.__init__() got multiple values for argument
'loss_scale'``: mmengine's ``AmpOptimWrapper`` takes ``loss_scale`` as its
first argument, and ``KDOptimWrapper`` passed the optimizer by position.
The CPU suite never built it (``--amp`` refuses a machine without CUDA).
"""
import mmengine.optim.optimizer.amp_optimizer_wrapper as mmengine_amp
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from torch import nn

import mokd_det  # noqa: F401  registers the wrappers
import mokd_det.utils.config as mokd_config
from mokd_det.optim import KDOptimWrapper
from mokd_det.utils.config import enable_amp

WRAPPERS = {
    'OptimWrapper': {},
    'KDOptimWrapper': {},
    'DOTOptimWrapper': dict(delta=0.075),
    'MoKDOptimWrapper': dict(mode='exact'),
    'MKDOptimWrapper': dict(interval=2),
}


@pytest.fixture
def fake_cuda(monkeypatch):
    """``is_cuda_available`` true for mmengine's AmpOptimWrapper and for
    mokd_det's device check; tensors stay on the CPU (torch's GradScaler
    then disables itself, so a step is a plain SGD step)."""
    monkeypatch.setattr(mmengine_amp, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(mokd_config, 'is_cuda_available', lambda: True)


@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('wrapper_type', list(WRAPPERS))
def test_amp_variant_builds_from_enable_amp(wrapper_type, fake_cuda):
    cfg = Config(dict(optim_wrapper=dict(
        type=wrapper_type,
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
        **WRAPPERS[wrapper_type])))
    enable_amp(cfg)
    wrapper = build_optim_wrapper(nn.Linear(2, 1), cfg.optim_wrapper)
    assert type(wrapper).__name__ == cfg.optim_wrapper.type
    assert type(wrapper).__name__.startswith('Amp')
    assert isinstance(wrapper.optimizer, torch.optim.SGD)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_amp_kd_wrapper_steps_like_sgd(fake_cuda):
    model = nn.Linear(2, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    cfg = Config(dict(optim_wrapper=dict(
        type='KDOptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    enable_amp(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, KDOptimWrapper)
    # loss = sum(w^2): gradient 2w = 2, so one SGD step gives 1 - 0.1 * 2
    wrapper.update_params((model.weight ** 2).sum())
    torch.testing.assert_close(model.weight.detach(),
                               torch.full((1, 2), 0.8))
