"""The package's layers import one way: tools -> analysis -> deploy / convert -> models ->
engine / utils. No module imports a layer above its own, and outside the command-line
tools (which defer heavy imports to keep start-up fast) no rfcr import hides inside a
function."""
import ast
from pathlib import Path

import pytest

import rfcr

PACKAGE = Path(rfcr.__file__).parent
LAYERS = {'tools': 4, 'analysis': 3, 'deploy': 2, 'convert': 2, 'models': 1, 'datasets': 1,
          'engine': 0, 'utils': 0, 'version': 0}


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
    imports = {name for name, _, _ in _imports(PACKAGE / 'deploy' / 'fold.py')}
    assert 'rfcr.models.necks' in imports and 'rfcr.deploy.fused' in imports
