"""mokd_det: multi-objective knowledge distillation for MMDetection 3.x."""
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
#: what the wheel carries under mokd_det/.mim (mmdet ships its configs and
#: tools the same way), so ``mokd_det::<config>`` resolves after pip install
MIM = ('configs', 'tools', 'model-index.yml')
#: the start-up line that registers the ``mokd_det::`` scope under any
#: launcher (see _mokd_det_scope.py)
SCOPE_PTH = ('mokd_det-scope.pth',
             'import _mokd_det_scope; _mokd_det_scope.install()\n')


class BuildPy(build_py):
    """Also copies ``configs/`` and ``tools/`` into ``mokd_det/.mim`` and
    writes the scope's ``.pth`` at the wheel's root. An editable install
    skips both: its configs are the checkout's, and ``import mokd_det``
    registers the scope."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        build = Path(self.build_lib)
        for name in MIM:
            source, target = ROOT / name, build / 'mokd_det' / '.mim' / name
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                continue
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        (build / SCOPE_PTH[0]).write_text(SCOPE_PTH[1])

VERSION = re.search(r"__version__ = '([^']+)'",
                    (ROOT / 'mokd_det' / 'version.py').read_text()).group(1)

setup(
    name='mokd_det',
    version=VERSION,
    description='Knowledge-distillation optimisers (MoKD, DOT, MKD), '
    'distillers and feature-distillation necks for MMDetection 3.x',
    long_description=(ROOT / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mokd_det', 'mokd_det.*']),
    py_modules=['_mokd_det_scope'],
    cmdclass={'build_py': BuildPy},
    python_requires='>=3.8',
    # The ranges the code supports; requirements/ pins the tested sets. The
    # OpenMMLab stack is an extra, as OpenMMLab's own packages make mmcv one
    # (their `mim` extra): mmcv with its compiled ops comes from a source
    # build or a matching binary, and the OneDL forks install the same
    # modules under other distribution names, so neither is forced here.
    # Importing mokd_det without mmdet names both install lines.
    install_requires=[
        'torch>=2.0',
        'numpy',
        'opencv-python',
        'pycocotools',
        'tqdm',
    ],
    extras_require={
        # the upstream releases (the default, tested stack)
        'mim': ['mmengine>=0.10.0,<1.0.0',
                'mmcv>=2.0.0rc4,<2.2.0',  # with compiled ops (nms, RoIAlign)
                'mmdet>=3.0.0,<4.0.0'],
        # the maintained forks (same import names)
        'onedl': ['onedl-mmengine>=0.10.12,<1.0.0', 'onedl-mmcv>=2.3.0',
                  'onedl-mmdetection>=3.5.0,<4.0.0'],
        # ImageNet-style classifiers distill through mmpretrain configs.
        'cls': ['mmpretrain>=1.0.0,<2.0.0', 'torchvision'],
        'plot': ['matplotlib'],
        'tests': ['pytest', 'pytest-timeout', 'matplotlib', 'build'],
    },
    zip_safe=False,
)
