"""The voice endpoints: list, batch, get, update, delete, preview and clone.

As ASYNC_API.md describes them; where the reference is silent the server's
choices are:

* Paging: a page's ``next_cursor`` is the id of its last voice when more
  voices follow, else ``""``; ``after`` must name a voice the server knows
  (else 400 ``INVALID_REQUEST``), and the next page starts after it in the
  server's stable order.
* The list's ``model_id`` filter takes any model id and filters nothing:
  every local voice speaks every model.
* ``POST /voices/batch`` answers the voices it knows, in the order asked,
  and leaves unknown ids out.
* A preview's ``signed_url`` points back at this server
  (``/signed/voice-previews/{id}?expires=...&signature=...``), a WAV file
  that needs no key, signed with a per-server secret and valid for an hour;
  a bad or expired signature is a 403 with an XML body, as storage services
  answer. An unknown voice's preview is 404 ``VOICE_PREVIEW_NOT_FOUND``.
* Predefined voices cannot be changed or deleted (400 ``INVALID_REQUEST``).

The local server cannot really clone a voice: a sample is checked like the
service checks one (WAV, MP3, FLAC or AIFF, at least
:data:`MIN_CLONE_SECONDS` long, at most :data:`MAX_CLONE_BYTES`), and the new
voice speaks with the default voice's model. Form fields other than the
documented ones are ignored, as the service ignores them (the log shows what
a client sent).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import functools
import hashlib
import hmac
import io
import logging
import struct
import time
import urllib.parse
import uuid
import wave
from collections.abc import Mapping
from typing import Any, Final

import attrs
import numpy as np
import trio
from starlette.requests import Request
from starlette.responses import Response

from ._audio import render_all, wav_file
from ._http import admit, error_response, json_answer, log_request, refusal
from ._requests import VOICE_LANGUAGES, AudioFormat, RequestError, parse_language, shown
from ._state import HTTPRequestLog, ServerState
from ._voices import LibraryVoice

__all__ = [
    "GENDERS",
    "MAX_CLONE_BYTES",
    "MIN_CLONE_SECONDS",
    "SIGNED_PREVIEW_PATH",
    "batch_voices_endpoint",
    "clone_voice_endpoint",
    "delete_voice_endpoint",
    "get_voice_endpoint",
    "list_voices_endpoint",
    "preview_audio_endpoint",
    "preview_voice_endpoint",
    "update_voice_endpoint",
]

logger = logging.getLogger("trio_asyncai.server")

#: A clone sample shorter than this is refused with ``SHORT_SPEECH_DURATION``.
MIN_CLONE_SECONDS: Final = 3.0
#: A clone sample larger than this is refused with 413 ``FILE_TOO_LARGE``.
MAX_CLONE_BYTES: Final = 10 * 1024 * 1024
#: The genders the service knows, spelled as it spells them.
GENDERS: Final = ("Male", "Female", "Neutral", "Unspecified")
#: Where a preview's signed URL points (``{voice_id}`` filled in).
SIGNED_PREVIEW_PATH: Final = "/signed/voice-previews/{voice_id}"
#: The format of a voice's preview audio.
_PREVIEW_FORMAT: Final = AudioFormat(sample_rate=24000)
_EDITABLE: Final = ("name", "description", "gender", "style", "accent")
_SIGNED_FOR: Final = 3600
#: A clone request's body: the largest sample, and room for the form around it.
_MAX_CLONE_BODY_BYTES: Final = MAX_CLONE_BYTES + 64 * 1024
_MIN_MP3_BYTES: Final = 24_000  # about 3 s at 64 kbit/s


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _voice_gone(voice_id: str, code: str = "VOICE_NOT_FOUND") -> RequestError:
    return RequestError(code, f"voice {shown(voice_id)} not found", extra={"voice_id": voice_id})


def _voice_or_404(state: ServerState, voice_id: str, code: str = "VOICE_NOT_FOUND") -> LibraryVoice:
    voice = state.voices.get(voice_id)
    if voice is None:
        raise _voice_gone(voice_id, code)
    return voice


def _not_saved(state: ServerState, record: HTTPRequestLog, exc: OSError) -> Response:
    """The answer to a change of the voices that the state directory could not keep (not made)."""
    logger.debug("the state directory could not be written", exc_info=exc)
    reason = exc.strerror or type(exc).__name__
    message = f"the change could not be saved ({reason}); nothing was changed"
    return error_response(state, record, 500, "INTERNAL_SERVER_ERROR", message)


def _answer(state: ServerState, record: HTTPRequestLog, data: Any) -> Response:
    record.status = 200
    return json_answer(state.faults, data)


def _no_content(record: HTTPRequestLog) -> Response:
    record.status = 204
    return Response(status_code=204)


def _optional_str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise RequestError("INVALID_REQUEST", f"{field} must be a string")
    return value


def _gender(value: str | None) -> str | None:
    if value is not None and value not in GENDERS:
        message = f"gender must be one of {', '.join(GENDERS)}, not {shown(value)}"
        raise RequestError("INVALID_REQUEST", message)
    return value


def _items(value: str | None) -> set[str]:
    """The comma-separated items of a voice field, lower case."""
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def _matches(voice: LibraryVoice, filters: Mapping[str, Any]) -> bool:
    language, accent, gender, style, my_voice = (
        filters.get(k) for k in ("language", "accent", "gender", "style", "my_voice")
    )
    return (
        (language is None or language in _items(voice.language))
        and (accent is None or accent.lower() == (voice.accent or "").lower())
        and (gender is None or gender == voice.gender)
        and (style is None or style.lower() in _items(voice.style))
        and (my_voice is None or (voice.voice_type == "CUSTOM") == my_voice)
    )


async def list_voices_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /voices``: ``{limit?, model_id?, language?, accent?, gender?, style?, my_voice?, after?}``.

    Answers ``{"voices": [...], "next_cursor": STRING}`` (``""`` on the last page).
    """
    record, body, refused = await admit(state, request)
    if refused is not None:
        return refused
    if body is None:
        body = {}
    try:
        if not isinstance(body, Mapping):
            raise RequestError("INVALID_REQUEST", "the body must be a JSON object")
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise RequestError("INVALID_REQUEST", "limit must be an integer from 1 to 100")
        _optional_str(body, "model_id")
        filters = {
            "language": parse_language(_optional_str(body, "language"), languages=VOICE_LANGUAGES),
            "accent": _optional_str(body, "accent"),
            "gender": _gender(_optional_str(body, "gender")),
            "style": _optional_str(body, "style"),
            "my_voice": body.get("my_voice"),
        }
        if filters["my_voice"] is not None and not isinstance(filters["my_voice"], bool):
            raise RequestError("INVALID_REQUEST", "my_voice must be a boolean")
        after = _optional_str(body, "after")
        voices = list(state.voices)
        start = 0
        if after is not None:
            ids = [v.voice_id for v in voices]
            if after not in ids:
                raise RequestError("INVALID_REQUEST", f"after: no voice {shown(after)}")
            start = ids.index(after) + 1
    except RequestError as exc:
        return refusal(state, record, exc)
    matching = [v for v in voices[start:] if _matches(v, filters)]
    page = matching[:limit]
    next_cursor = page[-1].voice_id if len(matching) > limit else ""
    return _answer(state, record, {"voices": [v.to_json() for v in page], "next_cursor": next_cursor})


async def batch_voices_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /voices/batch``: ``{"voice_ids": [...]}`` -> a JSON array of the voices known."""
    record, body, refused = await admit(state, request)
    if refused is not None:
        return refused
    ids = body.get("voice_ids") if isinstance(body, Mapping) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        exc = RequestError("INVALID_REQUEST", "the body must be {'voice_ids': [strings]}")
        return refusal(state, record, exc)
    found = [state.voices.get(i) for i in ids]
    return _answer(state, record, [v.to_json() for v in found if v is not None])


async def get_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /voices/{voice_id}``: the voice object."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
    except RequestError as exc:
        return refusal(state, record, exc)
    return _answer(state, record, voice.to_json())


async def update_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``PUT /voices/{voice_id}``: change name, description, gender, style, accent -> 204.

    Any other field is 400 ``VOICE_FIELD_UPDATE_NOT_ALLOWED`` with ``extra.field``.
    """
    record, body, refused = await admit(state, request)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
        if voice.voice_type != "CUSTOM":
            raise RequestError("INVALID_REQUEST", "predefined voices cannot be changed")
        if not isinstance(body, Mapping):
            raise RequestError("INVALID_REQUEST", "the body must be a JSON object")
        for field in body:
            if field not in _EDITABLE:
                raise RequestError(
                    "VOICE_FIELD_UPDATE_NOT_ALLOWED",
                    f"the field {shown(field)} cannot be changed",
                    extra={"field": field},
                )
        changes: dict[str, Any] = {}
        for field in _EDITABLE:
            value = _optional_str(body, field)
            if value is not None:
                if field == "name" and not value.strip():
                    raise RequestError("INVALID_REQUEST", "name must not be empty")
                changes[field] = _gender(value) if field == "gender" else value
        if not changes:
            raise RequestError("INVALID_REQUEST", f"nothing to change: send one of {_EDITABLE}")
    except RequestError as exc:
        return refusal(state, record, exc)
    try:
        kept = await state.store.replace(attrs.evolve(voice, updated_at=_now(), **changes))
    except OSError as exc:
        return _not_saved(state, record, exc)
    if not kept:  # deleted meanwhile
        return refusal(state, record, _voice_gone(voice.voice_id))
    return _no_content(record)


async def delete_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``DELETE /voices/{voice_id}``: forget a custom voice -> 204."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
        if voice.voice_type != "CUSTOM":
            raise RequestError("INVALID_REQUEST", "predefined voices cannot be deleted")
    except RequestError as exc:
        return refusal(state, record, exc)
    try:
        removed = await state.store.remove(voice.voice_id)
    except OSError as exc:
        return _not_saved(state, record, exc)
    if not removed:  # deleted meanwhile
        return refusal(state, record, _voice_gone(voice.voice_id))
    return _no_content(record)


def _signature(state: ServerState, voice_id: str, expires: str) -> str:
    message = f"{voice_id}:{expires}".encode()
    return hmac.new(state.signing_key, message, hashlib.sha256).hexdigest()


async def preview_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /voices/preview/{voice_id}``: ``{"signed_url": URL}`` of the voice's preview audio."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    voice_id = request.path_params["voice_id"]
    try:
        _voice_or_404(state, voice_id, "VOICE_PREVIEW_NOT_FOUND")
    except RequestError as exc:
        return refusal(state, record, exc)
    expires = str(int(time.time()) + _SIGNED_FOR)
    query = urllib.parse.urlencode({"expires": expires, "signature": _signature(state, voice_id, expires)})
    path = SIGNED_PREVIEW_PATH.format(voice_id=urllib.parse.quote(voice_id, safe=""))
    return _answer(state, record, {"signed_url": f"{str(request.base_url).rstrip('/')}{path}?{query}"})


def _access_denied(record: HTTPRequestLog, status: int, message: str) -> Response:
    record.status = status
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status_code=status, media_type="application/xml")


async def preview_audio_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /signed/voice-previews/{voice_id}``: the preview WAV a signed URL points at.

    Needs no key and no version, only a valid, unexpired signature.
    """
    record = log_request(state, request)
    voice_id = request.path_params["voice_id"]
    expires = request.query_params.get("expires", "")
    signature = request.query_params.get("signature", "")
    expected = _signature(state, voice_id, expires)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return _access_denied(record, 403, "the signature does not match")
    if not expires.isdigit() or int(expires) < time.time():
        return _access_denied(record, 403, "the URL has expired")
    voice = state.voices.get(voice_id)
    if voice is None:
        return _access_denied(record, 404, "no such preview")
    text = f"Hello! I am {voice.name}. This is how I sound when I read a short sentence aloud."
    render = functools.partial(render_all, state.engine, text, voice, _PREVIEW_FORMAT)
    try:
        pcm = await trio.to_thread.run_sync(render, limiter=state.limiter)
    except Exception:
        return error_response(state, record, 500, "INTERNAL_SERVER_ERROR", "synthesis failed")
    record.status = 200
    return Response(
        wav_file(pcm, _PREVIEW_FORMAT.sample_rate, _PREVIEW_FORMAT.encoding), media_type="audio/wav"
    )


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body -> (text fields, files as (filename, content)).

    Uses the standard library's MIME parser, so the server needs no multipart package.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError("INVALID_REQUEST", "the body must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise RequestError("INVALID_REQUEST", "the multipart body could not be read")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields, files


def _too_short(seconds: float) -> RequestError:
    return RequestError(
        "SHORT_SPEECH_DURATION",
        f"the sample lasts {seconds:.2f} s; at least {MIN_CLONE_SECONDS} s is needed",
    )


def _flac_seconds(data: bytes) -> float:
    """The length of a FLAC file, from its STREAMINFO block (which must come first)."""
    if len(data) < 42 or data[4] & 0x7F != 0:
        raise RequestError("FORMAT_NOT_RECOGNIZED", "the FLAC sample could not be read")
    packed: int = struct.unpack(">Q", data[18:26])[0]
    rate = packed >> 44
    frames = packed & ((1 << 36) - 1)
    if not rate:
        raise RequestError("FORMAT_NOT_RECOGNIZED", "the FLAC sample could not be read")
    return frames / rate


def _aiff_seconds(data: bytes) -> float:
    """The length of an AIFF or AIFF-C file, from its COMM chunk."""
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack(">I", data[offset + 4 : offset + 8])[0]
        if chunk == b"COMM" and size >= 18 and offset + 26 <= len(data):
            frames: int = struct.unpack(">I", data[offset + 10 : offset + 14])[0]
            exponent, mantissa = struct.unpack(">HQ", data[offset + 16 : offset + 26])
            rate = mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63) if mantissa else 0.0
            if rate > 0:
                return frames / rate
            break
        offset += 8 + size + (size & 1)
    raise RequestError("FORMAT_NOT_RECOGNIZED", "the AIFF sample could not be read")


def check_sample(data: bytes) -> tuple[str, float | None]:
    """Check a clone sample (WAV, MP3, FLAC or AIFF): its format and its length in seconds when known.

    The format is the file extension (``"wav"``, ``"mp3"``, ``"flac"`` or
    ``"aiff"``). WAV, FLAC and AIFF lengths are read from their headers; an
    MP3 must be at least about 3 s long at 64 kbit/s (:data:`_MIN_MP3_BYTES`).
    A silent 16-bit WAV is ``BAD_SPEECH_QUALITY``.
    """
    if len(data) > MAX_CLONE_BYTES:
        raise RequestError("FILE_TOO_LARGE", f"the sample is larger than {MAX_CLONE_BYTES} bytes")
    seconds: float | None
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data), "rb") as wav:
                rate, frames, width = wav.getframerate(), wav.getnframes(), wav.getsampwidth()
                pcm = wav.readframes(frames)
        except (wave.Error, EOFError) as exc:
            raise RequestError("FORMAT_NOT_RECOGNIZED", "the WAV sample could not be read") from exc
        seconds = frames / rate if rate else 0.0
        if seconds < MIN_CLONE_SECONDS:
            raise _too_short(seconds)
        if width == 2 and pcm:
            level = float(np.sqrt(np.mean(np.frombuffer(pcm, dtype="<i2").astype(np.float64) ** 2)))
            if level < 30.0:
                raise RequestError("BAD_SPEECH_QUALITY", "the sample is (nearly) silent")
        return "wav", seconds
    if data[:4] == b"fLaC":
        kind, seconds = "flac", _flac_seconds(data)
    elif data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        kind, seconds = "aiff", _aiff_seconds(data)
    elif data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        if len(data) < _MIN_MP3_BYTES:
            raise RequestError("SHORT_SPEECH_DURATION", "the MP3 sample is too short")
        return "mp3", None
    else:
        raise RequestError("FORMAT_NOT_RECOGNIZED", "the sample must be a WAV, MP3, FLAC or AIFF file")
    if seconds < MIN_CLONE_SECONDS:
        raise _too_short(seconds)
    return kind, seconds


_TRUE_FALSE: Final = {"true": True, "false": False}


async def clone_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /voices/clone`` (multipart): a new CUSTOM voice from an audio sample.

    Fields: ``audio`` (the file), ``name``, and optionally ``description``,
    ``accent``, ``gender``, ``style`` and ``enhance`` (``true``/``false``).
    Answers ``{"id", "name", "description", "language"}``.
    """
    record, raw, refused = await admit(state, request, parse_json=False, max_body=_MAX_CLONE_BODY_BYTES)
    if refused is not None:
        return refused
    try:
        fields, files = parse_form(request.headers.get("content-type", ""), raw)
        record.body = {**fields, "audio": {k: (f, len(d)) for k, (f, d) in files.items()}}
        if "audio" not in files or not files["audio"][1]:
            raise RequestError("INVALID_REQUEST", "an audio file is required")
        name = fields.get("name", "").strip()
        if not name:
            raise RequestError("INVALID_REQUEST", "name is required")
        gender = _gender(fields.get("gender"))
        if fields.get("enhance", "false").lower() not in _TRUE_FALSE:
            raise RequestError("INVALID_REQUEST", "enhance must be true or false")
        kind, _ = check_sample(files["audio"][1])
    except RequestError as exc:
        return refusal(state, record, exc)
    now = _now()
    voice = LibraryVoice(
        voice_id=str(uuid.uuid4()),
        name=name,
        description=fields.get("description"),
        language="en",
        gender=gender,
        accent=fields.get("accent"),
        style=fields.get("style"),
        created_at=now,
        updated_at=now,
        voice_type="CUSTOM",
    )
    try:
        await state.store.add(voice, files["audio"][1], kind)
    except OSError as exc:
        return _not_saved(state, record, exc)
    return _answer(
        state,
        record,
        {"id": voice.voice_id, "name": voice.name, "description": voice.description, "language": "en"},
    )
