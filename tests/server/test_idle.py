"""The idle timeout, on trio's (mock) clock: no real sleeps."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trio_asyncai.server import SignalEngine, open_local_server

from .helpers import API_KEY, SIGNAL_RATE, Client, GatedEngine, audio_of, close_of, connect, signal_bytes

#: Generous bounds in trio time; the mock clock makes them cost nothing.
BOUND = 10_000.0


async def expect_idle_close(client: Client) -> float:
    """Wait for the server to close the connection; return how long that took (trio time)."""
    start = trio.current_time()
    with pytest.raises(ConnectionClosed) as closed:
        await client.receive()
    assert close_of(closed.value) == (1008, "idle timeout")
    return trio.current_time() - start


async def test_silent_connection_is_closed(small_jump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with open_local_server(api_key=API_KEY, engine=SignalEngine(), idle_timeout=30) as srv:
            async with connect(srv) as client:
                elapsed = await expect_idle_close(client)
            await srv.log.wait_for(lambda log: log.connections_closed == 1)
    assert 30 <= elapsed < 31
    assert srv.log.connections[0].close_code == 1008
    assert srv.log.connections[0].close_reason == "idle timeout"


async def test_keepalives_keep_it_open(small_jump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with open_local_server(api_key=API_KEY, engine=SignalEngine(), idle_timeout=30) as srv:
            async with connect(srv) as client:
                for _ in range(6):
                    await trio.sleep(20)
                    await client.send({"transcript": " "})
                # 120 s in: still open (a malformed message gets its answer).
                await client.send({"what": "ever"})
                assert (await client.receive())["error_code"] == "INVALID_REQUEST"
                elapsed = await expect_idle_close(client)
    assert srv.log.keepalives == 6
    assert 30 <= elapsed < 31


async def test_no_idle_close_while_synthesis_is_under_way(small_jump_clock: trio.testing.MockClock) -> None:
    gate = GatedEngine()
    try:
        with trio.fail_after(BOUND):
            async with open_local_server(api_key=API_KEY, engine=gate, idle_timeout=30) as srv:
                async with connect(srv) as client:
                    text = "hold one two three four five six seven eight nine ten. "
                    await client.text(text, "c", force=True)
                    messages = [await client.receive()]
                    await trio.sleep(100)  # the engine is held all this while
                    gate.release.set()
                    messages += await client.until_finals("c")
                    assert len(audio_of(messages, "c")) == signal_bytes(text)
                    await expect_idle_close(client)
    finally:
        gate.release.set()


async def test_idle_timeout_none_never_closes(small_jump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with open_local_server(engine=SignalEngine(sample_rate=SIGNAL_RATE), idle_timeout=None) as srv:
            async with connect(srv) as client:
                await trio.sleep(BOUND / 2)
                await client.send({"what": "ever"})
                assert (await client.receive())["error_code"] == "INVALID_REQUEST"
                await client.send({"terminate": True})
                with pytest.raises(ConnectionClosed) as closed:
                    await client.receive()
    assert close_of(closed.value)[0] == 1000


async def test_bad_idle_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        async with open_local_server(engine="signal", idle_timeout=0):
            pass  # pragma: no cover
