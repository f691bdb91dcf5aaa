"""Every option of the synthesizers, the REST client and the TTS stages, each defined once.

An option is one :func:`attrs.field`: its name, type, default, check and
documentation (``metadata={"doc": ...}``). Options are grouped by what they
are about (``ServiceOptions``: who and where; ``VoiceOptions``: the first
settings; ``FormatOptions``; one ``*TransportOptions`` per transport;
``StageOwnOptions``), and each public entry point is made of the groups it
takes:

- ``open_synthesizer``: :class:`WebSocketOptions`, the format, WebSocket
  transport, voice and service groups;
- ``open_http_synthesizer``: :class:`HttpOptions`, the format, HTTP
  transport, voice and service groups;
- ``open_client``: :class:`ClientOptions`, the client transport (with its
  whole-file format), voice and service groups;
- ``WebSocketTTS`` and ``HttpTTS``: the stage's own, its transport's, voice
  and service groups.

The factories take these classes' keyword arguments (:func:`takes_options`
gives them their signatures, for type checkers through ParamSpec and for
``help()`` and Sphinx through ``__signature__``), and their docstrings list
the options from the ``doc`` metadata; the synthesizers and stages read the
options objects. So adding an option is one field here.

What can change at runtime is :class:`~trio_asyncai.Settings`' business
(:mod:`trio_asyncai._types`); the ``VoiceOptions`` group holds the first values of
those settings.

Over 500 lines, on purpose: each option's documentation lives with its
field, and is most of the module; splitting the groups apart would split
the one list.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import Any, Final, Literal, ParamSpec, TypeVar, final

import attrs
import httpx

from ._config import ApiKey, mask_api_key, resolve_key_and_url, resolve_voice_id
from ._errors import ConfigurationError
from ._language import Language
from ._types import (
    DEFAULT_MODEL,
    DEFAULT_SAMPLE_RATE,
    OutputFormat,
    Settings,
    check_optional_str,
    check_output_format,
    check_sample_rate,
    check_speed_control,
    check_stability,
    normalize_language,
)
from ._utterance import DEFAULT_MAX_BUFFERED_AUDIO

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Aggregate",
    "ClientOptions",
    "ClientTransportOptions",
    "FormatOptions",
    "HttpOptions",
    "HttpTransportOptions",
    "ServiceOptions",
    "StageOwnOptions",
    "VoiceOptions",
    "WebSocketOptions",
    "WebSocketTransportOptions",
    "first_settings",
    "options_doc",
    "resolve_synthesis",
    "checks_without_frames",
    "takes_options",
    "with_options_doc",
]

P = ParamSpec("P")
Opts = TypeVar("Opts")
R = TypeVar("R")

#: The largest server message we accept by default: one message may carry seconds of audio
#: (four seconds of 48 kHz f32 is 1 MiB of samples, a third more in base64).
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

Aggregate = Literal["sentence", "token"]


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


# ------------------------------------------------------------------ checks


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Durations and sizes: a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{attribute.name} must be positive, not {value!r}")


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Durations and sizes where ``None`` means "no limit"."""
    if value is not None:
        _positive(instance, attribute, value)


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{attribute.name} must be a number >= 0, not {value!r}")


def _count(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be an int >= 0, not {value!r}")


def _message_size(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive int")


def _http_client(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, httpx.AsyncClient):
        raise ConfigurationError("client must be an httpx.AsyncClient")


def _aggregate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("sentence", "token"):
        raise ConfigurationError(f"aggregate must be 'sentence' or 'token', not {value!r}")


def _optional_sample_rate(value: int | None) -> int | None:
    return None if value is None else check_sample_rate(value)


def _streaming_format(value: OutputFormat | None) -> OutputFormat | None:
    return None if value is None else check_output_format(value, streaming=True)


def _whole_file_format(value: OutputFormat | None) -> OutputFormat:
    return check_output_format(OutputFormat() if value is None else value, streaming=False)


def _model(value: str) -> str:
    checked = check_optional_str("model", value)
    if checked is None:
        raise ConfigurationError("model must not be empty")
    return checked


def _api_key(value: str | None) -> ApiKey | None:
    # An ApiKey passes as it is (a stage hands its masked key on): not in the
    # signature, which is the user's.
    return mask_api_key(value)


def _speed_control(value: float | None) -> float | None:
    return check_speed_control(value)


def _stability(value: int | None) -> int | None:
    return check_stability(value)


def _language(value: str | Language | None) -> str | None:
    return normalize_language(value)


def _voice_id(value: str | None) -> str | None:
    return check_optional_str("voice_id", value)


def _base_url(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"base_url must be a str, not {type(value).__name__}")
    return value


# ------------------------------------------------------------------ groups


@attrs.frozen(kw_only=True, slots=False)
class ServiceOptions:
    """Who is calling, and where."""

    # Private (the init argument is still ``api_key``): an options object shows no key.
    _api_key: ApiKey | None = attrs.field(
        default=None,
        converter=_api_key,
        repr=False,
        metadata=_doc(
            "the API key; default ``ASYNCAI_API_KEY``. Needed for the real service, "
            "optional for a local server. Kept masked from the moment it is given."
        ),
    )
    base_url: str | None = attrs.field(
        default=None,
        converter=_base_url,
        metadata=_doc(
            "the service; default ``ASYNCAI_BASE_URL`` or ``https://api.async.com``. "
            "``http(s)://`` becomes ``ws(s)://`` for the WebSocket."
        ),
    )


@attrs.frozen(kw_only=True, slots=False)
class VoiceOptions:
    """The first values of the settings an utterance is spoken with (see :class:`~trio_asyncai.Settings`)."""

    voice_id: str | None = attrs.field(
        default=None, converter=_voice_id, metadata=_doc("the voice; default ``ASYNCAI_VOICE_ID``.")
    )
    model: str = attrs.field(
        default=DEFAULT_MODEL, converter=_model, metadata=_doc("the model id (not checked client-side).")
    )
    language: str | None = attrs.field(
        default=None,
        converter=_language,
        metadata=_doc(
            'an ISO 639-1 code (``"en"``; ``"en-US"`` becomes ``"en"``), a '
            ":class:`~trio_asyncai.Language`, or ``None`` for the voice's own."
        ),
    )
    speed_control: float | None = attrs.field(
        default=None,
        converter=_speed_control,
        metadata=_doc("the speaking rate, 0.7 to 2.0 (``None``: the service's default, 1.0)."),
    )
    stability: int | None = attrs.field(
        default=None,
        converter=_stability,
        metadata=_doc(
            "the voice's stability, an int from 0 to 100 (``None``: the service's default). "
            "The service honours ``speed_control`` and ``stability`` with ``async_flash_v1.0`` "
            "only and ignores them with its other models; they are not refused for other models here."
        ),
    )


@attrs.frozen(kw_only=True, slots=False)
class FormatOptions:
    """The audio format a synthesizer asks for."""

    output_format: OutputFormat | None = attrs.field(
        default=None,
        converter=_streaming_format,
        metadata=_doc(
            "the audio format; default raw ``pcm_s16le`` at ``sample_rate`` (or 24000 Hz). Raw or "
            "mp3; for telephony, ``OutputFormat(encoding=\"pcm_mulaw\", sample_rate=8000)``."
        ),
    )
    sample_rate: int | None = attrs.field(
        default=None,
        converter=_optional_sample_rate,
        metadata=_doc("shorthand for the output format's sample rate."),
    )


@attrs.frozen(kw_only=True, slots=False)
class WebSocketTransportOptions:
    """How the WebSocket synthesizer connects, waits and gives up."""

    keepalive_interval: float | None = attrs.field(
        default=10.0,
        validator=_positive_or_none,
        metadata=_doc("seconds of silence after which a keepalive is sent (``None``: never)."),
    )
    connect_timeout: float = attrs.field(
        default=10.0,
        validator=_positive,
        metadata=_doc(
            "seconds allowed for getting a connection, from the first attempt on, every attempt "
            "and the waits between them included: entering the block against a service that never "
            "answers fails with :exc:`~trio_asyncai.SynthesisTimeout` after this long, and so does "
            "an utterance that needs a new connection (after the backoff a lost connection earned, "
            "which comes first)."
        ),
    )
    audio_timeout: float | None = attrs.field(
        default=10.0,
        validator=_positive_or_none,
        metadata=_doc(
            "seconds a finished utterance waits for its next audio or its end before failing with "
            ":exc:`~trio_asyncai.SynthesisTimeout` (``None``: forever). It runs only once all text "
            "was sent: before that the service owes nothing."
        ),
    )
    close_timeout: float = attrs.field(
        default=2.0,
        validator=_positive,
        metadata=_doc("seconds allowed for closing the connection politely."),
    )
    max_buffered_audio: float | None = attrs.field(
        default=DEFAULT_MAX_BUFFERED_AUDIO,
        validator=_positive_or_none,
        metadata=_doc(
            "seconds of unread audio one utterance may hold before it fails with "
            ":exc:`~trio_asyncai.SlowConsumerError` (``None``: no limit), counted as "
            ":ref:`buffered-audio` says (mp3 by its bit rate). The WebSocket carries every "
            "utterance of a connection, so it cannot hold back one of them: a reader that falls "
            "this far behind loses its utterance, not the others'."
        ),
    )
    max_reconnect_attempts: int = attrs.field(
        default=3,
        validator=_count,
        metadata=_doc(
            "connection attempts after the first that fails, for errors that may pass (network, "
            "429, 5xx), within ``connect_timeout``."
        ),
    )
    reconnect_backoff: float = attrs.field(
        default=0.5,
        validator=_not_negative,
        metadata=_doc(
            "the first delay between attempts; it doubles with each failure (up to 30 s), and each "
            "wait is drawn from ``[d, 1.5 d)`` (:ref:`backoff`). A wait the service asks for "
            "(``retry_after_ms``) is waited instead, exactly; a wait that would pass "
            "``connect_timeout`` is not waited: the error is raised at once."
        ),
    )
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        validator=_message_size,
        metadata=_doc(
            "the largest message (in bytes) accepted from the service; a larger one ends the "
            "connection with :exc:`~trio_asyncai.ConnectionLostError`. One message can hold seconds "
            "of audio in base64: the default is 16 MiB."
        ),
    )


@attrs.frozen(kw_only=True, slots=False)
class HttpTransportOptions:
    """How the HTTP synthesizer sends requests, waits and retries."""

    client: httpx.AsyncClient | None = attrs.field(
        default=None,
        validator=_http_client,
        metadata=_doc(
            "an :class:`httpx.AsyncClient` to send requests with; it is left open. Without one, "
            "the synthesizer makes and closes its own."
        ),
    )
    connect_timeout: float = attrs.field(
        default=5.0,
        validator=_positive,
        metadata=_doc(
            "seconds allowed for each request from sending it to the answer's headers, connecting "
            "included (:exc:`~trio_asyncai.SynthesisTimeout`; retried once)."
        ),
    )
    audio_timeout: float | None = attrs.field(
        default=10.0,
        validator=_positive_or_none,
        metadata=_doc(
            "seconds of silence allowed between body chunks, from the headers on (``None``: "
            "forever); never retried, as audio may have been delivered. No clock runs while the "
            "synthesizer holds back because the utterance's buffer is full."
        ),
    )
    max_buffered_audio: float | None = attrs.field(
        default=DEFAULT_MAX_BUFFERED_AUDIO,
        validator=_positive_or_none,
        metadata=_doc(
            "seconds of unread audio one utterance may hold (``None``: no limit), counted as "
            ":ref:`buffered-audio` says. Over HTTP this is backpressure, never an error: while the "
            "buffer is full, the synthesizer reads no further into the body and sends no request "
            "for the next sentence, until you read."
        ),
    )
    max_retries: int = attrs.field(
        default=3,
        validator=_count,
        metadata=_doc(
            "retries for 429, 5xx and failed connections, before any audio of a request has "
            "arrived (never after); a timeout is retried once at most."
        ),
    )
    retry_backoff: float = attrs.field(
        default=0.5,
        validator=_not_negative,
        metadata=_doc(
            "the first delay between retries; it doubles (up to 30 s, jittered: :ref:`backoff`), and "
            "a wait the service asks for (``extra.retry_after_ms`` or ``Retry-After``) replaces it."
        ),
    )


@attrs.frozen(kw_only=True, slots=False)
class ClientTransportOptions:
    """How the REST client sends requests and retries."""

    output_format: OutputFormat = attrs.field(
        default=None,
        converter=_whole_file_format,
        metadata=_doc(
            "the default audio format of whole-file synthesis: raw, wav or mp3 (``pcm_mulaw`` is a "
            "streaming format, refused here); default raw ``pcm_s16le`` at 24000 Hz."
        ),
    )
    client: httpx.AsyncClient | None = attrs.field(
        default=None,
        validator=_http_client,
        metadata=_doc(
            "an :class:`httpx.AsyncClient` to send requests with; it is left open. Without one, "
            "the client makes and closes its own."
        ),
    )
    timeout: float = attrs.field(
        default=60.0,
        validator=_positive,
        metadata=_doc(
            "seconds allowed for each of connecting, writing the request, waiting for the answer "
            "and each read (the httpx client's timeout; not used with ``client``)."
        ),
    )
    max_retries: int = attrs.field(
        default=3,
        validator=_count,
        metadata=_doc(
            "retries for 429, 5xx and failed connections; requests that are not idempotent "
            "(clone, update, delete) only when they certainly never reached the service."
        )
    )
    retry_backoff: float = attrs.field(
        default=0.5,
        validator=_not_negative,
        metadata=_doc("the first delay between retries, as for the HTTP synthesizer (:ref:`backoff`)."),
    )


@attrs.frozen(kw_only=True, slots=False)
class StageOwnOptions:
    """What a TTS stage adds to its synthesizer's options."""

    sample_rate: int | None = attrs.field(
        default=None,
        converter=_optional_sample_rate,
        metadata=_doc(
            "this stage's output sample rate; by default (``None``) the pipeline's "
            "(:attr:`~trio_asyncai.PipelineParams.sample_rate`)."
        ),
    )
    aggregate: Aggregate = attrs.field(
        default="sentence",
        validator=_aggregate,
        metadata=_doc(
            '``"sentence"`` (the default) speaks each sentence as soon as it is complete; '
            '``"token"`` passes text on as it comes, and lets the synthesizer decide when to speak.'
        ),
    )
    max_ahead: int = attrs.field(
        default=1,
        validator=_count,
        metadata=_doc(
            "utterances synthesized while one is delivered (default 1; each is billed, even if a "
            "barge-in drops it)."
        ),
    )


# ------------------------------------------------------------- the entry points


@final
@attrs.frozen(kw_only=True, slots=False)
class WebSocketOptions(WebSocketTransportOptions, FormatOptions, VoiceOptions, ServiceOptions):
    """The options of :func:`~trio_asyncai.open_synthesizer`."""


@final
@attrs.frozen(kw_only=True, slots=False)
class HttpOptions(HttpTransportOptions, FormatOptions, VoiceOptions, ServiceOptions):
    """The options of :func:`~trio_asyncai.open_http_synthesizer`."""


@final
@attrs.frozen(kw_only=True, slots=False)
class ClientOptions(ClientTransportOptions, VoiceOptions, ServiceOptions):
    """The options of :func:`~trio_asyncai.open_client`."""


def options_doc(options: type) -> str:
    """The ``:param:`` lines of every option of ``options``, from their ``doc`` metadata, in order."""
    lines = []
    for field in attrs.fields(options):
        lines.append(f":param {field.alias}: {field.metadata['doc']}")
    return "\n".join(lines)


def with_options_doc(doc: str | None, options: type) -> str:
    """``doc`` with the options of ``options`` listed after it."""
    return f"{inspect.cleandoc(doc or '')}\n\n{options_doc(options)}\n"


def takes_options(options: Callable[P, Opts], body: Callable[[Opts], R], *, name: str) -> Callable[P, R]:
    """The public function that takes ``options``' keyword arguments and calls ``body`` with them, checked.

    Type checkers see ``options``' parameters (through ParamSpec); ``help()``
    and Sphinx see them through ``__signature__``, and the docstring is
    ``body``'s with the options listed.
    """

    def opener(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            checked = options(*args, **kwargs)
        except Exception as exc:
            failure = exc
        else:
            return body(checked)
        # The arguments (the key among them) are locals of this frame and of
        # the checks': off the traceback of the error about them.
        kwargs.clear()
        raise _without_our_frames(failure)

    assert isinstance(options, type)
    returns = inspect.signature(body).return_annotation
    signature = inspect.signature(options).replace(return_annotation=returns)
    opener.__signature__ = signature  # type: ignore[attr-defined]
    opener.__name__ = opener.__qualname__ = name
    opener.__module__ = body.__module__
    opener.__doc__ = with_options_doc(body.__doc__, options)
    # For Sphinx (sphinxcontrib-trio): what ``body`` is (``async with``, say).
    # inspect.signature stops at ``__signature__``, before following it.
    opener.__wrapped__ = body  # type: ignore[attr-defined]
    return opener


def _without_our_frames(error: Exception) -> Exception:
    """``error`` with no traceback, and the locals of the frames it came through cleared.

    An option check fails in a frame whose locals hold every argument, the
    API key in clear among them; error reporters (Sentry, ``rich``) print
    frame locals. The error is then raised afresh from the public function,
    where only the caller's own frames follow.
    """
    for linked in (error, error.__context__, error.__cause__):
        if linked is not None and linked.__traceback__ is not None:
            traceback.clear_frames(linked.__traceback__)
    return error.with_traceback(None)


def checks_without_frames(init: Callable[P, None]) -> Callable[P, None]:
    """An attrs ``__init__`` whose failed checks leave no argument in a traceback (as ``takes_options``)."""

    @functools.wraps(init)
    def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            init(*args, **kwargs)
        except Exception as exc:
            failure = exc
        else:
            return
        kwargs.clear()
        raise _without_our_frames(failure)

    return checked


def resolve_synthesis(options: WebSocketOptions | HttpOptions) -> tuple[Settings, ApiKey | None, str]:
    """The first settings, the key and the base URL of a synthesizer: its options, else the environment.

    A :exc:`~trio_asyncai.ConfigurationError` when no voice is given, or
    no key for the real service.
    """
    key, url = resolve_key_and_url(options._api_key, options.base_url)
    voice = resolve_voice_id(options.voice_id)
    if voice is None:
        raise ConfigurationError("no voice: pass voice_id= or set ASYNCAI_VOICE_ID")
    rate = options.sample_rate
    output_format = options.output_format or OutputFormat(sample_rate=rate or DEFAULT_SAMPLE_RATE)
    if rate is not None and rate != output_format.sample_rate:
        raise ConfigurationError("sample_rate disagrees with output_format.sample_rate")
    return first_settings(options, voice_id=voice, output_format=output_format), key, url


def first_settings(options: VoiceOptions, *, voice_id: str, output_format: OutputFormat) -> Settings:
    """The :class:`~trio_asyncai.Settings` that ``options`` begin with."""
    given = {name: getattr(options, name) for name in attrs.fields_dict(VoiceOptions) if name != "voice_id"}
    return Settings(**given, voice_id=voice_id, output_format=output_format)
