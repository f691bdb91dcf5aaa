"""The WebSocket synthesizer: which connection each utterance gets, reconnecting, and moving utterances.

One nursery owns every connection and everything it runs (see
:mod:`trio_asyncai._connection`, which owns each connection's tasks and
state). The synthesizer decides:

- which connection a new utterance goes to: the current one if it is usable
  and has the current settings, else a new one (the old one retires, and
  closes once its utterances are done);
- when to connect again after a failure, by the one backoff policy
  (:mod:`trio_asyncai._retry`), within ``connect_timeout``;
- what becomes of the utterances of a connection that was lost: one lost
  before any of its audio moves, once, to a new connection and is said
  again there (from what it records of its own text); the others fail.

:attr:`Synthesizer._links` is the one registry of utterances; each
:class:`_WebSocketLink` knows the connection that carries it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

from ._backend import require_trio
from ._config import ApiKey
from ._connection import Connection, Connector
from ._errors import (
    APIError,
    AsyncAIError,
    ConnectionLostError,
    SynthesisTimeout,
    SynthesizerClosedError,
    calls_for_backoff,
    copy_error,
    refuses_settings,
)
from ._groups import single_exception
from ._options import WebSocketOptions, resolve_synthesis, takes_options
from ._retry import Backoff
from ._synthesizer import BaseSynthesizer, connect_function
from ._types import Settings
from ._utterance import Utterance, UtteranceFeed, buffer_limit

__all__ = ["Synthesizer", "SynthesizerStatistics", "connect_synthesizer", "open_synthesizer"]

logger = logging.getLogger("trio_asyncai")

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


@final
class _WebSocketLink:
    """The WebSocket side of one utterance (its :class:`~trio_asyncai._utterance.UtteranceLink`).

    It knows the connection that carries the utterance (``None`` while it
    moves to a new one, and once it has ended) and whether it moved already.
    """

    def __init__(self, feed: UtteranceFeed, connection: Connection) -> None:
        self.feed = feed
        self._connection: Connection | None = connection
        self._moved = False
        connection.attach()

    def __repr__(self) -> str:
        return f"<_WebSocketLink {self.feed.context_id} on {self._connection!r}>"

    def carried_by(self, connection: Connection) -> bool:
        return self._connection is connection

    @property
    def movable(self) -> bool:
        """Whether it may move to a new connection: it never moved, and none of its audio was heard."""
        return not self._moved and not self.feed.heard

    # ------------------------------------------------ what the utterance asks

    def _carrier(self) -> Connection | None:
        """The connection to queue text on (``None`` while moving: the move says it all again)."""
        connection = self._connection
        if connection is not None and not connection.sending:
            raise ConnectionLostError("the connection was lost")
        return connection

    def send_text(self, text: str, *, force: bool) -> None:
        connection = self._carrier()
        if connection is not None:
            connection.send_text(self.feed.context_id, text, force=force)

    def finish(self, text: str) -> bool:
        connection = self._carrier()
        if connection is None:
            return True
        owed = connection.finish(self.feed.context_id, text)
        if not owed:
            self._leave()
        return owed

    def abandon(self) -> None:
        connection = self._connection
        if connection is None:
            return  # moving: the move skips an utterance that has ended
        connection.close_context(self.feed.context_id)
        if isinstance(self.feed.utterance.error, SynthesisTimeout):
            # The service went silent on this connection: new utterances get
            # a fresh one, and this one closes once its others are done.
            connection.retire()
        self._leave()

    # ---------------------------------------------- what its connection says

    def finished(self) -> None:
        self.feed.complete()
        self._leave()

    def fail(self, error: AsyncAIError) -> None:
        """End the utterance with ``error``, and close its context if its connection still sends."""
        self.feed.fail(error)
        if self._connection is not None:
            self._connection.close_context(self.feed.context_id)
            self._leave()

    def move_out(self) -> None:
        """Its connection was lost before any of its audio: it waits for a new one."""
        self._connection = None  # the lost connection carries nothing any more
        self._moved = True
        self.feed.hold_clock(True)

    def move_in(self, connection: Connection) -> None:
        """Carry the utterance on ``connection``, saying again everything it asked for."""
        self._connection = connection
        connection.attach()
        self.feed.hold_clock(False)
        context_id = self.feed.context_id
        for said in self.feed.said():
            if not said.last:
                connection.send_text(context_id, said.text, force=said.force)
            elif not connection.finish(context_id, said.text):
                self.finished()

    def _leave(self) -> None:
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.detach()


@final
class Synthesizer(BaseSynthesizer[_WebSocketLink]):
    """Speech over one persistent WebSocket connection. Made by :func:`open_synthesizer`.

    Many utterances may be open at once; each is one Async context and gets
    exactly its own audio. The connection, its reader, its keepalive and its
    sender all run in the nursery of the ``async with open_synthesizer(...)``
    block, and none outlives it.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        options: WebSocketOptions,
        *,
        settings: Settings,
        api_key: ApiKey | None,
        base_url: str,
    ) -> None:
        self._nursery = nursery
        self._settings = settings
        self.base_url = base_url
        self._connector = Connector(
            base_url,
            api_key,
            connect_timeout=options.connect_timeout,
            keepalive_interval=options.keepalive_interval,
            close_timeout=options.close_timeout,
            max_message_size=options.max_message_size,
        )
        self._connect_timeout = options.connect_timeout
        self._audio_timeout = options.audio_timeout
        self._close_timeout = options.close_timeout
        self._max_buffered_audio = options.max_buffered_audio
        self._max_reconnect_attempts = options.max_reconnect_attempts
        self._links = {}
        #: The connection new utterances go to.
        self._connection: Connection | None = None
        #: Every connection still running (older ones finish their utterances).
        self._connections: set[Connection] = set()
        self._connect_lock = trio.Lock()
        self._closed = False
        self._close_requested = trio.Event()
        #: Counts "connect" failures (reset by a good connect) and "drop"s,
        #: connections lost under utterances (reset by one that completes).
        self._backoff = Backoff(options.reconnect_backoff)
        #: The settings the service refused, and how: connecting again with them is no use.
        self._refused: tuple[Settings, APIError] | None = None
        self._counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        s = self._settings
        return f"<Synthesizer {self.base_url} voice={s.voice_id!r} model={s.model!r} language={s.language!r}>"

    def statistics(self) -> SynthesizerStatistics:
        """Counters for monitoring and tests."""
        conn = self._connection
        return SynthesizerStatistics(
            connections_opened=self._counts["connections_opened"],
            connected=conn is not None and conn.sending,
            open_utterances=len(self._links),
            keepalives_sent=self._counts["keepalives_sent"],
            protocol_errors=self._counts["protocol_errors"],
            messages_ignored=self._counts["messages_ignored"],
        )

    # ---------------------------------------------------------- connecting

    async def _connection_for(self, settings: Settings) -> Connection:
        """The usable connection for these settings, (re)connecting as needed."""
        async with self._connect_lock:
            self._check_open()  # closed while we waited for the lock
            conn = self._connection
            if conn is not None and conn.usable and conn.settings == settings:
                return conn
            if self._refused is not None and self._refused[0] == settings:
                raise copy_error(self._refused[1])
            if conn is not None:
                conn.retire()
            # A service that dropped us lately gets its rest before we try.
            await self._backoff.wait()
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
                        self._backoff.failed("connect")
                    if not exc.retryable or attempt > self._max_reconnect_attempts:
                        if refuses_settings(exc):
                            self._refused = (settings, exc)
                        raise
                    if trio.current_time() >= deadline:
                        raise self._connector.timeout_error() from None
                    # The wait the service asked for, if it did; else the backoff.
                    # One that would pass the deadline is not waited: the real cause is raised.
                    if not await self._backoff.wait(exc, deadline=deadline):
                        raise
                    self._check_open()
                    continue
                self._backoff.succeeded("connect")
                self._connection = conn
                return conn

    async def _connect(self, settings: Settings, deadline: float) -> Connection:
        with single_exception():
            conn: Connection = await self._nursery.start(self._run_connection, settings, deadline)
        return conn

    async def _run_connection(
        self,
        settings: Settings,
        deadline: float,
        *,
        task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One connection's task: listed while it runs."""
        listed: list[Connection] = []

        def up(conn: Connection) -> None:
            listed.append(conn)
            self._connections.add(conn)
            self._counts["connections_opened"] += 1
            task_status.started(conn)

        try:
            await self._connector.run(self, settings, deadline, started=up)
        finally:
            self._connections.difference_update(listed)

    # ------------------------------------------------ what connections report

    def audio(self, context_id: str, audio: bytes) -> None:
        link = self._links.get(context_id)
        if link is not None:
            link.feed.audio(audio)

    def finished(self, context_id: str) -> None:
        link = self._links.get(context_id)
        if link is not None:
            link.finished()
            # The service works: a lost connection no longer counts against it.
            self._backoff.succeeded("drop")

    def context_failed(self, context_id: str, error: AsyncAIError) -> None:
        link = self._links.get(context_id)
        if link is not None:
            link.fail(error)

    def all_failed(self, connection: Connection, error: AsyncAIError) -> None:
        for link in self._carried_by(connection):
            link.fail(copy_error(error))

    def lost(self, connection: Connection, error: AsyncAIError) -> None:
        """Move the utterances lost before any of their audio to a new connection, once; fail the others."""
        if refuses_settings(error):
            self._refused = (connection.settings, error)
        carried = self._carried_by(connection)
        if carried and calls_for_backoff(error):
            # Lost under someone's feet, or told to slow down: the next
            # connection waits its turn, so that a flapping service is not hammered.
            self._backoff.failed("drop")
        moving: list[_WebSocketLink] = []
        for link in carried:
            if isinstance(error, ConnectionLostError) and link.movable and not self._closed:
                # Lost before a byte of it was heard (an idle close crossing
                # its first text, say): try it once more on a new connection.
                link.move_out()
                moving.append(link)
            else:
                link.fail(copy_error(error))
        if moving:
            self._nursery.start_soon(self._move, connection.settings, moving)

    def counted(self, what: str) -> None:
        self._counts[what] += 1

    def _carried_by(self, connection: Connection) -> list[_WebSocketLink]:
        return [link for link in self._links.values() if link.carried_by(connection)]

    async def _move(self, settings: Settings, links: list[_WebSocketLink]) -> None:
        """Open a connection for moved utterances and say again what each asked for.

        Nothing of theirs had been heard, so nothing is heard twice, and their
        audio timeout does not run while they move. If no usable connection
        can be had, they fail with the reason.
        """
        error: AsyncAIError | None = None
        try:
            conn = await self._connection_for(settings)
        except AsyncAIError as exc:
            error = exc
        else:
            if not conn.sending:
                error = ConnectionLostError("the new connection was lost as it opened")
        for link in links:
            if not link.feed.owed:
                continue  # interrupted, abandoned or failed on the way
            if error is not None:
                link.fail(copy_error(error))
            else:
                link.move_in(conn)

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
        if not conn.sending:
            raise ConnectionLostError("the connection was lost as it opened")
        fmt = settings.output_format
        async with self._utterance_block(
            lambda feed: _WebSocketLink(feed, conn),
            str(uuid.uuid4()),
            fmt,
            audio_timeout=self._audio_timeout,
            max_buffered_bytes=buffer_limit(fmt, self._max_buffered_audio),
        ) as utterance:
            yield utterance

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
        """Close the connections politely (terminate), within ``close_timeout``.

        Called when the ``async with`` block is left; shielded, so that it runs
        even when the block was cancelled. The caller then cancels the nursery.
        """
        self._closed = True
        for link in list(self._links.values()):
            # close_context goes out before terminate
            link.fail(SynthesizerClosedError("the synthesizer was closed"))
        for conn in list(self._connections):
            conn.close()
        # Each connection's task sends what is queued and closes, even when
        # cancelled from outside (see Connection.run): wait for that.
        with trio.move_on_after(self._close_timeout, shield=True):
            for conn in list(self._connections):
                await conn.wait_ended()


@asynccontextmanager
async def open_synthesizer_with(options: WebSocketOptions) -> AsyncIterator[Synthesizer]:
    """Open a :class:`Synthesizer`: speech over one persistent WebSocket.

    ::

        async with trio_asyncai.open_synthesizer(voice_id=VOICE) as synth:
            async with synth.speak("Hello from trio.") as utterance:
                async for chunk in utterance:
                    ...

    The connection is opened on entry, so a refused key or an unreachable
    service raises here. Errors reach you as :exc:`~trio_asyncai.AsyncAIError`
    subclasses, never wrapped in an ExceptionGroup. The options:
    """
    require_trio()
    settings, key, url = resolve_synthesis(options)
    # The nursery raises an ExceptionGroup when the block or a task fails;
    # our tasks never raise on purpose, so a group holds the block's own
    # exception (or a bug of ours): hand back that one exception as itself.
    with single_exception():
        async with trio.open_nursery() as nursery:
            synth = Synthesizer(nursery, options, settings=settings, api_key=key, base_url=url)
            try:
                # Connect on entry: a bad key or a dead service fails here, not at the first utterance.
                await synth._connection_for(settings)
                yield synth
            finally:
                await synth._shutdown()
                # No checkpoint may follow: a Cancelled raised here would replace
                # the exception the block is leaving with.
                nursery.cancel_scope.cancel()


open_synthesizer = takes_options(WebSocketOptions, open_synthesizer_with, name="open_synthesizer")


connect_synthesizer = connect_function(
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
