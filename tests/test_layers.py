"""The package's layers import one way: tools -> analysis -> deploy / convert -> models /
datasets -> engine -> utils. No module imports a layer above its own, and outside the
command-line tools (which defer heavy imports to keep start-up fast) no rfcr import hides
inside a function. No module uses PyTorch's private APIs or imports the standalone
``benchmarks/`` scripts."""
import ast
import re
from pathlib import Path

import pytest

import rfcr

PACKAGE = Path(rfcr.__file__).parent
LAYERS = {'tools': 5, 'analysis': 4, 'deploy': 3, 'convert': 3, 'models': 2, 'datasets': 2,
          'engine': 1, 'utils': 0, 'version': 0}


def _layer(module: str) -> str:
    """``rfcr.deploy.fold`` -> ``deploy``."""
    return module.split('.')[1]


def _imports(path: Path):
    """(imported rfcr module, line, inside a function?) for every import in ``path``."""
    module = '.'.join(('rfcr', ) + path.relative_to(PACKAGE).with_suffix('').parts)
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                              ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] if node.module else [f'{base}.{a.name}' for a in node.names]
        for name in names:
            if name.startswith('rfcr.'):
                yield name, node.lineno, id(node) in nested


def _modules():
    return sorted(p for p in PACKAGE.rglob('*.py') if p.parent != PACKAGE or
                  p.name != '__init__.py')


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix('.py')
    assert own in LAYERS, f'{own} is not assigned a layer'
    for name, line, _ in _imports(path):
        assert LAYERS[_layer(name)] <= LAYERS[own], (
            f'{path.relative_to(PACKAGE)}:{line} ({own}) imports {name} ({_layer(name)}), a '
            'layer above it')


@pytest.mark.parametrize('path', [p for p in _modules() if p.relative_to(PACKAGE).parts[0]
                                  != 'tools'], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_lazy_rfcr_imports_outside_the_tools(path):
    lazy = [(name, line) for name, line, nested in _imports(path) if nested]
    assert not lazy, f'{path.relative_to(PACKAGE)} imports {lazy} inside functions'


def test_models_import_nothing_of_deploy_analysis_or_tools():
    for path in (PACKAGE / 'models').rglob('*.py'):
        for name, line, _ in _imports(path):
            assert _layer(name) not in ('deploy', 'analysis', 'tools'), (path, line, name)


def test_the_import_parser_sees_relative_imports():
    imports = {name for name, _, _ in _imports(PACKAGE / 'models' / 'utils.py')}
    assert imports == {'rfcr.models.necks.rfcr', 'rfcr.utils.model'}


def test_every_layer_has_modules():
    """The layer table names the package as it is: no layer without a module, no module
    without a layer (the test above checks the second for each file)."""
    assert {p.relative_to(PACKAGE).parts[0].removesuffix('.py') for p in _modules()} == \
        set(LAYERS)


# torch._C (and torch._C._nn, ...), torch.ops.<namespace>._<op>, torch.fx._symbolic_trace:
# PyTorch's private APIs, whichever way they are spelled.
PRIVATE_TORCH = re.compile(r'\btorch\._C\b|\btorch\.ops\.\w+\._\w|\btorch\.fx\._symbolic_trace\b'
                           r'|\bfrom\s+torch\s+import\s+[^\n]*\b_C\b'
                           r'|\bfrom\s+torch\.fx\s+import\s+[^\n]*\b_symbolic_trace\b')


@pytest.mark.parametrize('text, private', [
    ('torch._C._nn.linear(x, w)', True), ('torch.ops.mkldnn._convolution_pointwise', True),
    ('torch.ops.aten._foo.default', True), ('from torch.fx._symbolic_trace import Tracer', True),
    ('from torch import _C', True), ('torch.ops.aten.conv2d', False),
    ('torch.nn.functional.conv2d', False), ('torch.fx.symbolic_trace(m)', False),
])
def test_the_private_api_pattern(text, private):
    assert bool(PRIVATE_TORCH.search(text)) is private


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_torch_api(path):
    found = [f'{path.relative_to(PACKAGE)}:{i}: {line.strip()}'
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if PRIVATE_TORCH.search(line)]
    assert not found, 'private PyTorch APIs: ' + '; '.join(found)


# What loads a file as a module, by the name it is called by.
FILE_LOADERS = {'spec_from_file_location', 'SourceFileLoader', 'run_path', 'import_module',
                '__import__', 'exec'}


def _benchmarks_use(path: Path) -> tuple[list[str], list[str]]:
    """The ``benchmarks`` modules ``path`` imports; and, if it loads files as modules
    (importlib, runpy, exec), the strings of its code (docstrings aside) naming a path in
    ``benchmarks/``."""
    tree = ast.parse(path.read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [a.name for a in node.names if a.name.split('.')[0] == 'benchmarks']
        elif (isinstance(node, ast.ImportFrom) and not node.level and node.module
              and node.module.split('.')[0] == 'benchmarks'):
            imported.append(node.module)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                    ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    loads = any(isinstance(n, ast.Call) and (getattr(n.func, 'id', None) in FILE_LOADERS
                                             or getattr(n.func, 'attr', None) in FILE_LOADERS)
                for n in ast.walk(tree))
    paths = [n.value for n in ast.walk(tree)
             if loads and isinstance(n, ast.Constant) and isinstance(n.value, str)
             and id(n) not in docstrings
             and re.search(r'(?:^|[\s/(])benchmarks(?:/|$)', n.value)]
    return imported, paths


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_imports_the_benchmarks(path):
    """benchmarks/ holds standalone scripts that use rfcr, never the other way round."""
    imported, loaded = _benchmarks_use(path)
    assert not imported and not loaded, (
        f'{path.relative_to(PACKAGE)} imports {imported} / loads files of benchmarks/ '
        f'({loaded})')


@pytest.mark.parametrize('source, found', [
    ('import benchmarks.suite\n', (['benchmarks.suite'], [])),
    ('from benchmarks import suite\n', (['benchmarks'], [])),
    ("import importlib.util\nREPO = None\nSUITE = REPO / 'benchmarks' / 'suite.py'\n"
     'spec = importlib.util.spec_from_file_location("s", SUITE)\n', ([], ['benchmarks'])),
    ("import runpy\nrunpy.run_path('benchmarks/suite.py')\n", ([], ['benchmarks/suite.py'])),
    ('"""Timed by benchmarks/suite.py."""\nimport runpy\nrunpy.run_path(x)\n', ([], [])),
    ("HELP = 'see benchmarks/suite.py'\n", ([], [])),
])
def test_the_benchmarks_check(tmp_path, source, found):
    module = tmp_path / 'm.py'
    module.write_text(source)
    assert _benchmarks_use(module) == found
