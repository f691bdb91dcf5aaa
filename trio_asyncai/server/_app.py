"""The ASGI app and running it on Hypercorn's trio worker."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, cast, final

import attrs
import sniffio
import trio
from hypercorn.config import Config
from hypercorn.events import Event as HypercornEvent
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.trio.tcp_server import TCPServer
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from ._engines import Engine, load_engine
from ._http import status_endpoint, streaming_endpoint, timestamps_endpoint, whole_file_endpoint
from ._state import Faults, ServerLog, ServerState
from ._voice_api import (
    SIGNED_PREVIEW_PATH,
    batch_voices_endpoint,
    clone_voice_endpoint,
    delete_voice_endpoint,
    get_voice_endpoint,
    list_voices_endpoint,
    preview_audio_endpoint,
    preview_voice_endpoint,
    update_voice_endpoint,
)
from ._voices import VoiceLibrary
from ._websocket import MAX_MESSAGE_SIZE, handle_websocket

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

__all__ = ["LocalServer", "create_app", "open_local_server", "serve"]

logger = logging.getLogger("trio_asyncai.server")


def _tolerate_closing_streams() -> None:
    """Keep one connection's closing race from taking the whole server down.

    Hypercorn's trio ``TCPServer`` sends its EOF (``_close``) without the
    send lock its other writes hold, so when a client closes a WebSocket while
    the server is still writing to it (audio on its way, or the server's own
    close frame), a write can meet the EOF and raise ``trio.BusyResourceError``
    in Hypercorn's connection task, which ends the server. The stream is being
    shut down at that moment anyway: the write is dropped, as Hypercorn's own
    ``_close`` already does for the same error. Applied once, when a server
    first starts (importing the package changes nothing).
    """
    if getattr(TCPServer.protocol_send, "_tolerates_closing", False):
        return
    original = TCPServer.protocol_send

    async def protocol_send(self: TCPServer, event: HypercornEvent) -> None:
        try:
            await original(self, event)
        except trio.BusyResourceError:
            logger.debug("dropped a write to a connection that is closing")

    protocol_send._tolerates_closing = True  # type: ignore[attr-defined]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]


WEBSOCKET_PATH = "/text_to_speech/websocket/ws"
STREAMING_PATH = "/text_to_speech/streaming"


def create_app(state: ServerState) -> Starlette:
    """The plain ASGI (Starlette) app serving the Async API from ``state``.

    Routes: the WebSocket ``/text_to_speech/websocket/ws``; ``POST``
    ``/text_to_speech/streaming``, ``/text_to_speech``,
    ``/text_to_speech/with_timestamps``; the status check ``GET /``; the
    voices (``POST /voices``, ``POST /voices/batch``,
    ``GET|PUT|DELETE /voices/{id}``, ``GET /voices/preview/{id}``,
    ``POST /voices/clone``); and the preview audio behind a signed URL
    (``GET /signed/voice-previews/{id}``, no key needed).

    Run it on any ASGI server whose event loop is trio (Hypercorn's trio
    worker; :func:`serve` and :func:`open_local_server` do that for you).
    ``app.state.server`` is ``state``.
    """

    def route(path: str, endpoint: Any, method: str) -> Route:
        return Route(path, functools.partial(endpoint, state), methods=[method])

    app = Starlette(
        routes=[
            WebSocketRoute(WEBSOCKET_PATH, functools.partial(handle_websocket, state)),
            route(STREAMING_PATH, streaming_endpoint, "POST"),
            route("/text_to_speech", whole_file_endpoint, "POST"),
            route("/text_to_speech/with_timestamps", timestamps_endpoint, "POST"),
            route("/", status_endpoint, "GET"),
            route("/voices", list_voices_endpoint, "POST"),
            route("/voices/batch", batch_voices_endpoint, "POST"),
            route("/voices/clone", clone_voice_endpoint, "POST"),
            route("/voices/preview/{voice_id}", preview_voice_endpoint, "GET"),
            route("/voices/{voice_id}", get_voice_endpoint, "GET"),
            route("/voices/{voice_id}", update_voice_endpoint, "PUT"),
            route("/voices/{voice_id}", delete_voice_endpoint, "DELETE"),
            route(SIGNED_PREVIEW_PATH, preview_audio_endpoint, "GET"),
        ]
    )
    app.state.server = state
    return app


@final
@attrs.frozen(eq=False)
class LocalServer:
    """A running local server. Built by :func:`open_local_server` and :func:`serve`.

    ``url`` is the base URL to hand to clients (``http://127.0.0.1:PORT``);
    ``ws_url`` the WebSocket endpoint without query. ``faults`` and ``log`` are
    live objects: flip faults and read the log while the server runs.
    """

    url: str
    host: str
    port: int
    faults: Faults
    log: ServerLog
    engine: Engine
    voices: VoiceLibrary
    state: ServerState = attrs.field(repr=False)

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/text_to_speech/websocket/ws`` (add ``?api_key=...&version=v1``)."""
        return "ws" + self.url.removeprefix("http") + WEBSOCKET_PATH


def _make_state(
    *,
    api_key: str | None,
    engine: Engine | str,
    idle_timeout: float | None,
    log_details: bool,
    state_dir: str | os.PathLike[str] | None,
) -> ServerState:
    engine_obj = load_engine(engine) if isinstance(engine, str) else engine
    return ServerState(
        engine=engine_obj,
        api_key=api_key,
        idle_timeout=idle_timeout,
        log=ServerLog(details=log_details),
        state_dir=state_dir,
    )


def _hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    # No access log: the WebSocket URL's query string holds the API key.
    config.accesslog = None
    # Hand Hypercorn a logger rather than "-" so it adds no handler of its own.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    # A larger client message closes its connection with 1009 (message too big).
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    return config


async def _run(
    state: ServerState,
    host: str,
    port: int,
    task_status: trio.TaskStatus[LocalServer],
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
) -> None:
    _tolerate_closing_streams()
    app = create_app(state)
    config = _hypercorn_config(host, port)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(
                hypercorn_serve, cast("ASGIFramework", app), config, shutdown_trigger=shutdown_trigger
            )
        )
        url = binds[0]
        bound_host, _, bound_port = url.removeprefix("http://").rpartition(":")
        server = LocalServer(
            url=url,
            host=bound_host.strip("[]"),
            port=int(bound_port),
            faults=state.faults,
            log=state.log,
            engine=state.engine,
            voices=state.voices,
            state=state,
        )
        logger.info("serving the Async API on %s (engine: %s)", url, state.engine.name)
        task_status.started(server)


def _require_trio() -> None:
    """Raise a RuntimeError unless the caller runs under trio (Hypercorn's trio worker needs it).

    The client has the same check (``require_trio``); the server keeps its
    own copy, as it imports nothing from the client.
    """
    try:
        library: str | None = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "trio":
        raise RuntimeError(
            f"the local server needs trio, and was started under {library or 'no async library'}: "
            "run it with trio.run(), or anyio.run(..., backend='trio')"
        )


@asynccontextmanager
async def open_local_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    engine: Engine | str = "auto",
    idle_timeout: float | None = 60.0,
    log_details: bool = True,
    state_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[LocalServer]:
    """Run an Async-compatible server in the background for the duration of the block.

    ``port=0`` picks a free port: read it from the yielded
    :class:`LocalServer`. With ``api_key`` set, requests must carry that key;
    without, any key (or none) is accepted. ``engine`` is an :class:`Engine`
    or a name for :func:`load_engine` (``"auto"``, ``"piper"``, ``"signal"``);
    a piper model is loaded on first use. ``idle_timeout`` is how long a
    WebSocket connection may stay silent (``None``: forever).
    ``log_details`` keeps every message and request body in ``server.log``
    for the block's length, as tests want (:class:`ServerLog`); pass False
    for a long-lived server, whose log then keeps counters only.
    ``state_dir`` keeps cloned voices and their samples in that directory,
    across restarts (created if missing; ``None``: in memory only, gone when
    the server stops); a directory that is damaged or holds something else
    raises :exc:`~trio_asyncai.server.StateDirError` before the server
    starts, and nothing in it is changed. docs/server.rst describes it.

    Exceptions from the block come out as they are, never wrapped in an
    exception group: the block's exception is held while the server task is
    cancelled, then re-raised.
    """
    _require_trio()
    state = _make_state(
        api_key=api_key,
        engine=engine,
        idle_timeout=idle_timeout,
        log_details=log_details,
        state_dir=state_dir,
    )
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            server: LocalServer = await nursery.start(_run, state, host, port)
            try:
                yield server
            except BaseException as exc:
                # Held until the nursery is closed, so that it is not wrapped.
                error = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            _reraise(leaves[0])
        raise
    if error is not None:
        raise error


# The server keeps its own copy of the two group helpers, on purpose (the
# client's are in trio_asyncai/_groups.py): it is the service's twin and
# imports nothing from the client package, so that the two stay independent.


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a group and its nested groups, flattened."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def _reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` out of an ``except`` clause with its own context, cause and traceback.

    A plain ``raise`` there would make the group being handled its
    ``__context__`` (and ``from None`` would hide its own); both are put back.
    """
    __tracebackhide__ = True
    context, suppress = exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__suppress_context__ = context, suppress
        del exc, context


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    engine: Engine | str = "auto",
    idle_timeout: float | None = 60.0,
    log_details: bool = False,
    state_dir: str | os.PathLike[str] | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[LocalServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Async API until cancelled (the ``trio-asyncai serve`` command).

    Same options as :func:`open_local_server`, except that ``log_details``
    is off by default: a server that runs for days keeps only the log's
    counters, so that its memory does not grow with what clients send. With
    ``state_dir`` (``trio-asyncai serve --state-dir DIR``) cloned voices
    outlive the server. A
    piper model is verified and
    loaded (in a worker thread) before the server starts listening, so the
    first request is not slow. ``task_status.started()`` gets the
    :class:`LocalServer`.

    When ``shutdown_trigger`` (an async function) returns, the server stops
    gracefully: it accepts no new connection, lets the requests in flight
    finish for up to a second, then returns.
    """
    _require_trio()
    state = _make_state(
        api_key=api_key,
        engine=engine,
        idle_timeout=idle_timeout,
        log_details=log_details,
        state_dir=state_dir,
    )
    preload = getattr(state.engine, "preload", None)
    if callable(preload):
        await trio.to_thread.run_sync(preload)
    await _run(state, host, port, task_status, shutdown_trigger)
