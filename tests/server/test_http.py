"""``POST /text_to_speech/streaming`` with httpx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_asyncai.server import QUOTA_MARKER, LocalServer

from .helpers import (
    API_KEY,
    HEADERS,
    SIGNAL_RATE,
    TIMEOUT,
    GatedEngine,
    http_body,
    http_error,
    post,
    s16,
    signal_bytes,
)

PATH = "/text_to_speech/streaming"


async def test_streams_raw_audio(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        response = await post(server, PATH, http_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert len(response.content) == signal_bytes("Hello from the HTTP endpoint.")
    assert int(abs(s16(response.content)).max()) > 1000
    record = server.log.http[0]
    assert record.status == 200
    assert record.body == http_body()
    assert record.headers["x-api-key"] == "***"
    assert server.log.http_requests == 1


async def test_audio_arrives_while_it_is_made(gated_server: LocalServer, gate: GatedEngine) -> None:
    text = "hold one two three four five six seven eight nine."
    with trio.fail_after(TIMEOUT):
        async with (
            httpx.AsyncClient(base_url=gated_server.url) as http,
            http.stream("POST", PATH, json=http_body(text), headers=HEADERS) as response,
        ):
            assert response.status_code == 200
            chunks = response.aiter_raw()
            first = await chunks.__anext__()
            # The engine is still held: this chunk was streamed, not buffered.
            assert not gate.release.is_set()
            gate.release.set()
            rest = b"".join([chunk async for chunk in chunks])
    assert len(first) + len(rest) == signal_bytes(text)


@pytest.mark.parametrize(("encoding", "width"), [("pcm_s16le", 2), ("pcm_f32le", 4)])
@pytest.mark.parametrize("sample_rate", [8000, 22050, 48000])
async def test_formats(server: LocalServer, encoding: str, width: int, sample_rate: int) -> None:
    with trio.fail_after(TIMEOUT):
        response = await post(
            server, PATH, http_body("Four words right here.", encoding=encoding, sample_rate=sample_rate)
        )
    assert response.status_code == 200
    samples = signal_bytes("Four words right here.") // 2 * sample_rate // SIGNAL_RATE
    assert len(response.content) % width == 0
    assert abs(len(response.content) // width - samples) <= 2


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": API_KEY, "version": "v1"},
        {"x-api-key": API_KEY},
        # No other version header exists: the server ignores one.
        {"x-api-key": API_KEY, "version": "v1", "api-version": "2020-01-01"},
    ],
)
async def test_version_headers(server: LocalServer, headers: dict[str, str]) -> None:
    with trio.fail_after(TIMEOUT):
        response = await post(server, PATH, http_body("Hi."), headers)
    assert response.status_code == 200


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    error = http_error(response, status)
    assert error["error_code"] == code
    return error


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"version": "v1"}, 401, "INVALID_API_KEY"),
        ({"x-api-key": "sk_wrong", "version": "v1"}, 401, "INVALID_API_KEY"),
        ({"x-api-key": API_KEY, "version": "v7"}, 404, "VERSION_NOT_FOUND"),
    ],
)
async def test_refused_requests(server: LocalServer, headers: dict[str, str], status: int, code: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await post(server, PATH, http_body(), headers)
    error = assert_error(response, status, code)
    assert server.log.http[0].status == status
    key = headers.get("x-api-key")
    if status == 401 and key:
        # The service echoes a prefix of the key it refused.
        assert error["extra"] == {"api_key": key[:4]}
    else:
        assert "extra" not in error


def with_change(**changes: Any) -> dict[str, Any]:
    value = http_body()
    for key, new in changes.items():
        if new is None:
            del value[key]
        else:
            value[key] = new
    return value


@pytest.mark.parametrize(
    ("json", "status", "code"),
    [
        (with_change(voice={"mode": "id", "id": "nobody"}), 404, "VOICE_NOT_FOUND"),
        (
            with_change(output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 24000}),
            400,
            "FORMAT_NOT_RECOGNIZED",
        ),
        (
            # LAME makes at most 160 kbit/s at 24000 Hz.
            with_change(output_format={"container": "mp3", "sample_rate": 24000, "bit_rate": 192000}),
            400,
            "FORMAT_NOT_RECOGNIZED",
        ),
        (
            with_change(output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 96000}),
            400,
            "FORMAT_NOT_RECOGNIZED",
        ),
        (with_change(language="xx"), 400, "INVALID_LANGUAGE"),
        (with_change(transcript="   "), 400, "INVALID_REQUEST"),
        (with_change(transcript=None), 400, "INVALID_REQUEST"),
        (with_change(model_id=None), 400, "INVALID_REQUEST"),
        (with_change(voice=None), 400, "INVALID_REQUEST"),
        ([1, 2, 3], 400, "INVALID_REQUEST"),
    ],
)
async def test_invalid_bodies(server: LocalServer, json: object, status: int, code: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await post(server, PATH, json)
    assert_error(response, status, code)


async def test_body_that_is_not_json(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(PATH, content=b"{nope", headers=HEADERS)
    assert_error(response, 400, "INVALID_REQUEST")


async def test_language_null_and_regional_are_fine(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        for language in (None, "en-US", "de"):
            response = await post(server, PATH, http_body() | {"language": language})
            assert response.status_code == 200


async def test_http_statuses_fault(server: LocalServer) -> None:
    server.faults.http_statuses = [429, 503, 500]
    with trio.fail_after(TIMEOUT):
        responses = [await post(server, PATH, http_body("Hi.")) for _ in range(4)]
    limited = assert_error(responses[0], 429, "RATE_LIMIT_EXCEEDED")
    assert limited["extra"] == {"limit": 60, "retry_after_ms": 0}
    for response, status in zip(responses[:3], (429, 503, 500), strict=True):
        assert response.status_code == status
        assert "retry-after" not in response.headers
    for response in responses[1:3]:
        assert response.json() == {
            "message": response.json()["message"],
            "method": "POST",
            "url": PATH,
            "detail": "error injected by the local server's faults",
        }
    assert responses[3].status_code == 200
    assert server.faults.http_statuses == []
    assert server.log.http_requests == 4


async def test_retry_after_faults(server: LocalServer) -> None:
    server.faults.retry_after_ms = 1500
    server.faults.http_statuses = [429]
    with trio.fail_after(TIMEOUT):
        waited = await post(server, PATH, http_body("Hi."))
        server.faults.retry_after_header = "2"
        server.faults.http_statuses = [429, 503]
        headed = [await post(server, PATH, http_body("Hi.")) for _ in range(2)]
    assert assert_error(waited, 429, "RATE_LIMIT_EXCEEDED")["extra"]["retry_after_ms"] == 1500
    assert "retry_after_ms" not in assert_error(headed[0], 429, "RATE_LIMIT_EXCEEDED")["extra"]
    assert [r.headers["retry-after"] for r in headed] == ["2", "2"]


async def test_flat_error_bodies_fault(server: LocalServer) -> None:
    server.faults.flat_error_bodies = True
    server.faults.http_statuses = [429]
    with trio.fail_after(TIMEOUT):
        limited = await post(server, PATH, http_body("Hi."))
        unknown = await post(server, PATH, with_change(voice={"mode": "id", "id": "nobody"}))
    assert limited.json() == {
        "error_code": "RATE_LIMIT_EXCEEDED",
        "message": "error injected by the local server's faults",
        "extra": {"limit": 60, "retry_after_ms": 0},
    }
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "VOICE_NOT_FOUND"


@pytest.mark.parametrize("quota", [0, 1000, 5000])
async def test_quota_marker_mid_stream(server: LocalServer, quota: int) -> None:
    server.faults.http_quota_after_bytes = quota
    with trio.fail_after(TIMEOUT):
        async with (
            httpx.AsyncClient(base_url=server.url) as http,
            http.stream(
                "POST", PATH, json=http_body("A sentence long enough for the quota."), headers=HEADERS
            ) as response,
        ):
            assert response.status_code == 200
            chunks = [chunk async for chunk in response.aiter_raw()]
    data = b"".join(chunks)
    assert data[:quota] == data[:quota]
    assert data.endswith(QUOTA_MARKER)
    assert len(data) == quota + len(QUOTA_MARKER)
    # The marker is split across two body chunks; no single chunk holds it whole.
    assert not any(QUOTA_MARKER in chunk for chunk in chunks)


async def test_quota_larger_than_the_audio_leaves_it_alone(server: LocalServer) -> None:
    server.faults.http_quota_after_bytes = 10_000_000
    with trio.fail_after(TIMEOUT):
        response = await post(server, PATH, http_body("Hi."))
    assert response.content.find(QUOTA_MARKER) == -1
    assert len(response.content) == signal_bytes("Hi.")


async def test_chunk_delay_applies_to_http(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.chunk_delay = 1.0
    with trio.fail_after(10_000):
        start = trio.current_time()
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=None) as http,
            http.stream("POST", PATH, json=http_body("Hello."), headers=HEADERS) as response,
        ):
            chunks = [chunk async for chunk in response.aiter_raw()]
    assert len(chunks) > 1
    assert trio.current_time() - start >= 1.0 * len(chunks) - 1.0
