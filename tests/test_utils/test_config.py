import pytest
from mmengine.config import Config

from mokd_det.utils import enable_amp, enable_auto_scale_lr


def test_enable_amp_maps_optim_wrapper_to_amp_variant():
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_enable_amp_keeps_an_amp_wrapper_and_its_loss_scale():
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
