"""Checkpoint integrity: a SHA-256 recorded beside each checkpoint when it
is written, checked before a run resumes from it, and the choice of the
newest whole checkpoint when the latest is not.

Why a hash: ``torch.save`` writes a zip archive with CRC-32s, but
``torch.load`` does not check them, so a flipped byte in a tensor's payload
(a bad disk, a copy gone wrong) loads as a wrong weight without a word
(``tests/test_checkpoint/test_safe_load.py``). A file cut short is caught
by its structure (:func:`~.safe_load.damage`); a whole file with a wrong
byte only by a digest recorded when it was right.

The digest lives in ``<checkpoint>.sha256`` (``sha256sum``'s format, so
``sha256sum -c`` checks it too), written atomically after the checkpoint
itself (``mokd_det.hooks.CrashSafeCheckpointHook``). A checkpoint without
one (written by plain mmengine, or before this module existed) is checked
by its structure alone.
"""
import hashlib
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from .safe_load import damage

DIGEST_SUFFIX = '.sha256'
_STEP = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def digest_line(path: str) -> str:
    """``sha256sum``'s line for ``path``: digest, two spaces, basename."""
    return f'{file_digest(path)}  {osp.basename(path)}\n'


def recorded_digest(path: str) -> Optional[str]:
    """The digest recorded beside ``path``; None when there is none."""
    sidecar = path + DIGEST_SUFFIX
    if not osp.isfile(sidecar):
        return None
    with open(sidecar) as f:
        fields = f.read().split()
    return fields[0] if fields else None


def verify(path: str) -> Optional[str]:
    """Why the checkpoint ``path`` must not be resumed from (missing, cut
    short, damaged, or not the file its recorded digest was taken of), or
    None when it is whole."""
    if not osp.isfile(path):
        return 'it does not exist'
    expected = recorded_digest(path)
    if expected is not None:
        actual = file_digest(path)
        if actual != expected:
            return (f'its SHA-256 {actual[:12]}... is not the one recorded '
                    f'when it was written ({expected[:12]}..., in '
                    f'{osp.basename(path) + DIGEST_SUFFIX})')
        return None
    return damage(path)


def step_of(path: str) -> Optional[Tuple[str, int]]:
    """``('epoch', 3)`` for ``.../epoch_3.pth`` (mmengine's names); None
    for other files."""
    match = _STEP.match(osp.basename(path))
    return (match.group(1), int(match.group(2))) if match else None


def older_checkpoints(latest: str) -> List[str]:
    """The other checkpoints (``epoch_N.pth``, ``iter_N.pth``: mmengine's
    periodic ones and the preemption ones) beside ``latest``, newest
    written first."""
    folder = osp.dirname(latest) or '.'
    found = [osp.join(folder, name) for name in os.listdir(folder)
             if step_of(name) is not None and name != osp.basename(latest)]
    return sorted(found, key=osp.getmtime, reverse=True)


def newest_whole(latest: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest checkpoint, from ``latest`` back through the older ones,
    that :func:`verify` passes, and the ``(path, reason)`` of each one
    passed over; ``(None, ...)`` when none is whole."""
    passed = []
    for path in [latest] + older_checkpoints(latest):
        reason = verify(path)
        if reason is None:
            return path, passed
        passed.append((path, reason))
    return None, passed
