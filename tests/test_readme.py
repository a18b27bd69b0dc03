"""README.md and docs/*.md stay true to the code: every ``rfcr-*`` command their shell
blocks show parses with that tool's own argument parser, every ``make`` target they show
exists, every repository path and relative link they name exists, and README stays short."""
from __future__ import annotations

import argparse
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
PAGES = [README] + sorted((REPO / 'docs').glob('*.md'))
MAX_README_LINES = 200

SHELL_BLOCK = re.compile(r'^```(?:bash|sh|shell)\n(.*?)^```', re.M | re.S)
# A path inside this repository: one of its top folders, not inside a longer path or URL.
REPO_PATH = re.compile(r'(?<![\w./:~-])((?:configs|docs|benchmarks|tests|rfcr|\.ci)/[\w.{},*/-]*)')
LINK = re.compile(r'\]\(([^)\s]+)\)')
BRACES = re.compile(r'\{([^{}]*)\}')
MAKE_TARGET = re.compile(r'^([\w.-]+):(?!=)', re.M)


class Command(NamedTuple):
    page: str
    line: int
    words: list[str]  # after leading VAR=value assignments

    def __str__(self) -> str:
        return f'{self.page}:{self.line}: {shlex.join(self.words)}'


def shell_commands(page: Path) -> Iterator[Command]:
    """The commands of the page's bash/sh blocks, continuation lines joined, comments and
    leading environment assignments dropped."""
    text = page.read_text(encoding='utf-8')
    for block in SHELL_BLOCK.finditer(text):
        first_line = text.count('\n', 0, block.start(1)) + 1
        lines = block.group(1).split('\n')
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.endswith('\\') and i + 1 < len(lines):
                i += 1
                line = line[:-1] + ' ' + lines[i]
            i += 1
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r'\w+=.*', words[0]):
                words.pop(0)
            if words:
                yield Command(str(page.relative_to(REPO)), first_line + start, words)


def console_scripts() -> dict[str, object]:
    """rfcr's console scripts, as installed: name -> entry point."""
    return {ep.name: ep for ep in entry_points(group='console_scripts')
            if ep.name.startswith('rfcr-')}


def tool_call(command: Command, scripts: dict) -> tuple[str, list[str]] | None:
    """(console script, its arguments) of an ``rfcr-*`` command, also behind a launcher
    (``srun ... rfcr-train``, ``torchrun ... -m rfcr.tools.train``); None for others."""
    words = command.words
    for i, word in enumerate(words):
        if word.startswith('rfcr-'):
            return word, words[i + 1:]
        if word == '-m' and i + 1 < len(words) and words[i + 1].startswith('rfcr.'):
            module = words[i + 1]
            names = [n for n, ep in scripts.items() if ep.value.split(':')[0] == module]
            return (names[0] if names else module), words[i + 2:]
    return None


ALL_COMMANDS = [c for page in PAGES for c in shell_commands(page)]
TOOL_COMMANDS = [c for c in ALL_COMMANDS if tool_call(c, console_scripts()) is not None]
MAKE_COMMANDS = [c for c in ALL_COMMANDS if c.words[0] == 'make']


def expand_braces(path: str) -> list[str]:
    """``a{b,c}d`` -> ``abd``, ``acd`` (as the shell expands it)."""
    m = BRACES.search(path)
    if m is None:
        return [path]
    return [p for alt in m.group(1).split(',')
            for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def named_paths(page: Path) -> list[tuple[str, str]]:
    """(as written, repository-relative path) of every repository path and relative link."""
    text = page.read_text(encoding='utf-8')
    found = []
    for m in REPO_PATH.finditer(text):
        written = m.group(1).rstrip('.,')
        found += [(written, p) for p in expand_braces(written)]
    for m in LINK.finditer(text):
        target = m.group(1).split('#')[0]
        if target and not re.match(r'[a-z]+:', target):
            path = (page.parent / target).resolve().relative_to(REPO)
            found.append((m.group(1), str(path)))
    return list(dict.fromkeys(found))


NAMED_PATHS = [(str(page.relative_to(REPO)), written, path)
               for page in PAGES for written, path in named_paths(page)]


class _Parsed(BaseException):
    """Raised by the patched ``parse_args`` once the arguments parsed: the tool stops there."""


@pytest.fixture
def parse_only(monkeypatch) -> Callable[[Callable, list[str]], None]:
    """Call a console script's ``main(argv)`` up to its argument parsing, and no further."""
    parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise _Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_and_stop)

    def run(main: Callable, argv: list[str]) -> None:
        try:
            main(argv)
        except _Parsed:
            return
        pytest.fail('the tool returned without parsing its arguments with argparse')

    return run


def test_readme_is_short():
    lines = README.read_text(encoding='utf-8').count('\n')
    assert lines <= MAX_README_LINES, (
        f'README.md has {lines} lines, expected at most {MAX_README_LINES}: move details '
        'to docs/')


def test_readme_shows_setup_test_demo():
    shown = {t for c in MAKE_COMMANDS if c.page == 'README.md' for t in c.words[1:]}
    assert {'setup', 'test', 'demo'} <= shown, f'README.md shows make {sorted(shown)}'


@pytest.mark.parametrize('command', TOOL_COMMANDS, ids=lambda c: f'{c.page}:{c.line}')
def test_command_parses(command, parse_only, capsys):
    scripts = console_scripts()
    tool, argv = tool_call(command, scripts)
    assert tool in scripts, f'{command}: {tool!r} is not a console script of rfcr ' \
        f'({", ".join(sorted(scripts))})'
    try:
        parse_only(scripts[tool].load(), argv)
    except SystemExit as e:
        pytest.fail(f'{command}: exit {e.code}: {capsys.readouterr().err.strip()}')


@pytest.mark.parametrize('command', MAKE_COMMANDS, ids=lambda c: f'{c.page}:{c.line}')
def test_make_target_exists(command):
    targets = set(MAKE_TARGET.findall((REPO / 'Makefile').read_text(encoding='utf-8')))
    shown = [w for w in command.words[1:] if not w.startswith('-') and '=' not in w]
    assert shown, f'{command}: no target'
    missing = [t for t in shown if t not in targets]
    assert not missing, f'{command}: no Makefile target {missing} (has {sorted(targets)})'


@pytest.mark.parametrize('page, written, path', NAMED_PATHS,
                         ids=[f'{p}:{w}' for p, w, _ in NAMED_PATHS])
def test_named_path_exists(page, written, path):
    matches = list(REPO.glob(path)) if '*' in path else [REPO / path]
    assert matches and all(m.exists() for m in matches), (
        f'{page} names {written!r}: {path} does not exist in the repository')


def test_pages_name_tools_and_paths():
    """The checks above see what they should: README's commands and configs."""
    readme_tools = {tool_call(c, console_scripts())[0] for c in TOOL_COMMANDS
                    if c.page == 'README.md'}
    assert {'rfcr-train', 'rfcr-test', 'rfcr-export', 'rfcr-bench'} <= readme_tools
    readme_paths = {path for page, _, path in NAMED_PATHS if page == 'README.md'}
    assert 'configs/yoloret/yoloret_mobilenetv2-1.4_rfcr_2xb8-416-250e_voc0712.py' in readme_paths
    assert 'docs/weights.md' in readme_paths
