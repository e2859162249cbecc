"""The CPU smoke modes of the benchmark scripts: they run end to end and
report every method (the numbers are the scripts' business, not CI's)."""
import json
import os.path as osp

from tests.helpers import REPO_ROOT, run_tool

BENCH = osp.join(REPO_ROOT, 'benchmarks')


def test_step_overhead_smoke(tmp_path):
    out = tmp_path / 'overhead.json'
    log = run_tool(osp.join(BENCH, 'step_overhead.py'), '--preset',
                   'cpu-smoke', '--out', str(out))
    results = json.loads(out.read_text())['results']
    assert set(results) == {'student', 'kd', 'kd+bwd', 'dot', 'mokd-exact',
                            'mokd-amortized', 'mkd', 'cwd', 'pkd'}
    assert results['kd']['x_kd'] == 1.0
    for name, row in results.items():
        assert row['ms'] > 0 and row['x_floor'] > 0, name
    assert '| mokd-amortized |' in log


def test_proxy_accuracy_smoke(tmp_path):
    log = run_tool(osp.join(BENCH, 'proxy_accuracy.py'), '--preset',
                   'cpu-smoke', '--work-dir', str(tmp_path))
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert list(summary['bbox_mAP']) == [
        'teacher', 'scratch', 'kd', 'dot', 'mokd-exact', 'mokd-amortized',
        'mkd', 'cwd', 'pkd']
    for name, maps in summary['bbox_mAP'].items():
        assert len(maps) == 1 and 0 <= maps[0] <= 1, name
    # every run's config was written and can be rerun alone
    assert (tmp_path / 'configs' / 'mokd-amortized_seed0.py').is_file()
    assert '| mokd-exact |' in log
    # a second invocation finds every run finished and trains nothing
    again = run_tool(osp.join(BENCH, 'proxy_accuracy.py'), '--preset',
                     'cpu-smoke', '--work-dir', str(tmp_path))
    assert 'tools/train.py' not in again
