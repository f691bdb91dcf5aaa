"""Value types and their checks: formats, audio chunks, metrics, settings.

Where values come from (arguments, the environment, defaults) is
:mod:`trio_asyncai._config`'s business; this module only says what a valid
value is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypedDict, Unpack, final

import attrs

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_MODEL",
    "AudioChunk",
    "Container",
    "Encoding",
    "OutputFormat",
    "Settings",
    "SettingsChanges",
    "UtteranceMetrics",
]

Container = Literal["raw", "wav", "mp3"]
Encoding = Literal["pcm_s16le", "pcm_f32le", "pcm_mulaw"]

#: The model used unless told otherwise: the one the service recommends for
#: voice agents and real-time use. Any model id may be given; ids are not
#: checked client-side.
DEFAULT_MODEL: Final = "async_flash_v1.5"

_CONTAINERS: Final = ("raw", "wav", "mp3")
_ENCODINGS: Final = ("pcm_s16le", "pcm_f32le", "pcm_mulaw")
#: Bytes per sample of each encoding.
_SAMPLE_WIDTH: Final = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1}
MIN_SAMPLE_RATE: Final = 8000
MAX_SAMPLE_RATE: Final = 48000
#: The sample rate used when none is asked for, everywhere (SDK, pipeline,
#: command line): 24 kHz, the common rate of voice pipelines.
DEFAULT_SAMPLE_RATE: Final = 24000
#: The range of ``speed_control``.
MIN_SPEED: Final = 0.7
MAX_SPEED: Final = 2.0


def _check_container(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _CONTAINERS:
        raise ConfigurationError(f"container must be one of {_CONTAINERS}, not {value!r}")


def _check_encoding(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _ENCODINGS:
        raise ConfigurationError(f"encoding must be one of {_ENCODINGS}, not {value!r}")


def check_sample_rate(value: object) -> int:
    """``value`` if it is an int sample rate the service takes, else a ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"sample_rate must be an int, not {type(value).__name__}")
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise ConfigurationError(
            f"sample_rate must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, not {value}"
        )
    return value


def sample_rate_validator(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """:func:`check_sample_rate` as an attrs validator (OutputFormat, PipelineParams)."""
    check_sample_rate(value)


def _check_bit_rate(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 32000 <= value <= 320000:
        raise ConfigurationError(f"bit_rate must be an int from 32000 to 320000, not {value!r}")


@final
@attrs.frozen
class OutputFormat:
    """The audio format the service returns.

    ``container`` is ``"raw"`` (bare samples), ``"wav"`` or ``"mp3"`` (``"wav"``
    on the whole-file endpoints only; the streaming ones take ``"raw"`` and
    ``"mp3"``). ``encoding`` is the sample format of raw and wav audio:
    ``"pcm_s16le"``, ``"pcm_f32le"``, or ``"pcm_mulaw"`` (8-bit G.711 mu-law,
    the telephony format; the streaming endpoint and the WebSocket only, so
    the whole-file and timestamp calls refuse it). ``bit_rate`` applies to mp3
    only (``None``: the service's default, 192000 where the rate allows).
    Audio is mono.

    A telephony stream is ``OutputFormat(encoding="pcm_mulaw", sample_rate=8000)``.
    """

    container: Container = attrs.field(default="raw", validator=_check_container)
    encoding: Encoding = attrs.field(default="pcm_s16le", validator=_check_encoding)
    sample_rate: int = attrs.field(default=DEFAULT_SAMPLE_RATE, validator=sample_rate_validator)
    bit_rate: int | None = attrs.field(default=None, validator=_check_bit_rate)

    @property
    def sample_width(self) -> int:
        """Bytes per sample of raw audio in this format (1 for mu-law, 2 or 4)."""
        return _SAMPLE_WIDTH[self.encoding]

    def to_json(self) -> dict[str, Any]:
        """The ``output_format`` object as the API takes it."""
        out: dict[str, Any] = {
            "container": self.container,
            "encoding": self.encoding,
            "sample_rate": self.sample_rate,
        }
        if self.container == "mp3" and self.bit_rate is not None:
            # Left out otherwise: the service then picks its default
            # (192 kbit/s where the sample rate allows it).
            out["bit_rate"] = self.bit_rate
        return out


@final
@attrs.frozen
class AudioChunk:
    """One piece of an utterance's audio, in the order the service produced it.

    ``audio`` is the bytes as the service sent them: raw samples in
    ``encoding`` (one byte each for ``"pcm_mulaw"``), or mp3 frames when
    ``container`` is ``"mp3"``.
    """

    audio: bytes = attrs.field(repr=lambda a: f"<{len(a)} bytes>")
    sample_rate: int
    num_channels: int = 1
    encoding: Encoding = "pcm_s16le"
    container: Container = "raw"
    #: The utterance the chunk belongs to: its Async context id on the
    #: WebSocket, the id of its requests over HTTP (:attr:`Utterance.context_id`).
    context_id: str | None = None

    @property
    def sample_width(self) -> int:
        """Bytes per sample of raw audio in this chunk's encoding (1 for mu-law, 2 or 4)."""
        return _SAMPLE_WIDTH[self.encoding]

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk (0.0 for mp3, whose length is not known by size)."""
        if self.container == "mp3":
            return 0.0
        return len(self.audio) / (self.sample_width * self.num_channels * self.sample_rate)


@final
@attrs.frozen
class UtteranceMetrics:
    """What one utterance cost and how quickly it came.

    Times are in seconds on trio's clock, measured from the moment the first
    text of the utterance was handed to the transport.
    """

    #: Seconds from the first text sent to the first audio byte received.
    ttfb: float | None = None
    #: Seconds from the first text sent to the end of the utterance's audio.
    processing_time: float | None = None
    #: Characters of text sent for synthesis.
    characters: int = 0
    #: Bytes of audio delivered.
    audio_bytes: int = 0


def check_text(text: object, *, allow_empty: bool = False) -> str:
    """``text`` if it is a str (non-blank unless ``allow_empty``); else a ConfigurationError."""
    if not isinstance(text, str):
        raise ConfigurationError(f"text must be a str, not {type(text).__name__}")
    if not allow_empty and not text.strip():
        raise ConfigurationError("text must not be empty")
    return text


def check_optional_str(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ConfigurationError(f"{name} must not be empty")
    return value


def normalize_language(language: object) -> str | None:
    """The base code of a language: ``"en-US"`` -> ``"en"``, ``"pt_BR"`` -> ``"pt"``.

    The one place the client reduces a language tag to the code the service
    takes. ``None`` stays ``None``; anything with a ``.value`` (a
    :class:`~trio_asyncai.Language`) is unwrapped. Any other code passes
    through unchecked, as model ids do: the service answers a language it
    does not speak (``"nl"``, say) with ``INVALID_LANGUAGE``.
    """
    if language is None:
        return None
    value = getattr(language, "value", language)
    checked = check_optional_str("language", value)
    if checked is None:
        return None
    return checked.replace("_", "-").split("-", 1)[0].lower()


def check_speed_control(value: object) -> float | None:
    """``value`` as a speaking-rate factor from 0.7 to 2.0 (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"speed_control must be a number, not {type(value).__name__}")
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ConfigurationError(f"speed_control must be from {MIN_SPEED} to {MAX_SPEED}, not {value}")
    return float(value)


def check_stability(value: object) -> int | None:
    """``value`` as a stability from 0 to 100 (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"stability must be an int, not {type(value).__name__}")
    if not 0 <= value <= 100:
        raise ConfigurationError(f"stability must be from 0 to 100, not {value}")
    return value


def check_output_format(output_format: object, *, streaming: bool) -> OutputFormat:
    """``output_format`` if the endpoints it is for accept it; else a ConfigurationError.

    Streaming (the WebSocket, ``/text_to_speech/streaming``) takes no wav;
    whole-file synthesis (``/text_to_speech``, ``/with_timestamps``) takes no
    ``pcm_mulaw``.
    """
    if not isinstance(output_format, OutputFormat):
        raise ConfigurationError("output_format must be an OutputFormat")
    if streaming and output_format.container == "wav":
        raise ConfigurationError("streaming gives raw or mp3 audio, not wav")
    if not streaming and output_format.encoding == "pcm_mulaw":
        raise ConfigurationError(
            "pcm_mulaw is a streaming format (the WebSocket and the streaming endpoint), "
            "not one for whole-file synthesis"
        )
    return output_format


def _required_str(name: str, value: str) -> str:
    checked = check_optional_str(name, value)
    if checked is None:
        raise ConfigurationError(f"{name} must be given")
    return checked


def _voice_id(value: str) -> str:
    return _required_str("voice_id", value)


def _model(value: str) -> str:
    return _required_str("model", value)


def _format(value: OutputFormat) -> OutputFormat:
    if not isinstance(value, OutputFormat):
        raise ConfigurationError("output_format must be an OutputFormat")
    return value


class SettingsChanges(TypedDict, total=False):
    """Changes to :class:`Settings`, by name: what can change at runtime.

    The keyword arguments of :meth:`Settings.with_changes`,
    :meth:`Synthesizer.update_settings <trio_asyncai.Synthesizer.update_settings>`
    and :meth:`AsyncAIClient.synthesize <trio_asyncai.AsyncAIClient.synthesize>`;
    ``None`` leaves a setting as it is. Mirrors :class:`Settings`' fields
    for type checkers (a test keeps the two alike).
    """

    voice_id: str | None
    model: str | None
    language: object
    output_format: OutputFormat | None
    speed_control: float | None
    stability: int | None


@final
@attrs.frozen
class Settings:
    """The per-connection synthesis settings: voice, model, language, output format, voice controls.

    Its fields are the one list of what can change at runtime, each with its
    one check. Immutable; use :meth:`with_changes` or a synthesizer's
    ``update_settings``.

    ``speed_control`` (0.7 to 2.0, the speaking rate) and ``stability`` (0 to
    100) are sent only when set (``None``: the service's default). The service
    honours them with ``async_flash_v1.0`` only and ignores them with its
    other models; they are not refused for other models here, since model ids
    are open strings.
    """

    voice_id: str = attrs.field(converter=_voice_id)
    model: str = attrs.field(default=DEFAULT_MODEL, converter=_model)
    language: str | None = attrs.field(default=None, converter=normalize_language)
    output_format: OutputFormat = attrs.field(default=OutputFormat(), converter=_format)
    speed_control: float | None = attrs.field(default=None, converter=check_speed_control)
    stability: int | None = attrs.field(default=None, converter=check_stability)

    def with_changes(self, **changes: Unpack[SettingsChanges]) -> Settings:
        """A copy with the given (non-``None``) settings replaced, each checked once."""
        return attrs.evolve(self, **self.check_changes(changes))

    @classmethod
    def check_changes(cls, changes: Mapping[str, object]) -> dict[str, Any]:
        """``changes`` without the ``None`` values, each checked and normalized as its setting is.

        A :exc:`TypeError` for a name that is no setting; a
        :exc:`~trio_asyncai.ConfigurationError` for a bad value.
        """
        fields = attrs.fields_dict(cls)
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise TypeError(f"{name!r} is not a setting (settings: {', '.join(fields)})")
            if value is not None:
                converter = fields[name].converter
                checked[name] = converter(value) if callable(converter) else value
        return checked

    def request_body(self) -> dict[str, Any]:
        """The fields every synthesis request carries (without the text)."""
        body: dict[str, Any] = {
            "model_id": self.model,
            "voice": {"mode": "id", "id": self.voice_id},
            "output_format": self.output_format.to_json(),
        }
        if self.language is not None:
            body["language"] = self.language
        if self.speed_control is not None:
            body["speed_control"] = self.speed_control
        if self.stability is not None:
            body["stability"] = self.stability
        return body
