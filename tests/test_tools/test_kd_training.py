"""Each KD optim wrapper end to end through tools/train.py on generated
data: trains, validates, logs the dynamics; --resume continues; the plot tool draws the logged dynamics."""
import json
import os.path as osp
from glob import glob

import pytest

from tests.helpers import run_tool
from tests.test_distillers.test_det_distiller import distill_config

WRAPPERS = {
    'dot': (dict(type='DOTOptimWrapper', delta=0.075), [], 'kd/cos'),
    'mokd_exact': (dict(type='MoKDOptimWrapper', mode='exact'), [],
                   'kd/pi_task'),
    'mokd_amortized': (dict(type='MoKDOptimWrapper', mode='amortized'),
                       [dict(type='MoKDAmortizedHook')], 'kd/pi_distill'),
    'mkd': (dict(type='MKDOptimWrapper', interval=1),
            [dict(type='MKDMetaHook')], 'kd/tau_teacher_logits'),
}


def scalars(work_dir):
    log = sorted(glob(osp.join(work_dir, '*', 'vis_data',
                               'scalars.json')))[-1]
    with open(log) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('method', list(WRAPPERS))
def test_wrapper_trains_validates_and_logs(method, shapes_det_root,
                                           tmp_path):
    wrapper, hooks, logged_key = WRAPPERS[method]
    cfg, _ = distill_config('retinanet', shapes_det_root, tmp_path)
    cfg.optim_wrapper = dict(wrapper, optimizer=dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        clip_grad=dict(max_norm=35, norm_type=2))
    if method == 'mkd':
        cfg.model.distill_losses.logits.temperature = dict(
            type='MetaTemperature', init=2.0)
    cfg.custom_hooks = hooks
    config = str(tmp_path / 'cfg.py')
    cfg.dump(config)
    log = run_tool('tools/train.py', config)
    assert 'coco/bbox_mAP' in log
    entries = scalars(cfg.work_dir)
    train = [e for e in entries if 'loss_distill' in e]
    assert len(train) == 2 and all(logged_key in e for e in train)

    if method == 'dot':
        # --resume continues from epoch 1 (--amp on a CPU-only machine is
        # refused: tests/test_tools/test_amp_cpu.py)
        log = run_tool('tools/train.py', config, '--resume',
                       '--cfg-options', 'train_cfg.max_epochs=2')
        assert 'resumed epoch: 1, iter: 2' in log
        entries = scalars(cfg.work_dir)
        assert [e['step'] for e in entries if 'loss_distill' in e] == [3, 4]
        out = str(tmp_path / 'dynamics.png')
        printed = run_tool('tools/plot_kd_dynamics.py', cfg.work_dir, '--out',
                       out)
        assert osp.getsize(out) > 10_000 and 'panels' in printed
