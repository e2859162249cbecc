"""Optional packages that a student's mmdet modules need only once training
starts, checked when the distiller is built.

PAA's label assignment fits a Gaussian mixture with scikit-learn; without
it mmdet fails at the first iteration with ``Please run "pip install
sklearn"``, naming a PyPI package that refuses to install (the deprecated
``sklearn`` alias). The distiller fails at build time instead, naming
``scikit-learn``.
"""
from torch import nn


def check_training_dependencies(model: nn.Module, role: str = 'student'):
    """Raises ``ImportError`` when a module of ``model`` needs an optional
    package that is not installed.

    Raises:
        ImportError: PAA without scikit-learn (``pip install scikit-learn``).
    """
    from mmdet.models.dense_heads import paa_head
    for name, module in model.named_modules():
        if isinstance(module, paa_head.PAAHead) and paa_head.skm is None:
            raise ImportError(
                f'the {role}\'s {name or "model"} (PAAHead) fits its label '
                'assignment with scikit-learn, which is not installed: pip '
                'install scikit-learn (mmdet\'s own message says "pip install '
                'sklearn", a deprecated name that PyPI refuses)')
