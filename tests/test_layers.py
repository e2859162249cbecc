"""The package's layering, read from the source: no import runs upward, no
two packages import each other, and the optim wrappers' modules need no
detector library.

Floors, lowest first (a module may import its own package and any floor
below its own; the top-level ``mokd_det/__init__`` imports everything):

0. ``loss_groups`` (the seam between distillers and optim wrappers),
   ``checkpoint``, ``engine`` (training-loop pieces), ``utils``,
   ``version``
1. ``backbones``, ``datasets``, ``losses``, ``necks``
2. ``distillers``
3. ``optim``
4. ``hooks``

Imports inside functions count as well: a local import hides a cycle from
Python, not from the design.
"""
import ast
import os
import os.path as osp
from typing import Dict, Set

from tests.helpers import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'mokd_det')
FLOORS = {
    'loss_groups': 0, 'checkpoint': 0, 'engine': 0, 'utils': 0,
    'version': 0,
    'backbones': 1, 'datasets': 1, 'losses': 1, 'necks': 1,
    'distillers': 2, 'optim': 3, 'hooks': 4,
}


def _modules() -> Dict[str, str]:
    """Dotted module name -> path, for every module under mokd_det/."""
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(root, name)
                rel = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
                out[rel[:-len('.__init__')] if rel.endswith('__init__')
                    else rel] = path
    return out


def _imports(module: str, path: str) -> Set[str]:
    """The absolute names every import statement of the file names (the
    module of ``from m import x``, and ``m.x`` too, which may be one)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    package = module if path.endswith('__init__.py') else \
        module.rpartition('.')[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                target = node.module
            names.add(target)
            names.update(f'{target}.{a.name}' for a in node.names)
    return names


def _package(module: str) -> str:
    """``mokd_det.optim.mokd`` -> ``optim``; the top level -> ''."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def _graph(parents: bool = True) -> Dict[str, Set[str]]:
    """Module -> the mokd_det modules it imports; with ``parents``, also
    the packages above each (importing ``a.b.c`` runs ``a/b/__init__``),
    except the top level."""
    modules = _modules()
    graph = {}
    for m, p in modules.items():
        targets = {n for n in _imports(m, p) if n in modules}
        if parents:
            for t in list(targets):
                parts = t.split('.')
                targets.update('.'.join(parts[:i])
                               for i in range(2, len(parts)))
        graph[m] = targets
    return graph


def test_every_package_has_a_floor():
    packages = {_package(m) for m in _modules()} - {''}
    assert packages == set(FLOORS), (
        'a package or ground-floor module without a floor: give it one in '
        'FLOORS (and in the module docstring)')


def test_no_import_runs_upward():
    upward = []
    for module, targets in _graph().items():
        src = _package(module)
        if not src:  # mokd_det/__init__: registers everything
            continue
        for target in targets:
            dst = _package(target)
            if dst and dst != src and FLOORS[dst] > FLOORS[src]:
                upward.append(f'{module} -> {target}')
    assert not upward, 'imports that run upward:\n' + '\n'.join(upward)


def test_no_cycle_between_packages_or_modules():
    graph = _graph()
    edges = {(_package(m), _package(t)) for m, ts in graph.items()
             for t in ts if _package(m) and _package(t)
             and _package(m) != _package(t)}
    both = sorted(e for e in edges if e[::-1] in edges)
    assert not both, f'packages importing each other: {both}'

    # modules: a depth-first search for a back edge
    state: Dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if t == m or t.startswith(m + '.') or m.startswith(t + '.'):
                continue  # a package and its own modules
            if state.get(t) == 1:
                cycles.append(' -> '.join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, 'module cycles:\n' + '\n'.join(cycles)


def test_optim_modules_need_no_detector_library():
    """The optim wrappers' modules, and every mokd_det module they import,
    import neither mmdet nor mmpretrain: what the wrappers read of a
    distiller is the loss groups on the ground floor. (Packages'
    ``__init__`` files are left out: ``import mokd_det.optim`` runs
    ``mokd_det/__init__``, which registers every component, the detection
    distiller and the DETR query loss included, and so needs mmdet.)"""
    modules = _modules()
    graph = _graph(parents=False)
    seen, todo = set(), [m for m in modules
                         if m.startswith('mokd_det.optim.')]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(t for t in graph[m] if t != 'mokd_det')
    offending = sorted(
        f'{m}: {n}' for m in seen for n in _imports(m, modules[m])
        if n.split('.')[0] in ('mmdet', 'mmpretrain'))
    assert not offending, offending
    assert 'mokd_det.loss_groups' in seen
