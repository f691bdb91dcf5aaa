"""A server's mutable state: fault switches, the log of what clients sent, settings."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable
from typing import Any, final

import attrs
import trio

from ._engines import Engine
from ._store import VoiceStore
from ._voices import VoiceLibrary

__all__ = ["ConnectionLog", "Faults", "HTTPRequestLog", "ServerLog", "ServerState"]


@final
@attrs.define
class Faults:
    """Switches that make the server misbehave on purpose, for clients' failure tests.

    All are off by default and may be flipped at any time; a change applies to
    what the server does next (counts such as ``drop_after_audio_messages`` are
    per WebSocket connection). :meth:`reset` turns everything off.

    WebSocket:

    * ``drop_after_audio_messages``: after sending this many audio messages on
      a connection, end it abruptly with close code 1011.
    * ``garbage_before_audio``: send a non-JSON text frame and a binary frame
      before every audio message.
    * ``corrupt_next_audio``: send the next audio message with audio that is
      not valid base64 (its ``context_id`` intact); then switches off.
    * ``late_audio_after_close``: after a closeContext, send one more audio
      message and one more final for that context, after everything else.
    * ``final_per_force``: answer every ``force`` with a final after its audio,
      as the service does not (a final for a context the client has not closed).
    * ``no_final_on_close``: a closeContext drops the context's audio at once
      and no final follows, as the service does not.
    * ``stall_after_audio_messages``: after this many audio messages on a
      connection, send nothing more (no audio, finals or errors) while keeping
      the connection open.
    * ``chunk_delay``: seconds (trio's clock) to wait before each audio message
      and each HTTP audio chunk.
    * ``error_on_text``: answer the next sendText with an error message of
      this code (with its ``context_id``) instead of audio; then switches off.

    Admission (server/_admission.py has the rule and its reasons):

    * ``http_statuses``: the next HTTP requests are answered with these
      statuses, in order, one request each (each is popped), with the error
      body the service sends for each (429 is ``RATE_LIMIT_EXCEEDED`` with
      ``extra.retry_after_ms``; a 5xx has the code-less 500 shape).
    * ``handshake_statuses``: the same for the next WebSocket handshakes,
      refused as HTTP answers with that body: ``[503]`` refuses one
      handshake, ``[503] * 6`` six in a row.
    * ``version_required``: refuse a request (or handshake) that carries no
      ``version`` with 404 ``VERSION_NOT_FOUND``, instead of taking it as v1.

    HTTP:

    * ``http_quota_after_bytes``: streamed bodies stop after this many audio
      bytes with ``--ERROR:QUOTA_EXCEEDED--``, split over two body chunks.

    Error answers (HTTP, and a refused WebSocket handshake):

    * ``flat_error_bodies``: send the flat ``{"error_code", "message",
      "extra"?}`` instead of the service's usual ``{"detail": {...}}`` (the
      reference shows both).
    * ``retry_after_ms``: the wait a ``RATE_LIMIT_EXCEEDED`` answer asks for,
      in ``extra.retry_after_ms`` (0 by default, so that tests run fast).
    * ``retry_after_header``: send this ``Retry-After`` header with every 429
      and 5xx, and no ``retry_after_ms``, as other servers and proxies do;
      a ``RATE_LIMIT_EXCEEDED`` error message on the WebSocket then carries
      no ``retry_after_ms`` either.
    * ``nested_json``: JSON answers (error bodies, a refused handshake's, and
      the voice endpoints' 200 answers that are objects) carry a member
      ``"nested"`` this many levels deep, as a broken proxy or a hostile
      peer might (0: off).

    Both:

    * ``no_audio``: speak nothing: WebSocket contexts get their final with no
      audio before it, and streamed HTTP bodies are empty (200, 0 bytes).
    * ``language_from_voice``: a request without ``language`` is spoken in
      the voice's own language (the first of its codes: English for the
      predefined voices), whatever the text's script. Off, the server reads
      such text in the language of its script (*our choice*: the reference
      only says that ``language`` forces a language regardless of the text).
      A behaviour switch rather than a fault: the reference does not say
      which of the two the service does, so that a client can be tested
      against both. Read when a request or a connection starts.
    """

    drop_after_audio_messages: int | None = None
    garbage_before_audio: bool = False
    corrupt_next_audio: bool = False
    late_audio_after_close: bool = False
    final_per_force: bool = False
    no_final_on_close: bool = False
    stall_after_audio_messages: int | None = None
    chunk_delay: float = 0.0
    error_on_text: str | None = None
    http_statuses: list[int] = attrs.field(factory=list)
    handshake_statuses: list[int] = attrs.field(factory=list)
    version_required: bool = False
    http_quota_after_bytes: int | None = None
    flat_error_bodies: bool = False
    retry_after_ms: int = 0
    retry_after_header: str | None = None
    nested_json: int = 0
    no_audio: bool = False
    language_from_voice: bool = False

    def reset(self) -> None:
        """Switch every fault off."""
        fresh = Faults()
        for field in attrs.fields(Faults):
            setattr(self, field.name, getattr(fresh, field.name))


@final
@attrs.define(eq=False)
class ConnectionLog:
    """What happened on one accepted WebSocket connection.

    ``messages`` holds every client message that parsed as a JSON object, in
    order (the initializeConnection first); ``rejected`` every frame that did
    not. ``contexts_opened`` lists context ids (``None`` = the default context)
    each time one came into being by receiving text, ``contexts_closed`` the
    ids of closeContext messages. ``jobs`` records each piece of text handed to
    synthesis as ``(context_id, text, flushed)`` (flushed: by a force or the close), at the moment the message
    that caused it was processed.

    Without ``details`` (see :class:`ServerLog`) the lists stay empty and only
    the counters and the close are kept.
    """

    index: int
    query: dict[str, str] = attrs.field(factory=dict)
    details: bool = True
    messages: list[dict[str, Any]] = attrs.field(factory=list)
    rejected: list[str | bytes] = attrs.field(factory=list)
    contexts_opened: list[str | None] = attrs.field(factory=list)
    contexts_closed: list[str | None] = attrs.field(factory=list)
    jobs: list[tuple[str | None, str, bool]] = attrs.field(factory=list)
    keepalives: int = 0
    audio_messages_sent: int = 0
    finals_sent: int = 0
    errors_sent: list[dict[str, Any]] = attrs.field(factory=list)
    stalled: bool = False
    closed: bool = False
    close_code: int | None = None
    close_reason: str | None = None

    def unclosed_contexts(self) -> list[str]:
        """Named contexts that received text but were never closed with closeContext."""
        still_open: list[str] = []
        closed = list(self.contexts_closed)
        for context_id in self.contexts_opened:
            if context_id is None:
                continue
            if context_id in closed:
                closed.remove(context_id)
            else:
                still_open.append(context_id)
        return still_open


@final
@attrs.define(eq=False)
class HTTPRequestLog:
    """One HTTP request: method, path, JSON body (``None`` if it had none or bad JSON), headers.

    The ``x-api-key`` header's value is replaced by ``"***"``.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    status: int | None = None


@final
@attrs.define(eq=False)
class ServerLog:
    """What clients did to the server, for tests.

    Counters: ``connections_opened`` / ``connections_closed`` (accepted
    WebSocket connections), ``handshakes_rejected``, ``http_requests``; and,
    summed over connections, ``contexts_opened``, ``contexts_closed`` and
    ``keepalives`` (whitespace-only sendTexts without ``force``).

    With ``details`` (the default of :func:`~trio_asyncai.server.open_local_server`)
    the log keeps a :class:`ConnectionLog` per connection, with every message,
    and an :class:`HTTPRequestLog` per request, with its body, for the
    server's lifetime: what tests need. Without (the default of
    :func:`~trio_asyncai.server.serve`, a long-running server) it keeps only
    the four counters above, so that its memory does not grow with what
    clients send; ``connections``, ``http`` and the per-connection sums stay
    empty and zero.

    :meth:`wait_for` waits (without polling) until a condition on the log
    holds, e.g. ``await log.wait_for(lambda log: log.contexts_closed >= 1)``.
    """

    connections: list[ConnectionLog] = attrs.field(factory=list)
    http: list[HTTPRequestLog] = attrs.field(factory=list)
    connections_opened: int = 0
    connections_closed: int = 0
    handshakes_rejected: int = 0
    #: How many HTTP requests arrived (any endpoint).
    http_requests: int = 0
    details: bool = True
    _changed: trio.Event = attrs.field(factory=trio.Event, repr=False)

    def add_connection(self, record: ConnectionLog) -> None:
        """Count an accepted WebSocket connection (and keep its record, with ``details``)."""
        if self.details:
            self.connections.append(record)
        self.connections_opened += 1
        self.notify()

    def add_http(self, record: HTTPRequestLog) -> None:
        """Count an HTTP request (and keep its record, with ``details``)."""
        if self.details:
            self.http.append(record)
        self.http_requests += 1
        self.notify()

    @property
    def contexts_opened(self) -> int:
        """Contexts that came into being by receiving text, over all connections."""
        return sum(len(c.contexts_opened) for c in self.connections)

    @property
    def contexts_closed(self) -> int:
        """closeContext messages received, over all connections."""
        return sum(len(c.contexts_closed) for c in self.connections)

    @property
    def keepalives(self) -> int:
        """Whitespace-only sendText messages (without force) received, over all connections."""
        return sum(c.keepalives for c in self.connections)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every client message of every connection, connection by connection."""
        return [m for c in self.connections for m in c.messages]

    def unclosed_contexts(self) -> list[str]:
        """Named contexts, over all connections, that got text but no closeContext."""
        return [ctx for c in self.connections for ctx in c.unclosed_contexts()]

    def notify(self) -> None:
        """Wake :meth:`wait_for` callers (the server calls this after every change)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, condition: Callable[[ServerLog], bool]) -> None:
        """Wait until ``condition(self)`` is true. Bound it with ``trio.fail_after``."""
        while not condition(self):
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    def clear(self) -> None:
        """Forget everything logged so far."""
        self.connections.clear()
        self.http.clear()
        self.connections_opened = self.connections_closed = self.handshakes_rejected = 0
        self.http_requests = 0
        self.notify()


@attrs.define(eq=False)
class ServerState:
    """Everything the ASGI app needs: engine, voices, settings, faults and log.

    ``api_key`` is never shown in a repr. ``limiter`` bounds how many synthesis
    steps run in worker threads at once. ``signing_key`` signs the preview
    URLs the server hands out (random per server).

    ``state_dir``: where cloned voices and their samples are kept across
    restarts (created if missing); ``None`` keeps them in memory only. Its
    voices are read when the state is made, which raises
    :exc:`~trio_asyncai.server.StateDirError` (naming the file, changing
    nothing) for a directory that is damaged or not the server's. ``store``
    (:class:`VoiceStore`) makes every change to cloned voices.
    """

    engine: Engine
    api_key: str | None = attrs.field(default=None, repr=False)
    idle_timeout: float | None = 60.0
    voices: VoiceLibrary = attrs.field(factory=VoiceLibrary)
    faults: Faults = attrs.field(factory=Faults)
    log: ServerLog = attrs.field(factory=ServerLog)
    limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(2))
    signing_key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)
    state_dir: str | os.PathLike[str] | None = None
    store: VoiceStore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.store = VoiceStore(self.voices, self.state_dir)
        if self.idle_timeout is not None and not (
            self.idle_timeout > 0 and not math.isinf(self.idle_timeout)
        ):
            if math.isinf(self.idle_timeout):
                self.idle_timeout = None
            else:
                raise ValueError(f"idle_timeout must be positive or None, not {self.idle_timeout}")
