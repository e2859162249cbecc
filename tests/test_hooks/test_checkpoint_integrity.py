"""Checkpoint integrity through the real Runner (toy distiller): the
SHA-256 recorded beside each checkpoint, the fallback of --resume to the
newest whole checkpoint, the refusals, and a failed write (a full disk)."""
import errno
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mokd_det.checkpoint import CorruptCheckpointError
from mokd_det.checkpoint.integrity import file_digest, verify
from mokd_det.hooks.checkpoint import CheckpointWriteError
from tests.toy import ToyBatches, toy_collate, toy_distiller


def make_runner(tmp_path, max_iters, resume=False, load_from=None,
                name='run'):
    os.makedirs(tmp_path, exist_ok=True)
    model = toy_distiller(tmp_path)
    return Runner(
        model=model, work_dir=str(tmp_path / 'work'),
        experiment_name=f'{name}_{max_iters}_{resume}_{tmp_path.name}',
        train_dataloader=DataLoader(ToyBatches(1000), batch_size=4,
                                    collate_fn=toy_collate),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(type='KDOptimWrapper', optimizer=dict(
            type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', by_epoch=False, interval=1,
            max_keep_ckpts=3)),
        randomness=dict(seed=0), resume=resume, load_from=load_from)


def student(runner):
    return {k: v.clone() for k, v in runner.model.student.state_dict()
            .items()}


def test_each_checkpoint_has_its_digest(tmp_path):
    make_runner(tmp_path, 2).train()
    work = tmp_path / 'work'
    for step in (1, 2):
        path = str(work / f'iter_{step}.pth')
        line = (work / f'iter_{step}.pth.sha256').read_text()
        assert line == f'{file_digest(path)}  iter_{step}.pth\n'
        assert verify(path) is None


@pytest.mark.parametrize('damage', ['cut', 'flipped'])
def test_resume_falls_back_to_the_newest_whole_checkpoint(tmp_path, capsys,
                                                          damage):
    """The latest checkpoint cut short (its structure) or with one byte
    flipped (loads under torch; only its digest tells): --resume says so,
    naming both files, resumes from the one before, and ends where an
    uninterrupted run ends."""
    straight = make_runner(tmp_path / 'straight', 4, name='straight')
    straight.train()
    make_runner(tmp_path, 3).train()
    latest = tmp_path / 'work' / 'iter_3.pth'
    data = latest.read_bytes()
    if damage == 'cut':
        latest.write_bytes(data[:len(data) // 2])
    else:
        pos = len(data) // 3
        latest.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) +
                           data[pos + 1:])
    resumed = make_runner(tmp_path, 4, resume=True)
    resumed.train()
    log = capsys.readouterr().out
    assert 'iter_3.pth is not whole' in log and 'iter_2.pth' in log
    assert 'resumed' in log.lower() and resumed.iter == 4
    for k, v in student(straight).items():
        torch.testing.assert_close(student(resumed)[k], v, rtol=0, atol=0)


def test_resume_with_no_whole_checkpoint_stops(tmp_path):
    make_runner(tmp_path, 2).train()
    for step in (1, 2):
        path = tmp_path / 'work' / f'iter_{step}.pth'
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match='Not training from scratch'):
        make_runner(tmp_path, 3, resume=True).train()


def test_explicit_corrupt_checkpoint_is_refused_as_corrupt(tmp_path):
    make_runner(tmp_path, 1).train()
    path = tmp_path / 'work' / 'iter_1.pth'
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptCheckpointError, match='cut short') as info:
        make_runner(tmp_path, 2, resume=True, load_from=str(path)).train()
    assert 'malicious' not in str(info.value)


def test_full_disk_keeps_the_previous_checkpoint_and_stops(tmp_path,
                                                            monkeypatch):
    """The third checkpoint write fails with ENOSPC half-way: the run stops
    with the path and the cause, iter_2.pth and last_checkpoint stay as
    they were, no partial file is left, and --resume continues."""
    from mmengine.fileio import LocalBackend
    put = LocalBackend.put

    def full_disk(self, obj, filepath):
        if 'iter_3.pth' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', full_disk)
    with pytest.raises(CheckpointWriteError) as info:
        make_runner(tmp_path, 4).train()
    message = str(info.value)
    assert 'iter_3.pth' in message and 'No space left' in message
    assert 'iter_2.pth is intact' in message
    work = tmp_path / 'work'
    assert (work / 'last_checkpoint').read_text().endswith('iter_2.pth')
    assert verify(str(work / 'iter_2.pth')) is None
    assert not [n for n in os.listdir(work) if 'iter_3' in n]
    monkeypatch.setattr(LocalBackend, 'put', put)
    resumed = make_runner(tmp_path, 4, resume=True)
    resumed.train()
    assert resumed.iter == 4 and osp.isfile(work / 'iter_4.pth')
