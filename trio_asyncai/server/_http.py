"""The HTTP synthesis endpoints and the status check.

* ``POST /text_to_speech/streaming``: raw or mp3 audio, streamed as it is made
  (mp3 in whole frames).
* ``POST /text_to_speech``: the whole file (raw, wav or mp3).
* ``POST /text_to_speech/with_timestamps``: ``{"audio_base64", "alignment"}``
  (the audio raw, wav or mp3).
* ``GET /``: the status check, ``{"status": "ok", "version": "v1"}``.

mp3 needs the ``lameenc`` package (the ``[server]`` extra); without it, and
for a sample rate or bit rate LAME cannot make, the answer is 400
``FORMAT_NOT_RECOGNIZED``.

Every endpoint starts with :func:`admit` (log the request, apply the
``http_statuses`` fault, check the key and the version) and answers errors
with :func:`error_response`, so all of them behave alike.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any, Final

import trio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from ._audio import WordTiming, render_all, stream_audio, wav_file
from ._requests import (
    API_VERSION,
    CODE_FOR_STATUS,
    RequestError,
    SynthesisRequest,
    error_answer,
    parse_synthesis_request,
)
from ._state import HTTPRequestLog, ServerState

__all__ = [
    "QUOTA_MARKER",
    "admit",
    "error_response",
    "log_request",
    "refusal",
    "status_endpoint",
    "streaming_endpoint",
    "timestamps_endpoint",
    "whole_file_endpoint",
]

logger = logging.getLogger("trio_asyncai.server")

#: What a streamed body carries when the quota runs out mid-stream.
QUOTA_MARKER: Final = b"--ERROR:QUOTA_EXCEEDED--"


def error_response(
    state: ServerState,
    record: HTTPRequestLog,
    status: int,
    code: str,
    message: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An error answer shaped as the service shapes it (see :func:`error_answer`)."""
    record.status = status
    body, headers = error_answer(
        state.faults, status, code, message, extra=extra, method=record.method, path=record.path
    )
    return JSONResponse(body, status_code=status, headers=headers)


def refusal(state: ServerState, record: HTTPRequestLog, exc: RequestError) -> JSONResponse:
    """The error answer for a :exc:`RequestError`."""
    return error_response(state, record, exc.status, exc.code, exc.message, extra=exc.extra)


def log_request(state: ServerState, request: Request, body: Any = None) -> HTTPRequestLog:
    """Add a request to the server's log (the ``x-api-key`` header's value hidden)."""
    headers = {k: ("***" if k.lower() == "x-api-key" else v) for k, v in request.headers.items()}
    record = HTTPRequestLog(method=request.method, path=request.url.path, headers=headers, body=body)
    state.log.http.append(record)
    state.log.notify()
    return record


async def admit(
    state: ServerState, request: Request, *, parse_json: bool = True, need_key: bool = True
) -> tuple[HTTPRequestLog, Any, Response | None]:
    """Log a request and run the checks every endpoint shares.

    Returns the log record, the parsed JSON body (``None`` when there is no
    body or it is not JSON) and, if the request is refused, the response to
    send: the next ``http_statuses`` fault, 401 ``INVALID_API_KEY`` (unless
    ``need_key`` is false; ``extra.api_key`` is the first 4 characters of the
    key sent, as the service echoes them), or 404 ``VERSION_NOT_FOUND`` for a
    ``version`` header other than ``v1`` (none means v1).
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        # The client went away mid-request (an interrupted synthesis): log it
        # and answer nobody, without an error traceback in the server log.
        record = HTTPRequestLog(method=request.method, path=request.url.path, headers={}, body=None)
        state.log.http.append(record)
        state.log.notify()
        return record, None, Response(status_code=400)
    body: Any = None
    if raw and parse_json:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
    record = log_request(state, request, body)

    faults = state.faults
    if faults.http_statuses:
        status = faults.http_statuses.pop(0)
        fallback = "INTERNAL_SERVER_ERROR" if status >= 500 else "INVALID_REQUEST"
        code = CODE_FOR_STATUS.get(status, fallback)
        refused = error_response(state, record, status, code, "error injected by the local server's faults")
        return record, body, refused
    if state.api_key is not None and need_key:
        key = request.headers.get("x-api-key")
        if key is None or not hmac.compare_digest(key.encode(), state.api_key.encode()):
            extra = {"api_key": key[:4]} if key else None
            message = "the API key is missing or invalid"
            return record, body, error_response(state, record, 401, "INVALID_API_KEY", message, extra=extra)
    version = request.headers.get("version")
    if version is not None and version != API_VERSION:
        message = f"API version {version!r} not found; use v1"
        return record, body, error_response(state, record, 404, "VERSION_NOT_FOUND", message)
    return record, body, None


async def _synthesis_request(
    state: ServerState, request: Request, *, streaming: bool
) -> tuple[HTTPRequestLog, SynthesisRequest | Response]:
    record, body, refused = await admit(state, request)
    if refused is not None:
        return record, refused
    if body is None:
        return record, error_response(state, record, 400, "INVALID_REQUEST", "the body must be JSON")
    try:
        return record, parse_synthesis_request(body, state.voices, streaming=streaming)
    except RequestError as exc:
        return record, refusal(state, record, exc)


async def streaming_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /text_to_speech/streaming``: raw or mp3 audio, streamed as it is made."""
    record, synthesis = await _synthesis_request(state, request, streaming=True)
    if isinstance(synthesis, Response):
        return synthesis
    record.status = 200
    return AudioStreamResponse(state, synthesis)


async def _render_all(
    state: ServerState, synthesis: SynthesisRequest, timings: list[WordTiming] | None = None
) -> bytes:
    render = functools.partial(
        render_all,
        state.engine,
        synthesis.transcript,
        synthesis.voice,
        synthesis.output_format,
        timings=timings,
    )
    return await trio.to_thread.run_sync(render, limiter=state.limiter)


async def whole_file_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /text_to_speech``: the whole file: raw (octet-stream), wav (audio/wav) or mp3 (audio/mpeg)."""
    record, synthesis = await _synthesis_request(state, request, streaming=False)
    if isinstance(synthesis, Response):
        return synthesis
    try:
        audio = await _render_all(state, synthesis)
    except Exception:
        logger.exception("synthesis failed")
        return error_response(state, record, 500, "INTERNAL_SERVER_ERROR", "synthesis failed")
    fmt = synthesis.output_format
    record.status = 200
    if fmt.container == "wav":
        return Response(wav_file(audio, fmt.sample_rate, fmt.encoding), media_type="audio/wav")
    if fmt.container == "mp3":
        return Response(audio, media_type="audio/mpeg")
    return Response(audio, media_type="application/octet-stream")


async def timestamps_endpoint(state: ServerState, request: Request) -> Response:
    """``POST /text_to_speech/with_timestamps``: base64 audio and the time of each word.

    Word times are exact for the signal engine and estimated (in proportion to
    the words' lengths) for piper. For mp3 they count from the first sample
    encoded: a decoder that does not remove LAME's delay (about 1100 samples)
    plays every word that much later.
    """
    record, synthesis = await _synthesis_request(state, request, streaming=False)
    if isinstance(synthesis, Response):
        return synthesis
    timings: list[WordTiming] = []
    try:
        audio = await _render_all(state, synthesis, timings)
    except Exception:
        logger.exception("synthesis failed")
        return error_response(state, record, 500, "INTERNAL_SERVER_ERROR", "synthesis failed")
    fmt = synthesis.output_format
    if fmt.container == "wav":
        audio = wav_file(audio, fmt.sample_rate, fmt.encoding)
    record.status = 200
    return JSONResponse(
        {
            "audio_base64": base64.b64encode(audio).decode("ascii"),
            "alignment": {
                "words": [w for w, _, _ in timings],
                "word_start_times_milliseconds": [round(s * 1000.0, 3) for _, s, _ in timings],
                "word_end_times_milliseconds": [round(e * 1000.0, 3) for _, _, e in timings],
            },
        }
    )


async def status_endpoint(state: ServerState, request: Request) -> Response:
    """``GET /``: ``{"status": "ok", "version": "v1"}``. Needs no key, only the version."""
    record, _, refused = await admit(state, request, parse_json=False, need_key=False)
    if refused is not None:
        return refused
    record.status = 200
    return JSONResponse({"status": "ok", "version": API_VERSION})


class AudioStreamResponse(Response):
    """A 200 ``application/octet-stream`` body written chunk by chunk as audio is made.

    Raw samples, or mp3 frames (each chunk whole frames). Stops synthesizing
    when the client goes away. Applies the ``chunk_delay`` and
    ``http_quota_after_bytes`` faults.
    """

    media_type = "application/octet-stream"

    def __init__(self, state: ServerState, synthesis: SynthesisRequest) -> None:
        # No content: no content-length, the body is chunked.
        self.status_code = 200
        self.background = None
        self._state = state
        self._synthesis = synthesis
        fmt = synthesis.output_format
        headers = {"content-type": "application/octet-stream", "x-sample-rate": str(fmt.sample_rate)}
        if fmt.container == "mp3":
            headers["x-container"] = "mp3"
            headers["x-bit-rate"] = str(fmt.bit_rate)
        else:
            headers["x-encoding"] = fmt.encoding
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            await self._stream(send)
            nursery.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        state = self._state
        synthesis = self._synthesis
        faults = state.faults
        quota = faults.http_quota_after_bytes
        sent = 0

        async def body(data: bytes, more: bool = True) -> None:
            message: Message = {"type": "http.response.body", "body": data, "more_body": more}
            await send(message)

        async with aclosing(
            stream_audio(
                state.engine,
                state.limiter,
                synthesis.transcript,
                synthesis.voice,
                synthesis.output_format,
            )
        ) as chunks:
            async for chunk in chunks:
                if faults.chunk_delay > 0:
                    await trio.sleep(faults.chunk_delay)
                if quota is not None and sent + len(chunk) >= quota:
                    if quota > sent:
                        await body(chunk[: quota - sent])
                    half = len(QUOTA_MARKER) // 2
                    await body(QUOTA_MARKER[:half])
                    await body(QUOTA_MARKER[half:], more=False)
                    return
                await body(chunk)
                sent += len(chunk)
        if quota is not None and sent >= quota:
            half = len(QUOTA_MARKER) // 2
            await body(QUOTA_MARKER[:half])
            await body(QUOTA_MARKER[half:], more=False)
            return
        await body(b"", more=False)


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
