"""Helpers shared by the test suite: one bound for I/O, the synthesizer against the local server,
a TCP peer and httpx mock transports standing in for a broken service, and the task and
reader checks.

The fixtures (the local server, the jumping clock) are in ``conftest.py``;
the raw WebSocket and HTTP clients of the server tests in ``server/helpers.py``;
running the command line in ``cli_run.py``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

__all__ = [
    "TIMEOUT",
    "Peer",
    "cut_then_forward",
    "reset",
    "StreamedBody",
    "mock_client",
    "reader_caught_up",
    "synth_for",
    "tasks_named",
    "tcp_peer",
]

#: Seconds that bound every test's I/O (trio time: a test on the jumping clock
#: sets a bound of its own, in the minutes it means to skip).
TIMEOUT: Final = 20


def synth_for(server: LocalServer, *, http: bool = False, **kwargs: Any) -> Any:
    """``open_synthesizer`` (``open_http_synthesizer`` with ``http``) against the local server,
    with its voice, at 16 kHz unless told another rate or format."""
    kwargs.setdefault("voice_id", DEFAULT_VOICE_ID)
    if "output_format" not in kwargs:
        kwargs.setdefault("sample_rate", 16000)
    opener = trio_asyncai.open_http_synthesizer if http else trio_asyncai.open_synthesizer
    return opener(base_url=server.url, **kwargs)


async def reader_caught_up(synth: Any, server: LocalServer, *, finals: int = 1) -> None:
    """Return once the WebSocket synthesizer has read all the server sent up to its ``finals``-th final
    (on the newest connection).

    The reader takes messages in order, so once an utterance spoken after
    them is complete, it has handled every earlier one: an utterance nobody
    reads has met its fate by then, with no sleep.
    """
    await server.log.wait_for(lambda log: log.connections[-1].finals_sent >= finals)
    async with synth.speak("Barrier.") as barrier:
        await barrier.read_all()


def tasks_named(fragment: str) -> list[str]:
    """The names of every running task whose name contains ``fragment``."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if fragment in task.name:
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


@attrs.define
class Peer:
    """A TCP listener on 127.0.0.1 standing in for the service, counting the connections it accepted."""

    port: int
    accepted: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def tcp_peer(answer: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[Peer]:
    """A :class:`Peer` that hands each connection to ``answer``, and closes it after."""
    async with trio.open_nursery() as nursery:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        peer = Peer(listener.socket.getsockname()[1])

        async def handler(stream: trio.SocketStream) -> None:
            peer.accepted += 1
            async with stream:
                await answer(stream)

        nursery.start_soon(trio.serve_listeners, handler, [listener])
        yield peer
        nursery.cancel_scope.cancel()


def mock_client(handler: Callable[[httpx.Request], Any]) -> httpx.AsyncClient:
    """An httpx client whose every request ``handler`` answers (sync or async), with no network."""
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


class StreamedBody(httpx.AsyncByteStream):
    """A response body that arrives in the pieces ``parts`` yields, when it yields them."""

    def __init__(self, parts: Callable[[], AsyncGenerator[bytes, None]]) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with aclosing(self._parts()) as parts:
            async for part in parts:
                yield part


def reset(stream: trio.SocketStream) -> None:
    """Make the stream's close a TCP reset (RST) instead of an orderly FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def cut_then_forward(cuts: list[str], target_port: int) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """A :func:`tcp_peer` answer: the first connections read the request, then close (``"fin"``) or
    reset (``"rst"``), one per entry of ``cuts``; the rest are forwarded to ``target_port``, both ways.
    """

    async def answer(stream: trio.SocketStream) -> None:
        if cuts:
            how = cuts.pop(0)
            request = b""
            while b"\r\n\r\n" not in request:
                data = await stream.receive_some()
                if not data:
                    return
                request += data
            if how == "rst":
                reset(stream)
            return  # the peer closes the stream
        async with await trio.open_tcp_stream("127.0.0.1", target_port) as upstream:

            async def pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while data := await source.receive_some():
                        await sink.send_all(data)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await sink.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, stream, upstream)
                nursery.start_soon(pump, upstream, stream)

    return answer
