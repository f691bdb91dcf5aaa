"""The WebSocket synthesizer: one nursery owns the connection and everything it runs."""

from __future__ import annotations

import logging
import math
import random
import ssl
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, final
from urllib.parse import quote, urlsplit

import attrs
import trio
import trio_websocket

from ._backend import require_trio
from ._config import API_VERSION, ApiKey, resolve_common
from ._errors import (
    APIError,
    AsyncAIError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    ContextEndedError,
    ProtocolError,
    RateLimitError,
    SynthesisTimeout,
    SynthesizerClosedError,
    TransportError,
    copy_error,
    error_from_body,
    error_from_code,
)
from ._groups import leaves as _leaves
from ._groups import nursery_twin, single_exception
from ._protocol import (
    AudioReceived,
    ClientProtocol,
    ContextEndedEarly,
    ContextFinished,
    Event,
    MessageIgnored,
)
from ._speaker import SpeakerBase
from ._types import DEFAULT_MODEL, OutputFormat, Settings, check_positive
from ._utterance import DEFAULT_MAX_BUFFERED_AUDIO, Utterance, buffer_limit

__all__ = ["Synthesizer", "SynthesizerStatistics", "connect_synthesizer", "open_synthesizer"]

logger = logging.getLogger("trio_asyncai")

_WS_PATH: Final = "/text_to_speech/websocket/ws"
#: Errors about the connection's settings: reconnecting with the same settings won't help.
_SETTINGS_ERRORS: Final = frozenset(
    {
        "INVALID_API_KEY",
        "VOICE_NOT_FOUND",
        "VERSION_NOT_FOUND",
        "INVALID_LANGUAGE",
        "FORMAT_NOT_RECOGNIZED",
    }
)
_KNOWN_CODES: Final = _SETTINGS_ERRORS | {
    "TOO_MANY_CONCURRENT_REQUESTS",
    "RATE_LIMIT_EXCEEDED",
    "USAGE_LIMIT_EXCEEDED",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
}
#: The service's word that it is closing a connection that was idle (60 s without a message).
_IDLE_CODE: Final = "TIMEOUT"
#: The service closes a connection that has received nothing for this long...
_SERVICE_IDLE_LIMIT: Final = 60.0
#: ...so none this close to it is used for a new utterance.
_IDLE_MARGIN: Final = 10.0
#: The longest wait between connection attempts (before jitter).
_MAX_BACKOFF: Final = 30.0
#: The largest server message we accept by default: one message may carry seconds of audio
#: (four seconds of 48 kHz f32 is 1 MiB of samples, a third more in base64).
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: Bytes asked of the socket per read. trio-websocket's 4 KiB default takes
#: about three reads (and three passes through wsproto) per audio message;
#: 64 KiB takes one, which cuts the client's CPU per second of audio by a
#: third (see docs/benchmarks.rst).
_RECEIVE_BUFFER_SIZE: Final = 64 * 1024


@final
@attrs.frozen
class SynthesizerStatistics:
    """A snapshot of a synthesizer's counters (see :meth:`Synthesizer.statistics`)."""

    #: Connections opened so far (the first one included).
    connections_opened: int
    #: Whether a connection is open now.
    connected: bool
    #: Utterances whose audio is still coming.
    open_utterances: int
    #: Keepalive messages sent.
    keepalives_sent: int
    #: Server messages that were not valid protocol (logged and skipped).
    protocol_errors: int
    #: Well-formed server messages for contexts no longer tracked (late audio).
    messages_ignored: int


@attrs.frozen
class _Endpoint:
    """Where the WebSocket is: everything but the key, which only :meth:`resource` adds."""

    secure: bool
    host: str
    port: int
    #: The ``Host`` header: the host, and the port unless it is the default.
    host_header: str
    path: str

    @classmethod
    def of(cls, base_url: str) -> _Endpoint:
        parts = urlsplit(base_url)
        secure = parts.scheme in ("https", "wss")
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        host_header = host if parts.port is None else f"{host}:{port}"
        return cls(secure, host, port, host_header, f"{parts.path}{_WS_PATH}")

    def resource(self, api_key: ApiKey | None) -> str:
        """The request target, with the key in its query as the service wants it.

        Built only as the argument of the handshake, so that no variable of a
        long-lived frame holds it (error reporters record frame locals).
        """
        query = f"version={API_VERSION}"
        if api_key is not None:
            query = f"api_key={quote(api_key.value, safe='')}&{query}"
        return f"{self.path}?{query}"


def _rejection_error(exc: trio_websocket.ConnectionRejected) -> AsyncAIError:
    retry_after = next(
        (v.decode("latin-1") for k, v in exc.headers or () if k.lower() == b"retry-after"), None
    )
    return error_from_body(
        exc.status_code,
        exc.body,
        retry_after=retry_after,
        default_message=f"the service refused the WebSocket connection (HTTP {exc.status_code})",
    )


@final
class _Route:
    """The WebSocket side of one utterance (its :class:`~trio_asyncai._utterance.UtteranceLink`).

    It holds the utterance's connection and what the utterance asked to send,
    so that an utterance lost before any audio can be said again on a new
    connection (see :meth:`Synthesizer._move`).
    """

    #: The utterance this route carries; set by its maker right after the route.
    utterance: Utterance

    def __init__(self, conn: _Connection, *, synth_closed: Callable[[], bool]) -> None:
        #: ``None`` while the utterance moves to a new connection.
        self.conn: _Connection | None = conn
        #: Every send and the finish, in order, as (finish, text, force): said
        #: again on a new connection if the first is lost before any audio.
        self.asked: list[tuple[bool, str, bool]] = []
        #: It moved once already: a second loss fails it.
        self.moved = False
        self._synth_closed = synth_closed

    def _may_send(self) -> bool:
        """Whether the utterance's text may go out now (checked after a checkpoint).

        Anything may have happened meanwhile: an interrupt or the block's end
        (nothing more goes out), the utterance's failure (its own error), the
        synthesizer closing, or the connection's loss. While the utterance
        moves to a new connection its text is kept for it (see :meth:`Synthesizer._rehome`).
        """
        if not self.utterance._may_send():
            return False
        if self._synth_closed():
            raise SynthesizerClosedError("the synthesizer was closed", utterance=self.utterance)
        conn = self.conn
        if conn is not None and (not conn.alive or conn.closing):
            raise ConnectionLostError("the connection was lost", utterance=self.utterance)
        return True

    async def send_text(self, text: str, *, force: bool) -> None:
        await trio.lowlevel.checkpoint()
        if not self._may_send():
            return
        self.utterance._note_text(text, force=force)
        self.asked.append((False, text, force))
        if self.conn is not None:
            self.conn.put_text(self, text, force=force)

    async def finish(self, text: str) -> None:
        await trio.lowlevel.checkpoint()
        if not self._may_send():
            return
        self.utterance._note_text(text, force=True)
        self.utterance._note_finished()
        self.asked.append((True, text, True))
        if self.conn is not None:
            self.conn.put_finish(self, text)

    def abandon(self) -> None:
        # While moving (no connection) there is nothing to close: the move
        # skips an utterance that has ended.
        if self.conn is None:
            return
        if isinstance(self.utterance.error, SynthesisTimeout):
            # The service went silent on this connection: new utterances get
            # a fresh one, and this one closes once its others are done.
            self.conn.retiring = True
        self.conn.close_context_and_forget(self)

    def say_again(self, conn: _Connection) -> None:
        """Carry the utterance on ``conn``, saying again everything it asked for."""
        self.conn = conn
        conn.routes[self.utterance.context_id] = self
        self.utterance._hold_silence_clock(False)
        for finish, text, force in self.asked:
            if finish:
                conn.put_finish(self, text)
            else:
                conn.put_text(self, text, force=force)


@final
@attrs.frozen
class _Owner:
    """What a connection reports to the synthesizer that owns it (callbacks, never field writes)."""

    #: The connection was lost (or rate-limited) under utterances: back off before the next.
    dropped: Callable[[], None]
    #: An utterance completed: the service works, no backoff.
    worked: Callable[[], None]
    #: The service refused these settings: connecting again with them is no use.
    refused: Callable[[Settings, APIError], None]
    #: Carry these routes, lost before any audio, to a new connection (or fail them with the error).
    move: Callable[[Settings, list[_Route], AsyncAIError], None]
    keepalive_sent: Callable[[], None]
    protocol_error: Callable[[], None]
    message_ignored: Callable[[], None]


@final
class _Connection:
    """One WebSocket connection and the contexts open on it."""

    def __init__(
        self,
        owner: _Owner,
        settings: Settings,
        ws: trio_websocket.WebSocketConnection,
        *,
        keepalive_interval: float | None,
        close_timeout: float,
    ) -> None:
        self.owner = owner
        self.settings = settings
        self.ws = ws
        self.keepalive_interval = keepalive_interval
        self.close_timeout = close_timeout
        self.protocol = ClientProtocol(settings)
        #: The route of every utterance whose context is open here, by context id.
        self.routes: dict[str, _Route] = {}
        self.outbox_send, self.outbox_receive = trio.open_memory_channel[str](math.inf)
        self.cancel_scope = trio.CancelScope()
        self.last_sent = trio.current_time()
        self.done = trio.Event()
        #: False once the connection failed or ended (see also ``closing``): nothing new on it.
        self.alive = True
        #: True once terminate was queued.
        self.closing = False
        #: True once newer settings replaced it: close when its last utterance ends.
        self.retiring = False
        #: The message the sender took from the outbox and has not sent yet.
        self._unsent: str | None = None
        #: True once :meth:`fail` ran: the connection broke, it did not just close.
        self.failed = False

    def near_idle_close(self) -> bool:
        """Whether the service may be about to close this connection as idle.

        The service closes a connection that received nothing for 60 s. One
        that has been silent for most of that is not worth starting an
        utterance on: its close could cross our first text and fail the
        utterance for nothing. (With the keepalive on, this never happens.)
        """
        return trio.current_time() - self.last_sent >= _SERVICE_IDLE_LIMIT - _IDLE_MARGIN

    def send_nowait(self, message: str) -> None:
        if self.alive and not self.closing:
            self.last_sent = trio.current_time()
            self.outbox_send.send_nowait(message)

    def put_text(self, route: _Route, text: str, *, force: bool) -> None:
        """Queue an utterance's text, as the protocol says to send it."""
        message = self.protocol.send_text(route.utterance.context_id, text, force=force)
        if message is not None:
            self.send_nowait(message)

    def put_finish(self, route: _Route, text: str) -> None:
        """Queue the end of an utterance's input (last text, close_context)."""
        messages = self.protocol.finish(route.utterance.context_id, text)
        for message in messages:
            self.send_nowait(message)
        if not messages:
            # Nothing ever reached the service: there is no audio to wait for.
            route.utterance._complete()
            self.close_context_and_forget(route)

    def close_context_and_forget(self, route: _Route) -> None:
        """Stop routing audio to the utterance, and close its context if it is still open."""
        context_id = route.utterance.context_id
        self.routes.pop(context_id, None)
        message = self.protocol.close_context(context_id)
        if message is not None:
            self.send_nowait(message)
        if self.retiring and not self.routes:
            self.close()

    def fail_route(self, route: _Route, error: AsyncAIError) -> None:
        """End one utterance here with ``error`` and close its context."""
        route.utterance._fail(error)
        self.close_context_and_forget(route)

    def fail(self, error: AsyncAIError) -> None:
        """The connection is unusable: end every utterance on it and stop its tasks.

        An utterance lost before any of its audio moves to a new connection
        once (see :meth:`Synthesizer._move`); the others fail with ``error``.
        """
        if not self.alive:
            return
        self.alive = False
        self.failed = True
        if self.routes and isinstance(error, TransportError | RateLimitError):
            # Lost under someone's feet, or told to slow down: the next
            # connection waits its turn, so that a flapping service is not hammered.
            self.owner.dropped()
        moving: list[_Route] = []
        for route in list(self.routes.values()):
            if (
                isinstance(error, ConnectionLostError)
                and route.utterance.metrics.audio_bytes == 0
                and not route.moved
            ):
                # Lost before a byte of it was heard (an idle close crossing
                # its first text, say): try it once more on a new connection.
                moving.append(route)
            else:
                route.utterance._fail(copy_error(error))
        self.routes.clear()
        self.cancel_scope.cancel()
        if moving:
            self.owner.move(self.settings, moving, error)

    def close(self) -> None:
        """Queue the terminate message, the last one: the service then closes the connection."""
        if not self.closing:
            self.last_sent = trio.current_time()
            self.outbox_send.send_nowait(self.protocol.terminate())
            self.closing = True
            self.outbox_send.close()

    # ------------------------------------------------------------- tasks

    async def run(self) -> None:
        """Run the reader, sender and keepalive until the connection ends."""
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._sender)
                    if self.keepalive_interval is not None:
                        nursery.start_soon(self._keepalive, self.keepalive_interval)
        finally:
            self.alive = False
            # Read before the shield below, where it would always be false:
            # cancelled from outside, trio-websocket's reader is cancelled with
            # us, and nobody is left to read the service's reply to a close.
            cancelled = trio.current_effective_deadline() == -math.inf
            # However the connection ends (done, lost, or cancelled with the
            # sender), what is queued still goes out, then terminate, then the
            # close frame (or, cancelled, the TCP close by the stream's owner):
            # shielded, and bounded.
            # Whatever is still here has lost its connection (the normal ends
            # have forgotten theirs): it must not wait for ever.
            for route in list(self.routes.values()):
                route.utterance._fail(ConnectionLostError("the connection was lost"))
            self.routes.clear()
            try:
                with trio.move_on_after(self.close_timeout, shield=True):
                    await self._send_what_is_left()
                    if not cancelled:
                        await self.ws.aclose()
            finally:
                self.done.set()

    async def _send_what_is_left(self) -> None:
        """Send the queued messages the sender did not, ending with terminate.

        After a failure only ``terminate`` goes out: the queued text may be
        said again on another connection (see :meth:`Synthesizer._move`), and
        ``terminate`` closes every context here anyway.
        """
        if not self.closing:
            self.close()
        unsent = [self._unsent] if self._unsent is not None else []
        while True:
            try:
                unsent.append(self.outbox_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if self.failed:
            unsent = unsent[-1:]  # the terminate, queued last
        try:
            for message in unsent:
                await self.ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass  # the service is gone already: nothing left to say
        self._unsent = None

    async def _sender(self) -> None:
        try:
            async for message in self.outbox_receive:
                # Kept until it is sent: if the sender is cancelled first, the
                # connection's owner sends it (see run()).
                self._unsent = message
                await self.ws.send_message(message)
                self._unsent = None
        except trio_websocket.ConnectionClosed:
            # The reader still holds what the server sent before it closed (an
            # error message, say): let it hand that on, then fail what is left.
            return
        # The terminate message went out and the outbox is closed. The service
        # answers it by closing the connection, which the reader sees; wait
        # for that rather than send a close frame of our own at the same
        # moment (the two closes would cross), but not for longer than this.
        self.cancel_scope.deadline = min(self.cancel_scope.deadline, trio.current_time() + self.close_timeout)

    async def _keepalive(self, interval: float) -> None:
        while self.alive and not self.closing:
            await trio.sleep_until(self.last_sent + interval)
            if trio.current_time() >= self.last_sent + interval:
                self.send_nowait(self.protocol.keepalive())
                self.owner.keepalive_sent()

    async def _reader(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                if self.closing and not self.routes:
                    self.cancel_scope.cancel()
                else:
                    self.fail(_closed_error(exc))
                return
            try:
                events = self.protocol.receive(message)
            except ProtocolError as exc:
                self.owner.protocol_error()
                broken = self.routes.get(exc.context_id) if exc.context_id is not None else None
                if broken is None:
                    logger.warning("skipping a message that is not valid protocol: %s", exc)
                    continue
                # Part of an utterance's audio is unreadable: fail it rather
                # than deliver audio with a gap in it, as if it were whole.
                logger.debug("an utterance's message is not valid protocol: %s", exc)
                exc.utterance = broken.utterance
                self.fail_route(broken, exc)
                continue
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MessageIgnored):
            self.owner.message_ignored()
            logger.debug("ignored: %s (%s)", event.reason, event.context_id)
            return
        route = self.routes.get(event.context_id) if event.context_id is not None else None
        if isinstance(event, AudioReceived):
            if route is not None:
                route.utterance._deliver(event.audio)
        elif isinstance(event, ContextFinished):
            if route is not None:
                route.utterance._complete()
                self.close_context_and_forget(route)
                self.owner.worked()
        elif isinstance(event, ContextEndedEarly):
            # Our choice where the reference is silent: the service ended the
            # context while we could still send text. Its audio so far is
            # delivered; the utterance then fails so that nothing is cut off
            # silently, and the context is closed all the same.
            if route is not None:
                self.fail_route(
                    route,
                    ContextEndedError(
                        "the service ended the utterance's context before its text was finished "
                        "(a final for a context the client had not closed)",
                        utterance=route.utterance,
                    ),
                )
        else:
            if event.code == _IDLE_CODE:
                # The service is closing the idle connection: nothing new goes
                # to it, and whatever still runs on it is lost with it.
                logger.debug("the service closes the connection as idle: %s", event.message)
                self.fail(ConnectionLostError(f"the service closed the connection as idle ({event.message})"))
                return
            extra = dict(event.extra)
            if event.request_id is not None:
                extra["request_id"] = event.request_id
            error = error_from_code(event.code, event.message, extra=extra)
            if route is not None:
                self.fail_route(route, error)
                return
            # An error that names no context concerns the whole connection.
            logger.debug("the service reported an error for the connection: %s", error)
            if event.code in _SETTINGS_ERRORS:
                # The service refuses these settings: the connection is useless.
                self.owner.refused(self.settings, error)
                self.fail(error)
                return
            for other in list(self.routes.values()):
                self.fail_route(other, copy_error(error))


def _closed_error(exc: trio_websocket.ConnectionClosed) -> AsyncAIError:
    """The error for a connection the service closed while we still needed it.

    A close reason that is one of the service's error codes becomes that
    error; anything else is a lost connection.
    """
    reason = exc.reason.reason if exc.reason is not None else None
    if reason and reason.split(":", 1)[0].strip() == _IDLE_CODE:
        return ConnectionLostError(f"the service closed the connection as idle ({_reason(exc)})")
    if reason and reason.split(":", 1)[0].strip() in _KNOWN_CODES:
        code, _, message = reason.partition(":")
        return error_from_code(code.strip(), message.strip() or f"the service closed the connection ({code})")
    return ConnectionLostError(f"the service closed the connection ({_reason(exc)})")


def _reason(exc: trio_websocket.ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "no close reason"
    text = f"code {reason.code}"
    if reason.reason:
        text += f": {reason.reason}"
    return text


@final
class Synthesizer(SpeakerBase):
    """Speech over one persistent WebSocket connection. Made by :func:`open_synthesizer`.

    Many utterances may be open at once; each is one Async context and gets
    exactly its own audio. The connection, its reader, its keepalive and its
    sender all run in the nursery of the ``async with open_synthesizer(...)``
    block, and none outlives it.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        settings: Settings,
        api_key: ApiKey | None,
        base_url: str,
        keepalive_interval: float | None,
        connect_timeout: float,
        audio_timeout: float | None,
        close_timeout: float,
        max_buffered_audio: float | None,
        max_reconnect_attempts: int,
        reconnect_backoff: float,
        max_message_size: int,
    ) -> None:
        self._nursery = nursery
        self._settings = settings
        self._api_key = api_key
        self.base_url = base_url
        self._endpoint = _Endpoint.of(base_url)
        # Made once: building a TLS context takes tens of milliseconds of the event loop.
        self._ssl_context = ssl.create_default_context() if self._endpoint.secure else None
        self._keepalive_interval = keepalive_interval
        self._connect_timeout = connect_timeout
        self._audio_timeout = audio_timeout
        self._close_timeout = close_timeout
        self._max_buffered_audio = max_buffered_audio
        self._max_reconnect_attempts = max_reconnect_attempts
        self._reconnect_backoff = reconnect_backoff
        self._max_message_size = max_message_size
        #: The connection new utterances go to.
        self._connection: _Connection | None = None
        #: Every connection still running (older ones finish their utterances).
        self._connections: set[_Connection] = set()
        #: Every utterance whose block is still open, on any connection.
        self._utterances: dict[str, Utterance] = {}
        #: Routes on their way to a new connection (see _rehome).
        self._moving: set[_Route] = set()
        self._connect_lock = trio.Lock()
        self._closed = False
        self._close_requested = trio.Event()
        #: Retryable connection failures since the last good connect.
        self._connect_failures = 0
        #: Connections lost (or rate-limited) under utterances since one last completed.
        self._drops_in_a_row = 0
        self._random = random.Random()
        self._settings_error: tuple[Settings, APIError] | None = None
        self._connections_opened = 0
        self._keepalives_sent = 0
        self._protocol_errors = 0
        self._messages_ignored = 0
        self._owner = _Owner(
            dropped=self._note_drop,
            worked=self._note_worked,
            refused=self._note_refused,
            move=self._move,
            keepalive_sent=self._note_keepalive,
            protocol_error=self._note_protocol_error,
            message_ignored=self._note_message_ignored,
        )

    def __repr__(self) -> str:
        s = self._settings
        return f"<Synthesizer {self.base_url} voice={s.voice_id!r} model={s.model!r} language={s.language!r}>"

    # ------------------------------------------------------------ settings

    def statistics(self) -> SynthesizerStatistics:
        """Counters for monitoring and tests."""
        conn = self._connection
        return SynthesizerStatistics(
            connections_opened=self._connections_opened,
            connected=conn is not None and conn.alive,
            open_utterances=len(self._utterances),
            keepalives_sent=self._keepalives_sent,
            protocol_errors=self._protocol_errors,
            messages_ignored=self._messages_ignored,
        )

    # ------------------------------------------- what connections report

    def _note_drop(self) -> None:
        self._drops_in_a_row += 1

    def _note_worked(self) -> None:
        self._drops_in_a_row = 0

    def _note_refused(self, settings: Settings, error: APIError) -> None:
        self._settings_error = (settings, error)

    def _note_keepalive(self) -> None:
        self._keepalives_sent += 1

    def _note_protocol_error(self) -> None:
        self._protocol_errors += 1

    def _note_message_ignored(self) -> None:
        self._messages_ignored += 1

    # ---------------------------------------------------------- connection

    async def _connect(self, settings: Settings, deadline: float) -> _Connection:
        with single_exception():
            conn: _Connection = await self._nursery.start(self._run_connection, settings, deadline)
        return conn

    async def _run_connection(
        self,
        settings: Settings,
        deadline: float,
        *,
        task_status: trio.TaskStatus[_Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, report the connection, and run it; its tasks live in this task's nursery.

        We open the TCP (or TLS) stream ourselves and hand it to trio-websocket,
        so that whatever happens in the handshake (a refusal, a timeout, a
        peer that is no HTTP server) the socket is closed here, by its owner.
        """
        endpoint = self._endpoint
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        try:
            with trio.fail_at(deadline):
                if endpoint.secure:
                    stream = await trio.open_ssl_over_tcp_stream(
                        endpoint.host,
                        endpoint.port,
                        ssl_context=self._ssl_context,
                        https_compatible=True,
                    )
                else:
                    stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        except trio.TooSlowError:
            raise self._timeout_error() from None
        except OSError as exc:
            raise ConnectError(f"could not connect to {self.base_url}: {exc.strerror or exc}") from None
        started = False
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_at(deadline):
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        endpoint.host_header,
                        endpoint.resource(self._api_key),
                        max_message_size=self._max_message_size,
                        receive_buffer_size=_RECEIVE_BUFFER_SIZE,
                    )
                conn = _Connection(
                    self._owner,
                    settings,
                    ws,
                    keepalive_interval=self._keepalive_interval,
                    close_timeout=self._close_timeout,
                )
                conn.send_nowait(conn.protocol.initialize())
                self._connections_opened += 1
                self._connections.add(conn)
                task_status.started(conn)
                started = True
                try:
                    await conn.run()
                finally:
                    self._connections.discard(conn)
                    # trio-websocket's reader ends when the server closes TCP,
                    # as a client should wait for; but not for longer than this.
                    nursery.cancel_scope.deadline = trio.current_time() + self._close_timeout
        except BaseExceptionGroup as group:
            if started:
                raise  # not a connection failure: a bug, to be seen as it is
            # A failed handshake is raised both here and by trio-websocket's
            # reader task in the nursery: turn it into one exception of ours.
            raise self._handshake_error(group) from None
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _timeout_error(self) -> SynthesisTimeout:
        return SynthesisTimeout(f"connecting to {self.base_url} took over {self._connect_timeout} s")

    def _backoff(self) -> float:
        """The wait before the next connection attempt: doubling, capped, with jitter.

        It grows with retryable connection failures (reset by a good connect)
        and with connections lost under utterances (reset by a completed one),
        so that a flapping service is not hammered; each wait is drawn from
        ``[d, 1.5 d)`` so that many clients do not come back in step.
        """
        failures = self._connect_failures + self._drops_in_a_row
        if failures == 0:
            return 0.0
        delay = min(self._reconnect_backoff * 2.0 ** (failures - 1), _MAX_BACKOFF)
        return delay * self._random.uniform(1.0, 1.5)

    def _handshake_error(self, group: BaseExceptionGroup[BaseException]) -> AsyncAIError:
        """Our exception for what went wrong before the connection was up."""
        found = _leaves(group)
        for exc in found:
            if isinstance(exc, trio_websocket.ConnectionRejected) and not 200 <= exc.status_code < 300:
                return _rejection_error(exc)
        for exc in found:
            if isinstance(exc, trio.TooSlowError):
                return self._timeout_error()
            if isinstance(exc, trio.Cancelled):
                raise group  # cancelled from outside: not ours to translate
        names = ", ".join(sorted({type(exc).__name__ for exc in found}))
        return ConnectError(f"the WebSocket handshake with {self.base_url} failed ({names})")

    async def _connection_for(self, settings: Settings) -> _Connection:
        """The live connection for these settings, (re)connecting as needed."""
        async with self._connect_lock:
            self._check_open()  # closed while we waited for the lock
            conn = self._connection
            if (
                conn is not None
                and conn.alive
                and conn.settings == settings
                and not conn.retiring
                and not conn.near_idle_close()
            ):
                return conn
            if self._settings_error is not None and self._settings_error[0] == settings:
                raise copy_error(self._settings_error[1])
            if conn is not None and conn.alive:
                conn.retiring = True
                if not conn.routes:
                    conn.close()
            # A service that dropped us lately gets its rest before we try.
            delay = self._backoff()
            if delay:
                logger.debug("reconnecting in %.1f s", delay)
                await trio.sleep(delay)
                self._check_open()
            # From the first attempt on, connect_timeout bounds getting a
            # connection: attempts and the waits between them.
            deadline = trio.current_time() + self._connect_timeout
            attempt = 0
            while True:
                try:
                    conn = await self._connect(settings, deadline)
                except AsyncAIError as exc:
                    attempt += 1
                    if exc.retryable:
                        self._connect_failures += 1
                    if not exc.retryable or attempt > self._max_reconnect_attempts:
                        if isinstance(exc, APIError) and exc.code in _SETTINGS_ERRORS:
                            self._settings_error = (settings, exc)
                        raise
                    if trio.current_time() >= deadline:
                        raise self._timeout_error() from None
                    # The wait the service asked for, if it did; else the backoff.
                    asked = exc.retry_after if isinstance(exc, APIError) else None
                    delay = asked if asked is not None else self._backoff()
                    if trio.current_time() + delay >= deadline:
                        raise  # no time left for another attempt: the real cause
                    logger.debug("reconnecting in %.1f s", delay)
                    await trio.sleep(delay)
                    self._check_open()
                    continue
                self._connect_failures = 0
                self._connection = conn
                return conn

    # ---------------------------------------------------------- utterances

    def _check_open(self) -> None:
        if self._closed:
            raise SynthesizerClosedError("the synthesizer is closed")

    @asynccontextmanager
    async def open_utterance(self) -> AsyncGenerator[Utterance, None]:
        """Open an utterance to stream text into, as an LLM produces it.

        ::

            async with synth.open_utterance() as utterance:
                await utterance.send("Hello ")
                await utterance.finish("world.")
                async for chunk in utterance:
                    ...

        Leaving the block abandons an unfinished utterance; :meth:`Utterance.interrupt`
        cancels the block.
        """
        self._check_open()
        settings = self._settings
        conn = await self._connection_for(settings)
        self._check_open()  # closed while we connected
        if not conn.alive or conn.closing:
            raise ConnectionLostError("the connection was lost as it opened")
        fmt = settings.output_format
        route = _Route(conn, synth_closed=lambda: self._closed)
        route.utterance = utterance = Utterance(
            route,
            str(uuid.uuid4()),
            fmt,
            audio_timeout=self._audio_timeout,
            max_buffered_bytes=buffer_limit(fmt, self._max_buffered_audio),
        )
        conn.routes[utterance.context_id] = route
        async with self._utterance_block(utterance):
            yield utterance

    # ------------------------------------------------------ moving utterances

    def _move(self, settings: Settings, routes: list[_Route], error: AsyncAIError) -> None:
        """Carry utterances whose connection was lost before any audio to a new one, once.

        Once the synthesizer is closed there is nowhere to go: they fail with ``error``.
        """
        if self._closed:
            for route in routes:
                route.utterance._fail(copy_error(error))
            return
        for route in routes:
            route.moved = True
            route.conn = None
            self._moving.add(route)
            route.utterance._hold_silence_clock(True)
        self._nursery.start_soon(self._rehome, settings, routes)

    async def _rehome(self, settings: Settings, routes: list[_Route]) -> None:
        """Open a connection for moved utterances and say again what each asked for.

        Nothing of theirs had been heard, so nothing is heard twice, and their
        audio timeout does not run while they move. If no live connection can
        be had, they fail with the reason.
        """
        error: AsyncAIError | None = None
        try:
            conn = await self._connection_for(settings)
        except AsyncAIError as exc:
            error = exc
        else:
            if not conn.alive or conn.closing:
                error = ConnectionLostError("the new connection was lost as it opened")
        for route in routes:
            self._moving.discard(route)
            if route.utterance.state not in ("open", "finished"):
                continue  # interrupted, abandoned or failed on the way
            if error is not None:
                route.utterance._fail(copy_error(error))
            else:
                route.say_again(conn)

    # ---------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close the synthesizer now: terminate the connection politely. Idempotent.

        Leaving the ``async with open_synthesizer(...)`` block does this for
        you; call it to close one made by :func:`connect_synthesizer`, or to
        close early. Open utterances fail with
        :exc:`~trio_asyncai.SynthesizerClosedError`; new ones are refused.
        """
        await self._shutdown()
        self._close_requested.set()
        await trio.lowlevel.checkpoint()

    async def _shutdown(self) -> None:
        """Close the connection politely (terminate), within ``close_timeout``.

        Called when the ``async with`` block is left; shielded, so that it runs
        even when the block was cancelled. The caller then cancels the nursery.
        """
        self._closed = True
        for route in list(self._moving):
            route.utterance._fail(SynthesizerClosedError("the synthesizer was closed"))
        self._moving.clear()
        for conn in list(self._connections):
            for route in list(conn.routes.values()):
                # close_context goes out before terminate
                conn.fail_route(route, SynthesizerClosedError("the synthesizer was closed"))
            conn.close()
        # Each connection's task sends what is queued and closes, even when
        # cancelled from outside (see _Connection.run): wait for that.
        with trio.move_on_after(self._close_timeout, shield=True):
            for conn in list(self._connections):
                await conn.done.wait()


@asynccontextmanager
async def open_synthesizer(
    *,
    api_key: str | None = None,
    voice_id: str | None = None,
    model: str = DEFAULT_MODEL,
    language: Any = None,
    output_format: OutputFormat | None = None,
    sample_rate: int | None = None,
    speed_control: float | None = None,
    stability: int | None = None,
    base_url: str | None = None,
    keepalive_interval: float | None = 10.0,
    connect_timeout: float = 10.0,
    audio_timeout: float | None = 10.0,
    close_timeout: float = 2.0,
    max_buffered_audio: float | None = DEFAULT_MAX_BUFFERED_AUDIO,
    max_reconnect_attempts: int = 3,
    reconnect_backoff: float = 0.5,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[Synthesizer]:
    """Open a :class:`Synthesizer`: speech over one persistent WebSocket.

    :param api_key: the API key; default ``ASYNCAI_API_KEY``. Needed for the
        real service, optional for a local server.
    :param voice_id: the voice; default ``ASYNCAI_VOICE_ID``.
    :param model: the model id (not checked client-side).
    :param language: an ISO 639-1 code (``"en"``; ``"en-US"`` becomes ``"en"``),
        a :class:`~trio_asyncai.Language`, or ``None`` for the voice's own.
    :param output_format: the audio format; default raw ``pcm_s16le`` at
        ``sample_rate`` (or 24000 Hz). Raw or mp3; for telephony,
        ``OutputFormat(encoding="pcm_mulaw", sample_rate=8000)``.
    :param sample_rate: shorthand for the output format's sample rate.
    :param speed_control: the speaking rate, 0.7 to 2.0 (``None``: the
        service's default, 1.0).
    :param stability: the voice's stability, an int from 0 to 100
        (``None``: the service's default). The service honours
        ``speed_control`` and ``stability`` with ``async_flash_v1.0`` only
        and ignores them with its other models; they are not refused for
        other models here.
    :param base_url: the service; default ``ASYNCAI_BASE_URL`` or
        ``https://api.async.com``. ``http(s)://`` becomes ``ws(s)://``.
    :param keepalive_interval: seconds of silence after which a keepalive is
        sent (``None``: never).
    :param connect_timeout: seconds allowed for getting a connection, from
        the first attempt on, every attempt and the waits between them
        included: entering the block against a service that never answers
        fails with :exc:`~trio_asyncai.SynthesisTimeout` after this long, and
        so does an utterance that needs a new connection (after the backoff
        a lost connection earned, which comes first).
    :param audio_timeout: seconds a finished utterance waits for its next
        audio or its end before failing with
        :exc:`~trio_asyncai.SynthesisTimeout` (``None``: forever). It runs
        only once all text was sent: before that the service owes nothing.
    :param close_timeout: seconds allowed for closing the connection politely.
    :param max_buffered_audio: seconds of unread audio one utterance may hold
        before it fails with :exc:`~trio_asyncai.SlowConsumerError`
        (``None``: no limit), counted as :ref:`buffered-audio` says (mp3 by
        its bit rate). The WebSocket carries every utterance of a connection,
        so it cannot hold back one of them: a reader that falls this far
        behind loses its utterance, not the others'.
    :param max_reconnect_attempts: connection attempts after the first that
        fails, for errors that may pass (network, 429, 5xx), within
        ``connect_timeout``.
    :param reconnect_backoff: the first delay between attempts; it doubles
        with each failure (up to 30 s), and each wait is drawn from
        ``[d, 1.5 d)``. A wait the service asks for (``retry_after_ms``) is
        waited instead, exactly; a wait that would pass ``connect_timeout``
        is not waited: the error is raised at once.
    :param max_message_size: the largest message (in bytes) accepted from
        the service; a larger one ends the connection with
        :exc:`~trio_asyncai.ConnectionLostError`. One message can hold
        seconds of audio in base64: the default is 16 MiB.

    The connection is opened on entry, so a refused key or an unreachable
    service raises here. Errors reach you as :exc:`~trio_asyncai.AsyncAIError`
    subclasses, never wrapped in an ExceptionGroup.
    """
    require_trio()
    settings, key, url = resolve_common(
        api_key=api_key,
        voice_id=voice_id,
        model=model,
        language=language,
        output_format=output_format,
        sample_rate=sample_rate,
        base_url=base_url,
        speed_control=speed_control,
        stability=stability,
    )
    del api_key  # from here on only the masked ApiKey: no frame of this block holds the key
    check_positive(
        keepalive_interval=keepalive_interval,
        audio_timeout=audio_timeout,
        max_buffered_audio=max_buffered_audio,
    )
    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) or max_message_size < 1:
        raise ConfigurationError("max_message_size must be a positive int")
    # The nursery raises an ExceptionGroup when the block or a task fails;
    # our tasks never raise on purpose, so a group holds the block's own
    # exception (or a bug of ours): hand back that one exception as itself.
    with single_exception():
        async with trio.open_nursery() as nursery:
            synth = Synthesizer(
                nursery,
                settings=settings,
                api_key=key,
                base_url=url,
                keepalive_interval=keepalive_interval,
                connect_timeout=connect_timeout,
                audio_timeout=audio_timeout,
                close_timeout=close_timeout,
                max_buffered_audio=max_buffered_audio,
                max_reconnect_attempts=max_reconnect_attempts,
                reconnect_backoff=reconnect_backoff,
                max_message_size=max_message_size,
            )
            try:
                # Connect on entry: a bad key or a dead service fails here, not at the first utterance.
                await synth._connection_for(settings)
                yield synth
            finally:
                await synth._shutdown()
                # No checkpoint may follow: a Cancelled raised here would replace
                # the exception the block is leaving with.
                nursery.cancel_scope.cancel()


connect_synthesizer = nursery_twin(
    open_synthesizer,
    lambda synth: synth._close_requested,
    opened=Synthesizer._expect_aclose,
    name="connect_synthesizer",
    doc="""Open a :class:`Synthesizer` whose tasks run in ``nursery``; close it with ``aclose()``.

The twin of :func:`open_synthesizer` for callers who bring their own nursery; it
takes the same keyword arguments (type checkers see them). Closing it is the
caller's job: one garbage collected without ``aclose()`` warns with
:exc:`ResourceWarning` (its nursery's end stops it, but that is a leak in waiting)::

    async with trio.open_nursery() as nursery:
        synth = await trio_asyncai.connect_synthesizer(nursery, voice_id=VOICE)
        ...
        await synth.aclose()
""",
)
