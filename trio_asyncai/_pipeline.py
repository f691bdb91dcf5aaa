"""Pipelines of stages on trio memory channels, and the text-to-speech stages.

A *stage* is any async callable ``stage(receive, send)`` that reads
:class:`~trio_asyncai.frames.Frame`\\ s from one channel and writes frames to
another. :class:`Pipeline` chains stages; :class:`PipelineTask` runs a
pipeline in one nursery, feeds it the frames you queue, and returns when an
:class:`~trio_asyncai.frames.EndFrame` has gone all the way through.
:class:`WebSocketTTS` and :class:`HttpTTS` are the stages that turn text
frames into audio frames with a :class:`~trio_asyncai.Synthesizer` or an
:class:`~trio_asyncai.HttpSynthesizer`.

How a TTS stage works inside (one nursery per call, nothing outlives it)::

    receive --> input loop --+--> one task per utterance: holds its
                (this task)  |    ``async with synth.open_utterance()`` block,
                             |    sends it text as the aggregator releases it
                             |
                             +--> items, in input order: utterances and
                                  every other frame
                                        |
                                        v
                                  output task: for each utterance in turn,
                                  Started, its audio, Stopped, [Error],
                                  [Metrics]; other frames as they come --> send

Utterances synthesize concurrently (the next one may already be under way)
but reach the output one after another, in order. An interruption cancels a
whole *generation* of utterances at once and starts a new one.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Literal, Protocol, TypeAlias, final

import attrs
import httpx
import trio

from ._aggregator import SentenceAggregator
from ._errors import (
    AsyncAIError,
    AuthenticationError,
    ConfigurationError,
    QuotaExceededError,
    copy_error,
)
from ._groups import single_exception
from ._http import open_http_synthesizer
from ._types import (
    DEFAULT_MODEL,
    DEFAULT_SAMPLE_RATE,
    OutputFormat,
    Settings,
    check_sample_rate,
    check_speed_control,
    check_stability,
    check_text,
    normalize_language,
    resolve_api_key,
)
from ._utterance import DEFAULT_MAX_BUFFERED_AUDIO, Utterance
from ._websocket import open_synthesizer
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

__all__ = [
    "AsyncAIHttpTTSService",
    "AsyncAITTSService",
    "HttpTTS",
    "Pipeline",
    "PipelineParams",
    "PipelineTask",
    "Stage",
    "WebSocketTTS",
    "current_params",
    "is_fatal",
]

#: A pipeline stage: reads frames from ``receive``, writes frames to ``send``.
#:
#: The contract, for stages of your own:
#:
#: - Read until an :class:`~trio_asyncai.frames.EndFrame` (finish your work,
#:   forward the EndFrame, return) or until the channel ends
#:   (:exc:`trio.EndOfChannel`: the stage before you returned; return too).
#: - Forward every frame you do not handle, unchanged and in order;
#:   :class:`~trio_asyncai.frames.SystemFrame`\ s without waiting.
#: - Close neither channel: the pipeline owns them. When your stage returns,
#:   the next stage's input ends, and a stage before you that still writes
#:   gets :exc:`trio.BrokenResourceError`.
#: - Raise only for bugs: an exception ends the whole pipeline (and comes
#:   out of :meth:`PipelineTask.run`). Report the errors of your work as
#:   :class:`~trio_asyncai.frames.ErrorFrame`\ s instead.
#: - Read the pipeline's settings with :func:`current_params`.
Stage: TypeAlias = Callable[
    [trio.MemoryReceiveChannel[Frame], trio.MemorySendChannel[Frame]], Awaitable[None]
]

Aggregate = Literal["sentence", "token"]


def _check_sample_rate(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_sample_rate(value)


def _check_bool(_: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name} must be a bool, not {type(value).__name__}")


@final
@attrs.frozen(kw_only=True)
class PipelineParams:
    """Settings for a whole pipeline, read by its stages through :func:`current_params`.

    :param sample_rate: the output sample rate, in Hz: every TTS stage that
        was not given a ``sample_rate`` of its own produces audio at this rate.
    :param enable_metrics: whether TTS stages send a
        :class:`~trio_asyncai.frames.MetricsFrame` after each utterance.
    """

    sample_rate: int = attrs.field(default=DEFAULT_SAMPLE_RATE, validator=_check_sample_rate)
    enable_metrics: bool = attrs.field(default=False, validator=_check_bool)


_DEFAULT_PARAMS: Final = PipelineParams()
_params: contextvars.ContextVar[PipelineParams] = contextvars.ContextVar("trio_asyncai.pipeline_params")
#: Called when any stage returns: the PipelineTask then takes no more input, so
#: that the stages before it end too (a first stage waiting for input would
#: otherwise wait forever) while the ones after it finish their work.
_stage_returned: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "trio_asyncai.stage_returned", default=None
)


def current_params() -> PipelineParams:
    """The params of the pipeline running the calling task.

    Stages call this when they start: :meth:`PipelineTask.run` sets the params
    in a context variable that every stage's task inherits, so that stages
    stay plain callables. Outside a pipeline, the default params.
    """
    return _params.get(_DEFAULT_PARAMS)


def is_fatal(error: BaseException) -> bool:
    """Whether an error stops all synthesis until someone acts: a refused key, a used-up quota.

    Such errors reach the pipeline as :class:`~trio_asyncai.frames.ErrorFrame`\\ s
    with ``fatal=True``; end the pipeline when you see one.
    """
    return isinstance(error, AuthenticationError | QuotaExceededError)


# ----------------------------------------------------------------- pipeline


async def _run_stage(
    stage: Stage,
    receive: trio.MemoryReceiveChannel[Frame],
    send: trio.MemorySendChannel[Frame],
    *,
    own_receive: bool,
    own_send: bool,
    downstream_done: trio.Event | None,
    done: trio.Event,
) -> None:
    try:
        await stage(receive, send)
    except (trio.BrokenResourceError, BaseExceptionGroup) as exc:
        # The next stage returned (a sink that has heard enough, say), so
        # this one cannot hand on its frames: that ends it, without an error.
        # (A stage with tasks of its own raises that as a group.)
        broken_only = isinstance(exc, trio.BrokenResourceError) or (
            isinstance(exc, BaseExceptionGroup) and exc.split(trio.BrokenResourceError)[1] is None
        )
        if not broken_only or downstream_done is None or not downstream_done.is_set():
            raise
    finally:
        done.set()
        # Channels between stages belong to the pipeline: when a stage is
        # done, its successor's input ends and its predecessor's output breaks.
        if own_send:
            send.close()
        if own_receive:
            receive.close()
    hook = _stage_returned.get()
    if hook is not None:
        hook()


@final
class Pipeline:
    """Stages chained by trio memory channels: each stage's output is the next one's input.

    ::

        pipeline = Pipeline([llm, WebSocketTTS(voice_id=VOICE), speaker])

    A Pipeline is itself a stage: put one inside another, or call it with
    channels of your own (``await pipeline(receive, send)``). Stages are
    joined by unbuffered channels, so a slow stage slows the ones before it
    instead of letting frames pile up (a TTS stage keeps the audio in its
    utterances meanwhile, where an interruption drops it at once). See
    :data:`Stage` for what a stage must do.
    """

    def __init__(self, stages: Iterable[Stage]) -> None:
        #: The stages, in order.
        self.stages: tuple[Stage, ...] = tuple(stages)
        if not self.stages:
            raise ConfigurationError("a pipeline needs at least one stage")
        for stage in self.stages:
            if not callable(stage):
                raise ConfigurationError(f"a stage must be an async callable, not {stage!r}")

    def __repr__(self) -> str:
        return f"<Pipeline of {len(self.stages)} stages>"

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        """Run every stage, from ``receive`` to ``send``, until all have returned."""
        # Channel i joins stage i-1 to stage i; the outer ones are the caller's.
        sends: list[trio.MemorySendChannel[Frame]] = []
        receives: list[trio.MemoryReceiveChannel[Frame]] = [receive]
        for _ in self.stages[1:]:
            inner_send, inner_receive = trio.open_memory_channel[Frame](0)
            sends.append(inner_send)
            receives.append(inner_receive)
        sends.append(send)
        last = len(self.stages) - 1
        done = [trio.Event() for _ in self.stages]
        with single_exception():
            async with trio.open_nursery() as nursery:
                for index, stage in enumerate(self.stages):
                    runner = functools.partial(
                        _run_stage,
                        stage,
                        receives[index],
                        sends[index],
                        own_receive=index > 0,
                        own_send=index < last,
                        downstream_done=done[index + 1] if index < last else None,
                        done=done[index],
                    )
                    nursery.start_soon(runner, name=f"stage {index}: {stage!r}")


@final
class PipelineTask:
    """Runs a :class:`Pipeline`: you queue frames in, :meth:`run` runs the stages.

    ::

        task = PipelineTask(pipeline, params=PipelineParams(sample_rate=24000))
        await task.queue_frames([TTSSpeakFrame("Hello."), EndFrame()])
        await task.run()

    Frames queued before :meth:`run` wait for it. Frames that leave the last
    stage are dropped: make the last stage a sink (an audio player, a file
    writer) that does something with them. A task runs once.
    """

    def __init__(self, pipeline: Pipeline, *, params: PipelineParams | None = None) -> None:
        if not isinstance(pipeline, Pipeline):
            raise ConfigurationError(f"pipeline must be a Pipeline, not {type(pipeline).__name__}")
        if params is not None and not isinstance(params, PipelineParams):
            raise ConfigurationError(f"params must be PipelineParams, not {type(params).__name__}")
        #: The pipeline this task runs.
        self.pipeline = pipeline
        #: The params every stage sees through :func:`current_params`.
        self.params: PipelineParams = params if params is not None else PipelineParams()
        self._input_send, self._input_receive = trio.open_memory_channel[Frame](math.inf)
        self._cancel_scope = trio.CancelScope()
        self._started = False
        self._finished = False

    def __repr__(self) -> str:
        state = "finished" if self._finished else "running" if self._started else "new"
        return f"<PipelineTask {state} {self.pipeline!r}>"

    @property
    def finished(self) -> bool:
        """Whether :meth:`run` has returned (or raised)."""
        return self._finished

    async def queue_frame(self, frame: Frame) -> None:
        """Queue one frame for the first stage. Never waits for the pipeline.

        After an :class:`~trio_asyncai.frames.EndFrame` was queued, or once the
        task has finished, no more frames are taken: this raises
        :exc:`trio.ClosedResourceError`.
        """
        if not isinstance(frame, Frame):
            raise ConfigurationError(f"frames must be Frame instances, not {type(frame).__name__}")
        await self._input_send.send(frame)
        if isinstance(frame, EndFrame):
            self._input_send.close()

    async def queue_frames(self, frames: Iterable[Frame]) -> None:
        """Queue several frames, in order (see :meth:`queue_frame`)."""
        for frame in frames:
            await self.queue_frame(frame)

    def cancel(self) -> None:
        """Stop the pipeline now: :meth:`run` cancels every stage and returns.

        Synchronous; may be called from any task, and before :meth:`run`.
        """
        self._cancel_scope.cancel()
        self._input_send.close()

    async def run(self) -> None:
        """Run every stage, in one nursery, until the pipeline is done.

        Returns once an :class:`~trio_asyncai.frames.EndFrame` has gone through
        every stage and they all returned, or once any stage returned early
        (a sink that has heard enough: the task then takes no more input, the
        stages after it finish, the ones before it end as their frames have
        nowhere to go), or at once after :meth:`cancel`. No task outlives it.
        An exception from a stage cancels the others and comes out of here as
        itself, not wrapped in an :exc:`ExceptionGroup` (unless several stages
        failed at once).
        """
        if self._started:
            raise RuntimeError("a PipelineTask runs only once")
        self._started = True
        token = _params.set(self.params)
        hook_token = _stage_returned.set(self._input_send.close)
        try:
            with single_exception(), self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    output_send, output_receive = trio.open_memory_channel[Frame](0)
                    nursery.start_soon(self._run_pipeline, output_send, name=repr(self.pipeline))
                    nursery.start_soon(self._drain, output_receive, name="pipeline output")
        finally:
            _stage_returned.reset(hook_token)
            _params.reset(token)
            self._finished = True
            self._input_send.close()
            self._input_receive.close()

    async def _run_pipeline(self, output: trio.MemorySendChannel[Frame]) -> None:
        async with output:
            await self.pipeline(self._input_receive, output)

    @staticmethod
    async def _drain(output: trio.MemoryReceiveChannel[Frame]) -> None:
        async with output:
            async for _ in output:
                pass


# ------------------------------------------------------------- TTS stages


class _Speaker(Protocol):
    """What a TTS stage needs from a synthesizer (both have it)."""

    @property
    def settings(self) -> Settings: ...

    def update_settings(
        self,
        *,
        voice_id: str | None = None,
        model: str | None = None,
        language: object = None,
        output_format: OutputFormat | None = None,
        speed_control: float | None = None,
        stability: int | None = None,
    ) -> None: ...

    def open_utterance(self) -> AbstractAsyncContextManager[Utterance]: ...


@attrs.define(eq=False)
class _Job:
    """One utterance of the stage: its text channel and what became of it."""

    #: The settings changes in force when the job began (applied when it opens).
    changes: dict[str, Any]
    text_send: trio.MemorySendChannel[tuple[str, bool]]
    text_receive: trio.MemoryReceiveChannel[tuple[str, bool]]
    #: Set when the job opened its utterance (or gave up): the next job may open.
    after: trio.Event | None
    #: The last text, sent with the finish (a TTSSpeakFrame's text, the aggregator's rest).
    final_text: str = ""
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    utterance: Utterance | None = None
    error: AsyncAIError | None = None
    opened: trio.Event = attrs.field(factory=trio.Event)
    consumed: trio.Event = attrs.field(factory=trio.Event)


@attrs.define(eq=False)
class _Generation:
    """The utterances and frames between two interruptions, and the output task serving them."""

    items_send: trio.MemorySendChannel[_Job | Frame]
    items_receive: trio.MemoryReceiveChannel[_Job | Frame]
    nursery: trio.Nursery | None = None
    #: Jobs whose task is still running (an interruption stops them).
    jobs: set[_Job] = attrs.field(factory=set)
    #: The newest job's ``opened`` event: jobs open their utterances in order.
    last_opened: trio.Event | None = None
    interrupted: bool = False
    #: The scope of the audio frame being sent, cancelled by an interruption.
    send_scope: trio.CancelScope | None = None
    finished: trio.Event = attrs.field(factory=trio.Event)

    def live(self) -> bool:
        """Whether no interruption has ended this generation (a method: it changes across awaits)."""
        return not self.interrupted


def _check_aggregate(value: object) -> Aggregate:
    if value == "sentence":
        return "sentence"
    if value == "token":
        return "token"
    raise ConfigurationError(f"aggregate must be 'sentence' or 'token', not {value!r}")


def _check_setting(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty str, not {value!r}")
    return value.strip()


class _TTSStage:
    """What both TTS stages share: options, and the frame processing of :class:`_TTSRun`."""

    def __init__(
        self,
        *,
        api_key: str | None,
        voice_id: str | None,
        model: str,
        language: Any,
        speed_control: float | None,
        stability: int | None,
        base_url: str | None,
        sample_rate: int | None,
        aggregate: Aggregate,
        max_ahead: int,
        opener: Callable[..., AbstractAsyncContextManager[_Speaker]],
        options: dict[str, Any],
    ) -> None:
        #: open_synthesizer or open_http_synthesizer, and its transport options.
        self._opener = opener
        self._options = options
        if sample_rate is not None:
            check_sample_rate(sample_rate)
        if isinstance(max_ahead, bool) or not isinstance(max_ahead, int) or max_ahead < 0:
            raise ConfigurationError(f"max_ahead must be an int >= 0, not {max_ahead!r}")
        #: Utterances synthesized ahead of the one being delivered (each costs
        #: a context or request, and is billed even if a barge-in drops it).
        self.max_ahead = max_ahead
        # Kept masked (no repr, vars() or error reporter's locals shows it)
        # until it is handed to the synthesizer; None: ASYNCAI_API_KEY, read then.
        self._api_key = resolve_api_key(api_key, env={})
        self.voice_id = voice_id
        self.model = model
        self.language = language
        self.speed_control = check_speed_control(speed_control)
        self.stability = check_stability(stability)
        self.base_url = base_url
        #: The stage's own output sample rate; ``None`` means the pipeline params'.
        self.sample_rate = sample_rate
        #: ``"sentence"`` or ``"token"``.
        self.aggregate: Aggregate = _check_aggregate(aggregate)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} voice={self.voice_id!r} aggregate={self.aggregate!r}>"

    def _open(self, sample_rate: int) -> AbstractAsyncContextManager[_Speaker]:
        return self._opener(
            api_key=None if self._api_key is None else self._api_key.value,
            voice_id=self.voice_id,
            model=self.model,
            language=self.language,
            speed_control=self.speed_control,
            stability=self.stability,
            base_url=self.base_url,
            sample_rate=sample_rate,
            **self._options,
        )

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        """Run as a pipeline stage: speak the text frames from ``receive`` into ``send``."""
        params = current_params()
        sample_rate = self.sample_rate if self.sample_rate is not None else params.sample_rate
        run = _TTSRun(self, sample_rate=sample_rate, enable_metrics=params.enable_metrics, send=send)
        await run.serve(receive)


@final
class WebSocketTTS(_TTSStage):
    """A pipeline stage that speaks text frames over one WebSocket (:func:`~trio_asyncai.open_synthesizer`).

    ::

        tts = WebSocketTTS(voice_id=VOICE)          # key from ASYNCAI_API_KEY
        pipeline = Pipeline([llm, tts, speaker])

    Takes :func:`~trio_asyncai.open_synthesizer`'s options, and:

    :param sample_rate: this stage's output sample rate; by default the
        pipeline's (:attr:`PipelineParams.sample_rate`).
    :param aggregate: ``"sentence"`` (the default) gathers an LLM's tokens
        into whole sentences with sentencex and has each spoken as soon as it
        is complete; ``"token"`` passes text to the service as it comes, and
        lets the service decide when to speak (lowest latency, no forced
        synthesis per token).

    What it does with each frame:

    - :class:`~trio_asyncai.frames.TextFrame`: gathered into the current
      utterance. The TextFrames between an
      :class:`~trio_asyncai.frames.LLMFullResponseStartFrame` and its
      :class:`~trio_asyncai.frames.LLMFullResponseEndFrame` are one utterance;
      so are TextFrames outside such a pair, up to the next boundary (a
      response start or end, a TTSSpeakFrame, an InterruptionFrame, an
      EndFrame). The text still held at the end of the utterance is spoken then.
    - :class:`~trio_asyncai.frames.TTSSpeakFrame`: the text is spoken whole,
      as an utterance of its own (after the current one, which it ends).
    - :class:`~trio_asyncai.frames.TTSUpdateSettingsFrame`: voice, model,
      language, speed and stability change from the next utterance on (here
      by opening a new connection at that utterance, since the service fixes
      them per connection). An invalid change becomes an ErrorFrame.
    - :class:`~trio_asyncai.frames.InterruptionFrame`: every utterance in
      flight is interrupted, the text being gathered is dropped, and the
      InterruptionFrame is forwarded right after the frames the interrupted
      utterances still owe (a TTSStoppedFrame for the one whose audio had
      begun, their MetricsFrames) and any other frames that were waiting
      behind their audio. No audio of theirs follows it.
    - :class:`~trio_asyncai.frames.EndFrame`: everything held is spoken and
      delivered, then the EndFrame is forwarded and the stage returns.
    - Text and settings frames are consumed; every other frame is forwarded
      unchanged, in its place among the audio (a frame that came after an
      utterance's text comes out after its audio), except
      :class:`~trio_asyncai.frames.SystemFrame`\\ s, forwarded at once.

    For each utterance it sends a :class:`~trio_asyncai.frames.TTSStartedFrame`
    right before the first audio, :class:`~trio_asyncai.frames.TTSAudioRawFrame`\\ s,
    and a :class:`~trio_asyncai.frames.TTSStoppedFrame` as soon as the service
    says the audio is complete; then an ErrorFrame if the utterance failed,
    and a :class:`~trio_asyncai.frames.MetricsFrame` if metrics are enabled
    (for every utterance whose text was sent, interrupted ones included).
    Utterances come out one after another, never interleaved; while one is
    delivered, the next ``max_ahead`` (default 1) are already synthesizing,
    and no more: each costs a context or request, billed even if a barge-in
    then drops it.

    Errors never end the stage: each becomes an
    :class:`~trio_asyncai.frames.ErrorFrame` (``fatal=True`` for
    :func:`fatal <is_fatal>` ones) and the next utterance tries again. The
    stage connects as it starts, in the background: nothing it reads waits
    for a connection. If the connection cannot be opened, the utterance that
    needed it becomes an ErrorFrame and the next one tries again (not after
    a fatal error: then each utterance becomes an ErrorFrame). A
    :exc:`~trio_asyncai.ConfigurationError` (a bad argument) is raised.

    The stage object holds only options (the API key masked: neither its
    repr nor its attributes show it): it opens its own synthesizer, in
    its own nursery, each time it runs, and may run in several pipelines.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        voice_id: str | None = None,
        model: str = DEFAULT_MODEL,
        language: Any = None,
        speed_control: float | None = None,
        stability: int | None = None,
        base_url: str | None = None,
        sample_rate: int | None = None,
        aggregate: Aggregate = "sentence",
        max_ahead: int = 1,
        keepalive_interval: float | None = 10.0,
        connect_timeout: float = 10.0,
        audio_timeout: float | None = 10.0,
        close_timeout: float = 2.0,
        max_buffered_audio: float | None = DEFAULT_MAX_BUFFERED_AUDIO,
        max_reconnect_attempts: int = 3,
        reconnect_backoff: float = 0.5,
    ) -> None:
        super().__init__(
            api_key=api_key,
            voice_id=voice_id,
            model=model,
            language=language,
            speed_control=speed_control,
            stability=stability,
            base_url=base_url,
            sample_rate=sample_rate,
            aggregate=aggregate,
            max_ahead=max_ahead,
            opener=open_synthesizer,
            options={
                "keepalive_interval": keepalive_interval,
                "connect_timeout": connect_timeout,
                "audio_timeout": audio_timeout,
                "close_timeout": close_timeout,
                "max_buffered_audio": max_buffered_audio,
                "max_reconnect_attempts": max_reconnect_attempts,
                "reconnect_backoff": reconnect_backoff,
            },
        )


@final
class HttpTTS(_TTSStage):
    """A pipeline stage that speaks text frames over HTTP (:func:`~trio_asyncai.open_http_synthesizer`).

    It handles frames exactly as :class:`WebSocketTTS` does; each sentence
    (or, in token mode, each piece the synthesizer cuts) is one streaming
    request, and a settings change simply applies to the next request.

    Takes :func:`~trio_asyncai.open_http_synthesizer`'s options, with
    ``sample_rate`` and ``aggregate`` as for :class:`WebSocketTTS`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        voice_id: str | None = None,
        model: str = DEFAULT_MODEL,
        language: Any = None,
        speed_control: float | None = None,
        stability: int | None = None,
        base_url: str | None = None,
        sample_rate: int | None = None,
        aggregate: Aggregate = "sentence",
        max_ahead: int = 1,
        client: httpx.AsyncClient | None = None,
        connect_timeout: float = 5.0,
        audio_timeout: float | None = 10.0,
        max_buffered_audio: float | None = DEFAULT_MAX_BUFFERED_AUDIO,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
    ) -> None:
        super().__init__(
            api_key=api_key,
            voice_id=voice_id,
            model=model,
            language=language,
            speed_control=speed_control,
            stability=stability,
            base_url=base_url,
            sample_rate=sample_rate,
            aggregate=aggregate,
            max_ahead=max_ahead,
            opener=open_http_synthesizer,
            options={
                "client": client,
                "connect_timeout": connect_timeout,
                "audio_timeout": audio_timeout,
                "max_buffered_audio": max_buffered_audio,
                "max_retries": max_retries,
                "retry_backoff": retry_backoff,
            },
        )


#: The name pipecat gives the WebSocket service: the same class as :class:`WebSocketTTS`.
AsyncAITTSService = WebSocketTTS
#: The name pipecat gives the HTTP service: the same class as :class:`HttpTTS`.
AsyncAIHttpTTSService = HttpTTS


@final
class _TTSRun:
    """One run of a TTS stage: its synthesizer, its utterances, its output."""

    def __init__(
        self,
        stage: _TTSStage,
        *,
        sample_rate: int,
        enable_metrics: bool,
        send: trio.MemorySendChannel[Frame],
    ) -> None:
        self.stage = stage
        self.sample_rate = sample_rate
        self.enable_metrics = enable_metrics
        self.send = send
        self.synth: _Speaker | None = None
        #: A fatal error from opening the synthesizer: no use trying again.
        self.fatal_error: AsyncAIError | None = None
        #: Settings changes so far (voice_id, model, language, ...), for new jobs.
        self.changes: dict[str, Any] = {}
        #: The utterance text is being gathered into.
        self.job: _Job | None = None
        self.aggregator: SentenceAggregator | None = None
        #: Jobs take turns opening the synthesizer.
        self.connect_lock = trio.Lock()
        self.close_synth = trio.Event()
        #: One per utterance in flight: the one being delivered and those ahead.
        self.permits = trio.Semaphore(1 + stage.max_ahead)
        #: Cancelled when the next stage is gone: no more input is read.
        self.input_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._gen: _Generation | None = None

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None
        return self._nursery

    @property
    def gen(self) -> _Generation:
        assert self._gen is not None
        return self._gen

    async def serve(self, receive: trio.MemoryReceiveChannel[Frame]) -> None:
        with single_exception():
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._gen = await nursery.start(self._generation)
                # Connect early, but never in the way of the input loop: an
                # interruption or a system frame must not wait for a connect.
                nursery.start_soon(self._warm_up)
                with self.input_scope:
                    await self._loop(receive)
                self.close_synth.set()

    # ---------------------------------------------------------- input side

    async def _loop(self, receive: trio.MemoryReceiveChannel[Frame]) -> None:
        while True:
            try:
                frame = await receive.receive()
            except trio.EndOfChannel:
                await self._finish(None)
                return
            if isinstance(frame, TextFrame):
                await self._on_text(frame.text)
            elif isinstance(frame, TTSSpeakFrame):
                self._end_job()
                await self._on_speak(frame.text)
            elif isinstance(frame, LLMFullResponseStartFrame | LLMFullResponseEndFrame):
                self._end_job()
                self._queue(frame)
            elif isinstance(frame, TTSUpdateSettingsFrame):
                self._on_settings(frame)
            elif isinstance(frame, InterruptionFrame):
                await self._interrupt(frame)
            elif isinstance(frame, EndFrame):
                await self._finish(frame)
                return
            elif isinstance(frame, SystemFrame):
                try:
                    await self.send.send(frame)
                except trio.BrokenResourceError:
                    self.input_scope.cancel()  # the next stage is gone: stop reading
            else:
                self._queue(frame)

    def _queue(self, item: _Job | Frame) -> None:
        self.gen.items_send.send_nowait(item)

    async def _warm_up(self) -> None:
        """Open the synthesizer ahead of the first utterance; failures wait for it."""
        try:
            await self._get_synth()
        except ConfigurationError:
            raise  # the stage's own options are wrong: that is for the caller
        except AsyncAIError:
            pass  # the first utterance tries again, and reports it

    async def _get_synth(self) -> _Speaker:
        """The synthesizer, opened on first use; raises (an ErrorFrame, for the job) if it cannot be."""
        async with self.connect_lock:
            if self.synth is not None:
                return self.synth
            if self.fatal_error is not None:
                raise copy_error(self.fatal_error)
            try:
                with single_exception():
                    self.synth = await self.nursery.start(self._hold_synth)
            except AsyncAIError as exc:
                if is_fatal(exc):
                    self.fatal_error = exc
                raise
            return self.synth

    async def _hold_synth(self, *, task_status: trio.TaskStatus[_Speaker]) -> None:
        async with self.stage._open(self.sample_rate) as synth:
            task_status.started(synth)
            await self.close_synth.wait()

    def _language(self) -> str:
        language = self.changes.get("language") or normalize_language(self.stage.language)
        if language is None and self.synth is not None:
            language = self.synth.settings.language
        return language or "en"

    async def _new_job(self) -> _Job:
        """Start an utterance (and its task, which opens the synthesizer if need be)."""
        await trio.lowlevel.checkpoint()
        gen = self.gen
        text_send, text_receive = trio.open_memory_channel[tuple[str, bool]](math.inf)
        job = _Job(dict(self.changes), text_send, text_receive, after=gen.last_opened)
        gen.last_opened = job.opened
        gen.jobs.add(job)
        self._queue(job)
        assert gen.nursery is not None
        gen.nursery.start_soon(self._run_job, gen, job)
        return job

    def _text_or_error(self, text: object) -> str | None:
        """The frame's text, or ``None`` after queueing an ErrorFrame for a non-str."""
        try:
            return check_text(text, allow_empty=True)
        except ConfigurationError as exc:
            self._queue(ErrorFrame(exc))
            return None

    async def _on_text(self, frame_text: object) -> None:
        text = self._text_or_error(frame_text)
        if text is None:
            return
        if not text:
            return
        job = self.job
        if job is None:
            if not text.strip():
                return  # white space before an utterance says nothing
            job = await self._new_job()
            self.job = job
            if self.stage.aggregate == "sentence":
                self.aggregator = SentenceAggregator(self._language())
        if self.aggregator is not None:
            for sentence in self.aggregator.push(text):
                self._send_sentence(job, sentence)
        else:
            job.text_send.send_nowait((text, False))

    @staticmethod
    def _send_sentence(job: _Job, sentence: str) -> None:
        if sentence.strip():
            # Chunks of text end with a single space (the API's convention);
            # each sentence is spoken as soon as it is complete.
            job.text_send.send_nowait((sentence.strip() + " ", True))

    async def _on_speak(self, frame_text: object) -> None:
        text = self._text_or_error(frame_text)
        if text is None:
            return
        if not text.strip():
            return
        job = await self._new_job()
        job.final_text = text
        job.text_send.close()

    def _end_job(self) -> None:
        """The current utterance gets no more text: the rest is spoken now."""
        job, self.job = self.job, None
        aggregator, self.aggregator = self.aggregator, None
        if job is None:
            return
        if aggregator is not None:
            for sentence in aggregator.flush():
                self._send_sentence(job, sentence)
        job.text_send.close()

    def _on_settings(self, frame: TTSUpdateSettingsFrame) -> None:
        changes: dict[str, Any] = {}
        try:
            if frame.voice_id is not None:
                changes["voice_id"] = _check_setting("voice_id", frame.voice_id)
            if frame.model is not None:
                changes["model"] = _check_setting("model", frame.model)
            if frame.language is not None:
                changes["language"] = normalize_language(frame.language)
            if frame.speed_control is not None:
                changes["speed_control"] = check_speed_control(frame.speed_control)
            if frame.stability is not None:
                changes["stability"] = check_stability(frame.stability)
        except ConfigurationError as exc:
            self._queue(ErrorFrame(exc))
            return
        self.changes.update(changes)

    async def _interrupt(self, frame: InterruptionFrame) -> None:
        """Stop the whole generation, let it deliver what it owes, forward the frame, start anew."""
        job, self.job = self.job, None
        self.aggregator = None
        if job is not None:
            job.text_send.close()
        gen = self.gen
        gen.interrupted = True
        for each in gen.jobs:
            if each.utterance is not None:
                each.utterance.interrupt()
            each.cancel_scope.cancel()
        if gen.send_scope is not None:
            gen.send_scope.cancel()
        gen.items_send.close()
        # The output task now delivers what the old generation still owes
        # (Stopped, metrics, frames that waited behind its audio), no audio.
        await gen.finished.wait()
        await self.send.send(frame)
        self._gen = await self.nursery.start(self._generation)

    async def _finish(self, frame: EndFrame | None) -> None:
        self._end_job()
        if frame is not None:
            self._queue(frame)
        self.gen.items_send.close()
        await self.gen.finished.wait()

    # ---------------------------------------------------------- utterances

    async def _run_job(self, gen: _Generation, job: _Job) -> None:
        try:
            with job.cancel_scope:
                first = await _next_text(job)
                if job.after is not None:
                    await job.after.wait()
                if first is None and not job.final_text.strip():
                    return
                synth = await self._get_synth()
                if job.changes:
                    # Right before open_utterance reads the settings; jobs
                    # take turns here, so no other job changes them between.
                    synth.update_settings(**job.changes)
                # Held until the output task has read the utterance's audio.
                async with self.permits, synth.open_utterance() as utterance:
                    job.utterance = utterance
                    job.opened.set()
                    try:
                        await _feed(job, utterance, first)
                    except AsyncAIError as exc:
                        # After a barge-in the feed meets an interrupted
                        # utterance: that is no error of the service's.
                        if utterance.error is None and not utterance.interrupted and gen.live():
                            job.error = exc
                            utterance.interrupt()  # ends its audio (and this block)
                    # The block must stay open until the output task has read
                    # the audio: leaving it drops what is unread.
                    await job.consumed.wait()
        except AsyncAIError as exc:
            job.error = exc
        finally:
            job.opened.set()
            gen.jobs.discard(job)  # a long conversation keeps no finished ones

    # ---------------------------------------------------------- output side

    async def _generation(self, *, task_status: trio.TaskStatus[_Generation]) -> None:
        items_send, items_receive = trio.open_memory_channel[_Job | Frame](math.inf)
        gen = _Generation(items_send, items_receive)
        try:
            # When the next stage is gone (a sink that has heard enough), the
            # utterances' blocks end (each closes its context on the service),
            # no more input is read, and the synthesizer closes politely.
            with single_exception():
                async with trio.open_nursery() as nursery:
                    gen.nursery = nursery
                    task_status.started(gen)
                    async for item in items_receive:
                        if isinstance(item, _Job):
                            await self._emit(gen, item)
                        else:
                            await self.send.send(item)
        except trio.BrokenResourceError:
            self.input_scope.cancel()
        finally:
            gen.finished.set()

    async def _emit(self, gen: _Generation, job: _Job) -> None:
        """Deliver one utterance: Started, audio, Stopped, [Error], [Metrics]."""
        await job.opened.wait()
        utterance = job.utterance
        if utterance is None:
            if job.error is not None:
                await self._send_error(job.error, None)
            return
        uid = utterance.context_id
        started = False
        error: AsyncAIError | None = None
        try:
            while gen.live():
                try:
                    chunk = await utterance.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break
                if not gen.live():
                    break
                if not started:
                    await self.send.send(TTSStartedFrame(uid))
                    started = True
                frame = TTSAudioRawFrame(chunk.audio, chunk.sample_rate, chunk.num_channels, utterance_id=uid)
                with trio.CancelScope() as scope:
                    gen.send_scope = scope
                    if not gen.live():
                        scope.cancel()
                    await self.send.send(frame)
                gen.send_scope = None
        except AsyncAIError as exc:
            error = exc
        finally:
            job.consumed.set()
        if started:
            await self.send.send(TTSStoppedFrame(uid))
        error = error or job.error
        if error is not None and (gen.live() or not utterance.interrupted):
            await self._send_error(error, uid)
        if self.enable_metrics:
            metrics = utterance.metrics
            if metrics.characters:
                await self.send.send(
                    MetricsFrame(
                        utterance_id=uid,
                        ttfb=metrics.ttfb,
                        processing_time=metrics.processing_time,
                        characters=metrics.characters,
                    )
                )

    async def _send_error(self, error: AsyncAIError, utterance_id: str | None) -> None:
        await self.send.send(ErrorFrame(error, fatal=is_fatal(error), utterance_id=utterance_id))


async def _next_text(job: _Job) -> tuple[str, bool] | None:
    try:
        return await job.text_receive.receive()
    except trio.EndOfChannel:
        return None


async def _feed(job: _Job, utterance: Utterance, first: tuple[str, bool] | None) -> None:
    """Send a job's text to its utterance as it comes, then finish it."""
    item = first
    while item is not None:
        text, flush = item
        await utterance.send(text)
        if flush:
            await utterance.flush()
        item = await _next_text(job)
    await utterance.finish(job.final_text)
