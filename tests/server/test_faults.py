"""Each fault switch, on the WebSocket."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trio_asyncai.server import Faults, LocalServer, SignalEngine, open_local_server

from .helpers import API_KEY, SIGNAL_RATE, TIMEOUT, audio_of, close_of, connect, signal_bytes

LONG = "one two three four five six seven eight nine ten eleven twelve. "


async def test_drop_after_audio_messages(server: LocalServer) -> None:
    server.faults.drop_after_audio_messages = 2
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish(LONG, "c")
            received = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(await client.receive())
    assert len(received) == 2
    assert all(m["context_id"] == "c" and not m["final"] for m in received)
    assert close_of(closed.value)[0] == 1011
    assert server.log.connections[0].audio_messages_sent == 2


async def test_drop_counts_per_connection(server: LocalServer) -> None:
    server.faults.drop_after_audio_messages = 3
    with trio.fail_after(TIMEOUT):
        for _ in range(2):
            async with connect(server) as client:
                await client.finish(LONG, "c")
                with pytest.raises(ConnectionClosed):
                    while True:
                        await client.receive()
    assert [c.audio_messages_sent for c in server.log.connections] == [3, 3]


async def test_garbage_before_audio(server: LocalServer) -> None:
    server.faults.garbage_before_audio = True
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Short one. ", "c")
            frames: list[str | bytes] = []
            while True:
                frame = await client.ws.get_message()
                frames.append(frame)
                if isinstance(frame, str) and frame.startswith("{") and json.loads(frame).get("final"):
                    break
    *body, final = frames
    assert json.loads(final) == {"audio": "", "final": True, "context_id": "c"}
    assert len(body) % 3 == 0
    assert body
    for i in range(0, len(body), 3):
        garbage_text, garbage_bytes, audio = body[i : i + 3]
        assert isinstance(garbage_text, str)
        with pytest.raises(ValueError):
            json.loads(garbage_text)
        assert isinstance(garbage_bytes, bytes)
        assert isinstance(audio, str)
        assert json.loads(audio)["context_id"] == "c"


async def test_late_audio_after_close(server: LocalServer) -> None:
    server.faults.late_audio_after_close = True
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ", "c")
            await client.until_finals("c")
            await client.close_context("c")
            late_audio = await client.receive()
            late_final = await client.receive()
    assert late_audio["context_id"] == "c"
    assert late_audio["final"] is False
    assert late_audio["audio"]
    assert late_final == {"audio": "", "final": True, "context_id": "c"}


async def test_stall_after_audio_messages(jump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(
        api_key=API_KEY, engine=SignalEngine(sample_rate=SIGNAL_RATE), idle_timeout=None
    ) as srv:
        srv.faults.stall_after_audio_messages = 1
        with trio.fail_after(1000):
            async with connect(srv) as client:
                await client.finish(LONG, "c")
                first = await client.receive()
                assert first["context_id"] == "c"
                await srv.log.wait_for(lambda log: log.connections[0].stalled)
                with trio.move_on_after(300) as waited:
                    await client.receive()  # nothing more, not even a final or an error
                assert waited.cancelled_caught
                await client.send({"bad": "message"})
                with trio.move_on_after(300) as waited:
                    await client.receive()
                assert waited.cancelled_caught
                # Still open: the client can close it normally.
                await client.send({"terminate": True})
                with pytest.raises(ConnectionClosed) as closed:
                    await client.receive()
    assert close_of(closed.value)[0] == 1000
    assert srv.log.connections[0].audio_messages_sent == 1
    assert srv.log.connections[0].finals_sent == 0


async def test_chunk_delay_uses_trio_time(jump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(
        api_key=API_KEY, engine=SignalEngine(sample_rate=SIGNAL_RATE), idle_timeout=None
    ) as srv:
        srv.faults.chunk_delay = 2.0
        with trio.fail_after(10_000):
            async with connect(srv) as client:
                start = trio.current_time()
                await client.finish("Hello there. ", "c")
                messages = await client.until_finals("c")
                elapsed = trio.current_time() - start
    audio_messages = len(messages) - 1
    assert audio_messages > 1
    assert elapsed >= 2.0 * audio_messages
    assert len(audio_of(messages, "c")) == signal_bytes("Hello there.")


async def test_error_on_text(server: LocalServer) -> None:
    faults = server.faults
    faults.error_on_text = "RATE_LIMIT_EXCEEDED"
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("This gets an error. ", "c1")
            error = await client.receive()
            assert server.faults.error_on_text is None  # one-shot
            await client.finish("This works. ", "c2")
            messages = await client.until_finals("c1", "c2")
    assert error["error_code"] == "RATE_LIMIT_EXCEEDED"
    assert error["context_id"] == "c1"
    assert isinstance(error["message"], str)
    # The refused text has no audio; its context still ends with a final when closed.
    assert audio_of(messages, "c1") == b""
    assert len(audio_of(messages, "c2")) == signal_bytes("This works.")
    assert server.log.connections[0].errors_sent == [error]


async def test_reset_turns_everything_off() -> None:
    faults = Faults(
        drop_after_audio_messages=1,
        garbage_before_audio=True,
        chunk_delay=1.0,
        http_statuses=[500],
        http_quota_after_bytes=10,
    )
    faults.reset()
    assert faults == Faults()
