import pytest
from mmengine.config import Config

from mokd_det.utils import enable_amp, enable_auto_scale_lr
from mokd_det.utils import config as config_module


@pytest.fixture
def with_cuda(monkeypatch):
    """enable_amp's config mapping, as on a machine with CUDA."""
    monkeypatch.setattr(config_module, 'check_amp_device', lambda: None)


def test_enable_amp_maps_optim_wrapper_to_amp_variant(with_cuda):
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_enable_amp_maps_kd_wrappers_to_their_amp_variants(with_cuda):
    import mokd_det  # noqa: F401  (registers the wrappers)
    for fp32, amp in [('KDOptimWrapper', 'AmpKDOptimWrapper'),
                      ('DOTOptimWrapper', 'AmpDOTOptimWrapper'),
                      ('MoKDOptimWrapper', 'AmpMoKDOptimWrapper'),
                      ('MKDOptimWrapper', 'AmpMKDOptimWrapper')]:
        cfg = Config(dict(optim_wrapper=dict(type=fp32)))
        enable_amp(cfg)
        assert cfg.optim_wrapper.type == amp


def test_enable_amp_without_cuda_says_so(monkeypatch):
    monkeypatch.setattr(config_module, 'is_cuda_available', lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    with pytest.raises(RuntimeError, match='needs a CUDA device'):
        enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # left as it was


def test_enable_amp_keeps_an_amp_wrapper_and_its_loss_scale(with_cuda):
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper',
                                         loss_scale=512.)))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 512.


def test_enable_amp_rejects_unknown_wrapper():
    cfg = Config(dict(optim_wrapper=dict(type='NoSuchWrapper')))
    with pytest.raises(ValueError, match='NoSuchWrapper'):
        enable_amp(cfg)


def test_auto_scale_lr_needs_base_batch_size():
    cfg = Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16)))
    enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr.enable
    with pytest.raises(RuntimeError, match='base_batch_size'):
        enable_auto_scale_lr(Config(dict()))
