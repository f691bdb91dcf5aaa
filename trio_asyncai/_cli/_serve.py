"""``trio-asyncai serve``: the local server until Ctrl+C, then a graceful stop."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import trio

from ._common import ENGINES, STOP_SIGNALS, Stopped, load_local_engine, positive_seconds

if TYPE_CHECKING:
    from ..server import LocalServer

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "port", "prepare", "run"]


HELP = "run the local Async-compatible server"
DESCRIPTION = (
    "Run the local Async-compatible server until interrupted. Ctrl+C (or SIGTERM, SIGHUP) stops it "
    "gracefully: no new connection is accepted, and requests in flight get a second to finish."
)
#: The options handed to :func:`trio_asyncai.server.serve` as they are.
_SERVE_OPTIONS = ("host", "port", "api_key", "engine", "idle_timeout", "state_dir")


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, not {value}")
    return value


def add_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)"
    )
    serve.add_argument(
        "--port", type=port, default=8765, help="port (default: %(default)s; 0 picks a free one)"
    )
    serve.add_argument("--api-key", help="refuse every other key with 401 (default: accept any key)")
    serve.add_argument(
        "--engine", choices=ENGINES, default="auto", help="voice engine (default: %(default)s)"
    )
    serve.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        default=60.0,
        help="close connections silent for this many seconds (default: %(default)s)",
    )
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep cloned voices and their samples in DIR across restarts, creating it if missing "
        "(default: in memory, gone when the server stops)",
    )


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Nothing to settle before the run."""


async def run(args: argparse.Namespace) -> int:
    from ..server import serve

    stop = trio.Event()
    stopped: Stopped | None = None
    # Installed before the server starts: from here on a stop signal asks for a graceful
    # stop instead of raising KeyboardInterrupt wherever the server happens to be.
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal stopped
                async for signum in signals:
                    if stop.is_set():  # a second signal: stop now
                        nursery.cancel_scope.cancel()
                    stopped = stopped or Stopped(signum)
                    stop.set()

            async def run_server(
                task_status: trio.TaskStatus[LocalServer] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                options = {name: getattr(args, name) for name in _SERVE_OPTIONS}
                options["engine"] = await load_local_engine(args.engine)
                await serve(**options, shutdown_trigger=stop.wait, task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            server: LocalServer = await nursery.start(run_server)
            print(
                f"serving the Async API on {server.url} (engine: {server.engine.name}); Ctrl+C stops",
                flush=True,
            )
    if stopped is not None:
        print(f"trio-asyncai: {stopped.word}: the server has stopped", file=sys.stderr)
        return stopped.exit_code
    return 0
