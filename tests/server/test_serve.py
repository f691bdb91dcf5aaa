"""Running the server: ``serve`` (the CLI's entry), ``open_local_server``, ``create_app``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import trio
from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer

from trio_asyncai.server import (
    DEFAULT_VOICE_ID,
    LibraryVoice,
    LocalServer,
    ServerState,
    SignalEngine,
    create_app,
    open_local_server,
    serve,
)

from .helpers import TIMEOUT


async def test_serve_runs_until_cancelled() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server: LocalServer = await nursery.start(
                lambda task_status: serve(port=0, engine="signal", idle_timeout=None, task_status=task_status)
            )
            assert server.host == "127.0.0.1"
            assert server.url == f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.get("/")).json() == {"status": "ok", "version": "v1"}
            nursery.cancel_scope.cancel()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.get("/")


async def test_exceptions_from_the_block_are_not_wrapped() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(KeyError, match="plain"):
        async with open_local_server(engine="signal"):
            raise KeyError("plain")


async def test_the_app_is_plain_asgi() -> None:
    app = create_app(ServerState(engine=SignalEngine()))
    transport = httpx.ASGITransport(app=app)
    body = {
        "model_id": "m",
        "transcript": "In process.",
        "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
    }
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as http:
            status = await http.get("/")
            audio = await http.post("/text_to_speech/streaming", json=body)
    assert status.json() == {"status": "ok", "version": "v1"}
    assert audio.status_code == 200
    assert len(audio.content) == SignalEngine().samples_for("In process.") * 2


async def test_serve_preloads_the_engine_before_listening() -> None:
    class Preloaded:
        name = "preloaded"
        native_sample_rate = 24000
        loaded = False

        def preload(self) -> None:
            self.loaded = True

        def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[npt.NDArray[np.float32]]:
            return iter(())

    engine = Preloaded()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server: LocalServer = await nursery.start(
                lambda task_status: serve(port=0, engine=engine, task_status=task_status)
            )
            assert engine.loaded
            assert server.engine is engine
            nursery.cancel_scope.cancel()


async def test_a_write_that_meets_the_closing_eof_does_not_end_the_server() -> None:
    """Hypercorn's EOF and a last write can meet when a client closes mid-send: the write is dropped."""

    class ClosingStream:
        async def send_all(self, data: bytes) -> None:
            raise trio.BusyResourceError("another task is currently sending data on this SocketStream")

    async with open_local_server(engine="signal"):
        pass  # the guard is in place once a server has run
    connection = TCPServer.__new__(TCPServer)
    connection.send_lock = trio.Lock()
    connection.stream = ClosingStream()  # type: ignore[assignment]
    await connection.protocol_send(RawData(b"audio"))
    assert not connection.send_lock.locked()
