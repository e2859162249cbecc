"""ExportStudentHook exports the weights that validation evaluated: with
mmengine's EMAHook (RTMDet's recipe) the student's EMA weights, not the raw
training weights."""
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.utils.data import DataLoader

import mokd_det  # noqa: F401  registers the hooks
from mokd_det.checkpoint import safe_torch_load
from tests.toy import ToyBatches, toy_collate, toy_distiller


class _Accuracy(BaseMetric):
    """Top-1 of the ToyNet logits (validation needs a metric)."""

    def process(self, data_batch, data_samples):
        hits = torch.stack(data_samples).argmax(1) == \
            data_batch['data_samples']
        self.results.extend(hits.tolist())

    def compute_metrics(self, results):
        return dict(acc=sum(results) / len(results))


class _Snapshots(Hook):
    """Copies the student's state after training (raw weights) and during
    validation (after EMAHook, priority NORMAL, swapped its weights in)."""
    priority = 'LOW'

    def __init__(self):
        self.raw, self.validated = [], []

    def _state(self, runner):
        return {k: v.clone() for k, v in
                runner.model.student.state_dict().items()}

    def after_train_epoch(self, runner):
        self.raw.append(self._state(runner))

    def before_val_epoch(self, runner):
        self.validated.append(self._state(runner))


def _runner(tmp_path, hooks, name):
    loader = dict(batch_size=4, collate_fn=toy_collate)
    return Runner(
        model=toy_distiller(tmp_path, student_norm='bn'),
        work_dir=str(tmp_path / name),
        # unique: Runners of one second share a timestamp name
        experiment_name=f'export_{name}_{tmp_path.name}',
        train_dataloader=DataLoader(ToyBatches(12), shuffle=False, **loader),
        val_dataloader=DataLoader(ToyBatches(8), **loader),
        val_evaluator=[_Accuracy()],
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(type='KDOptimWrapper', optimizer=dict(
            type='SGD', lr=0.1, momentum=0.9)),
        custom_hooks=hooks,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        randomness=dict(seed=0))


@pytest.mark.parametrize('update_buffers', [False, True])
def test_exported_student_is_the_validated_ema_student(tmp_path,
                                                       update_buffers):
    snaps = _Snapshots()
    runner = _runner(tmp_path, [
        dict(type='EMAHook', momentum=0.5, update_buffers=update_buffers),
        dict(type='ExportStudentHook'), snaps], f'ema{int(update_buffers)}')
    runner.train()
    assert len(snaps.validated) == 2  # 3 iterations per epoch, 2 epochs
    for epoch in (1, 2):
        ckpt = safe_torch_load(osp.join(runner.work_dir,
                                        f'student_epoch_{epoch}.pth'))
        exported, meta = ckpt['state_dict'], ckpt['meta']
        assert meta['ema'] is True
        validated, raw = snaps.validated[epoch - 1], snaps.raw[epoch - 1]
        assert exported.keys() == validated.keys()
        for k in validated:
            assert torch.equal(exported[k], validated[k]), k
        # the weights differ from the raw ones; buffers (BN statistics)
        # only when the EMA averages them
        differ = {k for k in raw if not torch.equal(exported[k], raw[k])}
        assert 'backbone.0.weight' in differ and 'head.weight' in differ
        assert ('backbone.1.running_mean' in differ) == update_buffers
    # mmengine's own checkpoint holds the same (EMA) student
    state = safe_torch_load(osp.join(runner.work_dir,
                                     'epoch_2.pth'))['state_dict']
    for k, v in exported.items():
        assert torch.equal(state[f'student.{k}'], v), k


def test_without_ema_the_raw_student_is_exported(tmp_path):
    snaps = _Snapshots()
    runner = _runner(tmp_path, [dict(type='ExportStudentHook'), snaps],
                     'raw')
    runner.train()
    ckpt = safe_torch_load(osp.join(runner.work_dir, 'student_epoch_2.pth'))
    assert ckpt['meta']['ema'] is False
    for k, v in snaps.raw[1].items():
        assert torch.equal(ckpt['state_dict'][k], v), k
        assert torch.equal(snaps.validated[1][k], v), k
