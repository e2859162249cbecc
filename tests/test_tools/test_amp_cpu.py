"""``--amp`` on a machine without CUDA: one clear error for every optim
wrapper, plain KD included, before anything is built or trained; a config
that names a mokd_det AMP wrapper directly fails with the same message."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.optim import build_optim_wrapper

import mokd_det  # noqa: F401  registers the wrappers
from mokd_det.utils.config import AMP_NEEDS_CUDA, enable_amp
from tests.helpers import REPO_ROOT

# the quickstart configs: plain KD and each KD optim wrapper
CONFIGS = {
    'kd': 'configs/quickstart/kd_r18-r18half_retinanet_3e_shapes.py',
    'dot': 'configs/quickstart/dot_r18-r18half_retinanet_3e_shapes.py',
    'mokd_exact':
        'configs/quickstart/mokd-exact_r18-r18half_retinanet_3e_shapes.py',
    'mokd_amortized':
        'configs/quickstart/mokd-amortized_r18-r18half_retinanet_3e_shapes.py',
    'mkd': 'configs/quickstart/mkd_r18-r18half_retinanet_3e_shapes.py',
}
AMP_WRAPPERS = {
    'AmpDOTOptimWrapper': dict(delta=0.075),
    'AmpMoKDOptimWrapper': dict(mode='exact'),
    'AmpMKDOptimWrapper': dict(interval=2),
}


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only machine, also where CUDA exists."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def train_amp(config, work_dir, *options):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    return subprocess.run(
        [sys.executable, 'tools/train.py', config, '--amp', '--work-dir',
         work_dir, *options], capture_output=True, text=True, env=env,
        cwd=REPO_ROOT, timeout=300)


@pytest.mark.parametrize('method', list(CONFIGS) + ['bare_optim_wrapper'])
def test_amp_on_cpu_fails_at_once_with_one_message(method, tmp_path):
    config = CONFIGS.get(method, CONFIGS['kd'])
    # mmengine's own OptimWrapper (-> AmpOptimWrapper) as well
    options = ['--cfg-options', 'optim_wrapper.type=OptimWrapper'] \
        if method == 'bare_optim_wrapper' else []
    work_dir = str(tmp_path / 'work')
    proc = train_amp(config, work_dir, *options)
    assert proc.returncode != 0
    # the message is the last line of the traceback, not an assertion
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f'RuntimeError: {AMP_NEEDS_CUDA}', proc.stderr[-3000:]
    assert 'only available training on gpu' not in proc.stderr
    # before training: no Runner, no work directory, no iteration
    assert not osp.exists(work_dir)
    assert 'Epoch(train)' not in proc.stdout + proc.stderr


def test_enable_amp_checks_the_config_first(no_cuda):
    from mmengine.config import Config
    cfg = Config(dict(optim_wrapper=dict(type='NoSuchWrapper')))
    with pytest.raises(ValueError, match='NoSuchWrapper'):
        enable_amp(cfg)
    cfg = Config(dict(optim_wrapper=dict(type='DOTOptimWrapper')))
    with pytest.raises(RuntimeError) as err:
        enable_amp(cfg)
    assert str(err.value) == AMP_NEEDS_CUDA
    assert cfg.optim_wrapper.type == 'DOTOptimWrapper'  # left unchanged


@pytest.mark.parametrize('wrapper', list(AMP_WRAPPERS))
def test_amp_wrapper_named_in_a_config_fails_the_same_way(wrapper, no_cuda):
    model = torch.nn.Linear(2, 2)
    cfg = dict(type=wrapper,
               optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
               **AMP_WRAPPERS[wrapper])
    # as the Runner builds it
    with pytest.raises(RuntimeError) as err:
        build_optim_wrapper(model, cfg)
    assert str(err.value) == AMP_NEEDS_CUDA
    # allow_cpu: the CPU tests of the AMP semantics build it anyway
    built = build_optim_wrapper(model, dict(cfg, allow_cpu=True))
    assert type(built).__name__ == wrapper
