"""End to end: the quickstart config (inheriting mmdet's stock RetinaNet R18)
trains through the real mmengine Runner on generated data, evaluates with
CocoMetric (pycocotools), saves and resumes exactly; the CLI tools work."""
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.helpers import retarget_detection_data, run_tool

QUICKSTART = 'configs/quickstart/retinanet_r18_fpn_shapes.py'
COCO_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
             'bbox_mAP_m', 'bbox_mAP_l')


def quickstart_cfg(data_root, work_dir, max_epochs, flip=True):
    cfg = Config.fromfile(QUICKSTART)
    assert 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py' in \
        open(QUICKSTART).read()
    retarget_detection_data(cfg, data_root, work_dir, flip=flip)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = max_epochs
    cfg.param_scheduler[1].end = max_epochs
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    # an untrained detector scores below mmdet's 0.05: keep every box so
    # that pycocotools evaluates real predictions
    cfg.model.test_cfg.score_thr = 0.0
    return cfg


def test_quickstart_trains_and_reports_coco_map(shapes_det_root, tmp_path):
    cfg = quickstart_cfg(shapes_det_root, str(tmp_path), max_epochs=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2  # 8 images, batch 4
    metrics = runner.val_loop.run()
    for key in COCO_KEYS:
        value = metrics[f'coco/{key}']
        # pycocotools reports -1 for an empty area range; otherwise [0, 1]
        assert value == -1 or 0 <= value <= 1, (key, value)
    assert metrics['coco/bbox_mAP'] >= 0


def test_coco_metric_scores_ground_truth_as_perfect(shapes_det_root):
    """The generated JSON and CocoMetric agree: GT boxes as predictions give
    mAP 1.0, so a low mAP in training is the model's, not the data's."""
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    ann_file = osp.join(shapes_det_root, 'annotations', 'instances_val.json')
    coco = COCO(ann_file)
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=[c['name'] for c in coco.loadCats(
        coco.getCatIds())])
    samples = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        boxes = torch.tensor([[x, y, x + w, y + h]
                              for x, y, w, h in (a['bbox'] for a in anns)])
        samples.append(dict(
            img_id=img_id, ori_shape=(128, 128),
            pred_instances=dict(
                bboxes=boxes, scores=torch.ones(len(anns)),
                labels=torch.tensor([a['category_id'] - 1 for a in anns]))))
    metric.process({}, samples)
    results = metric.compute_metrics(metric.results)
    assert results['bbox_mAP'] == pytest.approx(1.0)


def test_resume_continues_exactly(shapes_det_root, tmp_path):
    """1 epoch, save, resume for a 2nd == 2 epochs straight (params and SGD
    momentum), and the resumed run starts at the saved iteration."""
    straight = Runner.from_cfg(quickstart_cfg(
        shapes_det_root, str(tmp_path / 'straight'), 2, flip=False))
    straight.train()

    first = Runner.from_cfg(quickstart_cfg(
        shapes_det_root, str(tmp_path / 'resumed'), 1, flip=False))
    first.train()
    ckpt = osp.join(str(tmp_path / 'resumed'), 'epoch_1.pth')
    assert osp.isfile(ckpt)
    del first

    cfg = quickstart_cfg(shapes_det_root, str(tmp_path / 'resumed'), 2,
                         flip=False)
    cfg.resume, cfg.load_from = True, ckpt
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == straight.iter == 4
    assert resumed.epoch == 2

    params = dict(straight.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, params[name], rtol=0, atol=1e-6,
                                   msg=name)
    opt_a = straight.optim_wrapper.optimizer.state_dict()['state']
    opt_b = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert opt_a.keys() == opt_b.keys() and len(opt_a) > 0
    for k in opt_a:
        torch.testing.assert_close(opt_b[k]['momentum_buffer'],
                                   opt_a[k]['momentum_buffer'], rtol=0,
                                   atol=1e-6)


def test_cli_train_resume_and_test(shapes_det_root, tmp_path):
    cfg = quickstart_cfg(shapes_det_root, str(tmp_path / 'unused'), 1)
    config = str(tmp_path / 'cfg.py')
    cfg.dump(config)
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', config, '--work-dir', work_dir)
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))

    # the same command line again, as torchrun reruns it after a lost
    # worker (--max-restarts): it resumes on its own, without --resume
    log = run_tool('tools/train.py', config, '--work-dir', work_dir,
                   '--cfg-options', 'train_cfg.max_epochs=2',
                   'train_cfg.val_interval=2', 'param_scheduler.1.end=2',
                   env=dict(TORCHELASTIC_RESTART_COUNT='1'))
    assert 'torchrun restart 1: resuming from the latest checkpoint' in log
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][2/2]' in log
    assert 'coco/bbox_mAP' in log

    out = str(tmp_path / 'preds.pkl')
    log = run_tool('tools/test.py', config, osp.join(work_dir, 'epoch_2.pth'),
               '--work-dir', str(tmp_path / 'test'), '--out', out)
    assert 'coco/bbox_mAP' in log
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and 'pred_instances' in preds[0]
