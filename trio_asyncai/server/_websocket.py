"""The streaming WebSocket endpoint, ``/text_to_speech/websocket/ws``.

One connection is one :class:`_Connection`: a receive loop (this task), a
sender task that owns every write to the socket, and one task per open
context that turns its text into audio. All of them live in one nursery.

What the server does, as ASYNC_API.md describes the service, and where the
reference is silent (marked *our choice*):

* Text accumulates per context (no ``context_id``, or ``""``, is the default
  context, whose messages carry no ``context_id``). Complete sentences (``.``,
  ``!`` or ``?`` then whitespace, and the marks of the connection's language:
  a full-width ``。`` in Japanese, a danda in Hindi, ...; without a language,
  those of every language) are synthesized as soon as they are there
  (*our choice*: the reference only says that text is buffered); ``force:
  true`` synthesizes the rest now. **A force is answered with audio only,
  never with a final.**
* ``close_context`` ends the context's input: what is still buffered is
  synthesized, every remaining audio message of the context is sent, then
  exactly one ``{"audio": "", "final": true}``. The connection stays open and
  the id may be used again later. A close for a context that has no text
  (never opened, or already closed) is answered with a final alone (*our
  choice*).
* Whitespace-only text without ``force`` (the keepalive) is never synthesized
  and opens no context; it only restarts the idle timer.
* mp3 (``output_format.container == "mp3"``, which needs the ``lameenc``
  package): each context has one mp3 stream, encoded as its text is
  synthesized; every audio message carries whole frames. The encoder holds
  back the last frame or two of each sentence until more text comes; a
  ``force`` or the close flushes it.
* ``{"text": "..."}`` (older docs) is read as a sendText.
* The handshake passes the admission rule every HTTP request passes
  (server/_admission.py: the ``handshake_statuses`` fault, the key, the
  version); a refusal (401, 404, a fault's status) is an HTTP response with
  the same JSON error body, sent through the ASGI denial-response extension.
* Error messages are ``{"error_code", "message", "extra", "request_id"}``
  (``extra`` is ``null`` when there is nothing to add), as the service sends them.
* Errors in the initializeConnection (unknown voice, bad format or language,
  missing fields, a first message that is not JSON or not an init): an error
  message, then close code 1008, reason = the code (*our choice*).
* Malformed messages after the init (not JSON, JSON nested deeper than the
  parser goes, a JSON value that is not an object, ``null`` included, wrong
  types, an unknown kind): an error message with code ``INVALID_REQUEST``
  (and the ``context_id`` when one could be read); the connection stays
  open, since the other contexts on it are fine (*our choice*).
* Sizes (*our choice*: the reference names no limits): a client message
  larger than :data:`MAX_MESSAGE_SIZE` (1 MiB) closes the connection with
  code 1009 (message too big) and no error message, as Hypercorn enforces
  it before the app sees the message. Text that would make a context hold
  more than ``MAX_TRANSCRIPT_CHARS`` (100,000) characters not yet
  synthesized is refused with ``INVALID_REQUEST`` (with the ``context_id``);
  that text is dropped, what the context held stays.
* Backpressure: synthesis runs at most :data:`SEND_QUEUE_MESSAGES` messages
  ahead of the socket, so a client that does not read stops synthesis
  instead of filling the server's memory; a context keeps at most
  :data:`JOB_QUEUE_JOBS` texts waiting for synthesis, and beyond that the
  server reads the client's next message only when synthesis catches up
  (the client's own sends then wait). Either way nothing is dropped.
* A failing engine: an error message ``INTERNAL_SERVER_ERROR`` with the
  ``context_id``; that text gets no audio (the context's final still comes
  when it is closed).
* Idle timeout: when no client message arrived for ``idle_timeout`` seconds
  (60, trio's clock), the server sends the error ``TIMEOUT`` ("Timeout: no
  message received in 60.0 seconds") and closes with code 1008, reason
  ``"TIMEOUT"`` (the close code and reason are *our choice*).
* ``{"terminate": true}`` (or ``{"text": ""}``): close code 1000 at once;
  pending audio is dropped.

Fault switches (:class:`~trio_asyncai.server.Faults`) bring back behaviours the
service does not have, for clients' robustness tests: ``final_per_force`` (a
final after each force's audio) and ``no_final_on_close`` (close_context drops
the context's audio at once and sends no final).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from contextlib import aclosing, suppress
from typing import Any, Final, TypeVar, final

import attrs
import numpy as np
import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._admission import admission_refusal, error_answer, error_extra
from ._audio import (
    AudioEncoder,
    encode_all,
    make_encoder,
    sentence_scan_start,
    split_complete_sentences,
    stream_audio,
)
from ._http import json_answer
from ._requests import (
    MAX_TRANSCRIPT_CHARS,
    ConnectionSettings,
    RequestError,
    parse_connection_settings,
    transcript_too_long,
)
from ._state import ConnectionLog, ServerState

__all__ = ["handle_websocket"]

logger = logging.getLogger("trio_asyncai.server")

#: Close codes the server uses.
CLOSE_NORMAL: Final = 1000
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
#: The error code (and close reason) for a connection closed as idle.
IDLE_CODE: Final = "TIMEOUT"
#: The largest client message (frame) accepted, in characters of a text
#: message or bytes of a binary one; a larger one closes the connection with
#: 1009 (Hypercorn's ``websocket_max_message_size``).
MAX_MESSAGE_SIZE: Final = 1024 * 1024
#: Messages waiting for the socket, per connection: when they are there,
#: synthesis waits for the client to read.
SEND_QUEUE_MESSAGES: Final = 8
#: Texts waiting for synthesis, per context: when they are there, the
#: server reads no further client message until synthesis catches up.
JOB_QUEUE_JOBS: Final = 4

_T = TypeVar("_T")

# What sending to a client that is gone (or closing at the same moment: then
# Hypercorn's own close reply and ours meet, BusyResourceError) can raise.
_SEND_ERRORS: Final = (
    OSError,
    RuntimeError,
    WebSocketDisconnect,
    trio.BusyResourceError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


def redact_query(params: dict[str, str]) -> dict[str, str]:
    """A copy of query parameters with the API key hidden."""
    return {k: ("***" if k.lower() == "api_key" else v) for k, v in params.items()}


async def _deny(websocket: WebSocket, refused: RequestError) -> None:
    """Refuse the handshake with the error answer the service's HTTP endpoints give."""
    faults = websocket.app.state.server.faults
    status, code, path = refused.status, refused.code, websocket.url.path
    body, headers = error_answer(faults, status, code, refused.message, extra=refused.extra, path=path)
    await websocket.send_denial_response(json_answer(faults, body, status=status, headers=headers))


async def handle_websocket(state: ServerState, websocket: WebSocket) -> None:
    """Serve one WebSocket connection: the admission rule, then the protocol.

    The key and the version come from the query string (ASYNC_API.md:
    "``api_key`` and ``version`` as query parameters"); an ``x-api-key``
    header is taken when the query has no key. The rule itself, the one
    every HTTP request passes, is :func:`~._admission.admission_refusal`.
    """
    log = state.log
    params = dict(websocket.query_params)
    refused = admission_refusal(
        state,
        state.faults.handshake_statuses,
        key=params.get("api_key") or websocket.headers.get("x-api-key"),
        version=params.get("version"),
    )
    if refused is not None:
        log.handshakes_rejected += 1
        log.notify()
        logger.debug("refused a WebSocket handshake: %s %s", refused.status, refused.code)
        await _deny(websocket, refused)
        return

    await websocket.accept()
    record = ConnectionLog(index=log.connections_opened, query=redact_query(params), details=log.details)
    log.add_connection(record)
    logger.debug("WebSocket connection %d opened", record.index)
    try:
        await _Connection(state, websocket, record).run()
    finally:
        record.closed = True
        log.connections_closed += 1
        log.notify()
        logger.debug("WebSocket connection %d ended (close code %s)", record.index, record.close_code)


@final
@attrs.frozen
class _Job:
    text: str
    #: Speak everything now (force, or the close): flush the mp3 encoder too.
    flush: bool
    #: Send the context's final after this text's audio.
    final: bool
    #: The close's job: the context's last.
    closing: bool = False


@final
@attrs.define(eq=False)
class _Context:
    id: str | None
    jobs_send: trio.MemorySendChannel[_Job]
    jobs_receive: trio.MemoryReceiveChannel[_Job]
    #: The context's audio stream (mp3 keeps state between jobs; only the
    #: context's own task, one thread step at a time, uses it).
    encoder: AudioEncoder
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    buffer: str = ""
    #: Its audio is no longer wanted: nothing more of it is sent.
    closed: bool = False


@final
@attrs.frozen
class _Outgoing:
    message: dict[str, Any]
    #: Dropped if this context was closed before the message goes out.
    context: _Context | None = None
    kind: str = "other"  # "audio", "final", "error" or "other"


def _with_context(message: dict[str, Any], context_id: str | None) -> dict[str, Any]:
    if context_id is not None:
        message["context_id"] = context_id
    return message


class _Connection:
    def __init__(self, state: ServerState, websocket: WebSocket, record: ConnectionLog) -> None:
        self.state = state
        self.ws = websocket
        self.record = record
        self.settings: ConnectionSettings | None = None
        self.contexts: dict[str | None, _Context] = {}
        self.out_send, self.out_receive = trio.open_memory_channel[_Outgoing](SEND_QUEUE_MESSAGES)
        self.idle_scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None
        self.close: tuple[int, str] | None = None
        self.client_gone = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        with trio.CancelScope() as idle_scope:
            self.idle_scope = idle_scope
            self._activity()
            init = await self._initialize()
            if init is not None:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    nursery.start_soon(self._sender)
                    if "transcript" in init:
                        await self._send_text(init)
                    await self._receive_loop()
                    nursery.cancel_scope.cancel()
        if idle_scope.cancelled_caught and self.close is None:
            timeout = self.state.idle_timeout
            error = ws_error(IDLE_CODE, f"Timeout: no message received in {timeout:.1f} seconds")
            await self._send_direct(error)
            self._keep(self.record.errors_sent, error)
            self.close = (CLOSE_POLICY, IDLE_CODE)
        if self.close is not None and not self.client_gone:
            code, reason = self.close
            self.record.close_code, self.record.close_reason = code, reason
            with suppress(*_SEND_ERRORS):
                await self.ws.close(code, reason)

    async def _initialize(self) -> dict[str, Any] | None:
        """Read and check the initializeConnection; on error, answer it and return None."""
        message = await self._receive_json()
        if message is _GONE:
            return None
        try:
            if not isinstance(message, dict):
                raise RequestError("INVALID_REQUEST", "the first message must be a JSON initializeConnection")
            self.settings = parse_connection_settings(
                message, self.state.voices, language_from_voice=self.state.faults.language_from_voice
            )
        except RequestError as exc:
            error = ws_error(exc.code, exc.message)
            await self._send_direct(error)
            self._keep(self.record.errors_sent, error)
            self.close = (CLOSE_POLICY, exc.code)
            return None
        return message

    async def _receive_json(self) -> object:
        """The next client frame, parsed; a frame that is not JSON comes back as ``_BAD``.

        Returns ``_GONE`` when the client went away (JSON ``null`` is None).
        """
        message = await self.ws.receive()
        self._activity()
        if message["type"] == "websocket.disconnect":
            self.client_gone = True
            return _GONE
        raw: str | bytes | None = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: nested deeper than the parser goes.
            self._keep(self.record.rejected, raw)
            self.state.log.notify()
            return _BAD
        if isinstance(value, dict):
            self._keep(self.record.messages, value)
        else:
            self._keep(self.record.rejected, raw)
        self.state.log.notify()
        return value

    def _keep(self, items: list[_T], item: _T) -> None:
        """Add to one of the connection log's lists, when the log keeps details."""
        if self.record.details:
            items.append(item)

    async def _receive_loop(self) -> None:
        while True:
            message = await self._receive_json()
            if message is _GONE:
                return
            if not isinstance(message, dict):
                await self._error("INVALID_REQUEST", "messages must be JSON objects")
                continue
            if not await self._handle(message):
                return

    # ------------------------------------------------------------------ messages

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Act on one message after the init; False means: close the connection."""
        if message.get("terminate") is True:
            self.close = (CLOSE_NORMAL, "terminate")
            return False
        if message.get("close_context") is True:
            await self._close_context(message)
        elif "transcript" in message:
            await self._send_text(message)
        elif "text" in message:
            if message["text"] == "":
                # The older closeConnection.
                self.close = (CLOSE_NORMAL, "terminate")
                return False
            await self._send_text({**message, "transcript": message["text"]})
        elif "model_id" in message or "voice" in message:
            await self._error(
                "INVALID_REQUEST",
                "the connection is already initialized: open a new one to change settings",
            )
        else:
            message_kinds = "expected transcript, close_context or terminate"
            await self._error("INVALID_REQUEST", f"unknown message: {message_kinds}")
        return True

    async def _send_text(self, message: dict[str, Any]) -> None:
        transcript = message.get("transcript")
        context_id = message.get("context_id")
        force = message.get("force")
        if context_id is not None and not isinstance(context_id, str):
            await self._error("INVALID_REQUEST", "context_id must be a string")
            return
        key = context_id or None
        if not isinstance(transcript, str):
            await self._error("INVALID_REQUEST", "transcript must be a string", key)
            return
        if force is not None and not isinstance(force, bool):
            await self._error("INVALID_REQUEST", "force must be a boolean", key)
            return
        context = self.contexts.get(key)
        held = len(context.buffer) if context is not None else 0
        if held + len(transcript) > MAX_TRANSCRIPT_CHARS:
            # The text is dropped; what the context held stays (our choice).
            refused = transcript_too_long(held + len(transcript))
            await self._error(refused.code, refused.message, key)
            return
        if not transcript.strip() and not force:
            # A keepalive: never synthesized.
            self.record.keepalives += 1
            if context is not None:
                context.buffer += transcript
            self.state.log.notify()
            return
        if context is None:
            context = self._open_context(key)
        code = self.state.faults.error_on_text
        if code is not None:
            self.state.faults.error_on_text = None
            await self._error(code, "error injected by the local server's faults", key)
            return
        assert self.settings is not None
        language = self.settings.voice.params.language
        start = sentence_scan_start(context.buffer, language=language)
        context.buffer += transcript
        if force:
            text, context.buffer = context.buffer, ""
            await self._enqueue(context, text, flush=True, final=self.state.faults.final_per_force)
        else:
            complete, rest = split_complete_sentences(context.buffer, start, language=language)
            if complete.strip():
                context.buffer = rest
                await self._enqueue(context, complete, flush=False, final=False)

    def _open_context(self, key: str | None) -> _Context:
        assert self.nursery is not None
        assert self.settings is not None
        jobs_send, jobs_receive = trio.open_memory_channel[_Job](JOB_QUEUE_JOBS)
        context = _Context(key, jobs_send, jobs_receive, make_encoder(self.settings.output_format))
        self.contexts[key] = context
        self._keep(self.record.contexts_opened, key)
        self.state.log.notify()
        self.nursery.start_soon(self._run_context, context)
        return context

    async def _enqueue(
        self, context: _Context, text: str, *, flush: bool, final: bool, closing: bool = False
    ) -> None:
        self._keep(self.record.jobs, (context.id, text, flush))
        self.state.log.notify()
        # Waits while the context has JOB_QUEUE_JOBS texts waiting: the
        # client's next message is read when synthesis catches up.
        await context.jobs_send.send(_Job(text, flush, final, closing))

    async def _close_context(self, message: dict[str, Any]) -> None:
        context_id = message.get("context_id")
        key = context_id if isinstance(context_id, str) and context_id else None
        self._keep(self.record.contexts_closed, key)
        context = self.contexts.pop(key, None)
        if context is not None and not self.state.faults.no_final_on_close:
            # The end of input: the rest of the text, its audio, then the final.
            text, context.buffer = context.buffer, ""
            await self._enqueue(context, text, flush=True, final=True, closing=True)
            context.jobs_send.close()
        elif context is not None:
            context.closed = True
            context.scope.cancel()
            context.jobs_send.close()
            await self._after_close(key)
        else:
            await self._queue(_final_message(key), kind="final")
            await self._after_close(key)
        self.state.log.notify()

    async def _after_close(self, key: str | None) -> None:
        """What follows a context's final: the ``late_audio_after_close`` fault's extra messages."""
        if self.state.faults.late_audio_after_close:
            assert self.settings is not None
            fmt = self.settings.output_format
            t = np.arange(round(fmt.sample_rate * 0.04)) / fmt.sample_rate
            late = encode_all((0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), fmt)
            await self._queue(_audio_message(late, key), kind="audio")
            await self._queue(_final_message(key), kind="final")

    async def _error(self, code: str, message: str, context_id: str | None = None) -> None:
        extra = error_extra(self.state.faults, code)  # the same details as over HTTP
        await self._queue(_with_context(ws_error(code, message, extra), context_id), kind="error")

    # ------------------------------------------------------------------ synthesis

    async def _run_context(self, context: _Context) -> None:
        assert self.settings is not None
        settings = self.settings
        with context.scope:
            async for job in context.jobs_receive:
                try:
                    # A flush empties what an mp3 encoder holds back, even with no new text.
                    if job.text.strip() or (job.flush and context.encoder.pending):
                        async with aclosing(
                            stream_audio(
                                self.state.engine,
                                self.state.limiter,
                                job.text,
                                settings.voice,
                                settings.output_format,
                                encoder=context.encoder,
                                flush=job.flush,
                            )
                        ) as chunks:
                            async for chunk in chunks:
                                await self._queue(_audio_message(chunk, context.id), context, "audio")
                except Exception:
                    logger.exception("synthesis failed")
                    # Start the next job on a clean stream.
                    context.encoder = make_encoder(settings.output_format)
                    await self._queue(
                        _with_context(ws_error("INTERNAL_SERVER_ERROR", "synthesis failed"), context.id),
                        context,
                        "error",
                    )
                if job.final:
                    await self._queue(_final_message(context.id), context, "final")
                if job.closing:
                    await self._after_close(context.id)

    # ------------------------------------------------------------------ sending

    async def _queue(
        self, message: dict[str, Any], context: _Context | None = None, kind: str = "other"
    ) -> None:
        """Hand a message to the sender; waits while SEND_QUEUE_MESSAGES are waiting for the socket."""
        await self.out_send.send(_Outgoing(message, context, kind))

    async def _sender(self) -> None:
        async for item in self.out_receive:
            await self._send_item(item)

    async def _send_item(self, item: _Outgoing) -> None:
        faults = self.state.faults
        record = self.record
        if record.stalled or (item.context is not None and item.context.closed):
            return
        if item.kind == "audio":
            if faults.no_audio or self._audio_limit_reached():
                return
            if faults.chunk_delay > 0:
                await trio.sleep(faults.chunk_delay)
                if item.context is not None and item.context.closed:
                    return
            if faults.garbage_before_audio:
                await self._send_raw("this is not JSON {")
                await self._send_raw(b"\x00\xffnot json either")
            message = item.message
            if faults.corrupt_next_audio:
                faults.corrupt_next_audio = False
                message = {**message, "audio": "%%% not base64 %%%"}
            await self._send_raw(json.dumps(message))
            record.audio_messages_sent += 1
            self.state.log.notify()
            self._audio_limit_reached()
            return
        await self._send_raw(json.dumps(item.message))
        if item.kind == "final":
            record.finals_sent += 1
        elif item.kind == "error":
            self._keep(record.errors_sent, item.message)
        self.state.log.notify()

    def _audio_limit_reached(self) -> bool:
        """Apply the drop and stall faults; True if no more audio may be sent."""
        faults = self.state.faults
        sent = self.record.audio_messages_sent
        if faults.drop_after_audio_messages is not None and sent >= faults.drop_after_audio_messages:
            self.close = (CLOSE_INTERNAL, "connection dropped (fault injected)")
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()
            return True
        if faults.stall_after_audio_messages is not None and sent >= faults.stall_after_audio_messages:
            self.record.stalled = True
            self.state.log.notify()
            return True
        return False

    async def _send_raw(self, data: str | bytes) -> None:
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_text(data)
        except _SEND_ERRORS:
            self.client_gone = True
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()

    async def _send_direct(self, message: dict[str, Any]) -> None:
        """Send outside the sender task (only before it exists)."""
        try:
            await self.ws.send_text(json.dumps(message))
        except _SEND_ERRORS:
            self.client_gone = True

    # ------------------------------------------------------------------ idle timer

    def _activity(self) -> None:
        """A client message arrived: restart the idle timer.

        The service counts only what it receives: synthesis or audio still
        being sent does not keep a silent client's connection open.
        """
        timeout = self.state.idle_timeout
        if self.idle_scope is None or timeout is None:
            return
        self.idle_scope.deadline = trio.current_time() + timeout


class _Marker:
    """Marks a frame that was not JSON (``_BAD``), or the client's going away (``_GONE``)."""


_BAD: Final = _Marker()
_GONE: Final = _Marker()


def _audio_message(audio: bytes, context_id: str | None) -> dict[str, Any]:
    return _with_context({"audio": base64.b64encode(audio).decode("ascii"), "final": False}, context_id)


def ws_error(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error message as the service sends it on the WebSocket."""
    return {"error_code": code, "message": message, "extra": extra, "request_id": str(uuid.uuid4())}


def _final_message(context_id: str | None) -> dict[str, Any]:
    return _with_context({"audio": "", "final": True}, context_id)
