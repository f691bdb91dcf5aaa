"""The REST client (AsyncAIClient): whole-file synthesis, word timestamps and voices."""

from __future__ import annotations

import base64
import binascii
import builtins
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Unpack, final

import attrs
import trio

from ._backend import require_trio
from ._config import resolve_key_and_url, resolve_voice_id
from ._errors import ConfigurationError, ProtocolError
from ._options import ClientOptions, first_settings, takes_options
from ._rest import RestClient, httpx_client
from ._types import (
    OutputFormat,
    Settings,
    SettingsChanges,
    check_output_format,
    check_text,
    normalize_language,
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


#: The genders the service knows, as it spells them.
GENDERS: Final = ("Male", "Female", "Neutral", "Unspecified")

#: The largest clone sample the service takes (10 MB).
MAX_CLONE_BYTES: Final = 10 * 1024 * 1024

#: Clone sample formats: (file name suffixes, content type, leading bytes test).
_SAMPLE_KINDS: Final[tuple[tuple[tuple[str, ...], str, Callable[[bytes], bool]], ...]] = (
    ((".wav", ".wave"), "audio/wav", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE"),
    ((".mp3",), "audio/mpeg", lambda b: b[:3] == b"ID3" or (b[:1] == b"\xff" and b[1:2] >= b"\xe0")),
    ((".flac",), "audio/flac", lambda b: b[:4] == b"fLaC"),
    ((".aiff", ".aif", ".aifc"), "audio/aiff", lambda b: b[:4] == b"FORM" and b[8:12] in (b"AIFF", b"AIFC")),
)


def _sample_kind(content: bytes, filename: str | None) -> tuple[str, str]:
    """(file name, content type) for a clone sample, from its name or else its first bytes."""
    if filename is not None:
        lower = filename.lower()
        for suffixes, mime, _ in _SAMPLE_KINDS:
            if lower.endswith(suffixes):
                return filename, mime
    for suffixes, mime, sniff in _SAMPLE_KINDS:
        if sniff(content):
            return filename or "sample" + suffixes[0], mime
    # Not one we know: the service decides (FORMAT_NOT_RECOGNIZED if it cannot read it).
    return filename or "sample", "application/octet-stream"


def _gender(value: str | None) -> str | None:
    """A gender as the service spells it (``"male"`` -> ``"Male"``); ``None`` stays ``None``."""
    if value is None:
        return None
    for gender in GENDERS:
        if isinstance(value, str) and value.strip().lower() == gender.lower():
            return gender
    raise ConfigurationError(f"gender must be one of {', '.join(GENDERS)}, not {value!r}")


def _voice_list(data: object, what: str) -> list[Voice]:
    if not isinstance(data, list):
        raise ProtocolError(f"{what} is not a JSON array")
    return [Voice.from_json(item) for item in data]


@final
class Voices:
    """Voice management: list, get, update, delete, preview and clone. Use ``client.voices``."""

    def __init__(self, rest: RestClient) -> None:
        self._rest = rest

    def __repr__(self) -> str:
        return f"<Voices {self._rest.base_url}>"

    async def list(
        self,
        *,
        page_size: int = 10,
        language: object = None,
        accent: str | None = None,
        gender: str | None = None,
        style: str | None = None,
        model: str | None = None,
        my_voice: bool | None = None,
    ) -> AsyncIterator[Voice]:
        """Every voice that matches the filters, page by page, as an async iterator.

        Each page after the first is asked for with ``after`` = the last voice
        id of the page before. The list ends on an empty ``next_cursor`` (or
        none), or on an empty page. A page that does not move on (it ends on
        the voice it was asked to start after) is a :exc:`ProtocolError`
        rather than an endless loop.

        :param page_size: voices per request, 1 to 100.
        :param language: only voices that speak this language (``"en"``,
            ``"en-US"``, a :class:`Language`; the list also knows ``nl``).
        :param accent: only voices with this accent.
        :param gender: ``"Male"``, ``"Female"``, ``"Neutral"`` or ``"Unspecified"``
            (any case).
        :param style: only voices with this style.
        :param model: only voices for this model id (sent as ``model_id``).
        :param my_voice: only your own (``True``) or only predefined (``False``) voices.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= _MAX_PAGE:
            raise ConfigurationError("page_size must be an int from 1 to 100")
        if my_voice is not None and not isinstance(my_voice, bool):
            raise ConfigurationError("my_voice must be a bool or None")
        query: dict[str, Any] = {"limit": page_size}
        for key, value in (
            ("model_id", model),
            ("language", normalize_language(language)),
            ("accent", accent),
            ("gender", _gender(gender)),
            ("style", style),
            ("my_voice", my_voice),
        ):
            if value is not None:
                query[key] = value
        after: str | None = None
        while True:
            body = query if after is None else {**query, "after": after}
            data = await self._rest.request_json("POST", "/voices", json_body=body, what="listing voices")
            if not isinstance(data, dict) or not isinstance(data.get("voices"), list):
                raise ProtocolError("the voice list has no 'voices' array")
            page = [Voice.from_json(item) for item in data["voices"]]
            for voice in page:
                yield voice
            next_cursor = data.get("next_cursor")
            if not page or not next_cursor:
                return
            if page[-1].voice_id == after:
                raise ProtocolError("the voice list does not move on past the voice given as 'after'")
            after = page[-1].voice_id

    async def get(self, voice_id: str) -> Voice:
        """One voice by id (:exc:`~trio_asyncai.NotFoundError` if there is none)."""
        data = await self._rest.request_json(
            "GET", f"/voices/{_voice_path(voice_id)}", what="getting a voice"
        )
        return Voice.from_json(data)

    async def get_many(self, voice_ids: Iterable[str]) -> builtins.list[Voice]:
        """Several voices in one request (``POST /voices/batch``), as the service returns them.

        An empty ``voice_ids`` gives ``[]`` without a request.
        """
        if isinstance(voice_ids, str):
            raise ConfigurationError("voice_ids must be a collection of ids, not one str")
        ids = [_voice_id(v) for v in voice_ids]
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        data = await self._rest.request_json(
            "POST", "/voices/batch", json_body={"voice_ids": ids}, what="getting voices"
        )
        return _voice_list(data, "the batch of voices")

    async def update(
        self,
        voice_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        gender: str | None = None,
        accent: str | None = None,
        style: str | None = None,
    ) -> None:
        """Change one of your cloned voices; only the fields given are sent.

        The service answers 204 with no body, so nothing is returned: call
        :meth:`get` for the voice as it is now. A voice's language cannot be
        changed. Not retried unless the connection could not even be opened
        (a retried update may have been applied already).
        """
        changes = {
            k: v
            for k, v in {
                "name": name,
                "description": description,
                "gender": _gender(gender),
                "accent": accent,
                "style": style,
            }.items()
            if v is not None
        }
        if not changes:
            raise ConfigurationError("update() needs at least one field to change")
        await self._rest.request(
            "PUT",
            f"/voices/{_voice_path(voice_id)}",
            json_body=changes,
            what="updating a voice",
            idempotent=False,
        )

    async def delete(self, voice_id: str) -> None:
        """Delete one of your cloned voices (the service answers 204).

        Not retried unless the connection could not even be opened.
        """
        await self._rest.request(
            "DELETE", f"/voices/{_voice_path(voice_id)}", what="deleting a voice", idempotent=False
        )

    async def preview_url(self, voice_id: str) -> str:
        """The signed URL of the voice's preview audio (``GET /voices/preview/{id}``)."""
        data = await self._rest.request_json(
            "GET", f"/voices/preview/{_voice_path(voice_id)}", what="previewing a voice"
        )
        url = data.get("signed_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise ProtocolError("the preview answer has no signed_url")
        url = urllib.parse.urljoin(self._rest.base_url + "/", url)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ProtocolError("the preview's signed_url is not an http(s) URL")
        return url

    async def preview(self, voice_id: str) -> bytes:
        """A short sample of the voice: the audio file behind :meth:`preview_url`.

        The signed URL needs no key, and may point at another host: it is
        fetched without the API key or any of the API's headers.
        """
        url = await self.preview_url(voice_id)
        return await self._rest.fetch_foreign(url, what="fetching a voice preview")

    async def clone(
        self,
        audio: bytes | str | os.PathLike[str],
        *,
        name: str,
        description: str | None = None,
        accent: str | None = None,
        gender: str | None = None,
        style: str | None = None,
        enhance: bool = False,
        filename: str | None = None,
    ) -> Voice:
        """Create a voice from a recording (a file path or its bytes).

        The sample is WAV, MP3, FLAC or AIFF (told by ``filename``, the path's
        suffix, or else its first bytes), at least 3 s of speech and at most
        10 MB. ``style`` may list several, comma separated; ``enhance`` asks
        the service to clean the sample up first. Returns the new ``CUSTOM``
        voice, ready for synthesis. Not retried unless the connection could
        not even be opened (a retry could make two voices).
        """
        if isinstance(audio, bytes):
            content = audio
        elif isinstance(audio, str | os.PathLike):
            path = os.fspath(audio)
            with open(path, "rb") as f:  # noqa: ASYNC230 - a small local file, read once
                content = f.read()
            filename = filename or os.path.basename(path)
        else:
            raise ConfigurationError("audio must be bytes or a file path")
        if not content:
            raise ConfigurationError("the audio sample is empty")
        if len(content) > MAX_CLONE_BYTES:
            raise ConfigurationError("the audio sample is larger than 10 MB")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("a cloned voice needs a name")
        fname, mime = _sample_kind(content, filename)
        form: dict[str, Any] = {"name": name, "enhance": "true" if enhance else "false"}
        for key, value in (
            ("description", description),
            ("accent", accent),
            ("gender", _gender(gender)),
            ("style", style),
        ):
            if value is not None:
                form[key] = value
        data = await self._rest.request_json(
            "POST",
            "/voices/clone",
            data=form,
            files={"audio": (fname, content, mime)},
            what="cloning a voice",
            idempotent=False,
        )
        voice = Voice.from_json(data)
        return voice if voice.voice_type is not None else attrs.evolve(voice, voice_type="CUSTOM")


def _voice_id(voice_id: object) -> str:
    if not isinstance(voice_id, str) or not voice_id.strip():
        raise ConfigurationError("voice_id must be a non-empty str")
    return voice_id.strip()


def _voice_path(voice_id: str) -> str:
    # Every reserved character escaped: "a#b" or "../status" must stay one path segment.
    return urllib.parse.quote(_voice_id(voice_id), safe="")


@final
class AsyncAIClient:
    """The API's request/response endpoints. Made by :func:`open_client`.

    For streaming speech use the synthesizers; this client covers whole-file
    synthesis, word timestamps, voices (``client.voices``) and the status check.
    """

    def __init__(self, rest: RestClient, options: ClientOptions, *, voice_id: str | None) -> None:
        self._rest = rest
        #: The synthesis defaults (the settings without a voice, which may come per call).
        self._options = options
        self._voice_id = voice_id
        #: Voice management.
        self.voices = Voices(rest)

    def __repr__(self) -> str:
        return f"<AsyncAIClient {self._rest.base_url}>"

    def _settings(self, changes: SettingsChanges) -> Settings:
        """The client's default settings with this call's changes."""
        voice = changes.get("voice_id") or self._voice_id
        if voice is None:
            raise ConfigurationError("no voice: pass voice_id= or set ASYNCAI_VOICE_ID")
        output_format = changes.get("output_format")
        if output_format is not None:
            check_output_format(output_format, streaming=False)
        base = first_settings(self._options, voice_id=voice, output_format=self._options.output_format)
        return base.with_changes(**changes)

    def _body(self, text: str, settings: Settings) -> dict[str, Any]:
        body = settings.request_body()
        body["transcript"] = check_text(text)
        return body

    async def synthesize(self, text: str, **changes: Unpack[SettingsChanges]) -> bytes:
        """The whole audio file for ``text`` (``/text_to_speech``): raw, wav or mp3 bytes.

        The settings given by name (:class:`~trio_asyncai.SettingsChanges`)
        override the client's defaults for this call (see :func:`open_client`).
        ``pcm_mulaw`` is refused: the service gives it on the streaming
        endpoints only.
        """
        settings = self._settings(changes)
        response = await self._rest.request(
            "POST",
            "/text_to_speech",
            json_body=self._body(text, settings),
            what="synthesis",
            expect_audio=True,
        )
        return response.content

    async def synthesize_with_timestamps(
        self, text: str, **changes: Unpack[SettingsChanges]
    ) -> TimestampedAudio:
        """Audio for ``text`` with the start and end time of every word.

        Takes the keyword arguments of :meth:`synthesize`.
        """
        settings = self._settings(changes)
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
        """The service's status check (``GET /``): ``{"status": "ok", "version": "v1"}``."""
        data = await self._rest.request_json("GET", "/", what="status check")
        if not isinstance(data, dict):
            raise ProtocolError("the status answer is not a JSON object")
        return data


@asynccontextmanager
async def _open_client(options: ClientOptions) -> AsyncIterator[AsyncAIClient]:
    """Open an :class:`AsyncAIClient` for whole-file synthesis, timestamps and voices.

    ``voice_id``, ``model``, ``language``, ``output_format``,
    ``speed_control`` and ``stability`` are defaults for the synthesis calls,
    each of which can override them. They are checked here as
    :func:`~trio_asyncai.open_synthesizer` checks them, except that wav is
    allowed and ``pcm_mulaw`` (a streaming format) is not. The options:
    """
    require_trio()
    key, url = resolve_key_and_url(options._api_key, options.base_url)
    voice = resolve_voice_id(options.voice_id)
    # No nursery here, so nothing to unwrap: the caller's exceptions pass as they are.
    async with httpx_client(options.client, timeout=options.timeout) as http:
        rest = RestClient(http, base_url=url, api_key=key, retries=options)
        yield AsyncAIClient(rest, options, voice_id=voice)


open_client = takes_options(ClientOptions, _open_client, name="open_client")
