"""Train a detector, a classifier or a distiller from an mmengine config.

The flags are MMDetection's (``tools/train.py`` of mmdet 3.x); importing
``mokd_det`` registers the package's components, so a config needs nothing
beyond ``custom_imports = dict(imports=['mokd_det'])`` to be portable to
plain mmdet tools.

Examples:
    python tools/train.py configs/quickstart/retinanet_r18_fpn_shapes.py
    python tools/train.py CONFIG --amp --resume \
        --cfg-options train_cfg.max_epochs=2
    bash tools/dist_train.sh CONFIG 8
    # restarts after a lost worker resume on their own
    MAX_RESTARTS=3 bash tools/dist_train.sh CONFIG 8
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mokd_det  # noqa: F401  registers components, safe checkpoint loading
from mokd_det.datasets.checks import check_detection_data
from mokd_det.utils import check_base_hooks, enable_amp, enable_auto_scale_lr
from mokd_det.utils.config import (init_cpu_distributed,
                                    shutdown_cpu_distributed)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model (mokd_det)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision (the optim wrapper\'s AMP '
        'variant, fp16 with dynamic loss scaling)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by the actual batch size over '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or without a path from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help='do not check the COCO-style train/val data at start-up '
        '(annotation files, classes, image files; '
        'mokd_det.datasets.check_detection_data)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy format, e.g. '
        'train_cfg.max_epochs=2 optim_wrapper.optimizer.lr=0.01')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # hooks of the student's base config (RTMDet's EMAHook) that the
    # distillation config's custom_hooks list replaced fail here
    check_base_hooks(cfg)

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)

    # a torchrun restart (--max-restarts) reruns this same command line:
    # continue from the latest checkpoint, never retrain over it
    restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0)
    if int(os.environ.get('TORCHELASTIC_MAX_RESTARTS', '0') or 0) > 0 and \
            os.environ.get('TORCH_DISABLE_SHARE_RDZV_TCP_STORE') != '1' and \
            restart == 0 and os.environ.get('RANK', '0') == '0':
        print('[train] warning: torchrun --max-restarts without '
              'TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment: a '
              'restarted group can hang in init_process_group '
              '(pytorch/pytorch#135712). Export it before torchrun '
              '(tools/dist_train.sh does).', flush=True)
    if restart > 0:
        # the latest checkpoint of this run, else what the run started from
        if args.resume is None or osp.isfile(
                osp.join(cfg.work_dir, 'last_checkpoint')):
            args.resume = 'auto'
        if os.environ.get('RANK', '0') == '0':
            source = (f'the latest checkpoint in {cfg.work_dir}'
                      if args.resume == 'auto' else args.resume)
            print(f'[train] torchrun restart {restart}: resuming from '
                  f'{source}', flush=True)

    # --resume PATH > --resume (latest in work_dir)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # bad data fails here, naming the files, not at iteration N
    if not args.skip_data_check:
        check_detection_data(cfg, log=os.environ.get('RANK', '0') == '0')

    # --launcher pytorch without CUDA: gloo process group and CPU DDP
    cpu_dist = init_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    runner.train()
    if cpu_dist:
        shutdown_cpu_distributed()


if __name__ == '__main__':
    main()
