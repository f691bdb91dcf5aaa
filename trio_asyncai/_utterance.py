"""One utterance: text in, a channel of audio out. Shared by both synthesizers.

An utterance owns its own story: the text it was asked to say, its state
(one :class:`UtteranceState`, moved only along :data:`TRANSITIONS`), its
metrics and its audio channel. The transport that carries it is an
:class:`UtteranceLink`; calls go one way, utterance -> link. The link reports
what happened (audio, the end, a failure) through the
:class:`UtteranceFeed` the utterance hands it, and nothing else: it never
touches the utterance itself.

The states, and what moves an utterance from one to the next::

    OPEN ──finish()──▶ FINISHED ──all audio arrived──▶ COMPLETE
      │                   │
      ├───────────────────┴──interrupt()──────────────▶ INTERRUPTED
      ├───────────────────┴──error, timeout, slow reader▶ FAILED
      └───────────────────┴──its block left────────────▶ CLOSED

COMPLETE, INTERRUPTED, FAILED and CLOSED are final: news that comes after
(late audio, a failure after the end, a second interrupt) changes nothing.

Over 500 lines, on purpose: the utterance, its feed and its state table are
one state machine, and half the module is the documentation of its public API.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, NamedTuple, Protocol, final

import trio

from ._errors import (
    AsyncAIError,
    ConfigurationError,
    NoAudioError,
    ProtocolStateError,
    SlowConsumerError,
    SynthesisTimeout,
    SynthesizerClosedError,
    copy_error,
)
from ._markup import has_speech
from ._types import AudioChunk, OutputFormat, UtteranceMetrics, check_text

__all__ = [
    "DEFAULT_MAX_BUFFERED_AUDIO",
    "TRANSITIONS",
    "Said",
    "Utterance",
    "UtteranceFeed",
    "UtteranceLink",
    "UtteranceState",
    "buffer_limit",
    "utterance_block",
]

#: Seconds of unread audio one utterance may hold by default (both synthesizers).
DEFAULT_MAX_BUFFERED_AUDIO: Final = 60.0
#: The mp3 bit rate counted when none is asked for: the service's default.
_DEFAULT_MP3_BIT_RATE: Final = 192_000


def buffer_limit(output_format: OutputFormat, seconds: float | None) -> int | None:
    """The bytes of unread audio an utterance may hold: ``seconds`` of audio in ``output_format``.

    The one rule for every format and both synthesizers: a second of audio
    is ``sample_rate`` times the bytes of one sample for raw audio (1 for
    mu-law, 2 for ``pcm_s16le``, 4 for ``pcm_f32le``), and ``bit_rate / 8``
    for mp3 (the bit rate asked for, else the service's default of 192
    kbit/s). ``None`` means no limit.
    """
    if seconds is None:
        return None
    if output_format.container == "mp3":
        per_second = (output_format.bit_rate or _DEFAULT_MP3_BIT_RATE) / 8
    else:
        per_second = output_format.sample_rate * output_format.sample_width
    return max(1, int(seconds * per_second))


class UtteranceState(enum.StrEnum):
    """Where an utterance stands (see :attr:`Utterance.state`).

    A :class:`str` enum: ``utterance.state == "complete"`` holds as well.
    """

    #: Text may still be sent.
    OPEN = "open"
    #: All text is sent (:meth:`Utterance.finish`); audio is still coming.
    FINISHED = "finished"
    #: All audio has arrived. Final.
    COMPLETE = "complete"
    #: :meth:`Utterance.interrupt` stopped it. Final.
    INTERRUPTED = "interrupted"
    #: An error ended it (:attr:`Utterance.error`), after the audio received before. Final.
    FAILED = "failed"
    #: Its ``async with`` block was left before it completed. Final.
    CLOSED = "closed"


_S = UtteranceState
#: The one table of the moves an utterance may make; a state with no moves is final.
TRANSITIONS: Final[Mapping[UtteranceState, frozenset[UtteranceState]]] = {
    _S.OPEN: frozenset({_S.FINISHED, _S.INTERRUPTED, _S.FAILED, _S.CLOSED}),
    _S.FINISHED: frozenset({_S.COMPLETE, _S.INTERRUPTED, _S.FAILED, _S.CLOSED}),
    _S.COMPLETE: frozenset(),
    _S.INTERRUPTED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CLOSED: frozenset(),
}
#: The states in which audio is still owed.
_LIVE: Final = frozenset({_S.OPEN, _S.FINISHED})


class Said(NamedTuple):
    """One piece of text an utterance was asked to say, as it was asked."""

    text: str
    #: Speak what is held now (:meth:`Utterance.flush`, and the last piece).
    force: bool
    #: The last piece (:meth:`Utterance.finish`): the end of the input.
    last: bool


class UtteranceLink(Protocol):
    """The transport's side of one utterance: what the utterance asks of whatever carries it.

    Each synthesizer makes one link per utterance (the utterance calls the
    synthesizer's factory with its :class:`UtteranceFeed`). Every method is
    synchronous: the utterance has already taken its checkpoint and checked
    its own state; the link queues what goes out, or raises why it cannot
    (the synthesizer was closed, the connection was lost).
    """

    def send_text(self, text: str, *, force: bool) -> None:
        """Queue ``text`` (``force``: and have the service speak what it holds)."""

    def finish(self, text: str) -> bool:
        """Queue the last ``text`` and end the input; ``False`` if no audio is owed (nothing was said)."""

    def abandon(self) -> None:
        """The utterance has ended on our side: stop its work and tell the service."""


@final
class UtteranceFeed:
    """How a link reports what happened to its utterance: the transport's only handle on it.

    Each method is one event; the utterance decides what it means for its
    state (audio after the end is dropped, a failure after the end changes
    nothing).
    """

    __slots__ = ("_utterance", "audio")

    def __init__(self, utterance: Utterance) -> None:
        self._utterance = utterance
        #: Audio arrived: ``audio(data)``. Synchronous: never blocks the
        #: transport. (The utterance's own method, bound: one call per chunk.)
        self.audio: Callable[[bytes], None] = utterance._deliver

    @property
    def utterance(self) -> Utterance:
        """The utterance this feed reports to (for its synthesizer's bookkeeping)."""
        return self._utterance

    @property
    def context_id(self) -> str:
        return self._utterance.context_id

    @property
    def owed(self) -> bool:
        """Whether audio is still owed: the utterance is open or finished."""
        return self._utterance.state in _LIVE

    @property
    def heard(self) -> bool:
        """Whether any of its audio has arrived."""
        return self._utterance._audio_bytes > 0

    def said(self) -> list[Said]:
        """Everything the utterance was asked to say, in order: what a new connection must hear again."""
        return list(self._utterance._said)

    def complete(self) -> None:
        """All audio has arrived (a :exc:`~trio_asyncai.NoAudioError` if none did for text with speech)."""
        self._utterance._complete()

    def fail(self, error: AsyncAIError) -> None:
        """The utterance failed, after the audio already delivered."""
        self._utterance._fail(error)

    def hold_clock(self, hold: bool) -> None:
        """Stop the audio timeout while no connection carries the utterance; start it afresh after."""
        self._utterance._hold_silence_clock(hold)

    async def wait_for_room(self) -> None:
        """Wait while the unread audio fills the buffer (backpressure); at once otherwise."""
        await self._utterance._wait_for_room()


@final
class Utterance(trio.abc.ReceiveChannel[AudioChunk]):
    """One piece of speech: the text you send, and a channel of the audio that comes back.

    An utterance is a :class:`trio.abc.ReceiveChannel` of
    :class:`~trio_asyncai.AudioChunk`, so code written for channels takes it.

    Made by a synthesizer's :meth:`~Synthesizer.speak` or
    :meth:`~Synthesizer.open_utterance`, never directly. Read its audio with
    ``async for chunk in utterance`` (or :meth:`receive`): chunks arrive in
    order, and iteration ends when the service says the audio is complete.

    If the utterance fails (a server error, a dropped connection, a timeout),
    every chunk already received is still delivered first; then iteration
    raises the error, an :exc:`~trio_asyncai.AsyncAIError`.

    :meth:`interrupt` stops it at once: after it returns, not one more chunk
    of this utterance is delivered, and the ``async with`` block that opened
    it is cancelled (execution continues after the block).
    """

    def __init__(
        self,
        link: Callable[[UtteranceFeed], UtteranceLink],
        context_id: str,
        output_format: OutputFormat,
        *,
        audio_timeout: float | None,
        max_buffered_bytes: int | None,
        backpressure: bool = False,
    ) -> None:
        #: The Async context id (WebSocket), or the id of the utterance's requests (HTTP).
        self.context_id = context_id
        #: The format of this utterance's audio.
        self.output_format = output_format
        self._audio_timeout = audio_timeout
        self._max_buffered_bytes = max_buffered_bytes
        # With backpressure the transport waits for room (wait_for_room)
        # instead of the utterance failing with SlowConsumerError.
        self._backpressure = backpressure
        self._state = UtteranceState.OPEN
        self._error: AsyncAIError | None = None
        #: Everything it was asked to say, in order.
        self._said: list[Said] = []
        # Audio: the channel, the bytes in it, and whether the caller stopped reading.
        self._send_channel, self._receive_channel = trio.open_memory_channel[AudioChunk](math.inf)
        self._buffered_bytes = 0
        self._room = trio.lowlevel.ParkingLot()
        #: interrupt() was called: unread audio is dropped, whatever the state.
        self._reading_stopped = False
        #: The cancel scope of the ``async with`` block, while it runs.
        self._cancel_scope: trio.CancelScope | None = None
        # Metrics, and the audio timeout's clock.
        self._characters = 0
        self._audio_bytes = 0
        self._t_first_text: float | None = None
        self._t_first_audio: float | None = None
        self._t_end: float | None = None
        self._t_last_activity: float | None = None
        self._awaiting_audio = False
        #: The cancel scope of a :meth:`receive` waiting now, if one is.
        self._waiting_scope: trio.CancelScope | None = None
        # Last: the link may look at the utterance through its feed.
        self._link = link(UtteranceFeed(self))

    def __repr__(self) -> str:
        return f"<Utterance {self.context_id} {self._state}>"

    # ------------------------------------------------------------ public state

    @property
    def state(self) -> UtteranceState:
        """Where the utterance stands: see :class:`~trio_asyncai.UtteranceState`."""
        return self._state

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` stopped this utterance (before it completed or failed)."""
        return self._state is UtteranceState.INTERRUPTED

    @property
    def error(self) -> AsyncAIError | None:
        """The error that ended this utterance, if one did."""
        return self._error

    @property
    def metrics(self) -> UtteranceMetrics:
        """Time to first audio, processing time, characters and bytes so far."""
        start = self._t_first_text
        return UtteranceMetrics(
            ttfb=None if start is None or self._t_first_audio is None else self._t_first_audio - start,
            processing_time=None if start is None or self._t_end is None else self._t_end - start,
            characters=self._characters,
            audio_bytes=self._audio_bytes,
        )

    # ------------------------------------------------------------- text in

    async def send(self, text: str) -> None:
        """Send a piece of text, as it comes (LLM tokens, words, sentences).

        The service joins the pieces and speaks complete sentences as they
        form. Text goes out up to its last word boundary, each piece ending
        in a single space as the service asks; a trailing partial word (or an
        unfinished markup tag) waits for the rest, and markup is passed on
        untouched. Call :meth:`flush` to have the service speak what it holds
        now, and :meth:`finish` after the last piece.
        """
        check_text(text, allow_empty=True)
        if await self._ready_for_text() and text:
            self._say(Said(text, force=False, last=False))

    async def flush(self) -> None:
        """Ask the service to speak all text sent so far, even a short fragment."""
        if await self._ready_for_text():
            self._say(Said("", force=True, last=False))

    async def finish(self, text: str = "") -> None:
        """Send the last text (optional) and end the utterance's input.

        Its audio keeps coming; iteration ends once all of it has arrived.
        """
        check_text(text, allow_empty=True)
        if await self._ready_for_text():
            self._say(Said(text, force=True, last=True))

    def interrupt(self) -> None:
        """Stop this utterance now. Synchronous; safe to call at any time, and twice.

        After it returns no further audio of this utterance is delivered (not
        even chunks already buffered), the service is told to drop the
        context, and the ``async with`` block that opened the utterance is
        cancelled: execution continues after that block. An utterance that
        had already completed or failed keeps that state.
        """
        self._reading_stopped = True
        if self._move_to(UtteranceState.INTERRUPTED):
            self._link.abandon()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _ready_for_text(self) -> bool:
        """Take the checkpoint every send makes; then whether the text may go out, or why not.

        After :meth:`interrupt`, the block that opened the utterance is
        cancelled: this checkpoint delivers that cancellation to code inside
        the block (the caller carries on after it), and only code outside the
        block gets :exc:`~trio_asyncai.SynthesizerClosedError`. An utterance
        interrupted or abandoned *during* the checkpoint sends nothing, and
        that is no error.
        """
        was_open = self._state is UtteranceState.OPEN
        await trio.lowlevel.checkpoint()
        if was_open and self._state in (UtteranceState.INTERRUPTED, UtteranceState.CLOSED):
            return False
        if self._state is not UtteranceState.OPEN:
            raise self._not_open_error()
        return True

    def _not_open_error(self) -> AsyncAIError:
        if self._error is not None:
            # The real cause (a lost connection, a server error), not a usage error.
            return copy_error(self._error)
        if self._state in (UtteranceState.INTERRUPTED, UtteranceState.CLOSED):
            return SynthesizerClosedError(f"utterance {self.context_id} is {self._state}: no more text")
        return ConfigurationError(f"utterance {self.context_id} is {self._state}: no more text")

    def _say(self, said: Said) -> None:
        """Record ``said`` and hand it to the link (synchronously: nothing can come between)."""
        if self._t_first_text is None and (said.text.strip() or said.force):
            self._t_first_text = trio.current_time()
        self._characters += len(said.text)
        self._said.append(said)
        try:
            if not said.last:
                self._link.send_text(said.text, force=said.force)
                return
            owed = self._link.finish(said.text)
        except AsyncAIError as exc:
            if exc.utterance is None:
                exc.utterance = self
            raise
        self._move_to(UtteranceState.FINISHED)
        if not owed:  # nothing ever reached the service: there is no audio to wait for
            self._move_to(UtteranceState.COMPLETE)

    # ----------------------------------------------------------- audio out

    async def receive(self) -> AudioChunk:
        """The next chunk of audio.

        Raises :exc:`trio.EndOfChannel` when the audio is complete or the
        utterance was interrupted; the utterance's error once all audio
        received before it has been delivered; and
        :exc:`trio.ClosedResourceError` once its block was left or
        :meth:`aclose` was called.
        """
        while True:
            if self._reading_stopped:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            # A chunk already waiting needs no deadline: take it the way a
            # memory channel does (cancellation first, then a shielded
            # checkpoint, so that a cancel cannot lose it), without the cost
            # of a cancel scope per chunk.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                chunk = self._receive_channel.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._raise_end()
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return self._taken(chunk)
            with trio.move_on_at(self._silence_deadline()) as scope:
                # Kept so that the finish can start the clock while we wait.
                self._waiting_scope = scope
                try:
                    chunk = await self._receive_channel.receive()
                except trio.EndOfChannel:
                    self._raise_end()
                finally:
                    self._waiting_scope = None
            if scope.cancelled_caught:
                if self._silence_deadline() <= trio.current_time():
                    silence = f"no audio from the service for {self._audio_timeout} s"
                    self._give_up(SynthesisTimeout(silence, utterance=self))
                continue
            return self._taken(chunk)

    def _raise_end(self) -> None:
        """The channel is drained and closed: the error that ended the utterance, or the end."""
        if self._error is not None and not self._reading_stopped:
            raise self._error from None
        raise trio.EndOfChannel

    def _taken(self, chunk: AudioChunk) -> AudioChunk:
        """``chunk``, taken from the channel by :meth:`receive`, for the caller."""
        if self._reading_stopped:
            # Handed over before interrupt() ran, but not yet seen: drop it.
            raise trio.EndOfChannel
        self._buffered_bytes -= len(chunk.audio)
        self._room.unpark_all()
        return chunk

    async def aclose(self) -> None:
        """Stop reading: abandon the utterance if unfinished, and drop unread audio.

        Leaving the ``async with`` block that opened the utterance does this too.
        """
        self._close()
        await trio.lowlevel.checkpoint()

    async def read_all(self) -> bytes:
        """Collect the whole utterance's audio into one bytes object."""
        parts = [chunk.audio async for chunk in self]
        return b"".join(parts)

    # ----------------------------------------------------- what the feed reports

    def _move_to(self, state: UtteranceState) -> bool:
        """Move to ``state`` if :data:`TRANSITIONS` allows it; ``False`` if the utterance had already ended.

        Moving to a final state ends the audio: the channel closes (what is
        in it is still delivered, unless the caller stopped reading) and the
        audio timeout stops.
        """
        if state not in TRANSITIONS[self._state]:
            if not TRANSITIONS[self._state]:
                return False  # late news for an utterance that has ended: nothing changes
            raise ProtocolStateError(f"utterance {self.context_id}: {self._state} -> {state} is not a move")
        self._state = state
        if state is UtteranceState.FINISHED:
            # From now on the rest of the audio, then its end, is owed. Only
            # now does the audio timeout run: while text may still come, the
            # service owes nothing it would tell us about (it answers a flush
            # with audio, never with an end), so silence then is no sign of trouble.
            self._awaiting_audio = True
            self._t_last_activity = trio.current_time()
            self._reset_waiting_deadline()
            return True
        self._awaiting_audio = False
        self._room.unpark_all()
        if self._t_end is None:
            self._t_end = trio.current_time()
        self._send_channel.close()
        return True

    def _complete(self) -> None:
        """All audio has arrived: complete, unless there was none for text with something to say."""
        if self._state is UtteranceState.FINISHED and self._audio_bytes == 0:
            said = "".join(piece.text for piece in self._said)
            if has_speech(said):
                silent = NoAudioError("the service sent no audio for text with speech in it", utterance=self)
                self._fail(silent)
                return
        self._move_to(UtteranceState.COMPLETE)

    def _fail(self, error: AsyncAIError) -> None:
        if self._state in _LIVE:
            if error.utterance is None:
                error.utterance = self
            self._error = error
            self._move_to(UtteranceState.FAILED)

    def _give_up(self, error: AsyncAIError) -> None:
        """Fail with ``error`` (found on our side) and have the link stop its work."""
        if self._state in _LIVE:
            self._fail(error)
            self._link.abandon()

    def _deliver(self, audio: bytes) -> None:
        """Queue a chunk for the caller (synchronous; never blocks the transport)."""
        if self._state not in _LIVE or not audio:
            return
        now = trio.current_time()
        if self._t_first_audio is None:
            self._t_first_audio = now
        self._t_last_activity = now
        fmt = self.output_format
        limit = self._max_buffered_bytes
        if not self._backpressure and limit is not None and self._buffered_bytes + len(audio) > limit:
            seconds = limit / (buffer_limit(fmt, 1.0) or 1)
            self._give_up(
                SlowConsumerError(
                    f"more than {seconds:.3g} s of audio were waiting to be read (max_buffered_audio)",
                    utterance=self,
                )
            )
            return
        self._buffered_bytes += len(audio)
        self._audio_bytes += len(audio)
        self._send_channel.send_nowait(
            AudioChunk(
                audio=audio,
                sample_rate=fmt.sample_rate,
                num_channels=1,
                encoding=fmt.encoding,
                container=fmt.container,
                context_id=self.context_id,
            )
        )

    def _hold_silence_clock(self, hold: bool) -> None:
        """Nothing is owed while no connection carries the utterance: a move's own wait is no silence."""
        if self._state is not UtteranceState.FINISHED:
            return
        self._awaiting_audio = not hold
        self._t_last_activity = trio.current_time()
        self._reset_waiting_deadline()

    def _silence_deadline(self) -> float:
        if self._audio_timeout is None or not self._awaiting_audio or self._t_last_activity is None:
            return math.inf
        return self._t_last_activity + self._audio_timeout

    def _reset_waiting_deadline(self) -> None:
        if self._waiting_scope is not None:  # a reader already waits: its clock follows ours
            self._waiting_scope.deadline = self._silence_deadline()

    def _buffer_full(self) -> bool:
        limit = self._max_buffered_bytes
        return limit is not None and self._buffered_bytes >= limit

    async def _wait_for_room(self) -> None:
        # Returns as soon as the reader takes a chunk, or once the utterance
        # has ended (its transport is then being stopped).
        while self._buffer_full() and self._state in _LIVE:
            await self._room.park()

    # ------------------------------------------------------------ its block

    def _close(self) -> None:
        """Its ``async with`` block is left: abandon it if unfinished, drop what is unread."""
        if self._move_to(UtteranceState.CLOSED):
            self._link.abandon()
        self._receive_channel.close()


@contextmanager
def utterance_block(utterance: Utterance) -> Iterator[None]:
    """The body of the ``async with`` block that opened ``utterance``: what ``interrupt()`` cancels.

    Leaving it closes the utterance: abandoned if unfinished, unread audio dropped.
    """
    try:
        with trio.CancelScope() as scope:
            utterance._cancel_scope = scope
            yield
    finally:
        utterance._cancel_scope = None
        utterance._close()
