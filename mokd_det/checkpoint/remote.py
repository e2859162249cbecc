"""mmengine checkpoint loaders for URL schemes, all through the safe loader.

Each loader resolves its source to a local file (a download into torch's
hub cache, a file under mmengine's home, a pavi download) or to bytes (s3),
then reads it with :func:`mokd_det.checkpoint.safe_load.safe_torch_load`.
See :mod:`mokd_det.checkpoint.safe_load` for what is protected and why;
:data:`SAFE_SCHEMES` lists them, and :mod:`mokd_det.checkpoint.install`
registers them with mmengine's ``CheckpointLoader``.
"""
import io
import logging
import os
import os.path as osp
import re
import sys
import zipfile
from tempfile import TemporaryDirectory
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mm_checkpoint

from .safe_load import safe_torch_load


def hub_cache_path(url: str, model_dir: Optional[str] = None,
                   file_name: Optional[str] = None) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` caches ``url``.

    Args:
        url: The URL.
        model_dir: The cache directory. Defaults to
            ``<torch.hub.get_dir()>/checkpoints``.
        file_name: The cached file's name. Defaults to the URL's basename.

    Raises:
        ValueError: The URL names no file (and no ``file_name`` is given).
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    name = file_name or osp.basename(urlparse(url).path)
    if name in ('', '.', '..') or '/' in name or os.sep in name:
        raise ValueError(f'cannot name a cache file for {url!r}: give a URL '
                         'that ends in a file name')
    return osp.join(model_dir, name)


#: OpenMMLab's model zoo names each file ``<name>-<sha256[:8]>.pth``
#: (``publish_model``); the last ``-<hex>`` before the extension is the hash.
#: torch.hub's ``HASH_REGEX`` takes the first ``-<hex>.`` instead, which
#: misreads names such as ``..._bbox_mAP-0.398_..._210455-1d2dac9c.pth``.
PUBLISHED_HASH = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')


def published_sha256_prefix(file_name: str) -> Optional[str]:
    """The sha256 prefix a model-zoo file name publishes, or None.

    >>> published_sha256_prefix('retinanet_r101_2x_20200131-5560aee8.pth')
    '5560aee8'
    """
    match = PUBLISHED_HASH.search(file_name)
    return match.group(1) if match else None


def download_to_hub_cache(url: str, model_dir: Optional[str] = None,
                          progress: bool = True, check_hash: bool = False,
                          file_name: Optional[str] = None) -> str:
    """Downloads ``url`` into torch's hub cache unless it is there already.

    Uses the path and name ``torch.hub.load_state_dict_from_url`` would, so
    the cache is shared with it. Nothing is loaded here.

    Args:
        check_hash: Check the download against the sha256 prefix its file
            name publishes (:func:`published_sha256_prefix`; names without
            one are not checked). A mismatch keeps nothing in the cache.

    Returns:
        The cached file's path.

    Raises:
        RuntimeError: The download does not have its published hash.
    """
    cached_file = hub_cache_path(url, model_dir, file_name)
    os.makedirs(osp.dirname(cached_file), exist_ok=True)
    if not osp.exists(cached_file):
        sys.stdout.write(f'Downloading: "{url}" to {cached_file}\n')
        hash_prefix = (published_sha256_prefix(osp.basename(cached_file))
                       if check_hash else None)
        try:
            torch.hub.download_url_to_file(
                url, cached_file, hash_prefix, progress=progress)
        except RuntimeError as err:
            if 'invalid hash value' not in str(err):
                raise
            raise RuntimeError(
                f'{url} downloaded with the wrong sha256 ({err}): its file '
                f'name publishes {hash_prefix!r}, so the download is corrupt '
                'or the file was replaced. Nothing was cached. Download it '
                'again, or point the config at a local copy you trust.'
            ) from None
    return cached_file


def _legacy_zip_member(path: str) -> Optional[str]:
    """The member of torch hub's legacy format (a zip holding one pre-1.6
    ``torch.save`` file), or None for any other file."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if len(members) == 1 and not members[0].is_dir():
        return members[0].filename
    return None


def load_cached_checkpoint(cached_file: str, map_location: Any = None,
                           url: Optional[str] = None) -> Any:
    """Loads a file of the hub cache safely, legacy zips included.

    A legacy zip's member is read into memory, not extracted, and goes
    through the same loader.
    """
    source = f'{url} (cached at {cached_file})' if url else cached_file
    member = _legacy_zip_member(cached_file)
    if member is None:
        return safe_torch_load(cached_file, map_location, source=source)
    with zipfile.ZipFile(cached_file) as archive:
        data = archive.read(member)
    return safe_torch_load(io.BytesIO(data), map_location,
                           source=f'{source}, zip member {member!r}')


def safe_load_url(url: str, model_dir: Optional[str] = None,
                  map_location: Any = None, progress: bool = True,
                  check_hash: bool = False, file_name: Optional[str] = None,
                  weights_only: bool = True) -> Any:
    """``torch.hub.load_state_dict_from_url`` that always loads safely.

    Same arguments, cache and legacy-zip handling; the file is read by
    :func:`~mokd_det.checkpoint.safe_load.safe_torch_load`, a file already in the
    cache included.

    Args:
        weights_only: Accepted for compatibility and ignored: loading is
            always weights-only with the allowlist.
    """
    del weights_only
    cached_file = download_to_hub_cache(url, model_dir, progress, check_hash,
                                        file_name)
    return load_cached_checkpoint(cached_file, map_location, url)


def _local_rank() -> int:
    """This process's rank on its node (0 when not distributed)."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return 0
    for var in ('LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK', 'SLURM_LOCALID'):
        if os.environ.get(var, '').isdigit():
            return int(os.environ[var])
    return rank


def load_from_http_safe(filename: str, map_location: Any = None,
                        model_dir: Optional[str] = None,
                        progress: bool = os.isatty(0)) -> Any:
    """``http://``, ``https://``: downloads into the hub cache and loads.

    A model-zoo URL's download is checked against the sha256 prefix in its
    file name (:func:`download_to_hub_cache`). Under DDP the local rank 0 of
    each node downloads first; all ranks then meet at a barrier (also when
    the download failed, which is raised after it) and load the cached
    file.
    """
    _, world_size = get_dist_info()
    error = None
    if _local_rank() == 0:
        try:
            download_to_hub_cache(filename, model_dir, progress,
                                  check_hash=True)
        except Exception as err:  # raised after the barrier, not before
            error = err
    if world_size > 1:
        barrier()
    if error is not None:
        raise error
    return safe_load_url(filename, model_dir, map_location, progress)


def load_from_torchvision_safe(filename: str, map_location: Any = None) -> Any:
    """``torchvision://``, ``modelzoo://``: torchvision's URL for the model,
    from mmengine's ``get_torchvision_models``, loaded as ``http://``."""
    model_urls = mm_checkpoint.get_torchvision_models()
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme of "modelzoo://" is deprecated, please use '
                  '"torchvision://" instead', logger='current',
                  level=logging.WARNING)
        model_name = filename[len('modelzoo://'):]
    else:
        model_name = filename[len('torchvision://'):]
    return load_from_http_safe(model_urls[model_name],
                               map_location=map_location)


def load_from_openmmlab_safe(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://``, ``openmmlab://``: the entry of mmengine's
    ``get_external_models``, a URL (loaded as ``http://``) or a path
    relative to mmengine's home."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') \
        else 'openmmlab://'
    model_name = filename[len(prefix):]
    deprecated = mm_checkpoint.get_deprecated_model_names()
    if model_name in deprecated:
        print_log(f'{prefix}{model_name} is deprecated in favor of '
                  f'{prefix}{deprecated[model_name]}', logger='current',
                  level=logging.WARNING)
        model_name = deprecated[model_name]
    model_url = mm_checkpoint.get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http_safe(model_url, map_location=map_location)
    path = osp.join(mm_checkpoint._get_mmengine_home(), model_url)
    return safe_torch_load(path, map_location,
                           source=f'{filename} ({path})')


def load_from_mmcls_safe(filename: str, map_location: Any = None) -> Any:
    """``mmcls://``: the URL from mmengine's ``get_mmcls_models``, loaded as
    ``http://``, then converted by mmengine's ``_process_mmcls_checkpoint``
    (backbone weights only)."""
    model_url = mm_checkpoint.get_mmcls_models()[filename[len('mmcls://'):]]
    checkpoint = load_from_http_safe(model_url, map_location=map_location)
    return mm_checkpoint._process_mmcls_checkpoint(checkpoint)


def load_from_pavi_safe(filename: str, map_location: Any = None) -> Any:
    """``pavi://``: downloaded by ``pavi.modelcloud`` into a temporary
    directory (on every rank), then loaded."""
    if not filename.startswith('pavi://'):
        raise ValueError(f'expected a pavi:// path, got {filename!r}')
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(
            'Please install pavi to load checkpoint from modelcloud.')
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        # the name comes from the server: keep it inside tmp_dir
        path = osp.join(tmp_dir, osp.basename(str(model.name)) or 'model.pth')
        model.download(path)
        return safe_torch_load(path, map_location,
                               source=f'{filename} (downloaded by pavi)')


def load_from_ceph_safe(filename: str, map_location: Any = None,
                        backend: str = 'petrel') -> Any:
    """``s3://``, ``petrel://`` (also behind a prefix such as
    ``open-mmlab:s3://``): the bytes from mmengine's file backend."""
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return safe_torch_load(buffer, map_location, source=filename)


#: (prefixes as mmengine registers them, safe loader, the mmengine
#: function it replaces)
SAFE_SCHEMES = [
    (('http://', 'https://'), load_from_http_safe, 'load_from_http'),
    ('pavi://', load_from_pavi_safe, 'load_from_pavi'),
    ([r'(\S+\:)?s3://', r'(\S+\:)?petrel://'], load_from_ceph_safe,
     'load_from_ceph'),
    (('modelzoo://', 'torchvision://'), load_from_torchvision_safe,
     'load_from_torchvision'),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab_safe,
     'load_from_openmmlab'),
    ('mmcls://', load_from_mmcls_safe, 'load_from_mmcls'),
]
