"""The one admission rule, checked through both transports, message by message.

Every rule is run over HTTP (``GET /voices/{id}``, which needs the key and the
version) and over the WebSocket handshake (the query string), with raw
clients: what one transport answers, the other answers too. ASYNC_API.md,
"Hosts, versions, credentials" and "Errors", is the reference.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Literal

import attrs
import httpx
import pytest
import trio

from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, SignalEngine, open_local_server

from .helpers import API_KEY, TIMEOUT, connect, ws_url

Transport = Literal["http", "websocket"]
TRANSPORTS: tuple[Transport, ...] = ("http", "websocket")

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


@attrs.frozen
class Answer:
    """What a request or a handshake got: the status (101: accepted), the error object, the headers."""

    status: int
    error: dict[str, Any] | None
    headers: httpx.Headers

    @property
    def admitted(self) -> bool:
        return self.status in (101, 200)


def _error_of(response: httpx.Response) -> dict[str, Any] | None:
    if response.status_code < 400:
        return None
    body = response.json()
    if response.status_code >= 500:
        # The service's code-less 500 shape.
        assert set(body) == {"message", "method", "url", "detail"}, body
        return {"error_code": None, "message": body["detail"]}
    assert set(body) == {"detail"}, body
    error: dict[str, Any] = body["detail"]
    assert set(error) <= {"error_code", "message", "extra"}, error
    return error


async def ask(
    server: LocalServer,
    transport: Transport,
    *,
    api_key: str | None = API_KEY,
    version: str | None = "v1",
) -> Answer:
    """One request (HTTP) or one handshake (WebSocket) carrying ``api_key`` and ``version``.

    Each transport puts them where ASYNC_API.md says: headers over HTTP, the
    query string on the WebSocket. An accepted handshake (101) is closed at once.
    """
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            if transport == "http":
                headers = {}
                if api_key is not None:
                    headers["x-api-key"] = api_key
                if version is not None:
                    headers["version"] = version
                response = await http.get(f"{server.url}/voices/{DEFAULT_VOICE_ID}", headers=headers)
            else:
                upgrade = {
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                }
                url = ws_url(server, api_key=api_key, version=version).replace("ws://", "http://", 1)
                response = await http.get(url, headers=upgrade)
            await response.aclose()
    return Answer(response.status_code, _error_of(response), response.headers)


def code_of(answer: Answer) -> str | None:
    assert answer.error is not None, answer
    code = answer.error["error_code"]
    assert code is None or isinstance(code, str)
    return code


# ------------------------------------------------------------------ the key


@pytest.mark.parametrize("key", [None, "", "sk_wrong"])
async def test_a_missing_or_wrong_key_is_401_with_its_prefix(
    server: LocalServer, transport: Transport, key: str | None
) -> None:
    answer = await ask(server, transport, api_key=key)
    assert answer.status == 401
    assert code_of(answer) == "INVALID_API_KEY"
    assert answer.error is not None
    assert answer.error.get("extra") == ({"api_key": key[:4]} if key else None)


async def test_without_a_configured_key_any_key_or_none_is_admitted(transport: Transport) -> None:
    async with open_local_server(engine=SignalEngine(), idle_timeout=None) as srv:
        for key in (None, "", "sk_anything"):
            assert (await ask(srv, transport, api_key=key)).admitted


# ------------------------------------------------------------------ the version


async def test_v1_is_admitted(server: LocalServer, transport: Transport) -> None:
    assert (await ask(server, transport)).admitted


async def test_a_missing_version_means_v1(server: LocalServer, transport: Transport) -> None:
    assert (await ask(server, transport, version=None)).admitted


@pytest.mark.parametrize("version", ["", "v2", "V1", "v1.0"])
async def test_any_other_version_is_404_even_an_empty_one(
    server: LocalServer, transport: Transport, version: str
) -> None:
    # ASYNC_API.md: "version: v1 on every request ... No other version header
    # exists", and 404 VERSION_NOT_FOUND. An empty value names no version.
    answer = await ask(server, transport, version=version)
    assert answer.status == 404
    assert code_of(answer) == "VERSION_NOT_FOUND"


async def test_the_version_required_fault_refuses_a_missing_version(
    server: LocalServer, transport: Transport
) -> None:
    server.faults.version_required = True
    missing = await ask(server, transport, version=None)
    assert (missing.status, code_of(missing)) == (404, "VERSION_NOT_FOUND")
    assert (await ask(server, transport)).admitted


async def test_the_key_is_checked_before_the_version(server: LocalServer, transport: Transport) -> None:
    answer = await ask(server, transport, api_key="sk_wrong", version="v9")
    assert (answer.status, code_of(answer)) == (401, "INVALID_API_KEY")


# ------------------------------------------------------------------ fault statuses


def _statuses(server: LocalServer, transport: Transport) -> list[int]:
    faults = server.faults
    return faults.http_statuses if transport == "http" else faults.handshake_statuses


async def test_each_fault_status_answers_one_admission(server: LocalServer, transport: Transport) -> None:
    # A status answers one request; the handshake is one request too (an
    # HTTP GET with the key and the version in its query string).
    _statuses(server, transport).extend([503, 429])
    first = await ask(server, transport)
    second = await ask(server, transport)
    third = await ask(server, transport)
    assert (first.status, code_of(first)) == (503, None)
    assert (second.status, code_of(second)) == (429, "RATE_LIMIT_EXCEEDED")
    assert third.admitted
    assert _statuses(server, transport) == []


async def test_a_fault_status_comes_before_the_key_and_the_version(
    server: LocalServer, transport: Transport
) -> None:
    _statuses(server, transport).append(503)
    answer = await ask(server, transport, api_key="sk_wrong", version="v9")
    assert answer.status == 503


async def test_the_fault_statuses_of_one_transport_leave_the_other_alone(
    server: LocalServer, transport: Transport
) -> None:
    other: Transport = "websocket" if transport == "http" else "http"
    _statuses(server, other).append(503)
    assert (await ask(server, transport)).admitted
    assert _statuses(server, other) == [503]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_REQUEST"),
        (401, "INVALID_API_KEY"),
        (404, "VERSION_NOT_FOUND"),
        (429, "RATE_LIMIT_EXCEEDED"),
    ],
)
async def test_a_fault_status_has_the_service_code_of_its_status(
    server: LocalServer, transport: Transport, status: int, code: str
) -> None:
    _statuses(server, transport).append(status)
    answer = await ask(server, transport)
    assert (answer.status, code_of(answer)) == (status, code)


# ------------------------------------------------------------------ the rate-limit extra and retry_after


async def test_a_rate_limit_carries_limit_and_retry_after_ms_and_no_header(
    server: LocalServer, transport: Transport
) -> None:
    server.faults.retry_after_ms = 2500
    _statuses(server, transport).append(429)
    answer = await ask(server, transport)
    assert answer.error is not None
    assert answer.error["extra"] == {"limit": 60, "retry_after_ms": 2500}
    assert "retry-after" not in answer.headers


@pytest.mark.parametrize("status", [429, 503])
async def test_the_retry_after_header_fault_replaces_retry_after_ms(
    server: LocalServer, transport: Transport, status: int
) -> None:
    server.faults.retry_after_ms = 2500
    server.faults.retry_after_header = "7"
    _statuses(server, transport).append(status)
    answer = await ask(server, transport)
    assert answer.status == status
    assert answer.headers["retry-after"] == "7"
    assert answer.error is not None
    if status == 429:
        assert answer.error["extra"] == {"limit": 60}


async def test_a_rate_limit_error_message_follows_the_same_rule(
    server: LocalServer, transport: Transport
) -> None:
    """An error message on an open WebSocket carries the same ``extra`` as an HTTP answer.

    With the ``retry_after_header`` fault its ``retry_after_ms`` goes too (a
    message has no header to carry the wait instead).
    """
    server.faults.retry_after_ms = 2500
    extras: list[Any] = []
    for header in (None, "7"):
        server.faults.retry_after_header = header
        if transport == "http":
            server.faults.http_statuses.append(429)
            answer = await ask(server, transport)
            assert answer.error is not None
            extras.append(answer.error["extra"])
        else:
            server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
            with trio.fail_after(TIMEOUT):
                async with connect(server) as client:
                    await client.text("Hi. ", "c1", force=True)
                    message = await client.receive()
            assert message["error_code"] == "RATE_LIMIT_EXCEEDED"
            extras.append(message["extra"])
    assert extras == [{"limit": 60, "retry_after_ms": 2500}, {"limit": 60}]
