"""Pipelines of stages on trio memory channels.

A *stage* is any async callable ``stage(receive, send)`` that reads
:class:`~trio_asyncai.frames.Frame`\\ s from one channel and writes frames to
another. :class:`Pipeline` chains stages; :class:`PipelineTask` runs a
pipeline in one nursery, feeds it the frames you queue, and returns when an
:class:`~trio_asyncai.frames.EndFrame` has gone all the way through. The
text-to-speech stages live in ``_tts_stages.py``.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeAlias, final

import attrs
import trio

from ._backend import require_trio
from ._errors import ConfigurationError
from ._groups import single_exception
from ._types import DEFAULT_SAMPLE_RATE, sample_rate_validator
from .frames import EndFrame, Frame

__all__ = [
    "Pipeline",
    "PipelineParams",
    "PipelineTask",
    "Stage",
    "current_params",
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

    sample_rate: int = attrs.field(default=DEFAULT_SAMPLE_RATE, validator=sample_rate_validator)
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

    When a stage returns early, the pipeline closes the channels around it:
    the stages after it see their input end, the ones before it see their
    output break as they next write. A first stage that is waiting on
    *your* ``receive`` channel is not woken by that: called directly, close
    your send side (or cancel) to end it. :class:`PipelineTask` does this
    for you.
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
        require_trio()
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
        require_trio()
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
