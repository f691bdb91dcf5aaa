"""The ``trio-asyncai`` command: ``speak``, ``voices`` and ``serve``.

Every failure is one line on standard error (``trio-asyncai: error: ...``)
with exit code 1; bad arguments are argparse's usage message with exit code
2; Ctrl+C exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from .._errors import AsyncAIError
from .._groups import leaves
from .._version import __version__
from . import _serve, _speak, _voices
from ._common import CommandError

__all__ = ["main"]

_EXIT_ERROR = 1


def _build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="trio-asyncai",
        description="Text-to-speech with the Async voice API, or its local stand-in.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    speak = _speak.add_parser(sub)
    _voices.add_parser(sub)
    _serve.add_parser(sub)
    return parser, speak


def _report(exc: BaseException) -> int | None:
    """Print ``exc`` as one line and return the exit code; None for an exception that is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        print("trio-asyncai: interrupted", file=sys.stderr)
        return _serve.EXIT_INTERRUPTED
    if isinstance(exc, ImportError):
        message = f"{exc}; the local server needs: pip install 'trio-asyncai[server]'"
    elif isinstance(exc, AsyncAIError | CommandError | OSError):
        message = str(exc)
    else:
        return None
    print(f"trio-asyncai: error: {message}", file=sys.stderr)
    return _EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trio-asyncai`` command; returns the exit code."""
    parser, speak_parser = _build_parser()
    args = parser.parse_args(argv)
    runner = {"speak": _speak.run, "voices": _voices.run, "serve": _serve.run}[args.command]
    try:
        if args.command == "speak":
            _speak.check_args(speak_parser, args)
            args.text = _speak.read_text(args)
        elif args.command == "voices":
            _voices.default_args(args)
        return trio.run(runner, args)
    except BaseException as exc:
        found = leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
        # An interruption wins; else one error of ours is reported as it is.
        if any(isinstance(e, KeyboardInterrupt) for e in found):
            found = [KeyboardInterrupt()]
        code = _report(found[0]) if len(found) == 1 else None
        if code is None:
            raise
        return code
