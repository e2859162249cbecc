"""mokd_det: multi-objective knowledge distillation for MMDetection 3.x."""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
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
    python_requires='>=3.8',
    # The ranges the code supports; requirements/ pins the tested dev set.
    install_requires=[
        'torch>=2.0',
        'mmengine>=0.10.0,<1.0.0',
        'mmcv>=2.0.0rc4,<2.2.0',  # with compiled ops (mmdet needs nms, RoIAlign)
        'mmdet>=3.0.0,<4.0.0',
        'numpy',
        'opencv-python',
        'pycocotools',
        'tqdm',
    ],
    extras_require={
        # ImageNet-style classifiers distill through mmpretrain configs.
        'cls': ['mmpretrain>=1.0.0,<2.0.0', 'torchvision'],
        'plot': ['matplotlib'],
        'tests': ['pytest', 'pytest-timeout', 'matplotlib'],
    },
    zip_safe=False,
)
