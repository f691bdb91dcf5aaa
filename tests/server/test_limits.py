"""A client cannot knock the server over: refused bodies are not read, queues and sizes are bounded."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trio_asyncai.server import (
    LibraryVoice,
    LocalServer,
    ServerLog,
    SignalEngine,
    open_local_server,
    serve,
)
from trio_asyncai.server._requests import MAX_TRANSCRIPT_CHARS
from trio_asyncai.server._websocket import MAX_MESSAGE_SIZE, SEND_QUEUE_MESSAGES

from .helpers import (
    API_KEY,
    HEADERS,
    SIGNAL_RATE,
    TIMEOUT,
    GatedEngine,
    audio_of,
    close_of,
    connect,
    http_body,
    http_error,
    init_message,
    signal_bytes,
)


async def read_http_answer(stream: trio.SocketStream) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


# --------------------------------------------------------------------------- item 11: refused bodies, the log


@pytest.mark.parametrize("key", ["sk_wrong", None])
async def test_a_refused_request_is_answered_before_its_body_is_read(
    server: LocalServer, key: str | None
) -> None:
    """Only the first 64 kB of a 2 MB body are ever sent: the 401 must come all the same."""
    declared = 2 * 1024 * 1024
    head = (
        "POST /text_to_speech HTTP/1.1\r\n"
        f"host: {server.host}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n"
        "version: v1\r\n" + (f"x-api-key: {key}\r\n" if key else "") + "\r\n"
    )
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(server.host, server.port)
        async with stream:
            await stream.send_all(head.encode() + b'{"transcript": "' + b"x" * 65536)
            status, answer = await read_http_answer(stream)
    assert status == 401
    assert answer["detail"]["error_code"] == "INVALID_API_KEY"
    assert server.log.http[-1].body is None
    assert server.log.http[-1].status == 401


async def test_a_refused_client_that_sends_the_whole_body_gets_the_answer(server: LocalServer) -> None:
    """The body of a refused request is read and dropped after the answer, so that the client sees it."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/text_to_speech",
                content=b"x" * (3 * 1024 * 1024),
                headers={"x-api-key": "sk_no", "version": "v1"},
            )
            again = await http.get("/", headers=HEADERS)
    assert http_error(response, 401)["error_code"] == "INVALID_API_KEY"
    assert again.status_code == 200


async def test_an_oversized_body_is_413(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post("/voices", content=b" " * (2 * 1024 * 1024), headers=HEADERS)
    assert http_error(response, 413)["error_code"] == "FILE_TOO_LARGE"


async def test_serve_keeps_counters_not_what_clients_sent() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server: LocalServer = await nursery.start(
                lambda task_status: serve(
                    port=0, engine=SignalEngine(), idle_timeout=None, task_status=task_status
                )
            )
            async with connect(server, init_message(sample_rate=24000)) as client:
                await client.finish("Hello. ", "c")
                await client.until_finals("c")
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.post("/text_to_speech", json=http_body("Hi."), headers=HEADERS)
            await server.log.wait_for(lambda log: log.connections_closed == 1)
            nursery.cancel_scope.cancel()
    assert response.status_code == 200
    log = server.log
    assert (log.connections_opened, log.connections_closed, log.http_requests) == (1, 1, 1)
    assert log.connections == []
    assert log.http == []
    assert log.messages == []


async def test_open_local_server_keeps_details_unless_told() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", idle_timeout=None, log_details=False) as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.post("/voices", json={"limit": 2}, headers=HEADERS)
    assert server.log.http_requests == 1
    assert server.log.http == []
    assert ServerLog().details


# --------------------------------------------------------------------------- item 12: backpressure and sizes


class PacedEngine:
    """The signal engine, checking at each step how far synthesis has run ahead of the socket.

    ``behind`` is the largest number of audio messages made but not yet sent
    seen when the engine was asked for more.
    """

    name = "paced"

    def __init__(self) -> None:
        self.inner = SignalEngine(sample_rate=SIGNAL_RATE)
        self.native_sample_rate = SIGNAL_RATE
        self.log: ServerLog | None = None
        self.made = 0
        self.behind = 0

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[npt.NDArray[np.float32]]:
        chunk = round(SIGNAL_RATE * 0.08)
        for samples in self.inner.synthesize(text, voice):
            assert self.log is not None
            self.behind = max(self.behind, self.made - self.log.connections[-1].audio_messages_sent)
            self.made += math.ceil(samples.size / chunk)
            yield samples


async def test_synthesis_waits_for_a_client_that_does_not_read(
    jump_clock: trio.testing.MockClock,
) -> None:
    engine = PacedEngine()
    text = "word " * 40  # about 12 s of audio: 20 engine steps, 150 messages
    async with open_local_server(api_key=API_KEY, engine=engine, idle_timeout=None) as server:
        engine.log = server.log
        # Each audio message waits a (mock) second before it goes out: the socket of a slow reader.
        server.faults.chunk_delay = 1.0
        with trio.fail_after(100_000):
            async with connect(server) as client:
                await client.finish(text, "c")
                messages = await client.until_finals("c")
    assert len(audio_of(messages, "c")) == signal_bytes(text)
    # Never more than the send queue (and the message being sent) ahead of the socket.
    assert engine.behind <= SEND_QUEUE_MESSAGES + 1


async def test_a_frame_over_the_limit_closes_with_1009(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.ws.send_message(json.dumps({"transcript": "x" * MAX_MESSAGE_SIZE}))
            with pytest.raises(ConnectionClosed) as closed:
                await client.receive()
    assert close_of(closed.value)[0] == 1009


async def test_too_much_text_in_a_context_is_refused_and_the_context_survives(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("Held ", "c")  # no sentence end: it stays in the context
            await client.text("b" * (MAX_TRANSCRIPT_CHARS - 4), "c")
            error = await client.receive()
            await client.send({"context_id": "c", "close_context": True, "transcript": ""})
            await client.finish("Other. ", "d")
            messages = await client.until_finals("c", "d")
    assert error["error_code"] == "INVALID_REQUEST"
    assert error["context_id"] == "c"
    assert str(MAX_TRANSCRIPT_CHARS) in error["message"]
    assert len(audio_of(messages, "c")) == signal_bytes("Held")
    assert len(audio_of(messages, "d")) == signal_bytes("Other.")


@pytest.mark.parametrize(
    "path", ["/text_to_speech", "/text_to_speech/streaming", "/text_to_speech/with_timestamps"]
)
async def test_a_transcript_over_the_limit_is_refused(server: LocalServer, path: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                path, json=http_body("a" * (MAX_TRANSCRIPT_CHARS + 1)), headers=HEADERS
            )
    error = http_error(response, 400)
    assert error["error_code"] == "INVALID_REQUEST"
    assert str(MAX_TRANSCRIPT_CHARS) in error["message"]


async def test_a_whole_file_is_sent_as_it_is_made(gated_server: LocalServer, gate: GatedEngine) -> None:
    """The first bytes of a raw whole file arrive while the engine is still holding its text."""
    with trio.fail_after(TIMEOUT):
        async with (
            httpx.AsyncClient(base_url=gated_server.url) as http,
            http.stream(
                "POST", "/text_to_speech", json=http_body("Please hold on."), headers=HEADERS
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            chunks = response.aiter_raw()
            first = await chunks.__anext__()
            assert not gate.release.is_set()
            gate.release.set()
            rest = b"".join([chunk async for chunk in chunks])
    assert len(first) > 0
    assert len(first + rest) == signal_bytes("Please hold on.")


async def test_a_whole_wav_file_is_spooled_with_its_length(server: LocalServer) -> None:
    text = "word " * 400  # 24 s: more than the in-memory part of the spool
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            wav = http_body(text, container="wav")
            response = await http.post("/text_to_speech", json=wav, headers=HEADERS)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) == 44 + signal_bytes(text)
    assert int.from_bytes(response.content[40:44], "little") == signal_bytes(text)


# --------------------------------------------------------------------------- item 13: unreadable JSON


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "content",
    [DEEP, '{"after": ' + "1" * 5000 + "}", '{"limit": ' + "9" * 5000 + "}", "not json"],
)
async def test_unreadable_json_over_http_is_400(server: LocalServer, content: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post("/voices", content=content, headers=HEADERS)
    assert http_error(response, 400)["error_code"] == "INVALID_REQUEST"


async def test_a_long_cursor_is_400_and_not_repeated_whole(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post("/voices", json={"after": "1" * 5000}, headers=HEADERS)
    error = http_error(response, 400)
    assert error["error_code"] == "INVALID_REQUEST"
    assert len(error["message"]) < 200


@pytest.mark.parametrize("frame", ["null", DEEP, "[1, 2]", '"text"'])
async def test_unreadable_frames_leave_the_other_contexts_alone(server: LocalServer, frame: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("Before the bad frame, ", "c")
            await client.ws.send_message(frame)
            error = await client.receive()
            await client.finish("and after it. ", "c")
            messages = await client.until_finals("c")
    assert error["error_code"] == "INVALID_REQUEST"
    assert len(audio_of(messages, "c")) == signal_bytes("Before the bad frame, and after it.")
