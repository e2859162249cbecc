"""One-time evaluation of the teacher before distillation starts."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Evaluates the teacher once, before the first training iteration, with
    the validation dataloader and evaluator, and logs its metrics under a
    ``teacher/`` prefix (``teacher/coco/bbox_mAP``).

    The evaluation runs outside the validation loop, so no
    ``after_val_epoch`` hook sees it: ``CheckpointHook(save_best=...)`` can
    never pick a checkpoint by the teacher's metrics, and the student's
    validation is not slowed down every epoch.
    """
    priority = 'LOW'

    def before_train(self, runner) -> None:
        if runner.val_loop is None or runner.iter > 0:
            return  # no validation configured, or resuming
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        loop = runner.val_loop
        with torch.no_grad():
            for data_batch in loop.dataloader:
                outputs = model.teacher.val_step(data_batch)
                loop.evaluator.process(data_samples=outputs,
                                       data_batch=data_batch)
        metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        for key, value in metrics.items():
            runner.message_hub.update_scalar(f'teacher/{key}', value)
        runner.logger.info('Teacher: ' + '  '.join(
            f'teacher/{k}: {v:.4f}' if isinstance(v, float) else
            f'teacher/{k}: {v}' for k, v in metrics.items()))
