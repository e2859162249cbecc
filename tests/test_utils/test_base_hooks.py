"""A config whose custom_hooks list drops hooks of its base configs (RTMDet's
EMAHook and PipelineSwitchHook under a distillation config) is refused
before anything is built, with the idiom that keeps them."""
import os.path as osp

import pytest
from mmengine.config import Config

from mokd_det.utils import check_base_hooks, dropped_base_hooks
from tests.helpers import REPO_ROOT, run_tool

RTMDET = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def test_rtmdet_hooks_dropped_by_a_distillation_config(tmp_path):
    cfg = Config.fromfile(_write(
        tmp_path / 'distill.py', f"_base_ = ['{RTMDET}']\n"
        "custom_hooks = [dict(type='ExportStudentHook')]\n"))
    assert dropped_base_hooks(cfg) == {'EMAHook': RTMDET,
                                       'PipelineSwitchHook': RTMDET}
    with pytest.raises(ValueError) as info:
        check_base_hooks(cfg)
    message = str(info.value)
    assert f'custom_hooks drops EMAHook (from {RTMDET}), ' \
        f'PipelineSwitchHook (from {RTMDET})' in message
    assert "custom_hooks = [*_base_.get('custom_hooks', []), " \
        "dict(type='ExportStudentHook')" in message
    assert "dropped_base_hooks = ['EMAHook', 'PipelineSwitchHook']" in \
        message


def test_the_documented_idiom_keeps_them(tmp_path):
    cfg = Config.fromfile(_write(
        tmp_path / 'distill.py', f"_base_ = ['{RTMDET}']\n"
        "custom_hooks = [*_base_.get('custom_hooks', []),\n"
        "                dict(type='ExportStudentHook')]\n"))
    assert [h.type for h in cfg.custom_hooks] == [
        'EMAHook', 'PipelineSwitchHook', 'ExportStudentHook']
    assert cfg.custom_hooks[0].momentum == 0.0002  # RTMDet's own arguments
    check_base_hooks(cfg)
    assert dropped_base_hooks(cfg) == {}


def test_dropping_on_purpose_and_deeper_chains(tmp_path):
    # a hook dropped by an intermediate config is found from the leaf too
    _write(tmp_path / 'student.py', "custom_hooks = [dict(type='EMAHook'), "
           "dict(type='mmdet.PipelineSwitchHook', switch_epoch=2)]\n")
    _write(tmp_path / 'pair.py', "_base_ = ['./student.py']\n"
           "custom_hooks = [dict(type='ExportStudentHook')]\n")
    leaf = Config.fromfile(_write(
        tmp_path / 'leaf.py', "_base_ = ['./pair.py']\n"
        "custom_hooks = [*_base_.custom_hooks, dict(type='MKDMetaHook')]\n"))
    assert dropped_base_hooks(leaf) == {'EMAHook': './student.py',
                                        'PipelineSwitchHook': './student.py'}
    on_purpose = Config.fromfile(_write(
        tmp_path / 'on_purpose.py', "_base_ = ['./pair.py']\n"
        "dropped_base_hooks = ['EMAHook']\n"))
    assert dropped_base_hooks(on_purpose) == {
        'PipelineSwitchHook': './student.py'}
    # a config built in code (no file) has no bases to compare with
    assert dropped_base_hooks(Config(dict(custom_hooks=[]))) == {}


def test_tools_train_refuses_before_building(tmp_path):
    """tools/train.py stops at once (no data check, no model) and says
    which hooks were dropped."""
    kd = osp.join(REPO_ROOT, 'configs', 'quickstart',
                  'kd_r18-r18half_retinanet_3e_shapes.py')
    path = _write(tmp_path / 'distill.py', f"_base_ = ['{kd}']\n"
                  "custom_hooks = [dict(type='TeacherEvalHook')]\n")
    with pytest.raises(AssertionError) as info:
        run_tool('tools/train.py', path, '--work-dir', str(tmp_path / 'w'))
    assert 'custom_hooks drops ExportStudentHook' in str(info.value)
    assert not osp.exists(tmp_path / 'w')
