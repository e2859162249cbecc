"""Reading what mmengine's Runner logged: the JSON scalar log
(``<work_dir>/<timestamp>/vis_data/scalars.json``, one entry a line)."""
import json
import os.path as osp
from glob import glob
from typing import Dict


def find_scalar_log(path: str) -> str:
    """``path`` itself if it is a file, else the newest scalars.json under
    the work dir ``path``.

    Raises:
        FileNotFoundError: The work dir holds no scalar log.
    """
    if osp.isfile(path):
        return path
    logs = sorted(glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {path}')
    return logs[-1]


def last_entry_with(path: str, key: str) -> Dict[str, float]:
    """The last entry of a scalar log (``path`` as for
    :func:`find_scalar_log`) that holds ``key``; empty if none does."""
    found = {}
    with open(find_scalar_log(path)) as f:
        for line in f:
            entry = json.loads(line)
            if key in entry:
                found = entry
    return found


def last_coco_metrics(path: str) -> Dict[str, float]:
    """The COCO bbox metrics of the last validation entry of a scalar log
    (``path`` as for :func:`find_scalar_log`), keyed without the ``coco/``
    prefix (``bbox_mAP``, ``bbox_mAP_50``, ...); empty if no entry has them
    (mmdet's CocoMetric logs nothing when there are no detections)."""
    metrics = last_entry_with(path, 'coco/bbox_mAP')
    return {k[len('coco/'):]: v for k, v in metrics.items()
            if k.startswith('coco/bbox_mAP')}
