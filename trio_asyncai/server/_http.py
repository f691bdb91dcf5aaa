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
admission rule of server/_admission.py: the ``http_statuses`` fault, the key
and the version, and only then read the body, bounded) and answers errors with :func:`error_response`, so all
of them behave alike. A request refused before its body was read is
answered at once; the body is then read and dropped (:class:`UnreadBodyResponse`).

Sizes (*our choice*, the reference names none): a JSON body over
:data:`~._requests.MAX_JSON_BODY_BYTES` (1 MiB) is 413 ``FILE_TOO_LARGE``;
a transcript over :data:`~._requests.MAX_TRANSCRIPT_CHARS` (100,000
characters) is 400 ``INVALID_REQUEST``; a body that is not JSON (nested
too deep, an integer of thousands of digits) is 400 ``INVALID_REQUEST``.
Audio is never held whole in memory except by ``/with_timestamps``, whose
answer is one JSON document (bounded by the transcript's limit).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import tempfile
from collections.abc import Mapping
from contextlib import aclosing
from typing import IO, Any, Final

import trio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from ._admission import API_VERSION, admission_refusal, error_answer
from ._audio import (
    WAV_HEADER_BYTES,
    WordTiming,
    render_all,
    render_to_file,
    stream_audio,
    wav_file,
    wav_header,
)
from ._requests import (
    MAX_JSON_BODY_BYTES,
    RequestError,
    SynthesisRequest,
    parse_synthesis_request,
)
from ._state import Faults, HTTPRequestLog, ServerState

__all__ = [
    "QUOTA_MARKER",
    "UnreadBodyResponse",
    "admit",
    "error_response",
    "log_request",
    "parse_json_body",
    "read_body",
    "refusal",
    "status_endpoint",
    "streaming_endpoint",
    "timestamps_endpoint",
    "whole_file_endpoint",
]

logger = logging.getLogger("trio_asyncai.server")

#: What a streamed body carries when the quota runs out mid-stream.
QUOTA_MARKER: Final = b"--ERROR:QUOTA_EXCEEDED--"


def json_answer(
    faults: Faults, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON answer; with the ``nested_json`` fault an object carries a member nested that deep.

    The nesting is written out by hand: the JSON encoder itself refuses to
    nest as deep as a client's parser must survive.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    depth = faults.nested_json
    if depth > 0 and isinstance(data, dict):
        nested = '{"n":' * depth + "0" + "}" * depth
        text = (text[:-1] + "," if data else "{") + f'"nested":{nested}}}'
    return Response(text, status_code=status, headers=dict(headers or {}), media_type="application/json")


def error_response(
    state: ServerState,
    record: HTTPRequestLog,
    status: int,
    code: str,
    message: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """An error answer shaped as the service shapes it (see :func:`error_answer`)."""
    record.status = status
    body, headers = error_answer(
        state.faults, status, code, message, extra=extra, method=record.method, path=record.path
    )
    return json_answer(state.faults, body, status=status, headers=headers)


def refusal(state: ServerState, record: HTTPRequestLog, exc: RequestError) -> Response:
    """The error answer for a :exc:`RequestError`."""
    return error_response(state, record, exc.status, exc.code, exc.message, extra=exc.extra)


def log_request(state: ServerState, request: Request, body: Any = None) -> HTTPRequestLog:
    """Add a request to the server's log (the ``x-api-key`` header's value hidden)."""
    headers = {k: ("***" if k.lower() == "x-api-key" else v) for k, v in request.headers.items()}
    record = HTTPRequestLog(method=request.method, path=request.url.path, headers=headers, body=body)
    state.log.add_http(record)
    return record


def _too_large(limit: int) -> RequestError:
    return RequestError("FILE_TOO_LARGE", f"the request body is larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and refused once it passes ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read.
    Raises :exc:`RequestError` 413 ``FILE_TOO_LARGE`` (the code the service
    gives an oversized upload) and :exc:`~starlette.requests.ClientDisconnect`.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    pieces: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise _too_large(limit)
        pieces.append(piece)
    return b"".join(pieces)


def parse_json_body(raw: bytes) -> Any:
    """A JSON body (``None`` for an empty one); 400 ``INVALID_REQUEST`` if it cannot be read.

    Not JSON, nested deeper than the parser goes, or an integer with more
    digits than Python converts: all the same client error.
    """
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RequestError("INVALID_REQUEST", "the body is not valid JSON") from None


#: After refusing a request whose body it has not read, the server reads and
#: drops up to this much of the body (for at most :data:`LINGER_SECONDS`), so
#: that a client still sending gets the answer rather than a reset
#: connection (what web servers call a lingering close). The answer is
#: complete (its ``Content-Length`` is met) before that; the body's end is
#: sent after, since Hypercorn closes the connection at the end of an answer
#: whose request is not over.
DRAIN_BYTES: Final = 16 * 1024 * 1024
LINGER_SECONDS: Final = 5.0


class UnreadBodyResponse(Response):
    """An answer sent before the request body was read; then the body is read and dropped.

    Never more than a chunk of the body is in memory, and no more than
    :data:`DRAIN_BYTES` are read, for at most :data:`LINGER_SECONDS`.
    """

    def __init__(self, answer: Response) -> None:
        self.status_code = answer.status_code
        self.background = None
        self.raw_headers = answer.raw_headers
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._answer.body, "more_body": True})
        drained = 0
        with trio.move_on_after(LINGER_SECONDS):
            while drained <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
                drained += len(message.get("body", b""))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def admit(
    state: ServerState,
    request: Request,
    *,
    parse_json: bool = True,
    need_key: bool = True,
    max_body: int = MAX_JSON_BODY_BYTES,
) -> tuple[HTTPRequestLog, Any, Response | None]:
    """Log a request and run the checks every endpoint shares, then read its body.

    Returns the log record, the body and, if the request is refused, the
    response to send. The checks come before the body is read, so that a
    refused request costs no memory: the admission rule
    (:func:`~._admission.admission_refusal`, the one the WebSocket handshake
    passes too) with the ``x-api-key`` and ``version`` headers and the
    ``http_statuses`` fault; ``need_key=False`` skips the key. Then the body
    is read: over ``max_body`` bytes it is 413 ``FILE_TOO_LARGE`` (*our
    choice* of code and limit: the service documents none for JSON bodies).
    With ``parse_json`` the body is parsed (``None`` when empty; not JSON is
    400 ``INVALID_REQUEST``), else it is the raw bytes.
    """
    record = log_request(state, request)
    refused = _check_headers(state, request, record, need_key=need_key)
    if refused is not None:
        return record, None, UnreadBodyResponse(refused)
    try:
        raw = await read_body(request, max_body)
        body: Any = parse_json_body(raw) if parse_json else raw
    except ClientDisconnect:
        # The client went away mid-request (an interrupted synthesis): answer
        # nobody, without an error traceback in the server log.
        return record, None, Response(status_code=400)
    except RequestError as exc:
        answer = refusal(state, record, exc)
        return record, None, (UnreadBodyResponse(answer) if exc.code == "FILE_TOO_LARGE" else answer)
    if parse_json and state.log.details:
        record.body = body
    return record, body, None


def _check_headers(
    state: ServerState, request: Request, record: HTTPRequestLog, *, need_key: bool
) -> Response | None:
    """:func:`admit`'s checks that need no body: the admission rule, with the headers' key and version."""
    refused = admission_refusal(
        state,
        state.faults.http_statuses,
        key=request.headers.get("x-api-key"),
        version=request.headers.get("version"),
        need_key=need_key,
    )
    return None if refused is None else refusal(state, record, refused)


async def _synthesis_request(
    state: ServerState, request: Request, *, streaming: bool
) -> tuple[HTTPRequestLog, SynthesisRequest | Response]:
    record, body, refused = await admit(state, request)
    if refused is not None:
        return record, refused
    if body is None:
        return record, error_response(state, record, 400, "INVALID_REQUEST", "the body must be JSON")
    try:
        return record, parse_synthesis_request(
            body, state.voices, streaming=streaming, language_from_voice=state.faults.language_from_voice
        )
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
    """``POST /text_to_speech``: the whole file: raw (octet-stream), wav (audio/wav) or mp3 (audio/mpeg).

    Never built in memory: raw and mp3 are sent as they are made (a chunked
    body, mp3 in whole frames), as by the streaming endpoint; a wav file,
    whose header holds its length, is first written to a temporary file (in
    memory up to :data:`SPOOL_BYTES`, then on disk) and sent from there with
    its ``Content-Length``. A synthesis failure after raw or mp3 bytes went
    out can only end the connection early (*our choice*; one before the
    first byte is the usual 500).
    """
    record, synthesis = await _synthesis_request(state, request, streaming=False)
    if isinstance(synthesis, Response):
        return synthesis
    fmt = synthesis.output_format
    if fmt.container != "wav":
        record.status = 200
        media_type = "audio/mpeg" if fmt.container == "mp3" else "application/octet-stream"
        return AudioStreamResponse(state, synthesis, headers={"content-type": media_type}, faults_apply=False)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (closed by the response)
    try:
        spool.write(bytes(WAV_HEADER_BYTES))
        size = await render_to_file(
            state.engine, state.limiter, synthesis.transcript, synthesis.voice, fmt, spool
        )
        spool.seek(0)
        spool.write(wav_header(size, fmt.sample_rate, fmt.encoding))
        spool.seek(0)
    except Exception:
        spool.close()
        logger.exception("synthesis failed")
        return error_response(state, record, 500, "INTERNAL_SERVER_ERROR", "synthesis failed")
    except BaseException:
        spool.close()
        raise
    record.status = 200
    return FileBodyResponse(spool, WAV_HEADER_BYTES + size, media_type="audio/wav")


#: How much of a whole wav file is kept in memory before it goes to disk.
SPOOL_BYTES: Final = 1024 * 1024
#: The size of each body chunk read back from a spooled file.
_READ_BYTES: Final = 64 * 1024


class FileBodyResponse(Response):
    """A 200 answer whose body is read from an open file, a chunk at a time; closes the file."""

    def __init__(self, file: IO[bytes], length: int, *, media_type: str) -> None:
        self.status_code = 200
        self.background = None
        self._file = file
        self.init_headers({"content-type": media_type, "content-length": str(length)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while data := await trio.to_thread.run_sync(self._file.read, _READ_BYTES):
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._file.close()


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
    """A 200 body written chunk by chunk as audio is made.

    Raw samples, or mp3 frames (each chunk whole frames). Synthesis goes no
    faster than the client reads: each chunk is made after the previous one
    was handed to the socket. Stops synthesizing when the client goes away.
    Applies the ``chunk_delay`` fault, and with ``faults_apply`` (the
    streaming endpoint) ``http_quota_after_bytes``. ``headers`` default to
    the streaming endpoint's: ``application/octet-stream`` and the format.
    """

    def __init__(
        self,
        state: ServerState,
        synthesis: SynthesisRequest,
        *,
        headers: Mapping[str, str] | None = None,
        faults_apply: bool = True,
    ) -> None:
        # No content: no content-length, the body is chunked.
        self.status_code = 200
        self.background = None
        self._state = state
        self._synthesis = synthesis
        self._faults_apply = faults_apply
        if headers is None:
            fmt = synthesis.output_format
            headers = {"content-type": "application/octet-stream", "x-sample-rate": str(fmt.sample_rate)}
            if fmt.container == "mp3":
                headers["x-container"] = "mp3"
                headers["x-bit-rate"] = str(fmt.bit_rate)
            else:
                headers["x-encoding"] = fmt.encoding
        self.init_headers(dict(headers))

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
        quota = faults.http_quota_after_bytes if self._faults_apply else None
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
                if self._faults_apply and faults.no_audio:
                    continue
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
