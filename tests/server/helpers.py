"""Raw clients for the server tests: trio-websocket and httpx, no SDK code."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio
from helpers import TIMEOUT as TIMEOUT  # the suite's one bound, for the server tests too
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from trio_asyncai.server import DEFAULT_VOICE_ID, LibraryVoice, LocalServer, SignalEngine

API_KEY: Final = "sk_test_local_server_key"
#: The headers of an HTTP request the server tests' server takes.
HEADERS: Final = {"x-api-key": API_KEY, "version": "v1"}
#: The signal engine's rate: asking for it means no resampling.
SIGNAL_RATE: Final = 24000


def ws_url(server: LocalServer, *, api_key: str | None = API_KEY, version: str | None = "v1") -> str:
    """The WebSocket URL with the query string a client would send."""
    query = []
    if api_key is not None:
        query.append(f"api_key={api_key}")
    if version is not None:
        query.append(f"version={version}")
    return server.ws_url + ("?" + "&".join(query) if query else "")


def init_message(
    *,
    voice_id: str = DEFAULT_VOICE_ID,
    encoding: str = "pcm_s16le",
    sample_rate: int = SIGNAL_RATE,
    **extra: Any,
) -> dict[str, Any]:
    """An initializeConnection message."""
    message: dict[str, Any] = {
        "model_id": "async_flash_v1.0",
        "voice": {"mode": "id", "id": voice_id},
        "output_format": {"container": "raw", "encoding": encoding, "sample_rate": sample_rate},
    }
    message.update(extra)
    return message


class Client:
    """A thin JSON layer over a trio-websocket connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def text(self, transcript: str, context_id: str | None = None, *, force: bool = False) -> None:
        message: dict[str, Any] = {"transcript": transcript}
        if context_id is not None:
            message["context_id"] = context_id
        if force:
            message["force"] = True
        await self.send(message)

    async def close_context(self, context_id: str | None) -> None:
        message: dict[str, Any] = {"close_context": True, "transcript": ""}
        if context_id is not None:
            message["context_id"] = context_id
        await self.send(message)

    async def finish(self, transcript: str, context_id: str | None = None) -> None:
        """End a context's input as the reference says: the last text with force, then close_context."""
        await self.text(transcript, context_id, force=True)
        await self.close_context(context_id)

    async def receive(self) -> dict[str, Any]:
        """The next message, which must be a JSON object."""
        raw = await self.ws.get_message()
        assert isinstance(raw, str), raw
        value = json.loads(raw)
        assert isinstance(value, dict), value
        return value

    async def until_finals(self, *context_ids: str | None) -> list[dict[str, Any]]:
        """Every message up to and including one final for each of ``context_ids``."""
        waiting = list(context_ids)
        received: list[dict[str, Any]] = []
        while waiting:
            message = await self.receive()
            assert "error_code" not in message, message
            received.append(message)
            if message.get("final") is True:
                waiting.remove(message.get("context_id"))
        return received


@asynccontextmanager
async def open_ws(url: str) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client connection over a TCP stream this helper owns.

    trio-websocket 0.12's ``open_websocket_url`` never closes its socket when
    the *server* closes the WebSocket (a ResourceWarning at the next gc), so
    the tests bring their own stream and always close it.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        try:
            ws = await wrap_client_stream(nursery, stream, parts.hostname, resource)
            try:
                yield ws
            finally:
                await ws.aclose()
        finally:
            await stream.aclose()


@asynccontextmanager
async def connect(
    server: LocalServer,
    init: dict[str, Any] | None = None,
    *,
    api_key: str | None = API_KEY,
    version: str | None = "v1",
) -> AsyncIterator[Client]:
    """Open a WebSocket to ``server`` and send ``init`` (the default init if None)."""
    async with open_ws(ws_url(server, api_key=api_key, version=version)) as ws:
        client = Client(ws)
        await client.send(init if init is not None else init_message())
        yield client


async def expect_init_error(server: LocalServer, first: str | dict[str, Any], code: str) -> dict[str, Any]:
    """Send ``first`` as the first message; expect an error with ``code``, then close 1008."""
    with trio.fail_after(TIMEOUT):
        async with open_ws(ws_url(server)) as ws:
            client = Client(ws)
            if isinstance(first, str):
                await ws.send_message(first)
            else:
                await client.send(first)
            error = await client.receive()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert error["error_code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert close_of(closed.value) == (1008, code)
    record = server.log.connections[-1]
    assert record.close_code == 1008
    return error


def close_of(exc: ConnectionClosed) -> tuple[int, str | None]:
    """The (code, reason) a connection was closed with."""
    assert exc.reason is not None
    return exc.reason.code, exc.reason.reason


def audio_of(messages: list[dict[str, Any]], context_id: str | None) -> bytes:
    """The decoded audio of one context, in order."""
    return b"".join(
        base64.b64decode(m["audio"])
        for m in messages
        if m.get("context_id") == context_id and not m.get("final")
    )


def s16(data: bytes) -> npt.NDArray[np.int16]:
    """Little-endian 16-bit samples."""
    return np.frombuffer(data, dtype="<i2")


def signal_bytes(text: str, *, width: int = 2) -> int:
    """How many bytes the signal engine makes for ``text`` at its own rate."""
    return SignalEngine(sample_rate=SIGNAL_RATE).samples_for(text) * width


class GatedEngine:
    """The signal engine, except that text containing "hold" stops after its
    first piece of audio until :attr:`release` is set. Lets tests hold a
    synthesis in the middle without any timing."""

    name = "gated"

    def __init__(self) -> None:
        self.inner = SignalEngine(sample_rate=SIGNAL_RATE)
        self.native_sample_rate = self.inner.native_sample_rate
        self.release = threading.Event()
        self.held = threading.Event()

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[npt.NDArray[np.float32]]:
        for samples in self.inner.synthesize(text, voice):
            yield samples
            if "hold" in text:
                self.held.set()
                self.release.wait(TIMEOUT)


def http_body(transcript: str = "Hello from the HTTP endpoint.", **output_format: Any) -> dict[str, Any]:
    """A synthesis request: async_flash_v1.0, the default voice, and raw 16-bit audio at the signal
    engine's rate, unless ``output_format`` says otherwise (a None leaves that key out)."""
    fmt: dict[str, Any] = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SIGNAL_RATE}
    fmt.update(output_format)
    return {
        "model_id": "async_flash_v1.0",
        "transcript": transcript,
        "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
        "output_format": {key: value for key, value in fmt.items() if value is not None},
    }


async def post(
    server: LocalServer, path: str, json: object, headers: dict[str, str] = HEADERS
) -> httpx.Response:
    """POST ``json`` to ``path`` on ``server``, within :data:`TIMEOUT`."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.post(path, json=json, headers=headers)


def http_error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The error object of an HTTP error answer, checked to be the service's nested shape.

    ``{"detail": {"error_code", "message", "extra"?}}``: returns the inner object.
    """
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"}, body
    error = body["detail"]
    assert isinstance(error, dict)
    assert set(error) <= {"error_code", "message", "extra"}
    assert isinstance(error["error_code"], str)
    assert isinstance(error["message"], str) and error["message"]
    return error


def tone_wav(seconds: float, *, amplitude: int = 8000, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * np.sin(2 * np.pi * 200 * t)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


def flac_header(seconds: float, rate: int = 16000) -> bytes:
    """A FLAC file's signature and STREAMINFO block: all the server reads of one."""
    frames = int(seconds * rate)
    packed = (rate << 44) | (0 << 41) | (15 << 36) | frames
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + struct.pack(">Q", packed) + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + bytes(64)


def aiff(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit AIFF file of a tone."""
    frames = int(seconds * rate)
    exponent = 16383 + 63
    mantissa = rate
    while not mantissa & (1 << 63):
        mantissa <<= 1
        exponent -= 1
    comm = struct.pack(">hIh", 1, frames, 16) + struct.pack(">HQ", exponent, mantissa)
    t = np.arange(frames) / rate
    samples = (8000 * np.sin(2 * np.pi * 200 * t)).astype(">i2").tobytes()
    ssnd = struct.pack(">II", 0, 0) + samples
    chunks = b"COMM" + struct.pack(">I", len(comm)) + comm + b"SSND" + struct.pack(">I", len(ssnd)) + ssnd
    return b"FORM" + struct.pack(">I", 4 + len(chunks)) + b"AIFF" + chunks
