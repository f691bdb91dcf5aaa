"""The WebSocket handshake: key, version, refusals as HTTP responses with a JSON body."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

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


def error_of(rejected: Refusal) -> dict[str, Any]:
    """The error object of a refusal: nested as the service's HTTP errors are, or the 5xx shape."""
    assert rejected.headers["content-type"] == "application/json"
    body = json.loads(rejected.body)
    if rejected.status_code >= 500:
        assert set(body) == {"message", "method", "url", "detail"}
        return {"error_code": None, "message": body["detail"]}
    assert set(body) == {"detail"}
    error: dict[str, Any] = body["detail"]
    assert set(error) <= {"error_code", "message", "extra"}
    return error


def error_code(rejected: Refusal) -> str | None:
    code = error_of(rejected)["error_code"]
    assert code is None or isinstance(code, str)
    return code


async def test_right_key_is_accepted(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ", "c1")
            messages = await client.until_finals("c1")
    assert messages[-1] == {"audio": "", "final": True, "context_id": "c1"}
    assert server.log.connections_opened == 1
    assert server.log.handshakes_rejected == 0


@pytest.mark.parametrize("key", [None, "sk_wrong", ""])
async def test_missing_or_wrong_key_is_refused_with_401(server: LocalServer, key: str | None) -> None:
    with trio.fail_after(TIMEOUT):
        rejected = await rejection(ws_url(server, api_key=key))
    assert rejected.status_code == 401
    assert error_code(rejected) == "INVALID_API_KEY"
    # The service echoes a prefix of the key it refused.
    assert error_of(rejected).get("extra") == ({"api_key": key[:4]} if key else None)
    assert server.log.handshakes_rejected == 1
    assert server.log.connections_opened == 0


async def test_without_a_configured_key_anything_goes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine=SignalEngine(), idle_timeout=None) as srv:
            for key in (None, "sk_anything"):
                async with connect(srv, api_key=key) as client:
                    await client.finish("Hi. ")
                    await client.until_finals(None)
    assert srv.log.connections_opened == 2


async def test_missing_version_means_v1(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, version=None) as client:
            await client.finish("Hi. ")
            await client.until_finals(None)


async def test_unknown_version_is_refused_with_404(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        rejected = await rejection(ws_url(server, version="v2"))
    assert rejected.status_code == 404
    assert error_code(rejected) == "VERSION_NOT_FOUND"


@pytest.mark.parametrize(
    ("status", "code"), [(429, "RATE_LIMIT_EXCEEDED"), (503, None), (401, "INVALID_API_KEY")]
)
async def test_reject_handshake_fault(server: LocalServer, status: int, code: str | None) -> None:
    server.faults.reject_handshake_status = status
    with trio.fail_after(TIMEOUT):
        rejected = await rejection(ws_url(server))
        assert rejected.status_code == status
        assert error_code(rejected) == code
        assert "retry-after" not in rejected.headers
        if status == 429:
            assert error_of(rejected)["extra"] == {"limit": 60, "retry_after_ms": 0}
        server.faults.reset()
        async with connect(server) as client:
            await client.finish("Hi. ")
            await client.until_finals(None)


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
