"""Checkpoints from URLs, model zoos, caches and buckets load weights-only.

A loopback HTTP server (started here, on 127.0.0.1) serves checkpoints whose
``__reduce__`` would create a marker file through ``os.system``, ``eval`` or
``exec``, and benign mmengine-style ones. Every scheme mmengine resolves must
refuse the first (marker never created, an UnsafeCheckpointError that says
the file may be malicious and gives no advice to load it anyway) and load
the second.
"""
import builtins
import http.server
import io
import os
import os.path as osp
import shutil
import sys
import threading
import types
import zipfile

import numpy as np
import pytest
import torch
from mmengine.fileio.backends import PetrelBackend
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModule
from mmengine.model.weight_init import PretrainedInit
from mmengine.registry import Registry
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import nn

import mokd_det  # noqa: F401  installs the safe loaders
from mokd_det.distillers.teacher import build_teacher, load_teacher_checkpoint
from mokd_det.checkpoint import UnsafeCheckpointError, safe_load_url
from mokd_det.checkpoint import remote

KINDS = ('system', 'eval', 'exec')
REFUSED_NAME = {'system': 'posix.system', 'eval': 'builtins.eval',
                'exec': 'builtins.exec'}
DEAD = 'http://127.0.0.1:1'  # nothing listens on port 1


class _Payload:
    """Pickles as a call that creates ``marker`` (what an attacker would
    replace with anything else)."""

    def __init__(self, kind, marker):
        self.kind, self.marker = kind, str(marker)

    def __reduce__(self):
        if self.kind == 'system':
            return os.system, (f"touch '{self.marker}'",)
        code = f'open({self.marker!r}, "w").close()'
        return (builtins.eval if self.kind == 'eval' else builtins.exec,
                (code,))


class Tiny(BaseModule):
    """The model the benign checkpoints fit."""

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(3, 2, 1)


def _benign_state():
    """An mmengine-style checkpoint for Tiny with every weight 1."""
    model = Tiny()
    nn.init.ones_(model.conv.weight)
    nn.init.ones_(model.conv.bias)
    buf = HistoryBuffer()
    buf.update(np.float64(0.5))
    return dict(meta=dict(epoch=1, dtype=np.dtype('float32')),
                state_dict=model.state_dict(),
                message_hub=dict(log_scalars={'loss': buf},
                                 runtime_info=dict(iter=np.int64(3))))


def _evil_state(kind, marker):
    return dict(state_dict=Tiny().state_dict(), meta=_Payload(kind, marker))


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """(base URL, served dir, marker dir): evil_<kind>.pth and benign.pth
    on a loopback server, and benign_mmcls.pth (backbone.* keys)."""
    root = tmp_path_factory.mktemp('served')
    markers = tmp_path_factory.mktemp('markers')
    for kind in KINDS:
        torch.save(_evil_state(kind, markers / kind),
                   root / f'evil_{kind}.pth')
    torch.save(_benign_state(), root / 'benign.pth')
    torch.save(dict(state_dict={'backbone.conv.weight': torch.ones(2),
                                'head.fc.bias': torch.zeros(1)}),
               root / 'benign_mmcls.pth')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}', root, markers
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def hub_dir(tmp_path, monkeypatch):
    """A fresh torch hub cache (and TORCH_HOME) per test."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    torch.hub.set_dir(str(tmp_path / 'hub'))
    return tmp_path / 'hub'


def assert_refused(err, marker, source):
    """The payload did not run and the message warns without advice."""
    message = str(err.value)
    assert not osp.exists(marker), 'the payload ran'
    assert 'may be malicious' in message
    assert 'weights_only' not in message
    assert 'allow_checkpoint_types(' not in message
    assert source in message
    assert 'torch.save(model.state_dict(), path)' in message


def assert_benign(ckpt):
    assert torch.equal(ckpt['state_dict']['conv.weight'],
                       torch.ones(2, 3, 1, 1))
    assert ckpt['message_hub']['log_scalars']['loss'].current() == 0.5


def test_the_payloads_are_real(served, tmp_path):
    """Control: an unsafe load of the served files does run the payload."""
    _, root, markers = served
    for kind in KINDS:
        torch.load(root / f'evil_{kind}.pth', weights_only=False)
        assert (markers / kind).exists(), kind
        os.remove(markers / kind)


@pytest.mark.parametrize('kind', KINDS)
def test_http_refuses_evil_and_loads_benign(served, hub_dir, kind):
    base, _, markers = served
    url = f'{base}/evil_{kind}.pth'
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(url, map_location='cpu')
    assert_refused(err, markers / kind, url)
    assert REFUSED_NAME[kind] in str(err.value)
    assert err.value.refused == REFUSED_NAME[kind]

    ckpt = _load_checkpoint(f'{base}/benign.pth', map_location='cpu')
    assert_benign(ckpt)
    # cached where torch.hub.load_state_dict_from_url would cache it
    assert (hub_dir / 'checkpoints' / 'benign.pth').is_file()


def test_https_and_every_scheme_map_to_mokd_loaders():
    expected = {
        '': 'load_from_local_safe', 'http://': 'load_from_http_safe',
        'https://': 'load_from_http_safe', 'pavi://': 'load_from_pavi_safe',
        r'(\S+\:)?s3://': 'load_from_ceph_safe',
        r'(\S+\:)?petrel://': 'load_from_ceph_safe',
        'modelzoo://': 'load_from_torchvision_safe',
        'torchvision://': 'load_from_torchvision_safe',
        'open-mmlab://': 'load_from_openmmlab_safe',
        'openmmlab://': 'load_from_openmmlab_safe',
        'mmcls://': 'load_from_mmcls_safe'}
    schemes = CheckpointLoader._schemes
    assert set(expected) <= set(schemes)
    for prefix, loader in schemes.items():
        assert loader.__module__.startswith('mokd_det.checkpoint'), prefix
    for prefix, name in expected.items():
        assert schemes[prefix].__name__ == name
    for path, name in [('https://host/a.pth', 'load_from_http_safe'),
                       ('open-mmlab:s3://b/a.pth', 'load_from_ceph_safe'),
                       ('petrel://b/a.pth', 'load_from_ceph_safe')]:
        assert CheckpointLoader._get_checkpoint_loader(path).__name__ == name
    # module-level names other callers use
    import mmengine.utils.dl_utils as dl_utils
    assert mm_checkpoint.load_url is safe_load_url
    assert dl_utils.load_url is safe_load_url
    assert dl_utils.hub.load_url is safe_load_url
    assert mm_checkpoint.load_from_http is remote.load_from_http_safe


def test_mmengine_load_url_name_is_safe(served):
    import mmengine.utils.dl_utils as dl_utils
    base, _, markers = served
    with pytest.raises(UnsafeCheckpointError) as err:
        dl_utils.load_url(f'{base}/evil_system.pth', weights_only=False)
    assert_refused(err, markers / 'system', 'evil_system.pth')


def test_load_checkpoint_and_runner_load_from(served, tmp_path):
    from mmengine.runner import Runner
    base, _, markers = served
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(Tiny(), f'{base}/evil_eval.pth', map_location='cpu')
    assert_refused(err, markers / 'eval', 'evil_eval.pth')
    model = Tiny()
    load_checkpoint(model, f'{base}/benign.pth', map_location='cpu')
    assert torch.equal(model.conv.bias, torch.ones(2))

    def runner(load_from, name):
        return Runner(model=Tiny(), work_dir=str(tmp_path / name),
                      load_from=load_from, experiment_name=name)
    evil = runner(f'{base}/evil_exec.pth', 'evil_run')
    with pytest.raises(UnsafeCheckpointError) as err:
        evil.load_or_resume()
    assert_refused(err, markers / 'exec', 'evil_exec.pth')
    good = runner(f'{base}/benign.pth', 'good_run')
    good.load_or_resume()
    assert torch.equal(good.model.conv.weight, torch.ones(2, 3, 1, 1))


def test_teacher_checkpoint_url(served):
    base, _, markers = served
    registry = Registry('test_remote_teacher')
    registry.register_module(module=Tiny)
    with pytest.raises(UnsafeCheckpointError) as err:
        build_teacher(dict(model=dict(type='Tiny'),
                           checkpoint=f'{base}/evil_system.pth'), registry)
    assert_refused(err, markers / 'system', 'evil_system.pth')
    with pytest.raises(UnsafeCheckpointError):
        load_teacher_checkpoint(Tiny(), f'{base}/evil_exec.pth')
    assert not (markers / 'exec').exists()
    teacher = build_teacher(dict(model=dict(type='Tiny'),
                                 checkpoint=f'{base}/benign.pth'), registry)
    assert torch.equal(teacher.conv.weight, torch.ones(2, 3, 1, 1))


def _pretrained_tiny():
    return Tiny(init_cfg=dict(type='Pretrained',
                              checkpoint='torchvision://resnet18'))


@pytest.mark.parametrize('kind', KINDS)
def test_pretrained_torchvision_url(served, monkeypatch, kind):
    base, _, markers = served
    urls = {'resnet18': f'{base}/evil_{kind}.pth'}
    monkeypatch.setattr(mm_checkpoint, 'get_torchvision_models', lambda: urls)
    with pytest.raises(UnsafeCheckpointError) as err:
        _pretrained_tiny().init_weights()
    assert_refused(err, markers / kind, urls['resnet18'])
    urls['resnet18'] = f'{base}/benign.pth'
    model = _pretrained_tiny()
    model.init_weights()
    assert torch.equal(model.conv.weight, torch.ones(2, 3, 1, 1))
    # modelzoo:// is the deprecated name of the same scheme
    assert_benign(_load_checkpoint('modelzoo://resnet18'))


def test_pretrained_torchvision_planted_in_hub_cache(served, monkeypatch,
                                                     hub_dir):
    """The URL is dead: what runs is the file planted in torch's cache."""
    _, root, markers = served
    url = f'{DEAD}/resnet18-f37072fd.pth'
    monkeypatch.setattr(mm_checkpoint, 'get_torchvision_models',
                        lambda: {'resnet18': url})
    planted = hub_dir / 'checkpoints' / 'resnet18-f37072fd.pth'
    assert str(planted) == remote.hub_cache_path(url)
    planted.parent.mkdir(parents=True)
    shutil.copy(root / 'evil_system.pth', planted)
    with pytest.raises(UnsafeCheckpointError) as err:
        PretrainedInit(checkpoint='torchvision://resnet18')(Tiny())
    assert_refused(err, markers / 'system', url)
    assert str(planted) in str(err.value)
    shutil.copy(root / 'benign.pth', planted)
    model = Tiny()
    PretrainedInit(checkpoint='torchvision://resnet18')(model)
    assert torch.equal(model.conv.bias, torch.ones(2))


def _legacy_zip(state, path):
    """torch hub's legacy format: a zip holding one pre-1.6 torch.save."""
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('weights.pth', buffer.getvalue())


def test_legacy_zip_in_hub_cache(tmp_path, hub_dir):
    marker = tmp_path / 'legacy_marker'
    cached = hub_dir / 'checkpoints' / 'legacy.zip'
    cached.parent.mkdir(parents=True)
    _legacy_zip(_evil_state('system', marker), cached)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(f'{DEAD}/legacy.zip')
    assert_refused(err, marker, 'legacy.zip')
    _legacy_zip(_benign_state(), cached)
    assert_benign(_load_checkpoint(f'{DEAD}/legacy.zip'))
    assert not (hub_dir / 'checkpoints' / 'weights.pth').exists()


@pytest.mark.parametrize('prefix', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab_url_and_home_file(served, monkeypatch, tmp_path, prefix):
    base, root, markers = served
    home = tmp_path / 'mmengine_home'
    (home / 'zoo').mkdir(parents=True)
    shutil.copy(root / 'evil_eval.pth', home / 'zoo' / 'evil.pth')
    shutil.copy(root / 'benign.pth', home / 'zoo' / 'benign.pth')
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    monkeypatch.setattr(mm_checkpoint, 'get_external_models', lambda: {
        'evil_url': f'{base}/evil_exec.pth', 'evil_file': 'zoo/evil.pth',
        'good_url': f'{base}/benign.pth', 'good_file': 'zoo/benign.pth'})
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(f'{prefix}evil_url')
    assert_refused(err, markers / 'exec', 'evil_exec.pth')
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(f'{prefix}evil_file')
    assert_refused(err, markers / 'eval', str(home / 'zoo' / 'evil.pth'))
    assert_benign(_load_checkpoint(f'{prefix}good_url'))
    assert_benign(_load_checkpoint(f'{prefix}good_file'))


def test_mmcls(served, monkeypatch):
    base, _, markers = served
    monkeypatch.setattr(mm_checkpoint, 'get_mmcls_models', lambda: {
        'evil': f'{base}/evil_system.pth',
        'good': f'{base}/benign_mmcls.pth'})
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint('mmcls://evil')
    assert_refused(err, markers / 'system', 'evil_system.pth')
    # mmengine's _process_mmcls_checkpoint still applies: backbone only
    assert list(_load_checkpoint('mmcls://good')['state_dict']) == \
        ['conv.weight']


@pytest.mark.parametrize('path', ['s3://bucket/ckpt.pth',
                                  'open-mmlab:s3://bucket/ckpt.pth',
                                  'petrel://bucket/ckpt.pth'])
def test_s3_bytes(served, monkeypatch, path):
    _, root, markers = served
    data = {'evil': (root / 'evil_exec.pth').read_bytes()}
    monkeypatch.setattr(PetrelBackend, '__init__',
                        lambda self, *args, **kwargs: None)
    monkeypatch.setattr(PetrelBackend, 'get',
                        lambda self, filepath: data['evil'])
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(path)
    assert_refused(err, markers / 'exec', path)
    data['evil'] = (root / 'benign.pth').read_bytes()
    assert_benign(_load_checkpoint(path))


def test_pavi(served, monkeypatch):
    _, root, markers = served
    files = {'evil': root / 'evil_eval.pth', 'good': root / 'benign.pth'}

    class Model:
        name = '../outside.pth'  # a server-chosen name stays in the tmp dir

        def __init__(self, src):
            self.src = src

        def download(self, path):
            shutil.copy(self.src, path)

    modelcloud = types.ModuleType('pavi.modelcloud')
    modelcloud.get = lambda name: Model(files[name])
    pavi = types.ModuleType('pavi')
    pavi.modelcloud = modelcloud
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    monkeypatch.setitem(sys.modules, 'pavi.modelcloud', modelcloud)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint('pavi://evil')
    assert_refused(err, markers / 'eval', 'pavi://evil')
    assert_benign(_load_checkpoint('pavi://good'))


def test_ddp_local_rank_zero_downloads_then_all_meet(served, monkeypatch,
                                                     hub_dir):
    base, root, _ = served
    calls = []
    monkeypatch.setattr(remote, 'get_dist_info', lambda: (0, 2))
    monkeypatch.setattr(remote, 'barrier', lambda: calls.append('barrier'))
    monkeypatch.setenv('LOCAL_RANK', '0')
    assert_benign(_load_checkpoint(f'{base}/benign.pth'))
    assert calls == ['barrier']
    # local rank 1 does not download; it loads what rank 0 cached
    monkeypatch.setattr(remote, 'get_dist_info', lambda: (1, 2))
    monkeypatch.setenv('LOCAL_RANK', '1')
    shutil.copy(root / 'benign.pth', hub_dir / 'checkpoints' / 'cached.pth')
    assert_benign(_load_checkpoint(f'{DEAD}/cached.pth'))
    assert calls == ['barrier'] * 2
    # a failed download on rank 0 still reaches the barrier, then raises
    monkeypatch.setattr(remote, 'get_dist_info', lambda: (0, 2))
    monkeypatch.setenv('LOCAL_RANK', '0')
    with pytest.raises(Exception) as err:
        _load_checkpoint(f'{DEAD}/missing.pth')
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert calls == ['barrier'] * 3


def test_published_hash_is_the_last_before_the_extension():
    assert remote.published_sha256_prefix(
        'retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth') == '5560aee8'
    # torch.hub's HASH_REGEX would read '0' here (the first '-<hex>.')
    assert remote.published_sha256_prefix(
        'faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-'
        '1d2dac9c.pth') == '1d2dac9c'
    assert remote.published_sha256_prefix('benign.pth') is None
    assert remote.published_sha256_prefix('model-v2.pth') is None


def _sha256(path):
    import hashlib
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_teacher_from_a_config_url_with_its_hash_checked(served, hub_dir,
                                                         tmp_path):
    """The quickstart pair with its teacher checkpoint given as a zoo-style
    URL (sha256 prefix in the name): the distiller built from the config
    downloads, checks and loads it; a file whose content does not match its
    name is refused and nothing is cached."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    base, root, _ = served
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        'configs/quickstart/kd_r18-r18half_retinanet_3e_shapes.py')
    teacher_cfg = Config.fromfile(cfg.model.teacher.config)
    torch.manual_seed(0)
    weights = MODELS.build(teacher_cfg.model).state_dict()
    plain = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=weights), plain)
    digest = _sha256(plain)
    good = f'teacher_20261207-{digest[:8]}.pth'
    shutil.copy(plain, root / good)
    cfg.model.teacher.checkpoint = f'{base}/{good}'
    distiller = MODELS.build(cfg.model)
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert (hub_dir / 'checkpoints' / good).is_file()

    wrong = '0' * 8 if not digest.startswith('0' * 8) else 'f' * 8
    bad = f'teacher_20261207-{wrong}.pth'
    shutil.copy(plain, root / bad)
    cfg.model.teacher.checkpoint = f'{base}/{bad}'
    with pytest.raises(RuntimeError, match='wrong sha256') as err:
        MODELS.build(cfg.model)
    assert wrong in str(err.value) and 'Nothing was cached' in str(err.value)
    assert not (hub_dir / 'checkpoints' / bad).exists()
