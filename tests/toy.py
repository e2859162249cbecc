"""A tiny classifier and distiller for fast optim-wrapper tests: the real
BaseDistiller, the real mmengine model wrappers and Runner, no mmdet."""
import os

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from mokd_det.distillers import BaseDistiller


@MODELS.register_module()
class ToyNet(BaseModel):
    """conv backbone -> pooled neck -> linear head over ``num_classes``;
    ``loss`` is cross entropy on ``data_samples`` (a label tensor). No
    BatchNorm: per-sample normalisation keeps micro-batches and ranks
    equivalent to one large batch."""

    def __init__(self, width=4, num_classes=3, norm='gn',
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        norm_layer = nn.GroupNorm(1, width) if norm == 'gn' else \
            nn.BatchNorm2d(width)
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1),
                                      norm_layer, nn.ReLU())
        self.neck = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)
        self.num_classes = num_classes

    def extract_feat(self, inputs):
        return self.neck(self.backbone(inputs)).flatten(1)

    def loss(self, inputs, data_samples):
        logits = self.head(self.extract_feat(inputs))
        return dict(loss_cls=F.cross_entropy(logits, data_samples))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.head(self.extract_feat(inputs))


@MODELS.register_module()
class ToyDistiller(BaseDistiller):
    """BaseDistiller over ToyNet; the teacher's head runs when tapped."""

    def run_teacher_heads(self, feats, reused=False, data_samples=None):
        if not reused:
            self.teacher.head(feats)

    @staticmethod
    def num_classes(model):
        return model.num_classes


def toy_distiller(tmp_path, temperature=2.0, seed=0, feature=True,
                  student_norm='gn'):
    """A ToyDistiller with a logit term (and a feature term)."""
    torch.manual_seed(seed)
    teacher = ToyNet(width=6)
    path = str(tmp_path / f'toy_teacher_{seed}.pth')
    if not os.path.exists(path):  # DDP workers read the parent's file
        torch.save(dict(state_dict=teacher.state_dict()), path)
    terms = dict(kd=dict(type='LogitKDLoss', student='head', teacher='head',
                         temperature=temperature, activation='softmax'))
    if feature:
        terms['feat'] = dict(type='FeatureMSELoss', student='neck',
                             teacher='neck',
                             # per-sample (no batch statistics), so that
                             # micro-batches and ranks add up exactly
                             neck=dict(type='SubspaceProjectionNeck',
                                       standardize=False))
    torch.manual_seed(seed + 1)
    return ToyDistiller(student=dict(type='ToyNet', width=4,
                                     norm=student_norm),
                        teacher=dict(model=dict(type='ToyNet', width=6),
                                     checkpoint=path),
                        distill_losses=terms, probe_input_size=(4, 4))


def toy_batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=g), \
        torch.randint(0, 3, (n, ), generator=g)


class ToyBatches(torch.utils.data.Dataset):
    """``length`` single samples of :func:`toy_batch` (sample i: seed i),
    for a Runner's ``DataLoader`` with :func:`toy_collate`."""

    def __init__(self, length=64):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        x, y = toy_batch(1, seed=i)
        return x[0], y[0]


def toy_collate(items):
    return dict(inputs=torch.stack([x for x, _ in items]),
                data_samples=torch.stack([y for _, y in items]))
