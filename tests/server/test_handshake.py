"""The WebSocket handshake: an accepted one speaks; the key never reaches a log.

The admission rule itself (key, version, fault statuses, the rate-limit
``extra``) is tested through the handshake and HTTP alike in test_admission.py.
"""

from __future__ import annotations

import base64
import logging
import os

import attrs
import httpx
import pytest
import trio

from trio_asyncai.server import LocalServer, SignalEngine, open_local_server

from .helpers import API_KEY, TIMEOUT, connect, ws_url


@attrs.frozen
class Refusal:
    status_code: int
    headers: httpx.Headers
    body: bytes


async def rejection(url: str) -> Refusal:
    """Attempt a WebSocket handshake that the server must refuse.

    Sent with httpx rather than trio-websocket, whose client leaves its socket
    open when a handshake is rejected (a ResourceWarning at the next gc).
    """
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with httpx.AsyncClient() as http:
        response = await http.get(url.replace("ws://", "http://", 1), headers=headers)
    assert response.status_code != 101
    return Refusal(response.status_code, response.headers, response.content)


async def test_right_key_is_accepted(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ", "c1")
            messages = await client.until_finals("c1")
    assert messages[-1] == {"audio": "", "final": True, "context_id": "c1"}
    assert server.log.connections_opened == 1
    assert server.log.handshakes_rejected == 0


async def test_without_a_configured_key_anything_goes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine=SignalEngine(), idle_timeout=None) as srv:
            for key in (None, "sk_anything"):
                async with connect(srv, api_key=key) as client:
                    await client.finish("Hi. ")
                    await client.until_finals(None)
    assert srv.log.connections_opened == 2


async def test_the_key_never_reaches_a_log(server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ", "c")
            await client.until_finals("c")
            await client.send({"terminate": True})
        await rejection(ws_url(server, api_key="sk_wrong_secret"))
    # Only the server's loggers: client libraries log their own URLs.
    server_side = [r for r in caplog.records if r.name.startswith(("trio_asyncai.server", "hypercorn"))]
    assert server_side
    text = "\n".join(r.getMessage() for r in server_side)
    assert API_KEY not in text
    assert "sk_wrong_secret" not in text
    assert API_KEY not in repr(server)
    assert API_KEY not in repr(server.log)
    assert server.log.connections[0].query["api_key"] == "***"
