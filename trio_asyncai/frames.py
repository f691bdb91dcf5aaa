"""Frames: the vocabulary that pipeline stages speak to each other.

A pipeline (see :class:`~trio_asyncai.Pipeline`) is a chain of stages joined
by trio memory channels, and what flows through the channels are frames:
small immutable (attrs, frozen) objects. Text goes in, speech comes out::

    TextFrame / TTSSpeakFrame / LLMFullResponseStartFrame / LLMFullResponseEndFrame
    TTSUpdateSettingsFrame / InterruptionFrame / EndFrame
            |
            v
      [ TTS stage ]     -> TTSStartedFrame, TTSAudioRawFrame..., TTSStoppedFrame,
                           ErrorFrame, MetricsFrame (and every other frame, in order)

Every frame is a :class:`Frame`. Define your own by subclassing it (with
``@attrs.frozen``); a stage passes the frames it does not handle through
unchanged, in order, so frames of your own can travel beside ours.

:class:`SystemFrame`\\ s are urgent: a stage forwards them at once, ahead of
frames it still holds (such as audio waiting to be delivered).
:class:`InterruptionFrame` is one.

Names and meanings follow the frames voice-agent frameworks such as pipecat
use, so that their users find their way; the classes are this project's own.
"""

from __future__ import annotations

import attrs

from ._language import Language

__all__ = [
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "InterruptionFrame",
    "LLMFullResponseEndFrame",
    "LLMFullResponseStartFrame",
    "MetricsFrame",
    "SystemFrame",
    "TTSAudioRawFrame",
    "TTSSpeakFrame",
    "TTSStartedFrame",
    "TTSStoppedFrame",
    "TTSUpdateSettingsFrame",
    "TextFrame",
]


@attrs.frozen
class Frame:
    """The base class of every frame. Subclass it for frames of your own."""


@attrs.frozen
class SystemFrame(Frame):
    """A frame that must not wait: stages forward it ahead of frames they still hold."""


# ----------------------------------------------------------------- frames in


@attrs.frozen
class TextFrame(Frame):
    """A piece of text to speak: a token, a word or a sentence, as an LLM writes it.

    TextFrames between an :class:`LLMFullResponseStartFrame` and its
    :class:`LLMFullResponseEndFrame` make one utterance. The pieces are joined
    as they are: put the spaces in the text (``"Hello"``, ``" world."``).
    """

    text: str


@attrs.frozen
class TTSSpeakFrame(Frame):
    """A whole text to speak at once, as an utterance of its own."""

    text: str


@attrs.frozen
class TTSUpdateSettingsFrame(Frame):
    """Change the voice, model, language or voice controls, from the next utterance on.

    Fields left ``None`` stay as they are. ``language`` is a code (``"fr"``),
    a regional tag (``"fr-CA"``, read as ``"fr"``) or a
    :class:`~trio_asyncai.Language`. ``speed_control`` (0.7 to 2.0) and
    ``stability`` (0 to 100) are honoured by the ``async_flash_v1.0`` model
    only. A value out of range becomes an :class:`ErrorFrame`.
    """

    voice_id: str | None = None
    model: str | None = None
    language: str | Language | None = None
    speed_control: float | None = None
    stability: int | None = None


@attrs.frozen
class LLMFullResponseStartFrame(Frame):
    """An LLM's response begins: the TextFrames up to the matching end frame are one utterance."""


@attrs.frozen
class LLMFullResponseEndFrame(Frame):
    """An LLM's response is complete: the rest of its text is spoken now."""


@attrs.frozen
class InterruptionFrame(SystemFrame):
    """The user barged in: stop speaking now.

    A TTS stage interrupts every utterance in flight, drops the text it was
    gathering, and forwards the InterruptionFrame; no audio of an utterance
    begun before it follows it downstream.
    """


@attrs.frozen
class EndFrame(Frame):
    """The end of the stream: each stage finishes its work, forwards it, and returns.

    A TTS stage speaks the text it still holds and delivers all audio first.
    :meth:`PipelineTask.run <trio_asyncai.PipelineTask.run>` returns once the
    EndFrame has gone through every stage.
    """


# ---------------------------------------------------------------- frames out


@attrs.frozen
class TTSStartedFrame(Frame):
    """An utterance's audio begins: it comes right before the utterance's first audio frame."""

    #: The utterance (on the WebSocket, the Async ``context_id``).
    utterance_id: str


@attrs.frozen
class TTSAudioRawFrame(Frame):
    """A chunk of speech: raw 16-bit little-endian PCM (``pcm_s16le``), mono.

    Chunks of one utterance come in order, between its
    :class:`TTSStartedFrame` and :class:`TTSStoppedFrame`, and chunks of
    different utterances never interleave.
    """

    audio: bytes = attrs.field(repr=lambda audio: f"<{len(audio)} bytes>")
    sample_rate: int
    num_channels: int = 1
    #: The utterance the chunk belongs to.
    utterance_id: str | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk."""
        return len(self.audio) / (2 * self.num_channels * self.sample_rate)


@attrs.frozen
class TTSStoppedFrame(Frame):
    """An utterance's audio is over: it follows the last audio frame.

    Sent as soon as the service says the utterance is complete, and also for
    an utterance that was interrupted or failed after its audio began.
    """

    utterance_id: str


@attrs.frozen
class ErrorFrame(Frame):
    """Something went wrong; the pipeline keeps running.

    ``error`` is the exception (an :exc:`~trio_asyncai.AsyncAIError` for the
    service's errors). ``fatal`` means that nothing will work until someone
    acts (a refused API key, a used-up quota): end the pipeline. Errors of
    one utterance carry its ``utterance_id``.
    """

    error: BaseException
    fatal: bool = False
    utterance_id: str | None = None

    @property
    def message(self) -> str:
        """The error as text."""
        return str(self.error)


@attrs.frozen
class MetricsFrame(Frame):
    """What one utterance cost and how quickly it came (when the params enable metrics).

    It follows the utterance's :class:`TTSStoppedFrame`. Times are seconds on
    trio's clock, from the moment the utterance's first text was sent.
    """

    utterance_id: str
    #: Time to first byte: first text sent to first audio received (``None`` if no audio came).
    ttfb: float | None
    #: First text sent to the end of the utterance's audio.
    processing_time: float | None
    #: Characters of text sent for synthesis (what the service bills).
    characters: int
