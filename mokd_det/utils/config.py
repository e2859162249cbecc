"""Config loading and the edits behind ``tools/train.py``'s flags."""
import datetime
import os
import os.path as osp

import torch
from mmengine.config import Config, ConfigDict
from mmengine.device import (get_device, is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import MODEL_WRAPPERS, OPTIM_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

#: why ``--amp`` and mokd_det's AMP optim wrappers refuse a machine without
#: CUDA (the one place this message is written)
AMP_NEEDS_CUDA = (
    '--amp needs a CUDA device: mixed precision with fp16 loss scaling is '
    'not supported on the CPU (torch.cuda.is_available() is False); train '
    'without --amp (a config that names an Amp* optim wrapper: use its fp32 '
    'variant, e.g. DOTOptimWrapper instead of AmpDOTOptimWrapper).')

#: the environment torchrun gives each process (``--launcher pytorch``)
TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT')


def check_amp_device() -> None:
    """Refuses mixed precision without an accelerator.

    On the CPU, fp16 with a dynamic loss scale skipped 5 of the first 6
    steps while the scale settled (mokd_det's AMP wrappers) or stopped on
    mmengine's "only available training on gpu" assertion (plain KD):
    ``--amp`` and the AMP optim wrappers now fail the same way, at once.
    CUDA (and the NPU, MLU and MUSA devices that mmengine's
    ``AmpOptimWrapper`` accepts) pass.

    Raises:
        RuntimeError: No CUDA device; the message is :data:`AMP_NEEDS_CUDA`.
    """
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise RuntimeError(AMP_NEEDS_CUDA)


def amp_variant(wrapper_type) -> str:
    """The mixed-precision optim wrapper type that ``--amp`` gives a
    wrapper type (a name or a class): ``OptimWrapper`` ->
    ``AmpOptimWrapper``; a class naming ``amp_variant`` -> that; an
    ``AmpOptimWrapper`` (subclass) -> itself.

    Raises:
        ValueError: The type is not registered or has no AMP variant.
    """
    wrapper_cls = wrapper_type if isinstance(wrapper_type, type) else \
        OPTIM_WRAPPERS.get(wrapper_type)
    if wrapper_cls is None:
        raise ValueError(f'optim_wrapper type {wrapper_type!r} is not '
                         'registered; is its package in custom_imports?')
    if issubclass(wrapper_cls, AmpOptimWrapper):
        return wrapper_type
    amp_type = 'AmpOptimWrapper' if wrapper_type == 'OptimWrapper' \
        else getattr(wrapper_cls, 'amp_variant', None)
    if amp_type is None:
        raise ValueError(
            f'--amp: optim_wrapper {wrapper_cls.__name__} has no AMP '
            'variant; use AmpOptimWrapper or a wrapper with one.')
    return amp_type


def enable_amp(cfg: Config) -> None:
    """Switches ``cfg.optim_wrapper`` to its mixed-precision variant.

    ``OptimWrapper`` becomes mmengine's ``AmpOptimWrapper``; a wrapper class
    that names its AMP variant in a class attribute ``amp_variant`` becomes
    that variant; a wrapper that already is an ``AmpOptimWrapper`` is kept.
    The loss scale defaults to ``'dynamic'`` (fp16; mmcv 2.1.0's focal-loss
    CUDA kernel has no bf16, so fp16 is the safe default for detectors).

    Raises:
        ValueError: The configured optim wrapper has no AMP variant.
        RuntimeError: No CUDA device (see :func:`check_amp_device`).
    """
    amp_type = amp_variant(cfg.optim_wrapper.get('type', 'OptimWrapper'))
    # config errors first, then the machine
    check_amp_device()
    cfg.optim_wrapper.type = amp_type
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def enable_auto_scale_lr(cfg: Config) -> None:
    """Turns on ``auto_scale_lr`` as MMDetection's ``--auto-scale-lr`` does.

    Raises:
        RuntimeError: The config has no ``auto_scale_lr.base_batch_size``.
    """
    if 'auto_scale_lr' not in cfg or \
            'base_batch_size' not in cfg.auto_scale_lr:
        raise RuntimeError(
            '--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) '
            'in the config (mmdet::_base_/schedules/*.py define it).')
    cfg.auto_scale_lr.enable = True


def load_config(path: str) -> Config:
    """``Config.fromfile`` that also takes ``'pkg::path'`` (a config shipped
    inside an installed package, e.g. ``'mmdet::retinanet/...py'``), as
    ``_base_`` does.

    Raises:
        FileNotFoundError: The config does not exist; the message says where
            it was looked for.
    """
    resolved = path
    if '::' in path:
        resolved, _ = Config._get_cfg_path(path, '')
    if not osp.isfile(resolved):
        where = f' (resolved to {resolved})' if resolved != path else ''
        raise FileNotFoundError(
            f'config {path!r} not found{where}; relative paths are resolved '
            'from the working directory, "mmdet::..." from the installed '
            'package')
    return Config.fromfile(resolved)


def init_cpu_distributed(cfg: Config) -> bool:
    """Lets ``--launcher pytorch`` (torchrun, ``tools/dist_train.sh``,
    ``tools/dist_test.sh``) run on a machine without CUDA.

    mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and
    ``Runner.wrap_model`` gives DDP ``device_ids=[LOCAL_RANK]``, which a CPU
    module refuses, so a multi-process run on the CPU failed with "Found no
    NVIDIA driver". Where mmengine finds no accelerator (``get_device()`` is
    ``'cpu'``), this initialises the default process group from torchrun's
    environment before the Runner is built (the Runner then skips
    ``init_dist``), with the gloo backend when the config asks for NCCL
    (``env_cfg.dist_cfg``'s other arguments, e.g. ``timeout``, are kept),
    and sets ``cfg.model_wrapper_cfg`` so that DDP gets ``device_ids=None``
    (the CPU module's DDP; ``broadcast_buffers=False`` and
    ``find_unused_parameters`` as mmengine's default wrapper). mmengine's
    seed and sampler synchronisation run over the same group. On a machine
    with CUDA (or another accelerator mmengine drives) nothing changes.

    Args:
        cfg: The config, with ``cfg.launcher`` set.

    Returns:
        True when it initialised the process group (or found one already
        initialised), False when there is nothing to do: no launcher, or an
        accelerator.

    Raises:
        RuntimeError: ``--launcher slurm``/``mpi`` without an accelerator
            (mmengine derives the local rank from the GPU count there), or
            ``--launcher pytorch`` without torchrun's environment; the
            message says how to launch instead.
    """
    launcher = cfg.get('launcher', 'none') or 'none'
    if launcher == 'none' or get_device() != 'cpu':
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} needs a CUDA device: mmengine derives '
            'each process\'s device from the GPU count, and this machine has '
            'none (torch.cuda.is_available() is False). On the CPU, start the '
            'processes with torchrun: bash tools/dist_train.sh CONFIG NPROC '
            '(or tools/dist_test.sh), which uses --launcher pytorch and the '
            'gloo backend.')
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher pytorch expects the environment torchrun sets '
            f'({", ".join(missing)} missing); start the processes with '
            'bash tools/dist_train.sh CONFIG NPROC (torchrun), or train in '
            'one process without --launcher.')
    env_cfg = cfg.get('env_cfg') or ConfigDict()
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', 'nccl')
    if backend == 'nccl':
        backend = 'gloo'
    dist_cfg.pop('init_backend', None)
    if isinstance(dist_cfg.get('timeout'), (int, float)):
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend, init_method='env://', **dist_cfg)
    env_cfg.setdefault('dist_cfg', ConfigDict())
    env_cfg.dist_cfg.backend = backend
    cfg.env_cfg = env_cfg

    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        wrapper_type = wrapper_cfg.get('type', 'MMDistributedDataParallel')
        wrapper_cls = wrapper_type if isinstance(wrapper_type, type) else \
            MODEL_WRAPPERS.get(wrapper_type)
        if wrapper_cls is not None and issubclass(wrapper_cls,
                                                  DistributedDataParallel):
            if wrapper_cfg.get('device_ids') is not None:
                print_log(
                    f'model_wrapper_cfg.device_ids='
                    f'{wrapper_cfg.device_ids} ignored: no CUDA device, DDP '
                    'runs on the CPU (device_ids=None)', logger='current',
                    level=30)
            wrapper_cfg.device_ids = None
    print_log(
        f'no CUDA device: {os.environ["WORLD_SIZE"]}-process DDP on the CPU '
        f'with the {backend} backend (rank {os.environ["RANK"]})',
        logger='current')
    return True


def shutdown_cpu_distributed() -> None:
    """Tear down the gloo group :func:`init_cpu_distributed` started.

    The ranks meet at a barrier first, so that none closes its gloo pairs
    while another still has a collective of the run's last step (the final
    metric broadcast, a checkpoint's all-gather) in flight; without it one
    rank in about ten aborted at exit ("terminate called without an active
    exception", SIGABRT) after a successful run.
    """
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
