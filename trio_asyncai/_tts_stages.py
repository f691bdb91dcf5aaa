"""The text-to-speech pipeline stages: :class:`WebSocketTTS` and :class:`HttpTTS`.

They hold options only (their synthesizer's, from :mod:`trio_asyncai._options`,
and the stage's own); each run hands the frames to a
:class:`~trio_asyncai._tts_engine.TTSEngine`. What they do with each frame is
told in docs/pipeline.rst ("The TTS stages").
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, TypeVar, final

import attrs
import trio

from ._http import open_http_synthesizer_with
from ._options import (
    Aggregate,
    HttpOptions,
    HttpTransportOptions,
    ServiceOptions,
    StageOwnOptions,
    VoiceOptions,
    WebSocketOptions,
    WebSocketTransportOptions,
    checks_without_frames,
    with_options_doc,
)
from ._pipeline import current_params
from ._synthesizer import BaseSynthesizer
from ._tts_engine import TTSEngine
from ._websocket import open_synthesizer_with
from .frames import Frame

__all__ = ["AsyncAIHttpTTSService", "AsyncAITTSService", "HttpTTS", "WebSocketTTS"]


T = TypeVar("T", WebSocketOptions, HttpOptions)


def _synthesizer_options(target: type[T], stage: Any, sample_rate: int) -> T:
    """The options of a stage's synthesizer: the stage's own values of every option they share."""
    shared = set(attrs.fields_dict(target)) & set(attrs.fields_dict(type(stage))) - {"sample_rate"}
    given = {f.alias: getattr(stage, f.name) for f in attrs.fields(target) if f.name in shared}
    return target(**given, sample_rate=sample_rate)


class _TTSStage:
    """What both TTS stages share: a run per call, with a synthesizer of their own."""

    #: Whether its synthesizer cuts text into sentences itself (then the stage does not).
    _synthesizer_cuts_sentences: ClassVar[bool] = False

    sample_rate: int | None
    aggregate: Aggregate
    max_ahead: int
    voice_id: str | None
    language: str | None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} voice={self.voice_id!r} aggregate={self.aggregate!r}>"

    def _open(self, sample_rate: int) -> AbstractAsyncContextManager[BaseSynthesizer[Any]]:
        """Open the stage's synthesizer, at ``sample_rate``."""
        raise NotImplementedError  # pragma: no cover

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        """Run as a pipeline stage: speak the text frames from ``receive`` into ``send``."""
        params = current_params()
        sample_rate = self.sample_rate if self.sample_rate is not None else params.sample_rate
        engine = TTSEngine(
            lambda: self._open(sample_rate),
            language=self.language,
            aggregate=self.aggregate,
            synthesizer_cuts_sentences=self._synthesizer_cuts_sentences,
            max_ahead=self.max_ahead,
            enable_metrics=params.enable_metrics,
            send=send,
        )
        await engine.run(receive)


@final
@attrs.frozen(kw_only=True, slots=False, repr=False)
class WebSocketTTS(_TTSStage, StageOwnOptions, WebSocketTransportOptions, VoiceOptions, ServiceOptions):
    """A pipeline stage that speaks text frames over one WebSocket (:func:`~trio_asyncai.open_synthesizer`).

    ::

        tts = WebSocketTTS(voice_id=VOICE)          # key from ASYNCAI_API_KEY
        pipeline = Pipeline([llm, tts, speaker])

    What it does with each frame, and what it sends: :ref:`tts-stages`. It
    takes :func:`~trio_asyncai.open_synthesizer`'s options but the output
    format (the pipeline's sample rate is set once), and three of its own.
    The stage holds options only, the API key masked; it opens its own
    synthesizer each time it runs, and may run in several pipelines. The
    options:
    """

    def _open(self, sample_rate: int) -> AbstractAsyncContextManager[BaseSynthesizer[Any]]:
        return open_synthesizer_with(_synthesizer_options(WebSocketOptions, self, sample_rate))


@final
@attrs.frozen(kw_only=True, slots=False, repr=False)
class HttpTTS(_TTSStage, StageOwnOptions, HttpTransportOptions, VoiceOptions, ServiceOptions):
    """A pipeline stage that speaks text frames over HTTP (:func:`~trio_asyncai.open_http_synthesizer`).

    It handles frames as :class:`WebSocketTTS` does. The HTTP synthesizer
    cuts the text into sentences itself (one streaming request per sentence
    as they complete), so both ``aggregate`` modes give the same requests; a
    settings change applies to the next utterance. The options:
    """

    _synthesizer_cuts_sentences = True

    def _open(self, sample_rate: int) -> AbstractAsyncContextManager[BaseSynthesizer[Any]]:
        return open_http_synthesizer_with(_synthesizer_options(HttpOptions, self, sample_rate))


for _stage in (WebSocketTTS, HttpTTS):
    _stage.__doc__ = with_options_doc(_stage.__doc__, _stage)
    # A failed check must not leave the key in a traceback's frames (attrs' __init__ holds it).
    setattr(_stage, "__init__", checks_without_frames(_stage.__init__))  # noqa: B010

#: The name pipecat gives the WebSocket service: the same class as :class:`WebSocketTTS`.
AsyncAITTSService = WebSocketTTS
#: The name pipecat gives the HTTP service: the same class as :class:`HttpTTS`.
AsyncAIHttpTTSService = HttpTTS

