"""A sampler whose samples' random augmentation depends only on (seed, epoch,
index): exact ``--resume`` with random augmentation and persistent workers.

mmengine seeds each data-loading worker once, from the run's seed and the
worker's id, not the epoch. With ``persistent_workers=True`` (mmdet's
default) a worker's random state runs on across epochs; after ``kill -9``
and ``--resume`` the restarted workers begin from their initial state at a
later epoch, so the augmentation (RandomFlip, ...) draws differently and the
resumed run diverges from the uninterrupted one (a user measured a max
|diff| of 4.2, in BatchNorm running variances, after one resumed epoch).

:class:`SeededAugmentationSampler` is mmengine's ``DefaultSampler`` (same
arguments, order and sharding) that tags each index it yields with a seed
drawn from (seed, epoch, index) (:class:`SeededIndex`, an ``int``), and wraps
the dataset's pipeline in :class:`SeededPipeline`, which runs each sample's
transforms under ``random``, ``numpy.random`` and ``torch`` generators
seeded with it and restores the worker's generators afterwards. Every
sample's augmentation is then a function of (seed, epoch, index): the same
after a resume, for any number of workers, with or without persistent
workers. Use it as::

    train_dataloader = dict(sampler=dict(type='SeededAugmentationSampler'))

It needs a dataset that runs its own pipeline on the index it receives
(mmengine's ``BaseDataset``: ``CocoDataset``, mmpretrain's ``ImageNet``,
...). Dataset wrappers that remap indices (``RepeatDataset``,
``ConcatDataset``, ``ClassBalancedDataset``, ``MultiImageMixDataset``) are
refused at build time. A sample that the dataset re-draws because its
pipeline returned None (``max_refetch``) is augmented unseeded.
"""
import random
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS


class SeededIndex(int):
    """A dataset index carrying the seed of its sample's augmentation."""

    def __new__(cls, index: int, aug_seed: int):
        obj = super().__new__(cls, index)
        obj.aug_seed = aug_seed
        return obj

    def __reduce__(self):  # to the workers, through the index queue
        return SeededIndex, (int(self), self.aug_seed)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: a 32-bit hash of (seed, epoch,
    index) (numpy's SeedSequence; distinct for distinct triples in
    practice)."""
    entropy = [int(seed) % 2**63, int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class SeededPipeline:
    """Runs a pipeline under generators seeded from the sample's
    :class:`SeededIndex` (see the module docstring); other indices run it
    unchanged."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def __getattr__(self, name):  # e.g. .transforms of mmengine's Compose
        if name == 'pipeline':
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def __call__(self, results: dict):
        idx = results.get('sample_idx')
        seed = getattr(idx, 'aug_seed', None)
        if seed is None:
            return self.pipeline(results)
        results['sample_idx'] = int(idx)
        states = (random.getstate(), np.random.get_state(),
                  torch.get_rng_state())
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            return self.pipeline(results)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])

    def __repr__(self) -> str:
        return f'SeededPipeline({self.pipeline!r})'


@DATA_SAMPLERS.register_module()
class SeededAugmentationSampler(DefaultSampler):
    """``DefaultSampler`` whose samples are augmented from (seed, epoch,
    index) (see the module docstring).

    Args:
        dataset: An mmengine ``BaseDataset`` (it has a ``pipeline``).
        shuffle: Shuffle each epoch. Defaults to True.
        seed: The run's seed (the Runner passes ``randomness.seed``); None
            draws one, the same on every rank. Defaults to None.
        round_up: As ``DefaultSampler``. Defaults to True.

    Raises:
        TypeError: The dataset has no pipeline of its own (a wrapper).
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed,
                         round_up=round_up)
        pipeline = getattr(dataset, 'pipeline', None)
        if pipeline is None or not callable(pipeline):
            raise TypeError(
                'SeededAugmentationSampler seeds the pipeline of the dataset '
                f'it samples, but {type(dataset).__name__} has none (dataset '
                'wrappers such as RepeatDataset or ConcatDataset remap the '
                'indices). Use DefaultSampler with this dataset, or repeat '
                'epochs instead of wrapping the dataset.')
        if not isinstance(pipeline, SeededPipeline):
            dataset.pipeline = SeededPipeline(pipeline)

    def __iter__(self) -> Iterator[SeededIndex]:
        for idx in super().__iter__():
            yield SeededIndex(idx, sample_seed(self.seed, self.epoch, idx))
