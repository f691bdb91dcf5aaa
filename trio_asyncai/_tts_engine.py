"""The engine of the TTS stages: frames in, utterances through a synthesizer, frames out.

One run of a stage, in one nursery (nothing outlives it)::

    receive --> TTSEngine.run: the input loop (this task)
                  |  text -> the Job being gathered (cut into sentences here,
                  |          unless the synthesizer cuts them itself)
                  |  jobs and every other frame, in input order
                  v
                Generation: its output loop gives each job its turn, and sends
                the other frames between them --> send
                  ^
                  |  each Job's own task: opens its utterance, feeds it the
                  |  text as it comes, and in its turn sends Started, audio,
                  |  Stopped, [Error], [Metrics] --> send

Each piece of state has one owner:

- :class:`SynthesizerHolder`: the synthesizer, opened on first need or by
  the warm-up, one attempt at a time (a job that asks while an attempt is
  under way takes that attempt's outcome), the fatal error that makes new
  attempts useless, and the close (cancelling an attempt still under way).
- :class:`Generation`: the jobs and frames between two interruptions, its
  output loop, its item channel; :meth:`Generation.end` ends it, whether by
  finishing, by an interruption, or (called by the engine, once) because the
  next stage is gone.
- :class:`Job`: one utterance: its text, its task, its utterance's block
  (the task that reads the audio holds it), its error.
- :class:`TTSEngine`: the input side: what is being gathered, settings
  changes, and which generation is current.

Over 500 lines, on purpose: its four classes are one state machine per run of
a stage, and each hands work to the next; they are read together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, final

import attrs
import trio

from ._aggregator import SentenceAggregator
from ._errors import AsyncAIError, ConfigurationError, SynthesizerClosedError, copy_error, is_fatal
from ._groups import single_exception
from ._synthesizer import BaseSynthesizer
from ._types import Settings, check_text, normalize_language
from ._utterance import Utterance
from .frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    MetricsFrame,
    SystemFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)

__all__ = ["Aggregate", "TTSEngine"]

Aggregate = Literal["sentence", "token"]
#: How a generation ends: ``"finish"`` delivers everything; ``"interrupt"``
#: delivers what its utterances still owe (Stopped, errors, metrics) and the
#: frames behind them, but no more audio; ``"abandon"`` (the next stage is
#: gone) delivers nothing and stops at once.
Ending = Literal["finish", "interrupt", "abandon"]

OpenSynthesizer = Callable[[], AbstractAsyncContextManager[BaseSynthesizer[Any]]]


# ------------------------------------------------------------- synthesizer


@final
class _Attempt:
    """One attempt at opening the synthesizer, and its outcome."""

    def __init__(self) -> None:
        self.cancel_scope = trio.CancelScope()
        self.synth: BaseSynthesizer[Any] | None = None
        self.error: AsyncAIError | None = None
        #: Set when the attempt has an outcome: a synthesizer, an error, or cancelled.
        self.decided = trio.Event()
        #: Whether a job has asked for this attempt's outcome.
        self.claimed = False


@final
class SynthesizerHolder:
    """The stage's synthesizer: opened once, on first need, and held until :meth:`close`.

    One attempt at a time: a job that asks while an attempt (the warm-up's,
    say) is under way waits for it and takes its outcome, an error included,
    instead of connecting again; so does the first job to ask after an
    attempt nobody waited for failed. After a failed attempt has been
    reported, the next job that asks tries anew, except after a
    :func:`fatal <is_fatal>` error, which every later job gets at once.
    """

    def __init__(self, nursery: trio.Nursery, open_synthesizer: OpenSynthesizer) -> None:
        self._nursery = nursery
        self._open_synthesizer = open_synthesizer
        self._attempt: _Attempt | None = None
        self._fatal_error: AsyncAIError | None = None
        self._closing = trio.Event()

    def warm_up(self) -> None:
        """Start opening the synthesizer in the background, before any job needs it."""
        if self._attempt is None:
            self._start_attempt()

    async def get(self) -> BaseSynthesizer[Any]:
        """The synthesizer, opened if need be; raises the error that kept it from opening."""
        await trio.lowlevel.checkpoint()
        if self._closing.is_set():
            raise SynthesizerClosedError("the stage has ended")
        if self._fatal_error is not None:
            raise copy_error(self._fatal_error)
        attempt = self._attempt
        if attempt is None or (attempt.decided.is_set() and attempt.synth is None and attempt.claimed):
            attempt = self._start_attempt()
        # A failed attempt is reported to the first job that asks, even
        # after the fact (the warm-up's failure, say): that job would have
        # made the attempt itself. The job after it tries anew.
        attempt.claimed = True
        await attempt.decided.wait()
        if attempt.synth is not None:
            return attempt.synth
        if attempt.error is not None:
            raise copy_error(attempt.error)
        raise SynthesizerClosedError("the stage has ended")

    def close(self) -> None:
        """Close the synthesizer politely, or cancel the attempt at opening it."""
        self._closing.set()
        if self._attempt is not None and self._attempt.synth is None:
            self._attempt.cancel_scope.cancel()

    def _start_attempt(self) -> _Attempt:
        attempt = _Attempt()
        self._attempt = attempt
        self._nursery.start_soon(self._open_and_hold, attempt)
        return attempt

    async def _open_and_hold(self, attempt: _Attempt) -> None:
        try:
            with attempt.cancel_scope:
                async with self._open_synthesizer() as synth:
                    attempt.synth = synth
                    attempt.decided.set()
                    await self._closing.wait()
        except ConfigurationError:
            raise  # the stage's own options are wrong: that is for the caller
        except AsyncAIError as exc:
            if attempt.synth is not None:
                raise
            attempt.error = exc
            if is_fatal(exc):
                self._fatal_error = exc
        finally:
            attempt.decided.set()


# --------------------------------------------------------------------- jobs


class Output(Protocol):
    """Where a job delivers its frames, in its turn (its generation)."""

    #: Whether MetricsFrames are wanted.
    enable_metrics: bool

    @property
    def interrupted(self) -> bool:
        """Whether an interruption ended the generation (read afresh after every await)."""

    async def send(self, frame: Frame) -> bool:
        """Send ``frame`` to the next stage; ``False`` (and nothing sent) once it is gone."""


@final
class Job:
    """One utterance of the stage: the text it is given, the utterance it opens, and its frames.

    The job's own task does it all, in order: it opens the utterance (after
    the job before it opened its own, so that settings changes apply in
    input order), feeds it the text as it comes, and, when the output gives
    it its turn, delivers Started, the audio, Stopped, [Error], [Metrics].
    The task that reads the utterance's audio is the one that holds its
    block, so the block ends when the audio has been delivered.
    """

    def __init__(self, changes: dict[str, Any], previous: Job | None) -> None:
        #: The settings changes in force when the job began (applied as it opens).
        self._changes = changes
        #: The job before this one: utterances open in input order.
        self._previous = previous
        self._text_send, self._text_receive = trio.open_memory_channel[tuple[str, bool]](math.inf)
        self._final_text = ""
        #: Covers the job until its utterance's block (which interrupt() cancels itself) is entered.
        self._cancel_scope = trio.CancelScope()
        self._utterance: Utterance | None = None
        self._error: AsyncAIError | None = None
        #: Set when the job opened its utterance, or gave up.
        self._opened = trio.Event()
        #: Set by the output when it is this job's turn to deliver.
        self._turn = trio.Event()
        #: Set when the job has delivered everything it owes.
        self._delivered = trio.Event()
        #: Started was owed to the output (audio arrived), and whether it went out.
        self._started = False
        self._started_sent = False

    # The input side.

    def add_text(self, text: str) -> None:
        """Text for the service, without asking it to speak it at once."""
        self._text_send.send_nowait((text, False))

    def add_sentence(self, sentence: str) -> None:
        """A complete sentence, to be spoken as soon as it arrives."""
        if sentence.strip():
            # Chunks of text end with a single space (the API's convention).
            self._text_send.send_nowait((sentence.strip() + " ", True))

    def finish(self, final_text: str = "") -> None:
        """No more text: ``final_text`` is the last, and the rest is spoken now."""
        self._final_text = final_text
        self._text_send.close()

    def interrupt(self) -> None:
        """Stop the job now: its utterance is interrupted (its audio and block end), its opening cancelled."""
        if self._utterance is not None:
            self._utterance.interrupt()
        self._cancel_scope.cancel()

    # The output side.

    async def deliver(self) -> None:
        """Give the job its turn, and return once it has delivered everything it owes."""
        self._turn.set()
        await self._delivered.wait()

    # The job's own task.

    async def run(self, synthesizer: SynthesizerHolder, permits: trio.Semaphore, output: Output) -> None:
        """Open the utterance, feed it, deliver its frames in turn; then say how it ended."""
        try:
            try:
                with self._cancel_scope:
                    # A permit is held until the audio has been delivered.
                    async with permits:
                        await self._open_and_deliver(synthesizer, output)
            except AsyncAIError as exc:
                self._error = self._error or exc
            finally:
                self._previous = None
                self._opened.set()
            await self._turn.wait()
            await self._deliver_the_end(output)
        finally:
            self._delivered.set()

    async def _open_and_deliver(self, synthesizer: SynthesizerHolder, output: Output) -> None:
        first = await self._next_text()
        if self._previous is not None:
            await self._previous._opened.wait()
            self._previous = None
        if first is None and not self._final_text.strip():
            return
        synth = await synthesizer.get()
        if self._changes:
            # Right before open_utterance reads the settings; jobs open in
            # turn, so no other job changes them between.
            synth.update_settings(**self._changes)
        async with synth.open_utterance() as utterance, trio.open_nursery() as nursery:
            self._utterance = utterance
            self._opened.set()
            nursery.start_soon(self._feed, utterance, first)
            await self._turn.wait()
            await self._deliver_audio(utterance, output)
            # The feed may still wait for text that will never be spoken (the
            # utterance failed, or the next stage is gone); leaving the block
            # drops what the output did not take.
            nursery.cancel_scope.cancel()

    async def _deliver_audio(self, utterance: Utterance, output: Output) -> None:
        """Started, then every chunk, until the audio ends or the utterance is interrupted.

        An interruption cancels this (the utterance's block): an audio frame
        being sent is not delivered, and none follows.
        """
        uid = utterance.context_id
        try:
            async for chunk in utterance:
                if not self._started:
                    self._started = True
                    self._started_sent = await output.send(TTSStartedFrame(uid))
                    if not self._started_sent:
                        return
                frame = TTSAudioRawFrame(chunk.audio, chunk.sample_rate, chunk.num_channels, utterance_id=uid)
                if not await output.send(frame):
                    return
        except trio.ClosedResourceError:
            pass  # the block ended meanwhile
        except AsyncAIError as exc:
            self._error = self._error or exc

    async def _deliver_the_end(self, output: Output) -> None:
        """What the utterance owes after its audio, even after an interruption.

        Stopped, [Error], [Metrics].
        """
        utterance, error = self._utterance, self._error
        if utterance is None:
            if error is not None:
                await output.send(ErrorFrame(error, fatal=is_fatal(error)))
            return
        uid = utterance.context_id
        if self._started:
            # Started is owed once audio came, even if an interruption kept it from going out.
            if not self._started_sent and not await output.send(TTSStartedFrame(uid)):
                return
            if not await output.send(TTSStoppedFrame(uid)):
                return
        if error is not None and not (output.interrupted and utterance.interrupted):
            frame = ErrorFrame(error, fatal=is_fatal(error), utterance_id=uid)
            if not await output.send(frame):
                return
        metrics = utterance.metrics
        if output.enable_metrics and metrics.characters:
            await output.send(
                MetricsFrame(
                    utterance_id=uid,
                    ttfb=metrics.ttfb,
                    processing_time=metrics.processing_time,
                    characters=metrics.characters,
                )
            )

    async def _next_text(self) -> tuple[str, bool] | None:
        try:
            return await self._text_receive.receive()
        except trio.EndOfChannel:
            return None

    async def _feed(self, utterance: Utterance, first: tuple[str, bool] | None) -> None:
        try:
            item = first
            while item is not None:
                text, flush = item
                await utterance.send(text)
                if flush:
                    await utterance.flush()
                item = await self._next_text()
            await utterance.finish(self._final_text)
        except AsyncAIError as exc:
            # After a barge-in the feed meets an interrupted utterance: that
            # is no error of the service's.
            if utterance.error is None and not utterance.interrupted:
                self._error = exc
                utterance.interrupt()  # ends its audio (and its block)


# --------------------------------------------------------------- generation


@final
class Generation:
    """The jobs and frames between two interruptions, and the output loop that gives each its turn.

    Jobs synthesize concurrently, as their tasks run in this generation's
    nursery, but deliver one after another: the output loop gives each job
    its turn, and sends the other frames between them, in input order.
    """

    def __init__(
        self,
        send: trio.MemorySendChannel[Frame],
        *,
        synthesizer: SynthesizerHolder,
        permits: trio.Semaphore,
        enable_metrics: bool,
        on_next_stage_gone: Callable[[], None],
    ) -> None:
        self._send = send
        self._synthesizer = synthesizer
        self._permits = permits
        self.enable_metrics = enable_metrics
        self._on_next_stage_gone = on_next_stage_gone
        self._items_send, self._items_receive = trio.open_memory_channel[Job | Frame](math.inf)
        self._nursery: trio.Nursery | None = None
        self._cancel_scope = trio.CancelScope()
        #: Jobs whose task is still running (an interruption stops them).
        self._jobs: set[Job] = set()
        self._newest_job: Job | None = None
        self._ending: Ending | None = None
        self._done = trio.Event()

    def start_job(self, changes: dict[str, Any]) -> Job:
        """A new utterance, after every other: its task starts, its place in the output is taken."""
        job = Job(changes, self._newest_job)
        self._newest_job = job
        if self._ending is None:
            assert self._nursery is not None
            self._jobs.add(job)
            self._items_send.send_nowait(job)
            self._nursery.start_soon(self._run_job, job)
        return job

    def queue(self, frame: Frame) -> None:
        """A frame for the output, after everything queued before it."""
        if self._ending is None:
            self._items_send.send_nowait(frame)

    def end(self, how: Ending) -> None:
        """Take nothing more, and end as ``how`` says (see :data:`Ending`). Synchronous.

        The first ending holds, but for ``"abandon"``, which overrides any:
        once the next stage is gone, nothing a generation still owes can be
        delivered, and a job waiting for its turn would wait for ever.
        """
        if self._ending == "abandon" or (self._ending is not None and how != "abandon"):
            return
        if self._ending is None:
            self._items_send.close()
        self._ending = how
        if how == "finish":
            return
        for job in self._jobs:
            job.interrupt()
        if how == "abandon":
            self._cancel_scope.cancel()

    @property
    def interrupted(self) -> bool:
        """Whether an interruption ended this generation (read afresh after every await)."""
        return self._ending == "interrupt"

    async def send(self, frame: Frame) -> bool:
        """Send ``frame`` on; ``False`` once the next stage is gone (which is reported, once)."""
        try:
            await self._send.send(frame)
        except trio.BrokenResourceError:
            # The next stage is gone (a sink that has heard enough): the engine ends us.
            self._on_next_stage_gone()
            return False
        return True

    async def wait_done(self) -> None:
        """Return once the output loop has delivered what this generation owes."""
        await self._done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The output loop: give each job its turn and send each frame, in order, until :meth:`end`."""
        try:
            with self._cancel_scope, single_exception():
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    async for item in self._items_receive:
                        if isinstance(item, Job):
                            await item.deliver()
                        elif not await self.send(item):
                            break
        finally:
            self._done.set()

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run(self._synthesizer, self._permits, self)
        finally:
            self._jobs.discard(job)  # a long conversation keeps no finished ones


# ------------------------------------------------------------------- engine


@final
class TTSEngine:
    """One run of a TTS stage: reads the frames, gathers utterances, hands them to a generation."""

    def __init__(
        self,
        open_synthesizer: OpenSynthesizer,
        *,
        language: object,
        aggregate: Aggregate,
        synthesizer_cuts_sentences: bool,
        max_ahead: int,
        enable_metrics: bool,
        send: trio.MemorySendChannel[Frame],
    ) -> None:
        self._open_synthesizer = open_synthesizer
        self._language = language
        # Sentences are cut once per utterance: here, unless the synthesizer
        # cuts them itself (the HTTP one does, for its requests).
        self._cut_sentences = aggregate == "sentence" and not synthesizer_cuts_sentences
        self._enable_metrics = enable_metrics
        self._send = send
        #: One per utterance in flight: the one being delivered and those ahead.
        self._permits = trio.Semaphore(1 + max_ahead)
        #: Settings changes so far (voice_id, model, language, ...), for new jobs.
        self._changes: dict[str, Any] = {}
        #: The job text is being gathered into, and its aggregator.
        self._gathering: Job | None = None
        self._aggregator: SentenceAggregator | None = None
        #: Cancelled when the next stage is gone: no more input is read.
        self._input_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._synthesizer: SynthesizerHolder | None = None
        self._generation: Generation | None = None

    async def run(self, receive: trio.MemoryReceiveChannel[Frame]) -> None:
        """Read ``receive`` until an EndFrame, its end, or the next stage's return."""
        with single_exception():
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._synthesizer = SynthesizerHolder(nursery, self._open_synthesizer)
                # Connect early, but never in the way of the input loop: an
                # interruption or a system frame must not wait for a connect.
                self._synthesizer.warm_up()
                await self._start_generation()
                with self._input_scope:
                    await self._read(receive)
                self._synthesizer.close()

    @property
    def _gen(self) -> Generation:
        assert self._generation is not None
        return self._generation

    async def _start_generation(self) -> None:
        assert self._nursery is not None
        assert self._synthesizer is not None
        generation = Generation(
            self._send,
            synthesizer=self._synthesizer,
            permits=self._permits,
            enable_metrics=self._enable_metrics,
            on_next_stage_gone=self._next_stage_gone,
        )
        await self._nursery.start(generation.run)
        self._generation = generation

    def _next_stage_gone(self) -> None:
        """Nothing more can be delivered: end the generation (once) and read no more input."""
        self._gen.end("abandon")
        self._input_scope.cancel()

    async def _read(self, receive: trio.MemoryReceiveChannel[Frame]) -> None:
        while True:
            try:
                frame = await receive.receive()
            except trio.EndOfChannel:
                await self._finish(None)
                return
            if isinstance(frame, TextFrame):
                await self._on_text(frame.text)
            elif isinstance(frame, TTSSpeakFrame):
                self._end_gathering()
                await self._on_speak(frame.text)
            elif isinstance(frame, LLMFullResponseStartFrame | LLMFullResponseEndFrame):
                self._end_gathering()
                self._gen.queue(frame)
            elif isinstance(frame, TTSUpdateSettingsFrame):
                self._on_settings(frame)
            elif isinstance(frame, InterruptionFrame):
                await self._interrupt(frame)
            elif isinstance(frame, EndFrame):
                await self._finish(frame)
                return
            elif isinstance(frame, SystemFrame):
                await self._forward_now(frame)
            else:
                self._gen.queue(frame)

    async def _forward_now(self, frame: Frame) -> None:
        try:
            await self._send.send(frame)
        except trio.BrokenResourceError:
            self._next_stage_gone()

    def _text_or_error(self, text: object) -> str | None:
        """The frame's text, or ``None`` after queueing an ErrorFrame for a non-str."""
        try:
            return check_text(text, allow_empty=True)
        except ConfigurationError as exc:
            self._gen.queue(ErrorFrame(exc))
            return None

    def _current_language(self) -> str:
        """The language the aggregator cuts sentences for: the latest change, else the stage's option."""
        return self._changes.get("language") or normalize_language(self._language) or "en"

    async def _on_text(self, frame_text: object) -> None:
        text = self._text_or_error(frame_text)
        if not text:
            return
        job = self._gathering
        if job is None:
            if not text.strip():
                return  # white space before an utterance says nothing
            await trio.lowlevel.checkpoint()
            job = self._gathering = self._gen.start_job(dict(self._changes))
            if self._cut_sentences:
                self._aggregator = SentenceAggregator(self._current_language())
        if self._aggregator is not None:
            for sentence in self._aggregator.push(text):
                job.add_sentence(sentence)
        else:
            job.add_text(text)

    async def _on_speak(self, frame_text: object) -> None:
        text = self._text_or_error(frame_text)
        if text is None or not text.strip():
            return
        await trio.lowlevel.checkpoint()
        self._gen.start_job(dict(self._changes)).finish(text)

    def _end_gathering(self) -> None:
        """The job being gathered gets no more text: the rest is spoken now."""
        job, self._gathering = self._gathering, None
        aggregator, self._aggregator = self._aggregator, None
        if job is None:
            return
        if aggregator is not None:
            for sentence in aggregator.flush():
                job.add_sentence(sentence)
        job.finish()

    def _on_settings(self, frame: TTSUpdateSettingsFrame) -> None:
        # The frame's settings only: a subclass may carry fields of its own.
        settings = attrs.fields_dict(Settings)
        given = {k: v for k, v in attrs.asdict(frame, recurse=False).items() if k in settings}
        try:
            changes = Settings.check_changes(given)
        except ConfigurationError as exc:
            self._gen.queue(ErrorFrame(exc))
            return
        self._changes.update(changes)

    async def _interrupt(self, frame: InterruptionFrame) -> None:
        """Stop the whole generation, let it deliver what it owes, forward the frame, start anew."""
        self._gathering = None  # its job is interrupted with the others
        self._aggregator = None
        generation = self._gen
        generation.end("interrupt")
        await generation.wait_done()
        await self._forward_now(frame)
        await self._start_generation()

    async def _finish(self, frame: EndFrame | None) -> None:
        self._end_gathering()
        generation = self._gen
        if frame is not None:
            generation.queue(frame)
        generation.end("finish")
        await generation.wait_done()
