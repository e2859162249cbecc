"""BaseDistiller.recompute_loss: the losses of the last batch at new
parameters, with the batch, the teacher's outputs and the label assignment
reused, equal a fresh computation; the assignment is reused only for heads
whose targets do not depend on the predictions."""
import pytest
import torch
from mmdet.models.dense_heads import (ATSSHead, FCOSHead, GFLHead, PAAHead,
                                      RetinaHead, RPNHead, TOODHead)
from mmengine.runner import Runner

from mokd_det.distillers import RecomputeCache
from mokd_det.distillers.recompute_cache import has_pure_targets
from tests.helpers import DET_FAMILIES
from tests.test_distillers.test_det_distiller import distill_config


class OwnTargetsSingle(RetinaHead):

    def _get_targets_single(self, *args, **kwargs):
        return super()._get_targets_single(*args, **kwargs)


def test_pure_target_heads_are_the_known_implementations():
    for cls in (RetinaHead, RPNHead, ATSSHead, GFLHead, FCOSHead):
        assert has_pure_targets(cls.__new__(cls)), cls
    # prediction-dependent assignment, or an override of either function
    for cls in (PAAHead, TOODHead, OwnTargetsSingle):
        assert not has_pure_targets(cls.__new__(cls)), cls


def _losses_at(model, data, rng, recompute):
    with torch.random.fork_rng():
        torch.set_rng_state(rng)
        losses = model.recompute_loss() if recompute else model.loss(
            data['inputs'], data['data_samples'])
    return {k: sum(v) if isinstance(v, list) else v
            for k, v in losses.items()}


@pytest.mark.parametrize('family', list(DET_FAMILIES))
def test_recomputed_losses_equal_a_fresh_forward(family, shapes_det_root,
                                                 tmp_path):
    cfg, _ = distill_config(family, shapes_det_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    rng = torch.get_rng_state()

    model.recompute_cache = cache = RecomputeCache()
    _losses_at(model, data, rng, recompute=False)
    assert cache.ready
    with torch.no_grad():  # "the step"
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=1e-2)
    recomputed = _losses_at(model, data, rng, recompute=True)
    model.recompute_cache = None
    fresh = _losses_at(model, data, rng, recompute=False)

    assert recomputed.keys() == fresh.keys()
    for k in fresh:
        torch.testing.assert_close(recomputed[k], fresh[k], rtol=1e-6,
                                   atol=1e-7, msg=k)
    # the assignment was replayed, never recomputed (Faster R-CNN: its RPN)
    assert cache.targets.hits > 0 and cache.targets.misses == 0


def test_replay_falls_back_when_the_ground_truth_differs(shapes_det_root,
                                                         tmp_path):
    cfg, _ = distill_config('retinanet', shapes_det_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    rng = torch.get_rng_state()
    model.recompute_cache = cache = RecomputeCache()
    _losses_at(model, data, rng, recompute=False)
    gt = cache.data_samples[0].gt_instances
    gt.bboxes = gt.bboxes + 4.0  # the cached batch no longer matches
    recomputed = _losses_at(model, data, rng, recompute=True)
    assert cache.targets.misses == 1 and cache.targets.hits == 0
    model.recompute_cache = None
    fresh = _losses_at(model, data, rng, recompute=False)
    for k in fresh:
        torch.testing.assert_close(recomputed[k], fresh[k], msg=k)


def test_recompute_without_a_cache_says_how_to_enable_it(shapes_det_root,
                                                        tmp_path):
    cfg, _ = distill_config('retinanet', shapes_det_root, tmp_path)
    model = Runner.from_cfg(cfg).model
    with pytest.raises(RuntimeError, match='RecomputeCache'):
        model.recompute_loss()
