"""Validation of what clients send, shared by the WebSocket and HTTP endpoints.

Every check raises :exc:`RequestError` with the service's error code and the
HTTP status that goes with it; the endpoints turn it into a JSON error body
(HTTP, :func:`~._admission.error_answer`) or an error message (WebSocket,
``ws_error``). What every request passes first (key, version, fault
statuses) is :mod:`._admission`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypeVar, final

import attrs

from ._mp3 import MP3_UNAVAILABLE, load_lameenc, mp3_bit_rate
from ._voices import LibraryVoice, VoiceLibrary

__all__ = [
    "DEFAULT_OUTPUT_FORMAT",
    "ERROR_STATUS",
    "KNOWN_MODELS",
    "MAX_JSON_BODY_BYTES",
    "MAX_TRANSCRIPT_CHARS",
    "SUPPORTED_LANGUAGES",
    "VOICE_CONTROL_MODEL",
    "VOICE_LANGUAGES",
    "ConnectionSettings",
    "AudioFormat",
    "RequestError",
    "SynthesisRequest",
    "parse_connection_settings",
    "parse_language",
    "parse_output_format",
    "parse_synthesis_request",
    "parse_voice",
    "parse_voice_controls",
    "shown",
    "transcript_too_long",
]

#: The HTTP status of each error code the server uses.
ERROR_STATUS: Final[Mapping[str, int]] = {
    "INVALID_REQUEST": 400,
    "INVALID_LANGUAGE": 400,
    "FORMAT_NOT_RECOGNIZED": 400,
    "SHORT_SPEECH_DURATION": 400,
    "BAD_SPEECH_QUALITY": 400,
    "VOICE_FIELD_UPDATE_NOT_ALLOWED": 400,
    "INVALID_API_KEY": 401,
    "VOICE_NOT_FOUND": 404,
    "VOICE_PREVIEW_NOT_FOUND": 404,
    "VERSION_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "FILE_TOO_LARGE": 413,
    "TOO_MANY_CONCURRENT_REQUESTS": 429,
    "RATE_LIMIT_EXCEEDED": 429,
    "USAGE_LIMIT_EXCEEDED": 429,
    "VOICE_CLONE_LIMIT_EXCEEDED": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}

#: Language codes the service synthesizes (ISO 639-1): the 15 TTS languages.
#: A regional tag (``en-US``) falls back to its base code. Not ``nl``.
SUPPORTED_LANGUAGES: Final = frozenset(
    ["en", "fr", "es", "de", "it", "pt", "ar", "ru", "ro", "ja", "he", "hy", "tr", "hi", "zh"]
)
#: Language codes voices are described and filtered with: the TTS languages and ``nl``.
VOICE_LANGUAGES: Final = SUPPORTED_LANGUAGES | {"nl"}

#: The models the service documents. Other ids are accepted too (our
#: choice): the reference does not say how the service answers an unknown
#: model, and model ids are open strings on the client side.
KNOWN_MODELS: Final = ("async_flash_v1.5", "async_pro_v1.0", "async_flash_v1.0")
#: The one model that honours ``speed_control`` and ``stability``; the
#: others accept and ignore them, as the reference says of the service.
VOICE_CONTROL_MODEL: Final = "async_flash_v1.0"
MIN_SPEED: Final = 0.7
MAX_SPEED: Final = 2.0

#: The longest transcript an HTTP synthesis request may carry, and the most
#: text a WebSocket context may hold unsynthesized, in characters (*our
#: choice*: the reference names no limit). Over it: 400 ``INVALID_REQUEST``.
MAX_TRANSCRIPT_CHARS: Final = 100_000
#: The largest JSON request body, in bytes (*our choice*); over it: 413 ``FILE_TOO_LARGE``.
MAX_JSON_BODY_BYTES: Final = 1024 * 1024
#: How much of a client's value an error message repeats.
_SHOWN_CHARS: Final = 60


def shown(value: object) -> str:
    """``repr(value)``, cut to a few dozen characters: what an error message repeats of a client's value."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def transcript_too_long(length: int) -> RequestError:
    """The error for text over :data:`MAX_TRANSCRIPT_CHARS`."""
    return RequestError(
        "INVALID_REQUEST",
        f"the transcript has {length} characters; at most {MAX_TRANSCRIPT_CHARS} are accepted",
    )


Container = Literal["raw", "wav", "mp3"]
Encoding = Literal["pcm_s16le", "pcm_f32le", "pcm_mulaw"]

_CONTAINERS: Final = ("raw", "wav", "mp3")
_ENCODINGS: Final = ("pcm_s16le", "pcm_f32le", "pcm_mulaw")
#: Encodings only the streaming endpoint and the WebSocket give.
_STREAMING_ENCODINGS: Final = ("pcm_mulaw",)
_SAMPLE_WIDTH: Final = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1}
MIN_SAMPLE_RATE: Final = 8000
MAX_SAMPLE_RATE: Final = 48000
MIN_BIT_RATE: Final = 32000
MAX_BIT_RATE: Final = 320000


class RequestError(Exception):
    """A request the service refuses: ``code`` (``"VOICE_NOT_FOUND"``...), ``status``, ``message``.

    ``extra`` holds the error's further details (``{"voice_id": ...}``), or ``None``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else ERROR_STATUS.get(code, 400)
        self.extra = dict(extra) if extra is not None else None


@final
@attrs.frozen
class AudioFormat:
    """A request's ``output_format``, as the server validated it (not the client's ``OutputFormat``). Mono.

    ``bit_rate`` (bit/s) is always set for mp3 (:func:`parse_output_format`
    fills in the default), and ``encoding`` is then meaningless.
    """

    container: Container = "raw"
    encoding: Encoding = "pcm_s16le"
    sample_rate: int = 44100
    bit_rate: int | None = None

    @property
    def sample_width(self) -> int:
        """Bytes per sample of raw audio (1 for mu-law, 2 or 4)."""
        return _SAMPLE_WIDTH[self.encoding]


#: What a WebSocket connection gets when ``output_format`` is omitted.
DEFAULT_OUTPUT_FORMAT: Final = AudioFormat()


def _int_field(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError("FORMAT_NOT_RECOGNIZED", f"{name} must be an integer, not {shown(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise RequestError("FORMAT_NOT_RECOGNIZED", f"{name} must be an integer, not {shown(value)}")
        value = int(value)
    return value


def parse_output_format(value: object, *, streaming: bool) -> AudioFormat:
    """Validate an ``output_format`` object; ``None`` gives the default format.

    Missing fields take their defaults (raw, pcm_s16le, 44100 Hz). ``wav`` is
    refused on the streaming endpoints, ``pcm_mulaw`` (G.711 mu-law) on the
    others (``/text_to_speech``, ``/with_timestamps``), as the reference
    lists them. ``mp3`` needs the ``lameenc`` package
    and a sample rate and bit rate LAME can make (``_mp3.MP3_BIT_RATES``); its
    ``bit_rate`` defaults to 192000 (lower at the MPEG-2 and MPEG-2.5 rates,
    whose highest are 160000 and 64000), and its ``encoding`` is ignored.
    """
    if value is None:
        return DEFAULT_OUTPUT_FORMAT
    if not isinstance(value, Mapping):
        raise RequestError("FORMAT_NOT_RECOGNIZED", "output_format must be an object")
    container = value.get("container", "raw")
    if container not in _CONTAINERS:
        raise RequestError(
            "FORMAT_NOT_RECOGNIZED", f"container must be one of {_CONTAINERS}, not {shown(container)}"
        )
    if streaming and container == "wav":
        raise RequestError("FORMAT_NOT_RECOGNIZED", "the wav container is not available when streaming")
    encoding = value.get("encoding", "pcm_s16le")
    if container == "mp3":
        encoding = "pcm_s16le"  # ignored for mp3
    elif encoding not in _ENCODINGS:
        raise RequestError(
            "FORMAT_NOT_RECOGNIZED", f"encoding must be one of {_ENCODINGS}, not {shown(encoding)}"
        )
    elif encoding in _STREAMING_ENCODINGS and not streaming:
        raise RequestError(
            "FORMAT_NOT_RECOGNIZED",
            f"{encoding} is available on the streaming endpoint and the WebSocket only",
        )
    sample_rate = _int_field(value.get("sample_rate", 44100), "sample_rate")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise RequestError(
            "FORMAT_NOT_RECOGNIZED",
            f"sample_rate must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, not {sample_rate}",
        )
    bit_rate_value = value.get("bit_rate")
    bit_rate: int | None = None
    if bit_rate_value is not None:
        bit_rate = _int_field(bit_rate_value, "bit_rate")
        if not MIN_BIT_RATE <= bit_rate <= MAX_BIT_RATE:
            raise RequestError(
                "FORMAT_NOT_RECOGNIZED",
                f"bit_rate must be from {MIN_BIT_RATE} to {MAX_BIT_RATE}, not {bit_rate}",
            )
    if container == "mp3":
        try:
            load_lameenc()
        except ImportError:
            raise RequestError("FORMAT_NOT_RECOGNIZED", MP3_UNAVAILABLE) from None
        try:
            bit_rate = mp3_bit_rate(sample_rate, bit_rate)
        except ValueError as exc:
            raise RequestError("FORMAT_NOT_RECOGNIZED", str(exc)) from None
    return AudioFormat(
        container=container,
        encoding=encoding,
        sample_rate=sample_rate,
        bit_rate=bit_rate,
    )


def parse_language(value: object, *, languages: frozenset[str] = SUPPORTED_LANGUAGES) -> str | None:
    """The base language code of ``value`` (``"en-US"`` -> ``"en"``); ``None``/``""`` -> ``None``.

    ``languages`` are the codes accepted: by default those of synthesis
    (:data:`SUPPORTED_LANGUAGES`); the voice list's filter passes
    :data:`VOICE_LANGUAGES`.

    The same reduction as the client's ``normalize_language``, written again
    on purpose: the server is the service's twin and imports nothing from the
    client, so that a bug in the client's rule is caught by the server, not
    mirrored by it.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError("INVALID_LANGUAGE", f"language must be a string, not {shown(value)}")
    base = value.strip().replace("_", "-").split("-", 1)[0].lower()
    if base not in languages:
        raise RequestError(
            "INVALID_LANGUAGE",
            f"language {shown(value)} is not supported; use one of {sorted(languages)}",
        )
    return base


def parse_voice_controls(body: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """``speed_control`` (a number from 0.7 to 2.0) and ``stability`` (an integer from 0 to 100).

    Missing or null: ``None``. Anything else out of range or of the wrong
    type: 400 ``INVALID_REQUEST`` (our choice: the reference names no code).
    """
    speed = body.get("speed_control")
    if speed is not None:
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise RequestError("INVALID_REQUEST", f"speed_control must be a number, not {shown(speed)}")
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise RequestError(
                "INVALID_REQUEST", f"speed_control must be from {MIN_SPEED} to {MAX_SPEED}, not {speed}"
            )
        speed = float(speed)
    stability = body.get("stability")
    if stability is not None:
        if (
            isinstance(stability, bool)
            or not isinstance(stability, int | float)
            or (isinstance(stability, float) and not stability.is_integer())
        ):
            raise RequestError("INVALID_REQUEST", f"stability must be an integer, not {shown(stability)}")
        stability = int(stability)
        if not 0 <= stability <= 100:
            raise RequestError("INVALID_REQUEST", f"stability must be from 0 to 100, not {stability}")
    return speed, stability


def _voice_for(
    voice: LibraryVoice,
    model_id: str,
    speed: float | None,
    stability: int | None,
    language: str | None,
    language_from_voice: bool,
) -> LibraryVoice:
    """The voice as this request renders it: in its language, with its voice controls if the model takes them.

    Without a ``language`` the voice's ``params.language`` stays ``None``
    (the server reads the text in the language of its script), or, with
    ``language_from_voice``, is the voice's own (the first of its codes).
    """
    params = voice.params
    if model_id == VOICE_CONTROL_MODEL:
        if speed is not None:
            params = attrs.evolve(params, speed=speed)
        if stability is not None:
            params = attrs.evolve(params, stability=stability)
    if language is None and language_from_voice:
        own = voice.language.split(",", 1)[0].strip().lower()
        language = own if own in SUPPORTED_LANGUAGES else None
    if language != params.language:
        params = attrs.evolve(params, language=language)
    return voice if params is voice.params else attrs.evolve(voice, params=params)


def parse_voice(value: object, voices: VoiceLibrary) -> LibraryVoice:
    """The voice named by a ``{"mode": "id", "id": ...}`` object."""
    if not isinstance(value, Mapping):
        raise RequestError("INVALID_REQUEST", 'voice must be an object {"mode": "id", "id": ...}')
    mode = value.get("mode", "id")
    if mode != "id":
        raise RequestError("INVALID_REQUEST", f'voice mode must be "id", not {shown(mode)}')
    voice_id = value.get("id")
    if not isinstance(voice_id, str) or not voice_id:
        raise RequestError("INVALID_REQUEST", "voice.id must be a non-empty string")
    voice = voices.get(voice_id)
    if voice is None:
        message = f"voice {shown(voice_id)} not found"
        raise RequestError("VOICE_NOT_FOUND", message, extra={"voice_id": voice_id})
    return voice


def _model_id(body: Mapping[str, Any]) -> str:
    model_id = body.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise RequestError("INVALID_REQUEST", "model_id must be a non-empty string")
    return model_id


@attrs.frozen
class _VoiceSettings:
    """What a synthesis request and an initializeConnection both fix (see their parsers).

    ``voice`` is the voice as rendered: its ``params.speed`` and
    ``params.stability`` are the request's when the model honours them, its
    ``params.language`` the request's language (or, without one and with the
    ``language_from_voice`` switch, the voice's own; else ``None``).
    """

    model_id: str
    voice: LibraryVoice
    output_format: AudioFormat
    language: str | None
    speed_control: float | None = None
    stability: int | None = None


@final
@attrs.frozen
class ConnectionSettings(_VoiceSettings):
    """What a WebSocket's initializeConnection fixes for the whole connection."""


@final
@attrs.frozen
class SynthesisRequest(_VoiceSettings):
    """A validated HTTP synthesis request body: the settings and the transcript."""

    transcript: str = attrs.field(kw_only=True)


_Settings = TypeVar("_Settings", bound=_VoiceSettings)


def _parse_voice_settings(
    kind: type[_Settings],
    body: Mapping[str, Any],
    voices: VoiceLibrary,
    model_id: str,
    *,
    streaming: bool,
    language_from_voice: bool,
    **more: Any,
) -> _Settings:
    """The validation both parsers share, in this order: voice, format, language, voice controls.

    Builds a ``kind`` with them, ``model_id`` and ``more`` (the transcript).
    ``language_from_voice`` is the behaviour switch of that name
    (:class:`~trio_asyncai.server.Faults`): without a ``language``, speak the
    voice's own.
    """
    if "voice" not in body:
        raise RequestError("INVALID_REQUEST", "voice is required")
    voice = parse_voice(body["voice"], voices)
    output_format = parse_output_format(body.get("output_format"), streaming=streaming)
    language = parse_language(body.get("language"))
    speed, stability = parse_voice_controls(body)
    return kind(
        model_id=model_id,
        voice=_voice_for(voice, model_id, speed, stability, language, language_from_voice),
        output_format=output_format,
        language=language,
        speed_control=speed,
        stability=stability,
        **more,
    )


def parse_connection_settings(
    body: object, voices: VoiceLibrary, *, language_from_voice: bool = False
) -> ConnectionSettings:
    """Validate an initializeConnection message (streaming formats; ``language_from_voice``: as above)."""
    if not isinstance(body, Mapping):
        raise RequestError("INVALID_REQUEST", "the message must be a JSON object")
    if "model_id" not in body and "voice" not in body:
        raise RequestError(
            "INVALID_REQUEST",
            "the first message must be initializeConnection: {model_id, voice, output_format}",
        )
    model_id = _model_id(body)
    return _parse_voice_settings(
        ConnectionSettings, body, voices, model_id, streaming=True, language_from_voice=language_from_voice
    )


def parse_synthesis_request(
    body: object, voices: VoiceLibrary, *, streaming: bool, language_from_voice: bool = False
) -> SynthesisRequest:
    """Validate the JSON body of the HTTP synthesis endpoints (``language_from_voice``: as above)."""
    if not isinstance(body, Mapping):
        raise RequestError("INVALID_REQUEST", "the body must be a JSON object")
    model_id = _model_id(body)
    transcript = body.get("transcript")
    if not isinstance(transcript, str):
        raise RequestError("INVALID_REQUEST", "transcript must be a string")
    if not transcript.strip():
        raise RequestError("INVALID_REQUEST", "transcript is empty")
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise transcript_too_long(len(transcript))
    return _parse_voice_settings(
        SynthesisRequest,
        body,
        voices,
        model_id,
        streaming=streaming,
        language_from_voice=language_from_voice,
        transcript=transcript,
    )
