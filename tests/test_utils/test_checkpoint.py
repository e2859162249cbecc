import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import mokd_det  # noqa: F401  installs the safe loader
from mokd_det.utils import (UnsafeCheckpointError, allow_checkpoint_types,
                            safe_torch_load)
from mokd_det.utils import checkpoint as ckpt_mod


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
        ckpt_mod._load_from_local


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
    assert '_Payload' in message and 'allow_checkpoint_types' in message
    assert isinstance(info.value, pickle.UnpicklingError)
    # the documented way out, for a trusted file
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
