"""The voice endpoints: list, get, update, delete, preview and clone.

The local server cannot really clone a voice: a cloned voice is checked like
the service checks a sample (a WAV or MP3 file of at least
:data:`MIN_CLONE_SECONDS` of sound, at most :data:`MAX_CLONE_BYTES`) and then
speaks with the default voice's model. Predefined voices cannot be changed or
deleted (400 ``INVALID_REQUEST``).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import functools
import io
import uuid
import wave
from collections.abc import Mapping
from typing import Any, Final

import attrs
import numpy as np
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._audio import render_all, wav_file
from ._http import admit, error_response
from ._requests import OutputFormat, RequestError, parse_language
from ._state import HTTPRequestLog, ServerState
from ._voices import Voice

__all__ = [
    "MAX_CLONE_BYTES",
    "MIN_CLONE_SECONDS",
    "clone_voice_endpoint",
    "delete_voice_endpoint",
    "get_voice_endpoint",
    "list_voices_endpoint",
    "preview_voice_endpoint",
    "update_voice_endpoint",
]

#: A clone sample shorter than this is refused with ``SHORT_SPEECH_DURATION``.
MIN_CLONE_SECONDS: Final = 2.0
#: A clone sample larger than this is refused with 413 ``FILE_TOO_LARGE``.
MAX_CLONE_BYTES: Final = 10 * 1024 * 1024
_PREVIEW_FORMAT: Final = OutputFormat(sample_rate=24000)
_EDITABLE: Final = ("name", "description", "language", "gender", "accent", "style")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refusal(record: HTTPRequestLog, exc: RequestError) -> JSONResponse:
    return error_response(record, exc.status, exc.code, exc.message)


def _voice_or_404(state: ServerState, voice_id: str) -> Voice:
    voice = state.voices.get(voice_id)
    if voice is None:
        raise RequestError("VOICE_NOT_FOUND", f"voice {voice_id!r} not found")
    return voice


def _answer(record: HTTPRequestLog, data: Any) -> JSONResponse:
    record.status = 200
    return JSONResponse(data)


async def list_voices_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /voices``: ``{limit?, gender?, my_voice?, cursor?}`` -> ``{voices, next_cursor}``.

    The cursor is opaque to clients (it is the offset of the next page).
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
        cursor = body.get("cursor")
        offset = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.isdigit():
                raise RequestError("INVALID_REQUEST", "cursor is not valid")
            offset = int(cursor)
        gender = body.get("gender")
        my_voice = body.get("my_voice")
        if gender is not None and not isinstance(gender, str):
            raise RequestError("INVALID_REQUEST", "gender must be a string")
        if my_voice is not None and not isinstance(my_voice, bool):
            raise RequestError("INVALID_REQUEST", "my_voice must be a boolean")
    except RequestError as exc:
        return _refusal(record, exc)
    voices = [
        v
        for v in state.voices
        if (gender is None or (v.gender or "").lower() == gender.lower())
        and (my_voice is None or (v.voice_type == "CUSTOM") == my_voice)
    ]
    page = voices[offset : offset + limit]
    next_cursor = str(offset + limit) if offset + limit < len(voices) else None
    return _answer(record, {"voices": [v.to_json() for v in page], "next_cursor": next_cursor})


async def get_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /voices/{voice_id}``: the voice object."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
    except RequestError as exc:
        return _refusal(record, exc)
    return _answer(record, voice.to_json())


async def update_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``PUT /voices/{voice_id}``: change name, description, language, gender, accent, style."""
    record, body, refused = await admit(state, request)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
        if voice.voice_type != "CUSTOM":
            raise RequestError("INVALID_REQUEST", "predefined voices cannot be changed")
        if not isinstance(body, Mapping):
            raise RequestError("INVALID_REQUEST", "the body must be a JSON object")
        changes: dict[str, Any] = {}
        for field in _EDITABLE:
            if field in body:
                value = body[field]
                if not isinstance(value, str) or (field == "name" and not value.strip()):
                    raise RequestError("INVALID_REQUEST", f"{field} must be a non-empty string")
                changes[field] = parse_language(value) if field == "language" else value
        if not changes:
            raise RequestError("INVALID_REQUEST", f"nothing to change: send one of {_EDITABLE}")
    except RequestError as exc:
        return _refusal(record, exc)
    updated = attrs.evolve(voice, updated_at=_now(), **changes)
    state.voices.add(updated)
    return _answer(record, updated.to_json())


async def delete_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``DELETE /voices/{voice_id}``: forget a custom voice."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
        if voice.voice_type != "CUSTOM":
            raise RequestError("INVALID_REQUEST", "predefined voices cannot be deleted")
    except RequestError as exc:
        return _refusal(record, exc)
    state.voices.remove(voice.voice_id)
    return _answer(record, {"voice_id": voice.voice_id, "deleted": True})


async def preview_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /voices/{voice_id}/preview``: a short WAV sample of the voice."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        voice = _voice_or_404(state, request.path_params["voice_id"])
    except RequestError as exc:
        return _refusal(record, exc)
    text = f"Hello! I am {voice.name}. This is how I sound."
    render = functools.partial(render_all, state.engine, text, voice, _PREVIEW_FORMAT)
    try:
        pcm = await trio.to_thread.run_sync(render, limiter=state.limiter)
    except Exception:
        return error_response(record, 500, "INTERNAL_SERVER_ERROR", "synthesis failed")
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


def check_sample(data: bytes) -> float | None:
    """Check a clone sample; return its length in seconds when it can be known."""
    if len(data) > MAX_CLONE_BYTES:
        raise RequestError("FILE_TOO_LARGE", f"the sample is larger than {MAX_CLONE_BYTES} bytes")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data), "rb") as wav:
                rate, frames, width = wav.getframerate(), wav.getnframes(), wav.getsampwidth()
                pcm = wav.readframes(frames)
        except (wave.Error, EOFError) as exc:
            raise RequestError("FORMAT_NOT_RECOGNIZED", "the WAV sample could not be read") from exc
        seconds = frames / rate if rate else 0.0
        if seconds < MIN_CLONE_SECONDS:
            raise RequestError(
                "SHORT_SPEECH_DURATION",
                f"the sample lasts {seconds:.2f} s; at least {MIN_CLONE_SECONDS} s is needed",
            )
        if width == 2 and pcm:
            level = float(np.sqrt(np.mean(np.frombuffer(pcm, dtype="<i2").astype(np.float64) ** 2)))
            if level < 30.0:
                raise RequestError("BAD_SPEECH_QUALITY", "the sample is (nearly) silent")
        return seconds
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        if len(data) < 16_000:
            raise RequestError("SHORT_SPEECH_DURATION", "the MP3 sample is too short")
        return None
    raise RequestError("FORMAT_NOT_RECOGNIZED", "the sample must be a WAV or MP3 file")


async def clone_voice_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /voices/clone`` (multipart): a new CUSTOM voice from an audio sample."""
    record, _, refused = await admit(state, request, parse_json=False)
    if refused is not None:
        return refused
    try:
        fields, files = parse_form(request.headers.get("content-type", ""), await request.body())
        record.body = {**fields, "audio": {k: (f, len(d)) for k, (f, d) in files.items()}}
        if "audio" not in files or not files["audio"][1]:
            raise RequestError("INVALID_REQUEST", "an audio file is required")
        name = fields.get("name", "").strip()
        if not name:
            raise RequestError("INVALID_REQUEST", "name is required")
        language = parse_language(fields.get("language") or "en") or "en"
        check_sample(files["audio"][1])
    except RequestError as exc:
        return _refusal(record, exc)
    now = _now()
    voice = Voice(
        voice_id=str(uuid.uuid4()),
        name=name,
        description=fields.get("description"),
        language=language,
        gender=fields.get("gender"),
        accent=fields.get("accent"),
        style=fields.get("style"),
        created_at=now,
        updated_at=now,
        voice_type="CUSTOM",
    )
    state.voices.add(voice)
    return _answer(record, voice.to_json())
