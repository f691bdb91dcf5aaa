"""What the commands share: where requests go, and the errors a command reports."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._config import resolve_api_key, resolve_voice_id
from .._http import open_http_synthesizer
from .._types import OutputFormat
from .._websocket import open_synthesizer

if TYPE_CHECKING:
    from .._synthesizer import BaseSynthesizer
    from ..server import Engine

#: The one model the service applies speed_control and stability to.
VOICE_CONTROL_MODEL = "async_flash_v1.0"

__all__ = [
    "STOP_SIGNALS",
    "CommandError",
    "Stopped",
    "Target",
    "VOICE_CONTROL_MODEL",
    "add_target_options",
    "load_local_engine",
    "note_voice_controls",
    "open_command_synthesizer",
    "open_target",
    "positive_int",
    "positive_seconds",
    "utf8_text",
    "whole_number",
]

ENGINES = ("auto", "piper", "signal")

#: The signals that stop a command as Ctrl+C does: cancelled, files left as they were.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOP_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class CommandError(Exception):
    """A failure the command reports as one line on standard error, exit code 1."""


class Stopped(KeyboardInterrupt):
    """The command was stopped by a signal (Ctrl+C, ``kill``, a closed terminal)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signal.Signals(signum)

    @property
    def word(self) -> str:
        """What happened, as the one line says it: ``interrupted``, ``terminated``, ``hung up``."""
        return _STOP_WORDS.get(self.signum, f"stopped by {self.signum.name}")

    @property
    def exit_code(self) -> int:
        """128 plus the signal's number, as shells report a process a signal ended (130 for Ctrl+C)."""
        return 128 + self.signum


def utf8_text(text: str, where: str) -> str:
    """``text`` itself, if it can be sent: every character a real one (a lone surrogate is not).

    Bytes that are not UTF-8, in an argument or on standard input, reach
    Python as lone surrogates (``surrogateescape``), as does a JSON
    ``"\\ud800"``: refused here, in one line, before any request or file.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(f"{where}: not UTF-8 text") from None
    return text


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


#: An argparse type: a whole number from 1.
positive_int = whole_number(1)


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


@attrs.frozen
class Target:
    """Where a command's requests go: the service, a server at a URL, or an in-process local server."""

    base_url: str | None
    #: Sent to a local server only (which accepts any key); else the environment's key is used.
    api_key: str | None
    #: The voice to use when none is given (the local server's default voice), or None.
    default_voice: str | None
    #: For messages: "the local server (piper voice)", a URL, or "the Async API".
    where: str
    #: A local server started for this command alone: what it stores is gone when the command ends.
    in_process: bool = False

    def voice(self, given: str | None) -> str:
        """The voice: ``--voice``, else ``ASYNCAI_VOICE_ID``, else the local server's default."""
        voice = given if given is not None else resolve_voice_id(None) or self.default_voice
        if voice is None:
            raise CommandError("no voice: pass --voice or set ASYNCAI_VOICE_ID")
        return voice


def add_target_options(parser: argparse.ArgumentParser, *, engine: bool) -> None:
    """The options that choose where requests go (``--local``, ``--base-url``, ``--engine``)."""
    parser.add_argument(
        "--local",
        action="store_true",
        help="use a local server started in-process, even if an API key is set",
    )
    parser.add_argument(
        "--base-url", help="the service's base URL (default: ASYNCAI_BASE_URL or the real service)"
    )
    if engine:
        parser.add_argument(
            "--engine",
            choices=ENGINES,
            default="auto",
            help="the local server's voice engine (default: %(default)s: piper when installed)",
        )


def _use_local(args: argparse.Namespace) -> bool:
    if args.local:
        return True
    return resolve_api_key(None) is None and args.base_url is None and not os.environ.get("ASYNCAI_BASE_URL")


def note_voice_controls(args: argparse.Namespace, *, speeds: bool, named: str) -> None:
    """Say on standard error when speeds (``named``) or --stability are asked of a model that ignores them."""
    if (speeds or args.stability is not None) and args.model != VOICE_CONTROL_MODEL:
        print(
            f"trio-asyncai: note: the service honours {named} and --stability with "
            f"{VOICE_CONTROL_MODEL} only, not {args.model}",
            file=sys.stderr,
        )


def open_command_synthesizer(
    args: argparse.Namespace, fmt: OutputFormat, target: Target, **http_options: Any
) -> AbstractAsyncContextManager[BaseSynthesizer[Any]]:
    """The synthesizer a command speaks with (``--http``: the HTTP one, given ``http_options`` too).

    The command reads audio as fast as it writes it (the speakers take
    their time): no limit on the audio an utterance may hold.
    """
    options: dict[str, Any] = {
        "voice_id": target.voice(args.voice),
        "model": args.model,
        "language": args.language,
        "output_format": fmt,
        "speed_control": args.speed,
        "stability": args.stability,
        "base_url": target.base_url,
        "api_key": target.api_key,
        "max_buffered_audio": None,
    }
    if args.http:
        return open_http_synthesizer(**options, **http_options)
    return open_synthesizer(**options)


async def load_local_engine(name: str) -> Engine:
    """The local server's voice engine, loaded now: a missing or broken voice is one line, at once.

    Loaded before the server starts, so that ``--engine piper`` without the
    voice fails here, instead of in the first request (a 500 from the server,
    and its traceback in the log).
    """
    from ..server import EngineError, load_engine

    try:
        engine = load_engine(name)
        preload = getattr(engine, "preload", None)
        if callable(preload):
            await trio.to_thread.run_sync(preload)
    except EngineError as exc:
        raise CommandError(f"the local server's {name} voice: {exc}") from None
    return engine


@asynccontextmanager
async def open_target(args: argparse.Namespace) -> AsyncIterator[Target]:
    """The service (with ``ASYNCAI_API_KEY`` or ``--base-url``), else a local server for the block."""
    if not _use_local(args):
        where = args.base_url or os.environ.get("ASYNCAI_BASE_URL") or "the Async API"
        yield Target(base_url=args.base_url, api_key=None, default_voice=None, where=where)
        return
    from ..server import DEFAULT_VOICE_ID, open_local_server

    engine = await load_local_engine(getattr(args, "engine", "signal"))
    async with open_local_server(engine=engine) as server:
        yield Target(
            base_url=server.url,
            api_key="local",
            default_voice=DEFAULT_VOICE_ID,
            where=f"the local server ({server.engine.name} voice)",
            in_process=True,
        )
