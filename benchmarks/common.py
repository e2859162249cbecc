"""What the benchmark scripts share: building a shipped distillation config
without a model hub (random teacher checkpoint, no pretrained init) and a
markdown table printer."""
import copy
import os.path as osp
import sys
from typing import List, Sequence

import torch
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, ROOT)

from mokd_det.distillers.teacher import teacher_model_cfg  # noqa: E402


def no_pretrained(model_cfg) -> None:
    """Drops ``init_cfg`` (a model-hub download) from a backbone dict."""
    backbone = model_cfg.get('backbone')
    if backbone is not None and 'init_cfg' in backbone:
        backbone.init_cfg = None


def random_teacher(cfg, path: str) -> None:
    """Points ``cfg.model.teacher`` at a checkpoint of randomly initialised
    weights of the same architecture, written to ``path`` if missing (the
    cost of a step does not depend on the teacher's weights)."""
    from mmdet.registry import MODELS
    teacher = teacher_model_cfg(cfg.model.teacher)
    no_pretrained(teacher)
    if not osp.isfile(path):
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(copy.deepcopy(teacher))
        torch.save(dict(state_dict=model.state_dict()), path)
    cfg.model.teacher = dict(model=teacher, checkpoint=path)


def markdown_table(header: Sequence[str], rows: List[Sequence]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)
