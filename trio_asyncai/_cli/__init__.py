"""The ``trio-asyncai`` command: ``speak``, ``voices`` and ``serve``.

Every failure is one line on standard error (``trio-asyncai: error: ...``)
with exit code 1; bad arguments are argparse's usage message with exit code
2; Ctrl+C exits with 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

import trio

from .._errors import AsyncAIError
from .._groups import leaves
from .._version import __version__
from . import _serve, _speak, _voices
from ._common import CommandError

__all__ = ["main"]

_EXIT_ERROR = 1


_COMMANDS = {"speak": _speak, "voices": _voices, "serve": _serve}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-asyncai",
        description="Text-to-speech with the Async voice API, or its local stand-in.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(command_parser=command)
    return parser


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


async def _run_until_interrupted(module: ModuleType, args: argparse.Namespace) -> int:
    """Run the command; the first Ctrl+C cancels it (then exit 130), a second one stops at once.

    Ctrl+C becomes a cancellation instead of a KeyboardInterrupt raised
    wherever the process happens to be: in an in-process local server that
    would be inside a request handler, where the web framework reports it as
    a server error (a traceback, a 1011 close) and the command fails with
    exit code 1. Cancelled, every block ends as it should: the output file is
    left as it was, the local server stops. ``serve`` opens a receiver of its
    own for its graceful stop, which takes the signal while it is open.
    """
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal interrupted
                async for _ in signals:
                    if interrupted:
                        raise KeyboardInterrupt
                    interrupted = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            code: int = await module.run(args)
            nursery.cancel_scope.cancel()
    if interrupted:
        raise KeyboardInterrupt
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trio-asyncai`` command; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["voices"]:
        words[1:] = _voices.default_action(words[1:])
    args = _build_parser().parse_args(words)
    module = _COMMANDS[args.command]
    try:
        module.prepare(args.command_parser, args)
        code: int = trio.run(_run_until_interrupted, module, args)
        return code
    except BaseException as exc:
        found = leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
        # An interruption wins; else one error of ours is reported as it is.
        if any(isinstance(e, KeyboardInterrupt) for e in found):
            found = [KeyboardInterrupt()]
        reported = _report(found[0]) if len(found) == 1 else None
        if reported is None:
            raise
        return reported
