import builtins
import io
import os
import pickle
import subprocess
import warnings

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import mokd_det  # noqa: F401  installs the safe loader
from mokd_det.checkpoint import (CorruptCheckpointError,
                                 UnsafeCheckpointError,
                                 allow_checkpoint_types, safe_torch_load)
from mokd_det.checkpoint import safe_load as ckpt_mod


class _Payload:
    """Stands for an arbitrary object someone pickled into a checkpoint."""

    def __init__(self):
        self.value = 3


@pytest.fixture
def clean_allowlist():
    saved = list(ckpt_mod._extra_types)
    yield
    ckpt_mod._extra_types[:] = saved


def test_mmengine_uses_the_safe_loader_for_local_paths():
    assert CheckpointLoader._get_checkpoint_loader('/x/epoch_1.pth') is \
        ckpt_mod.load_from_local_safe


def test_mmengine_checkpoint_types_load_with_weights_only(tmp_path):
    buf = HistoryBuffer()
    buf.update(np.float64(0.5))
    state = dict(
        state_dict=dict(w=torch.ones(2)),
        message_hub=dict(log_scalars={'loss': buf},
                         runtime_info=dict(iter=np.int64(3),
                                           arr=np.arange(3.0))),
        meta=dict(dtype=np.dtype('float32')))
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    assert loaded['message_hub']['runtime_info']['iter'] == 3


def test_disallowed_type_is_refused_with_its_name(tmp_path, clean_allowlist):
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_Payload()), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(str(path), map_location='cpu')
    message = str(info.value)
    assert '_Payload' in message and 'may be malicious' in message
    assert str(path) in message and 'torch.save(model.state_dict()' in message
    assert 'allow_checkpoint_types' not in message
    assert 'weights_only' not in message
    assert isinstance(info.value, pickle.UnpicklingError)
    # the documented way out, for a trusted file with classes of one's own
    allow_checkpoint_types(_Payload)
    assert safe_torch_load(str(path))['payload'].value == 3


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_torch_load(str(tmp_path / 'nope.pth'))


class _GetattrGadget:
    """Pickles as getattr(HistoryBuffer, '__init__'): the first step of a
    gadget chain towards eval if getattr were allowed in general."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_history_buffer_pickles_but_general_getattr_is_refused(tmp_path):
    buf = HistoryBuffer()
    buf.update(1.0)
    path = tmp_path / 'hub.pth'
    torch.save(dict(buf=buf), path)  # pickles getattr(HistoryBuffer, 'min')
    assert safe_torch_load(str(path))['buf'].mean() == 1.0

    path = tmp_path / 'gadget.pth'
    torch.save(dict(x=_GetattrGadget()), path)
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(.*__init__"):
        safe_torch_load(str(path))


@pytest.mark.parametrize('thing', [
    eval, exec, os.system, builtins.getattr, print, lambda: None,
    HistoryBuffer().mean, subprocess.Popen, type, (eval, 'builtins.eval'),
    'posix.system'])
def test_allow_checkpoint_types_refuses_callables(thing, clean_allowlist):
    before = ckpt_mod.allowed_checkpoint_types()
    with pytest.raises(TypeError,
                       match='classes only|run code or reach the system'):
        allow_checkpoint_types(_Payload, thing)
    assert ckpt_mod.allowed_checkpoint_types() == before  # all or nothing


def test_allow_checkpoint_types_says_why():
    with pytest.raises(TypeError) as info:
        allow_checkpoint_types(eval)
    assert 'builtin function' in str(info.value)
    assert 'run any code' in str(info.value)


class _Eval:
    def __reduce__(self):
        return eval, ('1 + 1',)


def test_file_like_objects_load_and_are_refused():
    buffer = io.BytesIO()
    torch.save(dict(w=torch.ones(2)), buffer)
    buffer.seek(0)
    assert torch.equal(safe_torch_load(buffer)['w'], torch.ones(2))
    buffer = io.BytesIO()
    torch.save(dict(x=_Eval()), buffer)
    buffer.seek(0)
    with pytest.raises(UnsafeCheckpointError, match='builtins.eval') as info:
        safe_torch_load(buffer, source='s3://bucket/evil.pth')
    assert 's3://bucket/evil.pth' in str(info.value)
    assert info.value.source == 's3://bucket/evil.pth'


@pytest.mark.parametrize('error', [
    RuntimeError('Cannot use ``weights_only=True`` with files saved in the '
                 'legacy .tar format. ' + torch.serialization.UNSAFE_MESSAGE),
    RuntimeError('something new. Re-run with weights_only=False, it will '
                 'likely succeed.'),
    pickle.UnpicklingError('Weights only load failed. '
                           + torch.serialization.UNSAFE_MESSAGE),
    ValueError('bad opcode'),
])
def test_every_unpickler_failure_becomes_a_refusal_without_advice(
        tmp_path, monkeypatch, error):
    """Whatever torch raises, and with whatever text, no advice to load
    without the check reaches the user."""
    path = tmp_path / 'x.pth'
    torch.save({}, path)

    def failing_load(*args, **kwargs):
        raise error
    monkeypatch.setattr(torch, 'load', failing_load)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(str(path))
    message = str(info.value)
    assert 'may be malicious' in message and str(path) in message
    assert 'weights_only' not in message and 'False' not in message
    assert 'trust' not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def _cut(data: bytes, where: str) -> bytes:
    """A checkpoint's bytes cut short, or with one payload byte flipped."""
    if where == 'flipped':
        # inside the tensor's storage (its bytes are unique in the file)
        pos = data.index(np.arange(64, dtype=np.float32).tobytes()) + 10
        return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]
    return dict(empty=b'', head=data[:100], half=data[:len(data) // 2],
                tail=data[:-10])[where]


@pytest.mark.parametrize('where', ['empty', 'head', 'half', 'tail',
                                   'flipped'])
def test_damaged_file_is_corrupt_not_malicious(tmp_path, where):
    """A file cut short anywhere (or empty), or with a payload byte
    flipped (its CRC-32 fails), is reported as corrupt, with its path and
    what is wrong; never as possibly malicious, never as a raw OSError."""
    whole = tmp_path / 'whole.pth'
    torch.save(dict(w=torch.arange(64, dtype=torch.float32)), whole)
    path = tmp_path / 'damaged.pth'
    path.write_bytes(_cut(whole.read_bytes(), where))
    if where == 'flipped':
        # torch itself does not check the CRC: a flipped payload byte loads
        # as a wrong weight; only the hash recorded at writing time catches
        # it (mokd_det.hooks.checkpoint)
        assert not torch.equal(torch.load(path)['w'],
                               torch.arange(64, dtype=torch.float32))
        return
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(str(path))
    message = str(info.value)
    assert 'corrupt' in message and str(path) in message
    assert 'malicious' not in message
    assert ('empty' if where == 'empty' else 'cut short') in message
    # the same bytes from memory
    with pytest.raises(CorruptCheckpointError):
        safe_torch_load(io.BytesIO(path.read_bytes()))


def test_torchscript_archive_is_refused(tmp_path):
    """torch refuses it with a RuntimeError that advises weights_only=False;
    the refusal names what the file is instead."""
    path = tmp_path / 'scripted.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
        with pytest.raises(UnsafeCheckpointError, match='TorchScript') as info:
            safe_torch_load(str(path))
    assert 'weights_only' not in str(info.value)
