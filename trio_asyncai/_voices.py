"""The rest of the HTTP API: whole-file synthesis, word timestamps and voices."""

from __future__ import annotations

import base64
import binascii
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, final

import attrs
import httpx

from ._errors import ConfigurationError, ProtocolError
from ._rest import RestCore
from ._types import (
    DEFAULT_MODEL,
    SERVICE_HOSTS,
    OutputFormat,
    Settings,
    _check_optional_str,
    check_output_format,
    check_speed_control,
    check_stability,
    check_text,
    normalize_language,
    resolve_api_key,
    resolve_base_url,
    resolve_voice_id,
)

__all__ = [
    "AsyncAIClient",
    "TimestampedAudio",
    "Voice",
    "Voices",
    "WordTimestamp",
    "open_client",
]

_MAX_PAGE: Final = 100


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


@final
@attrs.frozen
class Voice:
    """A voice, as the service describes it."""

    voice_id: str
    name: str | None = None
    description: str | None = None
    language: str | None = None
    gender: str | None = None
    accent: str | None = None
    style: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    #: ``"PREDEFINED"`` (the service's own) or ``"CUSTOM"`` (cloned by you).
    voice_type: str | None = None

    @classmethod
    def from_json(cls, data: object) -> Voice:
        """Build a voice from the API's JSON object (unknown fields are ignored)."""
        if not isinstance(data, dict):
            raise ProtocolError("a voice is not a JSON object")
        voice_id = data.get("voice_id", data.get("id"))
        if not isinstance(voice_id, str) or not voice_id:
            raise ProtocolError("a voice has no voice_id")
        fields = ("name", "description", "language", "gender", "accent", "style")
        return cls(
            voice_id=voice_id,
            **{f: _opt_str(data, f) for f in fields},
            created_at=None if data.get("created_at") is None else str(data["created_at"]),
            updated_at=None if data.get("updated_at") is None else str(data["updated_at"]),
            voice_type=_opt_str(data, "voice_type"),
        )


@final
@attrs.frozen
class WordTimestamp:
    """One word and when it is spoken, in seconds from the start of the audio."""

    word: str
    start: float
    end: float


@final
@attrs.frozen
class TimestampedAudio:
    """Audio and the time of each word in it."""

    audio: bytes = attrs.field(repr=lambda a: f"<{len(a)} bytes>")
    output_format: OutputFormat
    words: tuple[WordTimestamp, ...]


def _parse_alignment(data: object) -> tuple[WordTimestamp, ...]:
    if not isinstance(data, dict):
        raise ProtocolError("alignment is not a JSON object")
    words = data.get("words")
    starts = data.get("word_start_times_milliseconds")
    ends = data.get("word_end_times_milliseconds")
    if not (isinstance(words, list) and isinstance(starts, list) and isinstance(ends, list)):
        raise ProtocolError("alignment lacks words or their times")
    if not len(words) == len(starts) == len(ends):
        raise ProtocolError("alignment lists differ in length")
    out = []
    for word, start, end in zip(words, starts, ends, strict=True):
        if not isinstance(word, str) or not all(
            isinstance(t, int | float) and not isinstance(t, bool) for t in (start, end)
        ):
            raise ProtocolError("alignment holds a value of the wrong type")
        out.append(WordTimestamp(word, start / 1000.0, end / 1000.0))
    return tuple(out)


@final
class Voices:
    """Voice management: list, get, update, delete, preview and clone. Use ``client.voices``."""

    def __init__(self, rest: RestCore) -> None:
        self._rest = rest

    def __repr__(self) -> str:
        return f"<Voices {self._rest.base_url}>"

    async def list(
        self,
        *,
        page_size: int = 10,
        gender: str | None = None,
        my_voice: bool | None = None,
    ) -> AsyncIterator[Voice]:
        """Every voice, page by page (following ``next_cursor``), as an async iterator.

        :param page_size: voices per request, 1 to 100.
        :param gender: only voices of this gender.
        :param my_voice: only your own (``True``) or only predefined (``False``) voices.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= _MAX_PAGE:
            raise ConfigurationError("page_size must be an int from 1 to 100")
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"limit": page_size}
            if gender is not None:
                body["gender"] = gender
            if my_voice is not None:
                body["my_voice"] = my_voice
            if cursor is not None:
                body["cursor"] = cursor
            data = await self._rest.request_json("POST", "/voices", json_body=body, what="listing voices")
            if not isinstance(data, dict) or not isinstance(data.get("voices"), list):
                raise ProtocolError("the voice list has no 'voices' array")
            for item in data["voices"]:
                yield Voice.from_json(item)
            next_cursor = data.get("next_cursor")
            if not isinstance(next_cursor, str) or not next_cursor or next_cursor == cursor:
                return
            cursor = next_cursor

    async def get(self, voice_id: str) -> Voice:
        """One voice by id (:exc:`~trio_asyncai.NotFoundError` if there is none)."""
        data = await self._rest.request_json(
            "GET", f"/voices/{_voice_path(voice_id)}", what="getting a voice"
        )
        return Voice.from_json(data.get("voice", data) if isinstance(data, dict) else data)

    async def update(
        self,
        voice_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        language: str | None = None,
        gender: str | None = None,
        accent: str | None = None,
        style: str | None = None,
    ) -> Voice:
        """Change a voice's details; only the fields given are sent. Returns the voice as updated."""
        changes = {
            k: v
            for k, v in {
                "name": name,
                "description": description,
                "language": language,
                "gender": gender,
                "accent": accent,
                "style": style,
            }.items()
            if v is not None
        }
        if not changes:
            raise ConfigurationError("update() needs at least one field to change")
        data = await self._rest.request_json(
            "PUT", f"/voices/{_voice_path(voice_id)}", json_body=changes, what="updating a voice"
        )
        if isinstance(data, dict) and ("voice_id" in data or "voice" in data):
            return Voice.from_json(data.get("voice", data))
        return await self.get(voice_id)

    async def delete(self, voice_id: str) -> None:
        """Delete one of your voices."""
        await self._rest.request("DELETE", f"/voices/{_voice_path(voice_id)}", what="deleting a voice")

    async def preview(self, voice_id: str) -> bytes:
        """A short sample of the voice (audio file bytes, as the service sends them)."""
        response = await self._rest.request(
            "GET", f"/voices/{_voice_path(voice_id)}/preview", what="previewing a voice"
        )
        return response.content

    async def clone(
        self,
        audio: bytes | str | os.PathLike[str],
        *,
        name: str,
        language: str = "en",
        description: str | None = None,
        accent: str | None = None,
        gender: str | None = None,
        style: str | None = None,
        enhance: bool = False,
        transcript: str | None = None,
        filename: str | None = None,
    ) -> Voice:
        """Create a voice from a recording (a file path or its bytes; WAV or MP3).

        Returns the new ``CUSTOM`` voice, ready for synthesis.
        """
        if isinstance(audio, bytes):
            content, fname = audio, filename or "sample.wav"
        elif isinstance(audio, str | os.PathLike):
            path = os.fspath(audio)
            with open(path, "rb") as f:  # noqa: ASYNC230 - a small local file, read once
                content = f.read()
            fname = filename or os.path.basename(path)
        else:
            raise ConfigurationError("audio must be bytes or a file path")
        if not content:
            raise ConfigurationError("the audio sample is empty")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("a cloned voice needs a name")
        form: dict[str, Any] = {"name": name, "language": normalize_language(language) or "en"}
        form["enhance"] = "true" if enhance else "false"
        for key, value in (
            ("description", description),
            ("accent", accent),
            ("gender", gender),
            ("style", style),
            ("transcript", transcript),
        ):
            if value is not None:
                form[key] = value
        mime = "audio/mpeg" if fname.lower().endswith(".mp3") else "audio/wav"
        data = await self._rest.request_json(
            "POST",
            "/voices/clone",
            data=form,
            files={"audio": (fname, content, mime)},
            what="cloning a voice",
        )
        return Voice.from_json(data.get("voice", data) if isinstance(data, dict) else data)


def _voice_path(voice_id: str) -> str:
    if not isinstance(voice_id, str) or not voice_id.strip():
        raise ConfigurationError("voice_id must be a non-empty str")
    # Every reserved character escaped: "a#b" or "../status" must stay one path segment.
    return urllib.parse.quote(voice_id.strip(), safe="")


@final
class AsyncAIClient:
    """The API's request/response endpoints. Made by :func:`open_client`.

    For streaming speech use the synthesizers; this client covers whole-file
    synthesis, word timestamps, voices (``client.voices``) and the status check.
    """

    def __init__(self, rest: RestCore, *, defaults: Mapping[str, Any]) -> None:
        self._rest = rest
        #: The synthesis defaults: Settings' fields, ``voice_id`` perhaps None.
        self._defaults = dict(defaults)
        #: Voice management.
        self.voices = Voices(rest)

    def __repr__(self) -> str:
        return f"<AsyncAIClient {self._rest.base_url}>"

    def _settings(
        self,
        voice_id: str | None,
        model: str | None,
        language: object,
        output_format: OutputFormat | None,
        speed_control: float | None,
        stability: int | None,
    ) -> Settings:
        if voice_id is None and self._defaults["voice_id"] is None:
            raise ConfigurationError("no voice: pass voice_id= or set ASYNCAI_VOICE_ID")
        voice = voice_id if voice_id is not None else self._defaults["voice_id"]
        base = Settings(**{**self._defaults, "voice_id": voice})
        if output_format is not None:
            check_output_format(output_format, streaming=False)
        return base.with_changes(
            voice_id=voice_id,
            model=model,
            language=language,
            output_format=output_format,
            speed_control=speed_control,
            stability=stability,
        )

    def _body(self, text: str, settings: Settings) -> dict[str, Any]:
        body = settings.request_body()
        body["transcript"] = check_text(text)
        return body

    async def synthesize(
        self,
        text: str,
        *,
        voice_id: str | None = None,
        model: str | None = None,
        language: object = None,
        output_format: OutputFormat | None = None,
        speed_control: float | None = None,
        stability: int | None = None,
    ) -> bytes:
        """The whole audio file for ``text`` (``/text_to_speech``): raw, wav or mp3 bytes.

        The keyword arguments override the client's defaults for this call
        (see :func:`open_client`). ``pcm_mulaw`` is refused: the service
        gives it on the streaming endpoints only.
        """
        settings = self._settings(voice_id, model, language, output_format, speed_control, stability)
        response = await self._rest.request(
            "POST", "/text_to_speech", json_body=self._body(text, settings), what="synthesis"
        )
        return response.content

    async def synthesize_with_timestamps(
        self,
        text: str,
        *,
        voice_id: str | None = None,
        model: str | None = None,
        language: object = None,
        output_format: OutputFormat | None = None,
        speed_control: float | None = None,
        stability: int | None = None,
    ) -> TimestampedAudio:
        """Audio for ``text`` with the start and end time of every word.

        Takes the keyword arguments of :meth:`synthesize`.
        """
        settings = self._settings(voice_id, model, language, output_format, speed_control, stability)
        data = await self._rest.request_json(
            "POST",
            "/text_to_speech/with_timestamps",
            json_body=self._body(text, settings),
            what="synthesis with timestamps",
        )
        if not isinstance(data, dict) or not isinstance(data.get("audio_base64"), str):
            raise ProtocolError("the answer has no audio_base64")
        try:
            audio = base64.b64decode(data["audio_base64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("audio_base64 is not valid base64") from exc
        return TimestampedAudio(
            audio=audio,
            output_format=settings.output_format,
            words=_parse_alignment(data.get("alignment")),
        )

    async def status(self) -> dict[str, Any]:
        """The service's status check (``GET /status``), as the JSON it returns."""
        data = await self._rest.request_json("GET", "/status", what="status check")
        if not isinstance(data, dict):
            raise ProtocolError("the status answer is not a JSON object")
        return data


@asynccontextmanager
async def open_client(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    voice_id: str | None = None,
    model: str = DEFAULT_MODEL,
    language: Literal[None] | str = None,
    output_format: OutputFormat | None = None,
    speed_control: float | None = None,
    stability: int | None = None,
    client: httpx.AsyncClient | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - the httpx client's per-request timeout
    max_retries: int = 3,
    retry_backoff: float = 0.5,
) -> AsyncIterator[AsyncAIClient]:
    """Open an :class:`AsyncAIClient` for whole-file synthesis, timestamps and voices.

    ``voice_id``, ``model``, ``language``, ``output_format``,
    ``speed_control`` and ``stability`` are defaults for the synthesis calls,
    each of which can override them. They are checked here as
    :func:`~trio_asyncai.open_synthesizer` checks them, except that wav is
    allowed and ``pcm_mulaw`` (a streaming format) is not.
    """
    key = resolve_api_key(api_key)
    url = resolve_base_url(base_url)
    if key is None and (httpx.URL(url).host or "") in SERVICE_HOSTS:
        raise ConfigurationError("no API key: pass api_key= or set ASYNCAI_API_KEY")
    voice = resolve_voice_id(voice_id)
    fmt = check_output_format(output_format or OutputFormat(), streaming=False)
    # Checked now even without a default voice: a bad default is a bad argument.
    speed = check_speed_control(speed_control)
    steady = check_stability(stability)
    if _check_optional_str("model", model) is None:
        raise ConfigurationError("model must not be empty")
    defaults = {
        "voice_id": voice,
        "model": model,
        "language": normalize_language(language),
        "output_format": fmt,
        "speed_control": speed,
        "stability": steady,
    }
    # No nursery here, so nothing to unwrap: the caller's exceptions pass as they are.
    if client is not None:
        yield AsyncAIClient(
            RestCore(client, base_url=url, api_key=key, max_retries=max_retries, retry_backoff=retry_backoff),
            defaults=defaults,
        )
        return
    async with httpx.AsyncClient(timeout=timeout) as own:
        yield AsyncAIClient(
            RestCore(own, base_url=url, api_key=key, max_retries=max_retries, retry_backoff=retry_backoff),
            defaults=defaults,
        )
