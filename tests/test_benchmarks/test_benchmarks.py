"""The CPU smoke modes of the benchmark scripts: they run end to end and
report every method (the numbers are the scripts' business, not CI's)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, run_tool

BENCH = osp.join(REPO_ROOT, 'benchmarks')


def test_step_overhead_smoke(tmp_path):
    out = tmp_path / 'overhead.json'
    log = run_tool(osp.join(BENCH, 'step_overhead.py'), '--preset',
                   'cpu-smoke', '--out', str(out))
    results = json.loads(out.read_text())['results']
    assert set(results) == {'student', 'kd', 'kd+bwd', 'dot', 'mokd-exact',
                            'mokd-exact-features', 'mokd-amortized',
                            'mokd-amortized-next', 'mkd', 'cwd', 'pkd'}
    assert results['kd']['x_kd'] == 1.0
    for name, row in results.items():
        assert row['ms'] > 0 and row['x_floor'] > 0, name
    assert '| mokd-amortized |' in log


def test_step_overhead_peak_rss_per_method(tmp_path):
    """--rss: each method's peak RSS from its own subprocess, beside the
    timings."""
    out = tmp_path / 'overhead.json'
    run_tool(osp.join(BENCH, 'step_overhead.py'), '--preset', 'cpu-smoke',
             '--methods', 'kd', 'mokd-amortized-next', '--rss', '--warmup',
             '1', '--steps', '1', '--out', str(out))
    results = json.loads(out.read_text())['results']
    assert results['kd']['rss_x_kd'] == 1.0
    for row in results.values():
        assert row['rss_mib'] > 100  # torch alone
        # the steps' own rise above the resident size before them (the
        # build's transient peak left out): activations at least
        assert 0 < row['rss_rise_mib'] < row['rss_mib']


def test_step_length_per_part(tmp_path):
    """The first step (same weights for every method) through the real
    distiller and wrappers: MoKD exact's step is as long as KD's in total;
    with balance='shared' every part (shared, task-only, distill-only) is
    as long as KD's part."""
    out = tmp_path / 'length.json'
    run_tool(osp.join(BENCH, 'step_length.py'), '--iters', '1', '--batch',
             '2', '--out', str(out))
    results = json.loads(out.read_text())['results']
    kd = results['kd']['lengths'][0]
    assert kd['task'] > 0 and kd['distill'] > 0 and kd['shared'] > 0
    exact = results['mokd-exact']['lengths'][0]
    assert exact['total'] == pytest.approx(kd['total'], rel=1e-4)
    shared = results['mokd-exact-shared']['lengths'][0]
    for part in ('total', 'shared', 'task', 'distill'):
        assert shared[part] == pytest.approx(kd[part], rel=1e-4), part


def _proxy(*args):
    return run_tool(osp.join(BENCH, 'proxy_accuracy.py'), *args)


def test_proxy_accuracy_smoke(tmp_path):
    """The detection study end to end (the demo's runs, paired, a repeat for
    the run-to-run check); then the grid flag on the same work dir trains
    only the runs it adds. (Every method's run through tools/train.py is
    also tested in tests/test_tools/test_kd_training.py.)"""
    results = tmp_path / 'proxy.json'
    log = _proxy('--preset', 'cpu-smoke', '--work-dir', str(tmp_path),
                 '--results', str(results), '--rerun', 'kd', '--runs',
                 'scratch', 'kd', 'dot', 'mokd-exact')
    out = json.loads(results.read_text())
    assert list(out['runs']) == ['scratch', 'kd', 'dot', 'mokd-exact']
    for name, row in out['runs'].items():
        assert list(row['per_seed']) == ['0'], name
        assert 0 <= row['mean'] <= 1, name
        if name != 'kd':  # paired with KD; one seed: no interval
            assert row['diff_mean'] == pytest.approx(
                row['mean'] - out['runs']['kd']['mean'])
            assert row['diff_low'] is None and row['beats'] is None
    assert 0 <= out['teacher'] <= 1
    # determinism: the same run twice gives the same mAP
    assert out['rerun']['abs_diff'] == 0.0
    # paired: every student run starts from the seed's one initialisation
    for name in ('scratch', 'kd', 'mokd-exact'):
        config = (tmp_path / 'configs' / f'{name}_seed0.py').read_text()
        assert str(tmp_path / 'init' / 'student_seed0_') in config
    assert '| mokd-exact |' in log and 'paired diff to KD' in log

    grid = _proxy('--preset', 'cpu-smoke', '--work-dir', str(tmp_path),
                  '--results', str(results), '--grid', 'kd,pkd:sgd,dot')
    trained = [line for line in grid.splitlines()
               if 'tools/train.py' in line]
    assert sorted(t.split()[-1].rsplit('/', 1)[-1] for t in trained) == [
        'pkd+dot_seed0', 'pkd_seed0']
    out = json.loads(results.read_text())
    assert set(out['runs']) == {'kd', 'dot', 'pkd', 'pkd+dot'}

    # a tuned baseline: a grid on the tuning seeds, its chosen point
    # reported on the evaluation seed under its -tuned name
    tuned = tmp_path / 'tuned.json'
    tune = run_tool(osp.join(BENCH, 'proxy_tune.py'), '--preset',
                    'cpu-smoke', '--work-dir', str(tmp_path), '--tuned',
                    str(tuned), '--base', 'kd', '--axis', 'wx=1,3')
    entry = json.loads(tuned.read_text())['kd']
    assert entry['seeds'] == [100, 101]
    assert set(entry['points']) == {'kd@wx=1', 'kd@wx=3'}
    best = max(entry['points'], key=lambda n: entry['points'][n]['mean'])
    assert entry['chosen'] == best and f'chosen: {best}' in tune
    assert 'kd@wx=3 seed 101' in tune
    _proxy('--preset', 'cpu-smoke', '--work-dir', str(tmp_path),
           '--results', str(results), '--tuned', str(tuned), '--runs', 'kd',
           'kd-tuned', '--reference', 'kd-tuned')
    out = json.loads(results.read_text())
    assert out['reference'] == 'kd-tuned' and out['tuned'] == {
        'kd-tuned': best}
    assert out['runs']['kd']['diff_mean'] == pytest.approx(
        out['runs']['kd']['mean'] - out['runs']['kd-tuned']['mean'])
    with pytest.raises(AssertionError, match='was chosen on seeds'):
        _proxy('--preset', 'cpu-smoke', '--work-dir', str(tmp_path),
               '--tuned', str(tuned), '--runs', 'kd-tuned', '--seeds', '100')

    # the demo drives the same study: on this work dir it trains nothing,
    # prints the COCO table of its runs and plots the MoKD run
    demo = run_tool(osp.join(REPO_ROOT, 'tools', 'demo.py'), '--preset',
                    'cpu-smoke', '--work-dir', str(tmp_path))
    assert '[proxy] tools/train.py' not in demo
    for name in ('teacher', 'scratch', 'kd', 'dot', 'mokd-exact'):
        assert f'| {name} | ' in demo, name
    assert (tmp_path / 'kd_dynamics.png').stat().st_size > 0


def test_proxy_study_defaults_to_every_run():
    """Without --runs the study trains every named run."""
    import sys
    sys.path.insert(0, BENCH)
    try:
        from proxy.runs import STUDY
    finally:
        sys.path.remove(BENCH)
    assert list(STUDY) == ['scratch', 'kd', 'dot', 'mokd-exact',
                           'mokd-amortized', 'mkd', 'cwd', 'pkd']


def test_proxy_accuracy_classification_smoke(tmp_path):
    results = tmp_path / 'proxy.json'
    _proxy('--preset', 'cls-cpu-smoke', '--work-dir', str(tmp_path),
           '--results', str(results), '--runs', 'scratch', 'kd', 'pkd+dot',
           'mkd')
    out = json.loads(results.read_text())
    assert out['unit'] == 'top-1 %'
    assert set(out['runs']) == {'scratch', 'kd', 'pkd+dot', 'mkd'}
    for name, row in out['runs'].items():
        assert 0 <= row['mean'] <= 100, name


def test_proxy_runs_parse_and_compose():
    import sys
    sys.path.insert(0, BENCH)
    from proxy.runs import canonical, grid, parse_run
    assert parse_run('pkd+dot') == ('pkd', 'dot')
    assert parse_run('kd~1') == ('kd', 'sgd')
    assert canonical('kd+mokd-exact') == 'mokd-exact'
    assert grid('kd,pkd:sgd,dot') == ['kd', 'dot', 'pkd', 'pkd+dot']
    with pytest.raises(ValueError, match='optimiser'):
        parse_run('pkd+adam')


def test_proxy_run_options():
    """``<run>@<option>+...``: literals, strings, dotted keys, variants, the
    task + per-term groups, and the config root with ``cfg.``."""
    import sys
    sys.path.insert(0, BENCH)
    from mmengine.config import Config
    from proxy.runs import (apply_options, canonical, grid, parse_run,
                            split_options)
    name = 'kd+mokd-exact@step_scale=K+min_weight=0.001+terms~1'
    assert parse_run(name) == ('kd', 'mokd-exact')
    assert canonical(name.split('~')[0]) == \
        'mokd-exact@step_scale=K+min_weight=0.001+terms'
    assert split_options(name)[1] == dict(step_scale='K', min_weight=0.001,
                                          groups='terms')
    assert grid('kd:sgd,mokd-exact@step_scale=c') == [
        'kd', 'mokd-exact@step_scale=c']
    with pytest.raises(ValueError, match="option 'bogus'"):
        split_options('kd@bogus')

    cfg = Config(dict(
        model=dict(distill_losses=dict(fpn=dict(loss_weight=1.),
                                       cls=dict(loss_weight=1.))),
        optim_wrapper=dict(type='MoKDOptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01,
                                          momentum=0.9))))
    apply_options(cfg, 'mokd-exact@terms+optimizer.lr=0.02+'
                  'cfg.model.distill_losses.cls.loss_weight=0.5')
    assert cfg.optim_wrapper.groups == ('task', 'distill.fpn', 'distill.cls')
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.model.distill_losses.cls.loss_weight == 0.5
    apply_options(cfg, 'scratch@adamw')  # a whole optimizer replaced
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-3,
                                               weight_decay=0.05)


def test_proxy_multiplier_options():
    """``wx`` and ``lrx`` multiply (after the other options, so they scale
    a variant's learning rate) and refuse what they cannot scale."""
    sys.path.insert(0, BENCH)
    from mmengine.config import Config
    from proxy.runs import apply_options

    def cfg():
        return Config(dict(
            model=dict(distill_losses=dict(fpn=dict(loss_weight=6.),
                                           cls=dict(type='LogitKDLoss'))),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01))))

    c = cfg()
    apply_options(c, 'kd@lrx=2+adamw+wx=30')
    assert c.optim_wrapper.optimizer.lr == pytest.approx(2e-3)  # AdamW's
    assert c.model.distill_losses.fpn.loss_weight == 180.
    assert c.model.distill_losses.cls.loss_weight == 30.  # unset: 1
    with pytest.raises(ValueError, match='positive number'):
        apply_options(cfg(), 'kd@wx=-1')
    with pytest.raises(ValueError, match='has none'):
        apply_options(Config(dict(model=dict(), optim_wrapper=dict(
            optimizer=dict(lr=1.)))), 'scratch@wx=3')


def test_tuned_point_choice_and_edges(tmp_path):
    """The best mean over the tuning seeds is chosen over every grid
    recorded so far; an axis without a neighbour on one side is an edge;
    a tuned run is refused on its tuning seeds."""
    sys.path.insert(0, BENCH)
    from proxy import tuning
    axes = tuning.parse_axes(['wx=3,10', 'lrx=1'])
    assert tuning.grid_names('kd@adamw', axes) == [
        'kd@adamw+wx=3+lrx=1', 'kd@adamw+wx=10+lrx=1']
    path = str(tmp_path / 'tuned.json')
    entry = tuning.record(path, 'kd', [100, 101], {
        'kd@wx=3+lrx=1': {100: 0.30, 101: 0.32},
        'kd@wx=10+lrx=1': {100: 0.36, 101: 0.34}}, 'grid 1')
    assert entry['chosen'] == 'kd@wx=10+lrx=1'
    assert entry['points']['kd@wx=10+lrx=1']['mean'] == pytest.approx(0.35)
    assert entry['edges'] == ['wx (above)', 'lrx (below)', 'lrx (above)']
    # a second grid (coordinate search) adds points; the choice is over all
    entry = tuning.record(path, 'kd', [101, 100], {
        'kd@wx=30+lrx=1': {100: 0.34, 101: 0.33},
        'kd@wx=10+lrx=0.5': {100: 0.20, 101: 0.21},
        'kd@wx=10+lrx=2': {100: 0.37, 101: 0.35}}, 'grid 2')
    assert entry['chosen'] == 'kd@wx=10+lrx=2'
    assert entry['options'] == 'wx=10+lrx=2'
    assert entry['edges'] == ['wx (below)', 'wx (above)', 'lrx (above)']
    assert entry['commands'] == ['grid 1', 'grid 2']
    assert tuning.resolve('kd-tuned', path, seeds=[0, 1]) == \
        'kd@wx=10+lrx=2'
    assert tuning.resolve('mokd-exact', path) == 'mokd-exact'
    with pytest.raises(SystemExit, match='was chosen on seeds'):
        tuning.resolve('kd-tuned', path, seeds=[0, 101])
    with pytest.raises(SystemExit, match='no tuned point'):
        tuning.resolve('kd@adamw-tuned', path)
    with pytest.raises(SystemExit, match='tuned on seeds'):
        tuning.record(path, 'kd', [102, 103], {}, 'grid 3')


def test_proxy_shared_init(tmp_path):
    """``shared_init``: every seed's student starts from seed 0's backbone
    and its own neck and head; without it, seeds differ everywhere."""
    import sys
    sys.path.insert(0, BENCH)
    import torch
    from proxy.families import FAMILIES
    from proxy.presets import PRESETS
    from proxy.study import Study

    import mokd_det  # noqa: F401 (registries)

    def inits(preset, work_dir):
        study = Study(preset, FAMILIES['det'], str(work_dir))
        return [torch.load(study.student_model(s).init_cfg.checkpoint)
                ['state_dict'] for s in (0, 1)]

    preset = dict(PRESETS['cpu-smoke'])
    assert PRESETS['cpu']['shared_init'] == ('backbone', )
    s0, s1 = inits(dict(preset, shared_init=('backbone', )),
                   tmp_path / 'shared')
    p0, p1 = inits(dict(preset, shared_init=()), tmp_path / 'own')
    for key in s0:
        if key.startswith('backbone.'):
            assert torch.equal(s0[key], s1[key]), key
        assert torch.equal(s0[key], p0[key]), key  # seed 0 is unchanged
        if key.startswith(('neck.', 'bbox_head.')):
            assert torch.equal(s1[key], p1[key]), key  # the seed's own
    assert not torch.equal(p0['backbone.conv1.weight'],
                           p1['backbone.conv1.weight'])
    assert not torch.equal(s0['neck.fpn_convs.0.conv.weight'],
                           s1['neck.fpn_convs.0.conv.weight'])


def test_paired_interval_against_hand_computed_values():
    import sys
    sys.path.insert(0, BENCH)
    from proxy.stats import paired_summary
    out = paired_summary({'kd': {0: 10.0, 1: 20.0, 2: 30.0},
                          'dot': {0: 11.0, 1: 22.0, 2: 33.0}})
    dot = out['dot']
    # diffs 1, 2, 3: mean 2, std 1, t(0.975, 2) = 4.302653
    half = 4.302653 * 1.0 / 3 ** 0.5
    assert dot['diff_mean'] == pytest.approx(2.0)
    assert dot['diff_low'] == pytest.approx(2.0 - half, rel=1e-6)
    assert dot['diff_high'] == pytest.approx(2.0 + half, rel=1e-6)
    assert dot['beats'] is False  # 2 - 2.484 < 0
    assert out['kd']['std'] == pytest.approx(10.0)


def test_weight_sweep_names_and_points(tmp_path):
    """The sweep's run names follow the proxy's option syntax (wx first,
    wx=1 is the run as shipped), and a weight is drawn only where every
    seed has finished."""
    sys.path.insert(0, BENCH)
    from plot_weight_sweep import points, run_name
    assert run_name('kd', 30, 'lrx=1') == 'kd@wx=30+lrx=1'
    assert run_name('kd', 1.0, '') == 'kd'
    assert run_name('kd@adamw', 0.3, '') == 'kd@adamw+wx=0.3'
    for name, seed, value in [('kd', 0, 0.30), ('kd', 1, 0.32),
                              ('kd@wx=3', 0, 0.35)]:
        run = tmp_path / 'runs' / f'{name}_seed{seed}'
        run.mkdir(parents=True)
        (run / 'metrics.json').write_text(json.dumps(dict(bbox_mAP=value)))
    assert points(str(tmp_path), 'kd', [1, 3], [0, 1]) == [
        (1, pytest.approx(31.), pytest.approx(30.), pytest.approx(32.))]


def test_seeds_needed_for_a_half_width():
    """t_{n-1} * sd / sqrt(n) <= h: with sd 1 a half-width of 1 needs
    n = 7 (t_6 = 2.447, 2.447 / 2.646 = 0.925; n = 6: 2.571 / 2.449 =
    1.050); a zero spread needs the minimum, 2."""
    sys.path.insert(0, BENCH)
    from proxy.stats import paired_summary, seeds_needed
    assert seeds_needed(1.0, 1.0) == 7
    assert seeds_needed(0.0, 0.5) == 2
    assert seeds_needed(100.0, 0.01, limit=50) is None
    row = paired_summary({'kd': {0: 1., 1: 2., 2: 3.},
                          'x': {0: 2., 1: 4., 2: 6.}})['x']
    assert row['diff_std'] == pytest.approx(1.0)


def test_paired_against_another_reference():
    """``--reference kd@adamw``: the rows pair with that run and say so."""
    import sys
    sys.path.insert(0, BENCH)
    from proxy.stats import format_rows, header, paired_summary
    out = paired_summary({'kd@adamw': {0: 0.40, 1: 0.41},
                          'mokd-exact@adamw': {0: 0.42, 1: 0.43},
                          'kd': {0: 0.30, 1: 0.31}}, reference='kd@adamw')
    assert out['mokd-exact@adamw']['diff_mean'] == pytest.approx(0.02)
    assert out['kd']['diff_mean'] == pytest.approx(-0.10)
    assert 'diff_mean' not in out['kd@adamw']
    rows = format_rows(out, reference='kd@adamw')
    # identical diffs: zero spread, so the interval is the point
    assert rows[1][4] == '+2.00 [+2.00, +2.00]'
    assert rows[1][5] == 'beats kd@adamw' and rows[2][5] == 'below kd@adamw'
    assert header('kd@adamw')[4] == 'paired diff to kd@adamw [95% CI]'


def test_gpu_suite_dry_run(tmp_path):
    """The GPU suite's plan on the CPU: every step-overhead method builds
    (fp32; the AMP wrappers' mapping), the GPU proxy's configs are
    written."""
    proc = subprocess.run(
        ['bash', osp.join(BENCH, 'gpu_suite.sh'), str(tmp_path), '--dry-run'],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (tmp_path / 'summary.md').read_text()
    for name in ('step_retinanet', 'step_retinanet_amp', 'step_faster-rcnn',
                 'step_faster-rcnn_amp', 'proxy_gpu'):
        assert f'## {name} (' in summary, name
    # the step tables fit the lease (issue 21: 10 device-minutes)
    assert 'within the 600 s budget' in summary, summary[:2000]
    plan = (tmp_path / 'step_faster-rcnn.log').read_text()
    assert 'plan: mokd-amortized: DetDistiller with MoKDOptimWrapper' in plan
    amp = (tmp_path / 'step_retinanet_amp.log').read_text()
    assert 'plan: dot: --amp maps to AmpDOTOptimWrapper' in amp
    assert (tmp_path / 'proxy_gpu' / 'configs' / 'pkd_seed0.py').is_file()


def test_cls_preset_student_subset_and_backbone(tmp_path):
    """``cls-cpu-few``: the students learn from the first ``student_train``
    images, the teacher from all; both backbones keep the resolution
    (ResNet_CIFAR, stride-2 stages), so the last stage is 2x2 at 32 px."""
    sys.path.insert(0, BENCH)
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, MODELS
    from proxy.families import FAMILIES
    from proxy.presets import PRESETS
    from proxy.study import Study

    import mokd_det  # noqa: F401 (registries)

    preset = PRESETS['cls-cpu-few']
    assert preset['student_train'] == 500
    study = Study(preset, FAMILIES['cls'], str(tmp_path))
    teacher = Config.fromfile(study.config('teacher', 0))
    assert 'indices' not in teacher.train_dataloader.dataset
    for name in ('scratch', 'kd'):
        cfg = Config.fromfile(study.config(name, 0))
        assert cfg.train_dataloader.dataset.indices == 500, name
        assert 'indices' not in cfg.val_dataloader.dataset, name
    assert cfg.model.student.backbone.type == 'ResNet_CIFAR'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(teacher.model.backbone)
    last = backbone(torch.zeros(1, 3, 32, 32))[-1]
    assert last.shape[-2:] == (2, 2)


def test_cls_preset_student_mixup(tmp_path):
    """``cls-cpu-mix``: the students' preprocessor mixes their batches (the
    distiller feeds the teacher the same mixed images) and their head takes
    the soft-label cross-entropy; the teacher trains without mixup. Built
    and run on a batch: the mixed labels are soft."""
    sys.path.insert(0, BENCH)
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, MODELS
    from mmpretrain.structures import DataSample
    from proxy.families import FAMILIES
    from proxy.presets import PRESETS
    from proxy.study import Study

    import mokd_det  # noqa: F401 (registries)

    study = Study(PRESETS['cls-cpu-mix'], FAMILIES['cls'], str(tmp_path))
    teacher = Config.fromfile(study.config('teacher', 0))
    assert 'batch_augments' not in teacher.model.data_preprocessor
    assert not teacher.model.head.loss.get('use_soft', False)
    for name in ('scratch', 'kd'):
        cfg = Config.fromfile(study.config(name, 0))
        student = cfg.model if name == 'scratch' else cfg.model.student
        assert student.data_preprocessor.batch_augments == dict(
            augments=dict(type='Mixup', alpha=1.0)), name
        assert student.head.loss.use_soft, name
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model.student)
    torch.manual_seed(0)
    batch = dict(inputs=[torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
                         for _ in range(4)],
                 data_samples=[DataSample().set_gt_label(i % 2)
                               for i in range(4)])
    out = model.data_preprocessor(batch, training=True)
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    assert torch.allclose(scores.sum(1), torch.ones(4))
    assert ((scores > 0) & (scores < 1)).any()  # mixed, not one-hot


def test_forest_plot_rows_and_files(tmp_path):
    """The forest plot takes each run's paired difference in the study's
    units, skips runs without one (the reference), renames rows, and writes
    the image and its points."""
    sys.path.insert(0, BENCH)
    from plot_forest import main, rows
    result = dict(reference='kd-tuned', seeds=[0, 1, 2], scale=100.0, runs={
        'kd-tuned': dict(mean=0.45),
        'mokd-exact@wx=3': dict(diff_mean=-0.011, diff_low=-0.03,
                                diff_high=0.008),
        'kd': dict(diff_mean=-0.144, diff_low=-0.175, diff_high=-0.113)})
    assert rows(result) == [
        ('mokd-exact@wx=3', pytest.approx(-1.1), pytest.approx(-3.0),
         pytest.approx(0.8)),
        ('kd', pytest.approx(-14.4), pytest.approx(-17.5),
         pytest.approx(-11.3))]
    path = tmp_path / 'study.json'
    path.write_text(json.dumps(result))
    out = tmp_path / 'forest.png'
    main(['--results', str(path), '--rename', 'mokd-exact@wx=3=MoKD exact',
          '--out', str(out)])
    assert out.stat().st_size > 0
    points = json.loads((tmp_path / 'forest.json').read_text())
    assert [p['run'] for p in points[0]['points']] == ['MoKD exact', 'kd']
    assert points[0]['title'] == 'vs kd-tuned, seeds 0, 1, 2'
