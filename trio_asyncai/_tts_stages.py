"""The text-to-speech pipeline stages: :class:`WebSocketTTS` and :class:`HttpTTS`.

They hold options only; each run hands the frames to a :class:`~trio_asyncai._tts_engine.TTSEngine`.
What they do with each frame is told in docs/pipeline.rst ("The TTS stages").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypedDict, Unpack, final

import httpx
import trio

from ._config import resolve_api_key
from ._errors import ConfigurationError
from ._http import open_http_synthesizer
from ._pipeline import current_params
from ._synthesizer import BaseSynthesizer
from ._tts_engine import Aggregate, TTSEngine
from ._types import check_sample_rate, check_speed_control, check_stability
from ._websocket import open_synthesizer
from .frames import Frame

__all__ = [
    "AsyncAIHttpTTSService",
    "AsyncAITTSService",
    "HttpTTS",
    "HttpTTSOptions",
    "WebSocketTTS",
    "WebSocketTTSOptions",
]


class _StageOptions(TypedDict, total=False):
    """What both stages take: their own options, and the synthesizer options both synthesizers take."""

    sample_rate: int | None
    aggregate: Aggregate
    max_ahead: int
    api_key: str | None
    voice_id: str | None
    model: str
    language: Any
    speed_control: float | None
    stability: int | None
    base_url: str | None
    connect_timeout: float
    audio_timeout: float | None
    max_buffered_audio: float | None


class WebSocketTTSOptions(_StageOptions, total=False):
    """The keyword arguments of :class:`WebSocketTTS`."""

    keepalive_interval: float | None
    close_timeout: float
    max_reconnect_attempts: int
    reconnect_backoff: float


class HttpTTSOptions(_StageOptions, total=False):
    """The keyword arguments of :class:`HttpTTS`."""

    client: httpx.AsyncClient | None
    max_retries: int
    retry_backoff: float


def _check_aggregate(value: object) -> Aggregate:
    if value == "sentence":
        return "sentence"
    if value == "token":
        return "token"
    raise ConfigurationError(f"aggregate must be 'sentence' or 'token', not {value!r}")


class _TTSStage:
    """What both TTS stages share: options checked when made, and a run per call."""

    def __init__(
        self,
        opener: Callable[..., AbstractAsyncContextManager[BaseSynthesizer[Any]]],
        option_names: frozenset[str],
        options: Mapping[str, Any],
    ) -> None:
        for name in options:
            if name not in option_names:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
        own = dict(options)
        sample_rate: int | None = own.pop("sample_rate", None)
        aggregate: object = own.pop("aggregate", "sentence")
        max_ahead: int = own.pop("max_ahead", 1)
        if sample_rate is not None:
            check_sample_rate(sample_rate)
        if isinstance(max_ahead, bool) or not isinstance(max_ahead, int) or max_ahead < 0:
            raise ConfigurationError(f"max_ahead must be an int >= 0, not {max_ahead!r}")
        #: open_synthesizer or open_http_synthesizer.
        self._opener = opener
        # Kept masked (no repr, vars() or error reporter's locals shows it)
        # until it is handed to the synthesizer; None: ASYNCAI_API_KEY, read then.
        self._api_key = resolve_api_key(own.pop("api_key", None), env={})
        for name, check in (("speed_control", check_speed_control), ("stability", check_stability)):
            if name in own:
                own[name] = check(own[name])
        #: The synthesizer's options, but the key (its defaults for the rest).
        self._options = own
        #: The voice (``None``: ``ASYNCAI_VOICE_ID``, read when the stage runs).
        self.voice_id: str | None = own.get("voice_id")
        #: The stage's own output sample rate; ``None`` means the pipeline params'.
        self.sample_rate = sample_rate
        #: ``"sentence"`` or ``"token"``.
        self.aggregate: Aggregate = _check_aggregate(aggregate)
        #: Utterances synthesized ahead of the one being delivered (each costs
        #: a context or request, and is billed even if a barge-in drops it).
        self.max_ahead = max_ahead

    def __repr__(self) -> str:
        return f"<{type(self).__name__} voice={self.voice_id!r} aggregate={self.aggregate!r}>"

    def _open(self, sample_rate: int) -> AbstractAsyncContextManager[BaseSynthesizer[Any]]:
        api_key = None if self._api_key is None else self._api_key.value
        return self._opener(api_key=api_key, sample_rate=sample_rate, **self._options)

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        """Run as a pipeline stage: speak the text frames from ``receive`` into ``send``."""
        params = current_params()
        sample_rate = self.sample_rate if self.sample_rate is not None else params.sample_rate
        engine = TTSEngine(
            functools.partial(self._open, sample_rate),
            language=self._options.get("language"),
            aggregate=self.aggregate,
            max_ahead=self.max_ahead,
            enable_metrics=params.enable_metrics,
            send=send,
        )
        await engine.run(receive)


@final
class WebSocketTTS(_TTSStage):
    """A pipeline stage that speaks text frames over one WebSocket (:func:`~trio_asyncai.open_synthesizer`).

    ::

        tts = WebSocketTTS(voice_id=VOICE)          # key from ASYNCAI_API_KEY
        pipeline = Pipeline([llm, tts, speaker])

    What it does with each frame, and what it sends: :ref:`tts-stages`.

    :param sample_rate: this stage's output sample rate; by default (``None``)
        the pipeline's (:attr:`PipelineParams.sample_rate`).
    :param aggregate: ``"sentence"`` (the default) speaks each sentence as
        soon as it is complete; ``"token"`` passes text on as it comes, and
        lets the service decide when to speak.
    :param max_ahead: utterances synthesized while one is delivered
        (default 1; each is billed, even if a barge-in drops it).
    :param options: :func:`~trio_asyncai.open_synthesizer`'s ``api_key``,
        ``voice_id``, ``model``, ``language``, ``speed_control``,
        ``stability``, ``base_url``, ``keepalive_interval``,
        ``connect_timeout``, ``audio_timeout``, ``close_timeout``,
        ``max_buffered_audio``, ``max_reconnect_attempts`` and
        ``reconnect_backoff``, with its defaults.

    The stage holds options only, the API key masked; it opens its own
    synthesizer each time it runs, and may run in several pipelines.
    """

    def __init__(self, **options: Unpack[WebSocketTTSOptions]) -> None:
        super().__init__(open_synthesizer, WebSocketTTSOptions.__optional_keys__, options)


@final
class HttpTTS(_TTSStage):
    """A pipeline stage that speaks text frames over HTTP (:func:`~trio_asyncai.open_http_synthesizer`).

    It handles frames as :class:`WebSocketTTS` does; each sentence (or, in
    token mode, each piece the synthesizer cuts) is one streaming request,
    and a settings change applies to the next request.

    :param options: :func:`~trio_asyncai.open_http_synthesizer`'s
        ``api_key``, ``voice_id``, ``model``, ``language``,
        ``speed_control``, ``stability``, ``base_url``, ``client``,
        ``connect_timeout``, ``audio_timeout``, ``max_buffered_audio``,
        ``max_retries`` and ``retry_backoff``, with its defaults;
        ``sample_rate``, ``aggregate`` and ``max_ahead`` as for
        :class:`WebSocketTTS`.
    """

    def __init__(self, **options: Unpack[HttpTTSOptions]) -> None:
        super().__init__(open_http_synthesizer, HttpTTSOptions.__optional_keys__, options)


#: The name pipecat gives the WebSocket service: the same class as :class:`WebSocketTTS`.
AsyncAITTSService = WebSocketTTS
#: The name pipecat gives the HTTP service: the same class as :class:`HttpTTS`.
AsyncAIHttpTTSService = HttpTTS
