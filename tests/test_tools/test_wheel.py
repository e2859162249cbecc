"""The package as a user installs it: ``python -m build`` makes an sdist and
a wheel (from the sdist) that carry the configs; the wheel, installed (not
editable) into a fresh venv that reuses this venv's stack (torch, mmcv,
mmdet), trains one iteration of a user config that inherits
``mokd_det::<config>`` from a directory outside the checkout, once through
our ``tools/train.py`` (shipped under ``mokd_det/.mim/tools``) and once
through mmdet's own, which parses the config before importing anything of
ours (the scope's start-up hook, ``_mokd_det_scope``, makes that work)."""
import os
import os.path as osp
import subprocess
import sys
import sysconfig
import tarfile

import pytest

import mokd_det

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

USER_CONFIG = """\
_base_ = ['mokd_det::quickstart/mokd-exact_r18-r18half_retinanet_3e_shapes.py']
# a random teacher (a smoke test; a real run names its checkpoint), found
# through the scope too
model = dict(teacher=dict(
    _delete_=True,
    config='mokd_det::quickstart/retinanet_r18_fpn_shapes.py',
    untrained=True))
train_cfg = dict(max_epochs=1)
"""


def run(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, (' '.join(map(str, cmd)) + '\n' +
                                  proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def dists(tmp_path_factory):
    """(sdist, wheel) built from the checkout."""
    out = tmp_path_factory.mktemp('dist')
    run([sys.executable, '-m', 'build', '--no-isolation', '--outdir',
         str(out), ROOT], cwd=ROOT)
    sdist, = out.glob('mokd_det-*.tar.gz')
    wheel, = out.glob('mokd_det-*.whl')
    return sdist, wheel


def test_sdist_carries_the_configs_and_tools(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for path in ('configs/quickstart/retinanet_r18_fpn_shapes.py',
                 'configs/retinanet/mokd-exact_r101-r50_retinanet_1x_coco.py',
                 'tools/train.py', 'model-index.yml', '_mokd_det_scope.py'):
        assert path in names, path


def test_wheel_trains_a_user_config_under_both_launchers(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / 'venv'
    base_python = getattr(sys, '_base_executable', sys.executable)
    run([base_python, '-m', 'venv', '--without-pip', str(venv)], cwd=tmp_path)
    python = str(venv / 'bin' / 'python')
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])'],
               cwd=tmp_path).strip()
    # the user's environment already holds the stack: this venv's packages
    # (a path line, so the checkout's editable finder is not loaded there)
    stack = sysconfig.get_paths()['purelib']
    with open(osp.join(site, '_stack.pth'), 'w') as f:
        f.write(stack + '\n')
    run([sys.executable, '-m', 'pip', '--python', python, 'install',
         '--no-deps', '--no-index', str(wheel)], cwd=tmp_path)

    project = tmp_path / 'project'  # the user's own, outside the checkout
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    info = run([python, '-c',
                'import importlib.metadata as m, mokd_det, mmdet, os; '
                'print(mokd_det.__file__); print(m.version("mokd_det")); '
                'print(mokd_det.__version__); '
                'print(os.path.dirname(mmdet.__file__))'],
               cwd=project, env=env).strip().splitlines()[-4:]
    package, dist_version, version, mmdet_dir = info
    assert package.startswith(site), 'imported the checkout, not the wheel'
    assert dist_version == version == mokd_det.__version__
    tools = osp.join(osp.dirname(package), '.mim', 'tools')

    run([python, osp.join(tools, 'generate_shapes.py'), 'data/shapes',
         '--num-train', '8', '--num-val', '4', '--img-size', '96', '96'],
        cwd=project, env=env)
    (project / 'my_mokd.py').write_text(USER_CONFIG)
    launchers = {'ours': osp.join(tools, 'train.py'),
                 'mmdet': osp.join(mmdet_dir, '.mim', 'tools', 'train.py')}
    for name, train in launchers.items():
        log = run([python, train, 'my_mokd.py', '--work-dir', name],
                  cwd=project, env=env)
        assert 'Epoch(train) [1][1/1]' in log, (name, log[-2000:])
        assert 'kd/pi_task' in log, name  # the MoKD wrapper ran
        assert (project / name / 'student_epoch_1.pth').is_file(), name


def test_import_without_mmdet_names_both_install_lines(tmp_path):
    """mmcv and mmdet are extras (``mim`` or ``onedl``), not requirements;
    without them ``import mokd_det`` says which lines install them."""
    proc = subprocess.run(
        [sys.executable, '-c',
         "import sys; sys.modules['mmdet'] = None; import mokd_det"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'ImportError: mokd_det needs MMDetection 3.x, and mmdet is not ' \
        'installed' in proc.stderr, proc.stderr[-2000:]
    assert "'mokd_det[mim]'" in proc.stderr
    assert "'mokd_det[onedl]'" in proc.stderr
