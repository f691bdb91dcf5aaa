"""One utterance: text in, a channel of audio out. Shared by both synthesizers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal, Protocol, final

import trio

from ._errors import (
    AsyncAIError,
    ConfigurationError,
    SlowConsumerError,
    SynthesisTimeout,
    SynthesizerClosedError,
    copy_error,
)
from ._types import AudioChunk, OutputFormat, UtteranceMetrics, check_text

__all__ = ["DEFAULT_MAX_BUFFERED_AUDIO", "Utterance", "UtteranceLink", "UtteranceState", "buffer_limit"]

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


class UtteranceLink(Protocol):
    """The transport's side of one utterance: what the utterance asks of whatever carries it.

    Each synthesizer makes one link per utterance and hands it to the
    :class:`Utterance` it creates; the link keeps whatever the transport
    needs for that utterance (its connection, its queued sentences). Calls go
    one way, utterance -> link; the transport answers through the
    utterance's ``_deliver`` / ``_complete`` / ``_fail`` methods.
    """

    async def send_text(self, text: str, *, force: bool) -> None:
        """Send ``text`` (``force``: and have the service speak what it holds)."""

    async def finish(self, text: str) -> None:
        """Send the last ``text`` and end the utterance's input."""

    def abandon(self) -> None:
        """The utterance has ended on our side: stop its work and tell the service. Synchronous."""


#: Where an utterance stands; see :attr:`Utterance.state`.
UtteranceState = Literal["open", "finished", "complete", "interrupted", "failed", "closed"]


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
        link: UtteranceLink,
        context_id: str,
        output_format: OutputFormat,
        *,
        audio_timeout: float | None,
        max_buffered_bytes: int | None,
        backpressure: bool = False,
    ) -> None:
        self._link = link
        #: The Async context id (WebSocket), or a request id (HTTP).
        self.context_id = context_id
        #: The format of this utterance's audio.
        self.output_format = output_format
        self._audio_timeout = audio_timeout
        self._max_buffered_bytes = max_buffered_bytes
        # With backpressure the transport waits for room (_wait_for_room)
        # instead of the utterance failing with SlowConsumerError.
        self._backpressure = backpressure
        self._room = trio.lowlevel.ParkingLot()
        self._send_channel, self._receive_channel = trio.open_memory_channel[AudioChunk](math.inf)
        self._buffered_bytes = 0
        self._state: UtteranceState = "open"
        self._error: AsyncAIError | None = None
        self._interrupted = False
        self._cancel_scope: trio.CancelScope | None = None
        # metrics
        self._characters = 0
        self._audio_bytes = 0
        self._t_first_text: float | None = None
        self._t_first_audio: float | None = None
        self._t_end: float | None = None
        self._t_last_activity: float | None = None
        self._awaiting_audio = False
        #: The cancel scope of a :meth:`receive` waiting now, if one is.
        self._waiting_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<Utterance {self.context_id} {self._state}>"

    # ------------------------------------------------------------ public state

    @property
    def state(self) -> UtteranceState:
        """``"open"``, ``"finished"`` (all text sent), ``"complete"`` (all audio
        arrived), ``"interrupted"``, ``"failed"`` or ``"closed"`` (abandoned)."""
        return self._state

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` stopped this utterance."""
        return self._interrupted

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

    async def _ready_for_text(self) -> None:
        """Return if text may be sent now; else raise why not.

        After :meth:`interrupt`, the block that opened the utterance is
        cancelled: a checkpoint delivers that cancellation to code inside the
        block (the caller carries on after it), and only code outside the
        block gets :exc:`~trio_asyncai.SynthesizerClosedError`.
        """
        if self._interrupted:
            await trio.lowlevel.checkpoint()
        self._check_open()

    def _check_open(self) -> None:
        if self._state == "open":
            return
        if self._error is not None:
            # The real cause (a lost connection, a server error), not a usage error.
            raise copy_error(self._error)
        if self._state in ("interrupted", "closed"):
            raise SynthesizerClosedError(f"utterance {self.context_id} is {self._state}: no more text")
        raise ConfigurationError(f"utterance {self.context_id} is {self._state}: no more text")

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
        await self._ready_for_text()
        if not text:
            await trio.lowlevel.checkpoint()
            return
        await self._link.send_text(text, force=False)

    async def flush(self) -> None:
        """Ask the service to speak all text sent so far, even a short fragment."""
        await self._ready_for_text()
        await self._link.send_text("", force=True)

    async def finish(self, text: str = "") -> None:
        """Send the last text (optional) and end the utterance's input.

        Its audio keeps coming; iteration ends once all of it has arrived.
        """
        check_text(text, allow_empty=True)
        await self._ready_for_text()
        await self._link.finish(text)

    def interrupt(self) -> None:
        """Stop this utterance now. Synchronous; safe to call at any time, and twice.

        After it returns no further audio of this utterance is delivered (not
        even chunks already buffered), the service is told to drop the
        context, and the ``async with`` block that opened the utterance is
        cancelled: execution continues after that block.
        """
        if not self._interrupted:
            self._interrupted = True
            self._state = "interrupted"
            self._end()
            self._link.abandon()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

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
            if self._interrupted:
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
                if self._error is not None and not self._interrupted:
                    raise self._error from None
                raise
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return self._taken(chunk)
            deadline = self._silence_deadline()
            with trio.move_on_at(deadline) as scope:
                # Kept so that the finish can start the clock while we wait.
                self._waiting_scope = scope
                try:
                    chunk = await self._receive_channel.receive()
                except trio.EndOfChannel:
                    if self._error is not None and not self._interrupted:
                        raise self._error from None
                    raise
                finally:
                    self._waiting_scope = None
            if scope.cancelled_caught:
                if self._silence_deadline() <= trio.current_time():
                    self._give_up(
                        SynthesisTimeout(
                            f"no audio from the service for {self._audio_timeout} s",
                            utterance=self,
                        )
                    )
                continue
            return self._taken(chunk)

    def _taken(self, chunk: AudioChunk) -> AudioChunk:
        """``chunk``, taken from the channel by :meth:`receive`, for the caller."""
        if self._interrupted:
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

    def _silence_deadline(self) -> float:
        if self._audio_timeout is None or not self._awaiting_audio or self._t_last_activity is None:
            return math.inf
        return self._t_last_activity + self._audio_timeout

    # ------------------------------------------------ called by the transport

    def _may_send(self) -> bool:
        """Whether text may still go out, checked by the link after its checkpoint.

        ``False`` once interrupted or abandoned meanwhile (nothing more goes
        out, and that is no error); the utterance's own error if it failed.
        """
        if self._interrupted or self._state == "closed":
            return False
        self._check_open()
        return True

    def _note_text(self, text: str, *, force: bool) -> None:
        if self._t_first_text is None and (text.strip() or force):
            self._t_first_text = trio.current_time()
        self._characters += len(text)

    def _note_finished(self) -> None:
        """All text is sent: from now on the rest of the audio, then its end, is owed.

        Only now does the audio timeout run: while text may still come, the
        service owes nothing it would tell us about (it answers a flush with
        audio, never with an end), so silence then is no sign of trouble.
        """
        if self._state == "open":
            self._state = "finished"
            self._awaiting_audio = True
            self._t_last_activity = trio.current_time()
            if self._waiting_scope is not None:  # a reader already waits: its clock starts now
                self._waiting_scope.deadline = self._silence_deadline()

    def _hold_silence_clock(self, hold: bool) -> None:
        """Stop the audio timeout while the transport moves the utterance; start it afresh after.

        Nothing is owed while no connection carries the utterance, so the
        move's own wait (a backoff, a handshake) is no silence of the service.
        """
        if self._state != "finished":
            return
        self._awaiting_audio = not hold
        self._t_last_activity = trio.current_time()
        if self._waiting_scope is not None:
            self._waiting_scope.deadline = self._silence_deadline()

    def _deliver(self, audio: bytes) -> None:
        """Queue a chunk for the caller (synchronous; never blocks the reader)."""
        if self._state in ("complete", "interrupted", "failed", "closed") or not audio:
            return
        now = trio.current_time()
        if self._t_first_audio is None:
            self._t_first_audio = now
        self._t_last_activity = now
        fmt = self.output_format
        chunk = AudioChunk(
            audio=audio,
            sample_rate=fmt.sample_rate,
            num_channels=1,
            encoding=fmt.encoding,
            container=fmt.container,
            context_id=self.context_id,
        )
        if (
            not self._backpressure
            and self._max_buffered_bytes is not None
            and self._buffered_bytes + len(audio) > self._max_buffered_bytes
        ):
            self._give_up(
                SlowConsumerError(
                    f"more than {self._max_buffered_bytes / (buffer_limit(fmt, 1.0) or 1):.3g} s of audio "
                    "were waiting to be read (max_buffered_audio)",
                    utterance=self,
                )
            )
            return
        self._buffered_bytes += len(audio)
        self._audio_bytes += len(audio)
        self._send_channel.send_nowait(chunk)

    def _buffer_full(self) -> bool:
        limit = self._max_buffered_bytes
        return limit is not None and self._buffered_bytes >= limit

    async def _wait_for_room(self) -> None:
        """Wait while the unread audio fills the buffer (backpressure; returns at once otherwise).

        Returns as soon as the reader takes a chunk, or once the utterance
        has ended (its transport is then being stopped).
        """
        while self._buffer_full() and self._state in ("open", "finished"):
            await self._room.park()

    def _complete(self) -> None:
        """All audio has arrived."""
        if self._state in ("open", "finished"):
            self._state = "complete"
            self._end()

    def _fail(self, error: AsyncAIError) -> None:
        """End with an error, after the audio already queued."""
        if self._state in ("open", "finished"):
            if error.utterance is None:
                error.utterance = self
            self._error = error
            self._state = "failed"
            self._end()

    def _give_up(self, error: AsyncAIError) -> None:
        """Fail with ``error`` and have the transport stop its work for this utterance."""
        self._fail(error)
        self._link.abandon()

    @contextmanager
    def _block(self) -> Iterator[None]:
        """The body of the ``async with`` block that opened the utterance: what :meth:`interrupt` cancels.

        Leaving it closes the utterance (see :meth:`_close`).
        """
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                yield
        finally:
            self._cancel_scope = None
            self._close()

    def _close(self) -> None:
        """Its ``async with`` block is left: abandon it if unfinished, drop what is unread."""
        if self._state in ("open", "finished"):
            self._state = "closed"
            self._end()
            self._link.abandon()
        self._receive_channel.close()

    def _end(self) -> None:
        self._room.unpark_all()
        self._awaiting_audio = False
        if self._t_end is None:
            self._t_end = trio.current_time()
        self._send_channel.close()
