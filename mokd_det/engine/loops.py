"""An ``EpochBasedTrainLoop`` that resumes from a checkpoint written in the
middle of an epoch exactly.

mmengine 0.10's ``EpochBasedTrainLoop`` restarts the resumed epoch from its
first batch, so a checkpoint written mid-epoch (a preemption,
:mod:`mokd_det.hooks.preemption`) would train the epoch's first batches
twice. Its ``IterBasedTrainLoop`` advances its data iterator past the
trained batches instead (loading them). This loop does the same for
epochs, without loading them: when the loop's iteration count lies inside
its epoch, the epoch's batch sampler skips the batches already trained (it
draws their indices and drops them before any worker loads a sample), and
the epoch continues with the next batch, which is the batch the
uninterrupted run drew there when the sampler's order depends only on
(seed, epoch) (mmengine's ``DefaultSampler``, ``SeededAugmentationSampler``,
and the batch samplers over them).

Importing ``mokd_det`` registers it under mmengine's name as well
(``LOOPS.register_module(force=True)``), so configs keep
``train_cfg = dict(type='EpochBasedTrainLoop', ...)`` (mmdet's form) and
get it, and :func:`install_resumable_epoch_loop` rebinds the name that
mmengine's Runner instantiates directly for ``train_cfg = dict(
by_epoch=True, ...)`` (mmpretrain's form). A run that never resumes
mid-epoch behaves exactly as mmengine's loop.
"""
from contextlib import contextmanager

from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop


class _SkippingBatchSampler:
    """A batch sampler's view without its first ``skip`` batches (their
    indices drawn and dropped) on its **first** iteration only; later
    iterations are the sampler's own. Its length stays the sampler's.

    Once only because a DataLoader iterator keeps the batch sampler it was
    created with: with persistent workers the iterator created in the
    resumed epoch serves every later epoch, so a view that always skipped
    would cut those epochs short too (they lost their first ``skip``
    batches before this was found)."""

    def __init__(self, batch_sampler, skip: int):
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self):
        skip, self.skip = self.skip, 0
        batches = iter(self.batch_sampler)
        for _ in range(skip):
            next(batches, None)
        yield from batches

    def __len__(self):
        return len(self.batch_sampler)

    def __getattr__(self, name):
        return getattr(self.batch_sampler, name)


@contextmanager
def skipping_first_batches(dataloader, skip: int):
    """Inside, iterating ``dataloader`` yields its batches from the
    ``skip``-th on; after, the loader has its own batch sampler back. (A
    persistent iterator created inside keeps the view, which skips on its
    first pass only.)"""
    original = dataloader.batch_sampler
    # DataLoader forbids setting batch_sampler after __init__
    object.__setattr__(dataloader, 'batch_sampler',
                       _SkippingBatchSampler(original, skip))
    try:
        yield
    finally:
        object.__setattr__(dataloader, 'batch_sampler', original)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that continues a resumed epoch
    where its checkpoint was written (see the module docstring). Same
    arguments."""

    def run_epoch(self) -> None:
        trained = self._iter - self._epoch * len(self.dataloader)
        if trained <= 0 or self.dataloader.batch_sampler is None:
            return super().run_epoch()
        self.runner.logger.info(
            f'Resuming epoch {self._epoch + 1} after its first {trained} '
            'batches (a checkpoint written mid-epoch): skipping them')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        with skipping_first_batches(self.dataloader, trained):
            for idx, data_batch in enumerate(self.dataloader, start=trained):
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


# configs name mmengine's loop: they get this one (see the module docstring)
LOOPS.register_module(name='EpochBasedTrainLoop',
                      module=ResumableEpochBasedTrainLoop, force=True)


def install_resumable_epoch_loop() -> None:
    """Makes mmengine's Runner build this loop for ``by_epoch=True``
    configs too (it instantiates ``EpochBasedTrainLoop`` by name there,
    bypassing the registry)."""
    import mmengine.runner.runner as runner_module
    runner_module.EpochBasedTrainLoop = ResumableEpochBasedTrainLoop
