"""What the commands share: where requests go, and the errors a command reports."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from .._config import resolve_api_key

__all__ = ["CommandError", "Target", "add_target_options", "open_target"]

ENGINES = ("auto", "piper", "signal")


class CommandError(Exception):
    """A failure the command reports as one line on standard error, exit code 1."""


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


@asynccontextmanager
async def open_target(args: argparse.Namespace) -> AsyncIterator[Target]:
    """The service (with ``ASYNCAI_API_KEY`` or ``--base-url``), else a local server for the block."""
    if not _use_local(args):
        where = args.base_url or os.environ.get("ASYNCAI_BASE_URL") or "the Async API"
        yield Target(base_url=args.base_url, api_key=None, default_voice=None, where=where)
        return
    from ..server import DEFAULT_VOICE_ID, open_local_server

    async with open_local_server(engine=getattr(args, "engine", "signal")) as server:
        yield Target(
            base_url=server.url,
            api_key="local",
            default_voice=DEFAULT_VOICE_ID,
            where=f"the local server ({server.engine.name} voice)",
        )
