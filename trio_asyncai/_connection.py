"""One WebSocket connection to the service: its handshake, its tasks, its state.

This module is the one boundary where trio-websocket's, wsproto's and the
operating system's errors become ours: the handshake's (:class:`Connector`)
and the open connection's (:class:`Connection`). It knows nothing of
utterances: it sends what the protocol core (:mod:`trio_asyncai._protocol`)
builds, and reports what the service sends, by context id, to its owner
(:class:`ConnectionEvents`, the synthesizer).

A connection's life, one :class:`ConnectionState`::

    OPEN ──retire()──▶ RETIRING ──its last utterance leaves──┐
      │                   │                                  ▼
      └───────close()─────┴─────────────────────────────▶ CLOSING ──tasks end──▶ CLOSED
      └───────────────────┴── lost, refused, cancelled ────┴──────────────────▶ LOST

Over 500 lines, on purpose: the handshake and the open connection are the
one boundary where transport errors become ours, and are kept together.
"""

from __future__ import annotations

import enum
import logging
import math
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, Protocol, final
from urllib.parse import quote, urlsplit

import attrs
import trio
import trio_websocket

from ._config import API_VERSION, ApiKey
from ._errors import (
    IDLE_CODE,
    AsyncAIError,
    ConnectError,
    ConnectionLostError,
    ContextEndedError,
    ProtocolError,
    SynthesisTimeout,
    error_from_body,
    error_from_close_reason,
    error_from_code,
    os_reason,
    refuses_settings,
)
from ._groups import leaves
from ._protocol import (
    AudioReceived,
    ClientProtocol,
    ContextEndedEarly,
    ContextFinished,
    ContextState,
    Event,
    MessageIgnored,
)
from ._types import Settings

__all__ = ["Connection", "ConnectionEvents", "ConnectionState", "Connector", "Endpoint"]

logger = logging.getLogger("trio_asyncai")

_WS_PATH: Final = "/text_to_speech/websocket/ws"
#: The service closes a connection that has received nothing for this long...
_SERVICE_IDLE_LIMIT: Final = 60.0
#: ...so none this close to it is used for a new utterance.
_IDLE_MARGIN: Final = 10.0
#: Bytes asked of the socket per read. trio-websocket's 4 KiB default takes
#: about three reads (and three passes through wsproto) per audio message;
#: 64 KiB takes one, which cuts the client's CPU per second of audio by a
#: third (see docs/benchmarks.rst).
_RECEIVE_BUFFER_SIZE: Final = 64 * 1024


class ConnectionState(enum.Enum):
    """Where a connection stands."""

    #: Carries utterances, and takes new ones.
    OPEN = "open"
    #: Newer settings or a silent service replaced it: it carries its
    #: utterances to their end, takes no new one, and closes after its last.
    RETIRING = "retiring"
    #: ``terminate`` is queued: nothing more goes out, and the service closes.
    CLOSING = "closing"
    #: It ended as it should. Final.
    CLOSED = "closed"
    #: It broke: lost, refused, or cancelled under its utterances. Final.
    LOST = "lost"


_C = ConnectionState
#: The one table of the moves a connection may make.
TRANSITIONS: Final[Mapping[ConnectionState, frozenset[ConnectionState]]] = {
    _C.OPEN: frozenset({_C.RETIRING, _C.CLOSING, _C.LOST}),
    _C.RETIRING: frozenset({_C.CLOSING, _C.LOST}),
    _C.CLOSING: frozenset({_C.CLOSED, _C.LOST}),
    _C.CLOSED: frozenset(),
    _C.LOST: frozenset(),
}


class ConnectionEvents(Protocol):
    """What a connection reports to its owner. Each call is synchronous, made from the connection's tasks."""

    def audio(self, context_id: str, audio: bytes) -> None:
        """Audio arrived for a context."""

    def finished(self, context_id: str) -> None:
        """A context's ``final`` arrived after we closed it: all of its audio is here."""

    def context_failed(self, context_id: str, error: AsyncAIError) -> None:
        """One context failed (the connection has closed it): an error, an early final, unreadable audio."""

    def all_failed(self, connection: Connection, error: AsyncAIError) -> None:
        """An error that names no context: every utterance here fails, and the connection stays."""

    def lost(self, connection: Connection, error: AsyncAIError) -> None:
        """The connection broke: nothing more goes out. Its utterances are the owner's to move or fail."""

    def counted(self, what: str) -> None:
        """One more of ``what``: ``"keepalives_sent"``, ``"protocol_errors"``, ``"messages_ignored"``."""


@final
@attrs.frozen
class Endpoint:
    """Where the WebSocket is: everything but the key, which only :meth:`resource` adds."""

    secure: bool
    host: str
    port: int
    #: The ``Host`` header: the host, and the port unless it is the default.
    host_header: str
    path: str

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
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


@final
class Connection:
    """One open WebSocket connection: its reader, sender and keepalive, and the contexts open on it.

    It carries utterances it does not know: its owner :meth:`attach`\\ es one
    when an utterance starts on it and :meth:`detach`\\ es it when it leaves,
    so that a retiring connection knows when to close.
    """

    def __init__(
        self,
        owner: ConnectionEvents,
        settings: Settings,
        ws: trio_websocket.WebSocketConnection,
        *,
        keepalive_interval: float | None,
        close_timeout: float,
    ) -> None:
        self._owner = owner
        #: The settings it was opened with (fixed for its life).
        self.settings = settings
        self._ws = ws
        self._keepalive_interval = keepalive_interval
        self._close_timeout = close_timeout
        self._protocol = ClientProtocol(settings)
        self._state = ConnectionState.OPEN
        #: Utterances carried now.
        self._carried = 0
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[str](math.inf)
        #: The message the sender took from the outbox and has not sent yet.
        self._unsent: str | None = None
        self._cancel_scope = trio.CancelScope()
        self._last_sent = trio.current_time()
        self._ended = trio.Event()
        self._queue(self._protocol.initialize())

    def __repr__(self) -> str:
        return f"<Connection {self._state.value} carrying {self._carried}>"

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> ConnectionState:
        return self._state

    def _move_to(self, state: ConnectionState) -> bool:
        """Move to ``state`` if :data:`TRANSITIONS` allows it; ``False`` otherwise (it came too late)."""
        if state not in TRANSITIONS[self._state]:
            return False
        self._state = state
        return True

    @property
    def usable(self) -> bool:
        """Whether a new utterance may start here: open, and not about to be closed as idle.

        The service closes a connection that received nothing for 60 s. One
        that has been silent for most of that is not worth starting an
        utterance on: its close could cross our first text and fail the
        utterance for nothing. (With the keepalive on, this never happens.)
        """
        idle = trio.current_time() - self._last_sent
        return self._state is ConnectionState.OPEN and idle < _SERVICE_IDLE_LIMIT - _IDLE_MARGIN

    @property
    def sending(self) -> bool:
        """Whether its utterances' text may still go out (open or retiring)."""
        return self._state in (ConnectionState.OPEN, ConnectionState.RETIRING)

    def attach(self) -> None:
        """An utterance starts on this connection."""
        self._carried += 1

    def detach(self) -> None:
        """An utterance leaves it: a retiring connection closes after its last."""
        self._carried -= 1
        if self._carried == 0 and self._state is ConnectionState.RETIRING:
            self.close()

    def retire(self) -> None:
        """Take no new utterance; close once the ones carried now have left."""
        if self._move_to(ConnectionState.RETIRING) and self._carried == 0:
            self.close()

    def close(self) -> None:
        """Queue the terminate message, the last one: the service then closes the connection."""
        if self._move_to(ConnectionState.CLOSING):
            self._last_sent = trio.current_time()
            self._outbox_send.send_nowait(self._protocol.terminate())
            self._outbox_send.close()

    async def wait_ended(self) -> None:
        """Return once its tasks are done and its close was sent (see :meth:`run`)."""
        await self._ended.wait()

    # -------------------------------------------------------------- sending

    def _queue(self, message: str | None) -> None:
        if message is not None and self._state in (ConnectionState.OPEN, ConnectionState.RETIRING):
            self._last_sent = trio.current_time()
            self._outbox_send.send_nowait(message)

    def send_text(self, context_id: str, text: str, *, force: bool) -> None:
        """Queue a context's text, as the protocol says to send it."""
        self._queue(self._protocol.send_text(context_id, text, force=force))

    def finish(self, context_id: str, text: str) -> bool:
        """Queue the end of a context's input (last text, close_context).

        ``False`` if nothing of the context ever reached the service: no audio is owed.
        """
        messages = self._protocol.finish(context_id, text)
        for message in messages:
            self._queue(message)
        return bool(messages)

    def close_context(self, context_id: str) -> None:
        """Close the context if it is still open; whatever comes for it afterwards is dropped."""
        self._queue(self._protocol.close_context(context_id))

    # ------------------------------------------------------------- failing

    def _lose(self, error: AsyncAIError) -> None:
        """The connection is unusable: report it once, and stop its tasks."""
        if self._move_to(ConnectionState.LOST):
            self._cancel_scope.cancel()
            self._owner.lost(self, error)

    def fail_context(self, context_id: str, error: AsyncAIError) -> None:
        """End one context here with ``error``: close it, and report it."""
        self.close_context(context_id)
        self._owner.context_failed(context_id, error)

    # ------------------------------------------------------------- tasks

    async def run(self) -> None:
        """Run the reader, sender and keepalive until the connection ends; then send what is left.

        However it ends (closed, lost, or cancelled with its owner), what is
        queued still goes out, then terminate, then the close frame (or,
        cancelled, the TCP close by the stream's owner): shielded, and
        bounded by ``close_timeout``.
        """
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._sender)
                    if self._keepalive_interval is not None:
                        nursery.start_soon(self._keepalive, self._keepalive_interval)
        finally:
            # Read before the shield below, where it would always be false:
            # cancelled from outside, trio-websocket's reader is cancelled with
            # us, and nobody is left to read the service's reply to a close.
            cancelled = trio.current_effective_deadline() == -math.inf
            if cancelled and self.sending:
                # Cancelled with its owner: what is queued still goes out, then terminate.
                self.close()
            # An error broke it: its queued text may be said again on another connection.
            broke = self._state is ConnectionState.LOST
            if self._state is not ConnectionState.CLOSING or self._carried:
                # Whatever still runs on it has lost its connection: it must not wait for ever.
                self._lose(ConnectionLostError("the connection was lost"))
            try:
                with trio.move_on_after(self._close_timeout, shield=True):
                    await self._send_what_is_left(broke=broke)
                    if not cancelled:
                        await self._ws.aclose()
            finally:
                self._move_to(ConnectionState.CLOSED)
                self._ended.set()

    async def _send_what_is_left(self, *, broke: bool) -> None:
        """Send the queued messages the sender did not (terminate is queued last).

        After a break only ``terminate`` goes out (the one queued, if it is
        still unsent, or a new one): the queued text may be said again on
        another connection, and ``terminate`` closes every context here anyway.
        """
        unsent = [self._unsent] if self._unsent is not None else []
        while True:
            try:
                unsent.append(self._outbox_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if broke:
            unsent = unsent[-1:] if self._protocol.terminated else [self._protocol.terminate()]
        self._unsent = None
        try:
            for message in unsent:
                await self._ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass  # the service is gone already: nothing left to say

    async def _sender(self) -> None:
        try:
            async for message in self._outbox_receive:
                # Kept until it is sent: if the sender is cancelled first, run() sends it.
                self._unsent = message
                await self._ws.send_message(message)
                self._unsent = None
        except trio_websocket.ConnectionClosed:
            # The reader still holds what the server sent before it closed (an
            # error message, say): let it hand that on, then fail what is left.
            return
        # The terminate message went out and the outbox is closed. The service
        # answers it by closing the connection, which the reader sees; wait
        # for that rather than send a close frame of our own at the same
        # moment (the two closes would cross), but not for longer than this.
        self._cancel_scope.deadline = min(
            self._cancel_scope.deadline, trio.current_time() + self._close_timeout
        )

    async def _keepalive(self, interval: float) -> None:
        while self.sending:
            await trio.sleep_until(self._last_sent + interval)
            if self.sending and trio.current_time() >= self._last_sent + interval:
                self._queue(self._protocol.keepalive())
                self._owner.counted("keepalives_sent")

    async def _reader(self) -> None:
        while True:
            try:
                message = await self._ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                if self._state is ConnectionState.CLOSING and self._carried == 0:
                    self._cancel_scope.cancel()
                else:
                    reason = exc.reason
                    self._lose(
                        error_from_close_reason(
                            None if reason is None else reason.code, None if reason is None else reason.reason
                        )
                    )
                return
            try:
                events = self._protocol.receive(message)
            except ProtocolError as exc:
                self._owner.counted("protocol_errors")
                if exc.context_id is None or self._protocol.state(exc.context_id) is ContextState.CLOSED:
                    logger.warning("skipping a message that is not valid protocol: %s", exc)
                    continue
                # Part of an utterance's audio is unreadable: fail it rather
                # than deliver audio with a gap in it, as if it were whole.
                logger.debug("an utterance's message is not valid protocol: %s", exc)
                self.fail_context(exc.context_id, exc)
                continue
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MessageIgnored):
            self._owner.counted("messages_ignored")
            logger.debug("ignored: %s (%s)", event.reason, event.context_id)
            return
        context_id = event.context_id
        if isinstance(event, AudioReceived):
            if context_id is not None:
                self._owner.audio(context_id, event.audio)
        elif isinstance(event, ContextFinished):
            if context_id is not None:
                self._owner.finished(context_id)
        elif isinstance(event, ContextEndedEarly):
            # Our choice where the reference is silent: the service ended the
            # context while we could still send text. Its audio so far is
            # delivered; the utterance then fails so that nothing is cut off
            # silently, and the context is closed all the same.
            if context_id is not None:
                self.fail_context(
                    context_id,
                    ContextEndedError(
                        "the service ended the utterance's context before its text was finished "
                        "(a final for a context the client had not closed)"
                    ),
                )
        elif event.code == IDLE_CODE:
            # The service is closing the idle connection: nothing new goes
            # to it, and whatever still runs on it is lost with it.
            logger.debug("the service closes the connection as idle: %s", event.message)
            self._lose(ConnectionLostError(f"the service closed the connection as idle ({event.message})"))
        else:
            extra = dict(event.extra)
            if event.request_id is not None:
                extra["request_id"] = event.request_id
            error = error_from_code(event.code, event.message, extra=extra)
            if context_id is not None:
                self.fail_context(context_id, error)
            elif refuses_settings(error):
                # The service refuses these settings: the connection is useless.
                logger.debug("the service refused the connection's settings: %s", error)
                self._lose(error)
            else:
                # An error that names no context concerns every utterance here.
                logger.debug("the service reported an error for the connection: %s", error)
                self._owner.all_failed(self, error)


@final
class _HandshakeWatch(trio.abc.Stream):
    """The stream under trio-websocket, watched while the handshake runs.

    trio-websocket does not end its handshake when the peer closes or resets
    the connection, or TLS fails, before the answer: it waits until our
    deadline. This wrapper sees the stream end or break during
    :meth:`watching` and cancels the handshake at once, saying why
    (:attr:`cut`); after the handshake it only passes calls on.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._scope: trio.CancelScope | None = None
        #: Why the handshake was cut short, if it was.
        self.cut: str | None = None

    def __repr__(self) -> str:
        return f"<_HandshakeWatch {self._stream!r}>"

    @contextmanager
    def watching(self) -> Iterator[None]:
        """The handshake: cancelled as soon as the stream ends or breaks."""
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                yield
            finally:
                self._scope = None

    def _cut(self, why: str) -> None:
        if self._scope is not None and self.cut is None:
            self.cut = why
            self._scope.cancel()

    @staticmethod
    def _why(exc: BaseException) -> str:
        cause = exc.__cause__ or exc.__context__
        return f"{type(cause).__name__}: {cause}" if cause is not None else "the stream broke"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            self._cut(self._why(exc))
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            self._cut(self._why(exc))
            raise
        if not data:
            self._cut("the service closed the connection before answering")
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


@final
class Connector:
    """Opens connections to one endpoint with one key: the handshake, and the errors it can end in."""

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey | None,
        *,
        connect_timeout: float,
        keepalive_interval: float | None,
        close_timeout: float,
        max_message_size: int,
    ) -> None:
        self.base_url = base_url
        self._endpoint = Endpoint.of(base_url)
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._keepalive_interval = keepalive_interval
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size
        # Made once: building a TLS context takes tens of milliseconds of the event loop.
        self._ssl_context = ssl.create_default_context() if self._endpoint.secure else None

    def __repr__(self) -> str:
        return f"<Connector {self.base_url}>"

    def timeout_error(self) -> SynthesisTimeout:
        """The error for a connection not had within ``connect_timeout``."""
        return SynthesisTimeout(f"connecting to {self.base_url} took over {self._connect_timeout} s")

    async def run(
        self,
        owner: ConnectionEvents,
        settings: Settings,
        deadline: float,
        *,
        started: Callable[[Connection], None],
    ) -> None:
        """Connect (by ``deadline``), hand the connection to ``started``, and run it until it ends.

        A failed handshake raises our exception (before ``started``); the
        connection's tasks live in this task. We open the TCP (or TLS) stream ourselves and
        hand it to trio-websocket, so that whatever happens in the handshake
        (a refusal, a timeout, a peer that is no HTTP server) the socket is
        closed here, by its owner.
        """
        endpoint = self._endpoint
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        try:
            with trio.fail_at(deadline):
                if endpoint.secure:
                    stream = await trio.open_ssl_over_tcp_stream(
                        endpoint.host, endpoint.port, ssl_context=self._ssl_context, https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        except trio.TooSlowError:
            raise self.timeout_error() from None
        except OSError as exc:
            raise ConnectError(f"could not connect to {self.base_url}: {os_reason(exc)}") from None
        up = False
        failure: AsyncAIError | None = None
        watch = _HandshakeWatch(stream)
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_at(deadline), watch.watching():
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        watch,  # type: ignore[arg-type]  # any trio Stream works; the annotation names two
                        endpoint.host_header,
                        endpoint.resource(self._api_key),
                        max_message_size=self._max_message_size,
                        receive_buffer_size=_RECEIVE_BUFFER_SIZE,
                    )
                if watch.cut is not None:
                    raise ConnectError(f"the WebSocket handshake with {self.base_url} was cut: {watch.cut}")
                conn = Connection(
                    owner,
                    settings,
                    ws,
                    keepalive_interval=self._keepalive_interval,
                    close_timeout=self._close_timeout,
                )
                started(conn)
                up = True
                try:
                    await conn.run()
                finally:
                    # trio-websocket's reader ends when the server closes TCP,
                    # as a client should wait for; but not for longer than this.
                    nursery.cancel_scope.deadline = trio.current_time() + self._close_timeout
        except BaseExceptionGroup as group:
            if up:
                raise  # not a connection failure: a bug, to be seen as it is
            # A failed handshake is raised both here and by trio-websocket's
            # reader task in the nursery: turn it into one exception of ours.
            failure = self._handshake_error(group)
            del group
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        if failure is not None:
            # Raised here, not in the except clause: no __context__ then keeps
            # the group, whose tracebacks hold trio-websocket's frames and in
            # them the request target, key and all.
            raise failure

    def _handshake_error(self, group: BaseExceptionGroup[BaseException]) -> AsyncAIError:
        """Our exception for what went wrong before the connection was up."""
        found = leaves(group)
        for exc in found:
            if isinstance(exc, AsyncAIError):
                return exc  # ours already (a cut handshake)
        for exc in found:
            if isinstance(exc, trio_websocket.ConnectionRejected) and not 200 <= exc.status_code < 300:
                retry_after = next(
                    (v.decode("latin-1") for k, v in exc.headers or () if k.lower() == b"retry-after"), None
                )
                return error_from_body(
                    exc.status_code,
                    exc.body,
                    retry_after=retry_after,
                    default_message=f"the service refused the WebSocket connection (HTTP {exc.status_code})",
                )
        for exc in found:
            if isinstance(exc, trio.TooSlowError):
                return self.timeout_error()
            if isinstance(exc, trio.Cancelled):
                raise group  # cancelled from outside: not ours to translate
        names = ", ".join(sorted({type(exc).__name__ for exc in found}))
        return ConnectError(f"the WebSocket handshake with {self.base_url} failed ({names})")
