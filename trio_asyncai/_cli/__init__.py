"""The ``trio-asyncai`` command: ``speak``, ``voices`` and ``serve``.

Every failure is one line on standard error (``trio-asyncai: error: ...``)
with exit code 1; bad arguments are argparse's usage message with exit code
2; Ctrl+C (SIGINT), SIGTERM and SIGHUP cancel the command, which exits with
128 plus the signal's number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import cast

import trio

from .._errors import AsyncAIError
from .._groups import leaves
from .._version import __version__
from . import _batch, _serve, _speak, _voices
from ._common import STOP_SIGNALS, CommandError, Stopped

__all__ = ["main"]

_EXIT_ERROR = 1
#: A process that SIGPIPE ended, as shells report it.
_EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


_COMMANDS = {"speak": _speak, "voices": _voices, "serve": _serve, "batch": _batch}


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


def _one_line(exc: BaseException) -> tuple[str, int] | None:
    """The one line that reports ``exc``, and the exit code; None for an exception that is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        stopped = exc if isinstance(exc, Stopped) else Stopped()
        return f"trio-asyncai: {stopped.word}", stopped.exit_code
    if isinstance(exc, ImportError):
        message = f"{exc}; the local server needs: pip install 'trio-asyncai[server]'"
    elif isinstance(exc, AsyncAIError | CommandError | OSError):
        message = str(exc)
    else:
        return None
    return f"trio-asyncai: error: {message}", _EXIT_ERROR


async def _run_until_interrupted(module: ModuleType, args: argparse.Namespace) -> int:
    """Run the command; the first stop signal cancels it (then :class:`Stopped`), a second one
    cuts short what of its clean-up is not shielded (closing a connection is, for a second or two).

    A signal becomes a cancellation instead of a KeyboardInterrupt raised
    wherever the process happens to be (or, for SIGTERM and SIGHUP, an exit
    with no clean-up at all): in an in-process local server that would be
    inside a request handler, where the web framework reports it as a
    server error (a traceback, a 1011 close) and the command fails with
    exit code 1. Cancelled, every block ends as it should: the output file
    is left as it was, with no temporary file beside it, and the local
    server stops. ``serve`` opens a receiver of its own for its graceful
    stop, which takes the signals while it is open.
    """
    stopped: Stopped | None = None
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            # The command runs in a scope of its own, so that the watcher (outside
            # it) still hears a second signal while the command cleans up.
            work = trio.CancelScope()

            async def watch() -> None:
                nonlocal stopped
                async for signum in signals:
                    if stopped is not None:
                        raise Stopped(signum)  # cancels whatever clean-up is not shielded
                    stopped = Stopped(signum)
                    work.cancel()

            nursery.start_soon(watch)
            with work:
                code: int = await module.run(args)
            nursery.cancel_scope.cancel()
    if stopped is not None:
        raise stopped
    return code


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush finds no broken pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file of the process: nothing to flush at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


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
        # A stop signal wins. Else the first error is reported, when every one is
        # ours (the others are what it caused: a local server torn down, say); a
        # bug among them is shown whole.
        stops: list[BaseException] = [e for e in found if isinstance(e, KeyboardInterrupt)]
        if not stops and any(isinstance(e, BrokenPipeError) for e in found):
            # The reader of our output is gone (``| head``): nothing more to say, to
            # anyone. Quiet, with the status of a process SIGPIPE ended, as cat's.
            _silence_stdout()
            return _EXIT_BROKEN_PIPE
        found = stops or [e for e in found if not isinstance(e, trio.Cancelled)] or found
        lines = [_one_line(e) for e in found]
        if any(line is None for line in lines):
            raise
        line, code = cast("tuple[str, int]", lines[0])
        print(line, file=sys.stderr)
        return code
