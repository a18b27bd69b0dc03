"""What every ``rfcr-*`` command does with bad input: one line, never a traceback.

Each command's ``main(argv)`` is ``cli(prog, run, argv)``. An error that reaches it prints
``prog: error: message`` on stderr, on one line, and exits with status 1; argparse's own
errors (an unknown option, a value of the wrong type or out of range) print the usage and
one ``prog: error:`` line, and exit with status 2. ``--debug`` (:func:`add_debug_arg`)
shows the traceback instead. ``sys.exit('prog: message')`` keeps its meaning: that line,
status 1. Exceptions other than ``ValueError`` and ``OSError`` (rfcr's input errors, which
name the parameter, the value given and the one expected) name their type, since they may
be a bug: rerun with ``--debug`` and report the traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

import torch
from mmengine.config import DictAction

DEBUG = '--debug'


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(DEBUG, action='store_true',
                        help='on an error, show its traceback instead of one line')


class CfgOptions(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``; an item without ``=`` is an argparse
    error naming it (``DictAction`` raises a bare ``ValueError: not enough values``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if '=' not in value:
                parser.error(f'argument {option_string}: expected key=value pairs, got '
                             f'{value!r}')
        super().__call__(parser, namespace, values, option_string)


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f'must be {expected}, got {text!r}')
    return value


def positive_int(text: str) -> int:
    """An argparse ``type``: ints > 0, every rfcr tool's counts."""
    return _int_at_least(text, 1, 'a positive int')


def non_negative_int(text: str) -> int:
    """An argparse ``type``: ints >= 0."""
    return _int_at_least(text, 0, 'an int >= 0')


def device(text: str) -> str:
    """An argparse ``type``: ``cpu``, or ``cuda[:i]`` where this machine has that GPU."""
    try:
        dev = torch.device(text)
    except RuntimeError:  # not a device string
        dev = None
    if dev is None or dev.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(f"expected 'cpu' or 'cuda[:i]', got {text!r}")
    if dev.type == 'cuda' and (dev.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f'got {text!r}, but this machine has '
                                         f'{torch.cuda.device_count()} CUDA device(s)')
    return text


def error_line(error: BaseException) -> str:
    """``error``'s message on one line; prefixed with its type unless it is a ValueError or
    an OSError."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    message = ' '.join(line.strip() for line in str(message).splitlines() if line.strip())
    if isinstance(error, (ValueError, OSError)) and message:
        return message
    return (f'{type(error).__name__}: {message}' if message else type(error).__name__) + \
        f' ({DEBUG} shows the traceback)'


def cli(prog: str, run: Callable[[Sequence[str]], object],
        argv: Optional[Sequence[str]] = None) -> None:
    """``run(argv)`` (``sys.argv[1:]`` by default) as the command ``prog``: an exception ends
    in one line on stderr and exit status 1, or, with ``--debug`` in ``argv``, propagates."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run(argv)
    except Exception as e:  # noqa: BLE001 (everything: no traceback reaches a user)
        if DEBUG in argv:
            raise
        print(f'{prog}: error: {error_line(e)}', file=sys.stderr)
        sys.exit(1)
