"""The idle timeout, on trio's (mock) clock: no real sleeps."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from trio_asyncai.server import SignalEngine, open_local_server

from .helpers import API_KEY, SIGNAL_RATE, Client, GatedEngine, audio_of, close_of, connect

#: Generous bounds in trio time; the mock clock makes them cost nothing.
BOUND = 10_000.0


async def expect_idle_close(client: Client, idle_timeout: float = 30) -> float:
    """Wait for the service's idle close: the TIMEOUT error, then the close; return how long (trio time)."""
    start = trio.current_time()
    error = await client.receive()
    while "error_code" not in error:  # audio still being sent
        error = await client.receive()
    assert error["error_code"] == "TIMEOUT"
    assert error["message"] == f"Timeout: no message received in {idle_timeout:.1f} seconds"
    assert "request_id" in error
    with pytest.raises(ConnectionClosed) as closed:
        await client.receive()
    assert close_of(closed.value) == (1008, "TIMEOUT")
    return trio.current_time() - start


async def test_silent_connection_is_closed(jump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with open_local_server(api_key=API_KEY, engine=SignalEngine(), idle_timeout=30) as srv:
            async with connect(srv) as client:
                elapsed = await expect_idle_close(client)
            await srv.log.wait_for(lambda log: log.connections_closed == 1)
    assert 30 <= elapsed < 31
    assert srv.log.connections[0].close_code == 1008
    assert srv.log.connections[0].close_reason == "TIMEOUT"
    assert [e["error_code"] for e in srv.log.connections[0].errors_sent] == ["TIMEOUT"]


async def test_keepalives_keep_it_open(jump_clock: trio.testing.MockClock) -> None:
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


async def test_only_client_messages_count(jump_clock: trio.testing.MockClock) -> None:
    # The service closes a connection that has *received* nothing for the
    # timeout, whatever it is still synthesizing or sending.
    gate = GatedEngine()
    try:
        with trio.fail_after(BOUND):
            async with open_local_server(api_key=API_KEY, engine=gate, idle_timeout=30) as srv:
                async with connect(srv) as client:
                    text = "hold one two three four five six seven eight nine ten. "
                    start = trio.current_time()
                    await client.finish(text, "c")
                    first = await client.receive()
                    assert first["context_id"] == "c"
                    assert audio_of([first], "c")
                    # The engine is held past the timeout (a thread cannot be
                    # cancelled, so the close waits for it to be let go).
                    await trio.sleep(31)
                    gate.release.set()
                    await expect_idle_close(client)
                    elapsed = trio.current_time() - start
    finally:
        gate.release.set()
    # Counting synthesis as activity would have closed it 30 s after the release.
    assert 30 <= elapsed < 40


async def test_idle_timeout_none_never_closes(jump_clock: trio.testing.MockClock) -> None:
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
