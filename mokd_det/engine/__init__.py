"""Training-loop pieces mmengine leaves out: an epoch loop that resumes
mid-epoch exactly (:mod:`.loops`)."""
from .loops import ResumableEpochBasedTrainLoop, install_resumable_epoch_loop

__all__ = ['ResumableEpochBasedTrainLoop', 'install_resumable_epoch_loop']
