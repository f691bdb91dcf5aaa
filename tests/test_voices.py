"""Whole-file synthesis, timestamps, voices and status: against the local server (mocks for edge cases)."""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from helpers import TIMEOUT

from trio_asyncai import (
    APIError,
    AsyncAIError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutputFormat,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    Voice,
    open_client,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer, open_local_server


def wav_bytes(seconds: float, rate: int = 16000, freq: float = 180.0) -> bytes:
    import math

    frames = bytearray()
    for i in range(int(seconds * rate)):
        sample = int(8000 * math.sin(2 * math.pi * freq * i / rate) * (1 + 0.3 * math.sin(i / 400)))
        frames += sample.to_bytes(2, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


# ------------------------------------------------------------- synthesis


async def test_whole_file_wav(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as client:
            data = await client.synthesize(
                "A whole file.", output_format=OutputFormat(container="wav", sample_rate=22050)
            )
    with wave.open(io.BytesIO(data), "rb") as w:
        assert w.getframerate() == 22050
        assert w.getnchannels() == 1
        assert w.getnframes() > 0


async def test_whole_file_raw_matches_the_streamed_audio(server: LocalServer) -> None:
    fmt = OutputFormat(sample_rate=16000)
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt) as client:
            raw = await client.synthesize("Raw and streamed.")
        async with open_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt) as s:
            async with s.speak("Raw and streamed.") as u:
                streamed = await u.read_all()
    assert raw == streamed != b""


async def test_whole_file_mp3_is_mp3(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as client:
            data = await client.synthesize(
                "Compressed.", output_format=OutputFormat(container="mp3", sample_rate=44100)
            )
    # MPEG-1 Layer III frames (0xFFFB: sync, version 1, layer III, no CRC), at 44100 Hz.
    assert data[0] == 0xFF
    assert data[1] & 0xE0 == 0xE0
    assert data[1] == 0xFB
    assert data[2] >> 4 == 11  # 192 kbit/s, the default bit rate
    assert (data[2] >> 2) & 3 == 0  # 44100 Hz
    assert len(data) > 1000


async def test_word_timestamps_fit_the_audio(server: LocalServer) -> None:
    text = "Every word gets a time."
    fmt = OutputFormat(sample_rate=16000)
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as client:
            result = await client.synthesize_with_timestamps(text, output_format=fmt)
    assert [w.word for w in result.words] == text.split()
    duration = len(result.audio) / (2 * 16000)
    previous_end = 0.0
    for word in result.words:
        assert previous_end <= word.start < word.end <= duration + 1e-6
        previous_end = word.end
    assert result.output_format == fmt


async def test_synthesis_errors_are_typed(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            with pytest.raises(ConfigurationError):
                await client.synthesize("No voice given.")
            with pytest.raises(NotFoundError):
                await client.synthesize("Hi.", voice_id="nobody")
            with pytest.raises(InvalidRequestError):
                await client.synthesize("Hi.", voice_id=DEFAULT_VOICE_ID, language="xx")
            with pytest.raises(ConfigurationError):
                await client.synthesize("   ", voice_id=DEFAULT_VOICE_ID)


# ----------------------------------------------------------------- voices


def list_bodies(server: LocalServer) -> list[dict[str, Any]]:
    return [r.body for r in server.log.http if r.path == "/voices"]


async def test_list_pages_with_after(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voices = [v async for v in client.voices.list(page_size=1)]
    ids = [v.voice_id for v in PREDEFINED_VOICES]
    assert [v.voice_id for v in voices] == ids
    assert all(v.voice_type == "PREDEFINED" for v in voices)
    # Page 1 has no "after"; each next page starts after the last voice of the one before.
    assert list_bodies(server) == [{"limit": 1}, {"limit": 1, "after": ids[0]}, {"limit": 1, "after": ids[1]}]


async def test_list_sends_every_filter(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            calm = [
                v
                async for v in client.voices.list(
                    language="en-US",
                    accent="american",
                    gender="male",
                    style="calm",
                    model="async_flash_v1.5",
                    my_voice=False,
                )
            ]
            dutch = [v async for v in client.voices.list(language="nl")]
            mine = [v async for v in client.voices.list(my_voice=True)]
            with pytest.raises(ConfigurationError):
                [v async for v in client.voices.list(gender="robot")]
            with pytest.raises(ConfigurationError):
                [v async for v in client.voices.list(page_size=0)]
    assert [v.voice_id for v in calm] == [PREDEFINED_VOICES[1].voice_id]
    assert dutch == mine == []
    assert list_bodies(server)[0] == {
        "limit": 10,
        "language": "en",
        "accent": "american",
        "gender": "Male",
        "style": "calm",
        "model_id": "async_flash_v1.5",
        "my_voice": False,
    }


async def test_get_many(server: LocalServer) -> None:
    first, second = PREDEFINED_VOICES[0], PREDEFINED_VOICES[1]
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voices = await client.voices.get_many([second.voice_id, "nobody", first.voice_id])
            assert await client.voices.get_many([]) == []
            with pytest.raises(ConfigurationError):
                await client.voices.get_many(first.voice_id)
    assert [v.voice_id for v in voices] == [second.voice_id, first.voice_id]
    assert voices[0].name == second.name
    batches = [r.body for r in server.log.http if r.path == "/voices/batch"]
    assert batches == [{"voice_ids": [second.voice_id, "nobody", first.voice_id]}]


async def test_get_preview_url_and_preview() -> None:
    key = "sk_preview_test_key"
    async with open_local_server(engine="signal", api_key=key, idle_timeout=None) as server:
        with trio.fail_after(TIMEOUT):
            # A caller's client that adds the key to every request on its own.
            async with httpx.AsyncClient(headers={"x-api-key": key}) as http:
                async with open_client(base_url=server.url, api_key=key, client=http) as client:
                    voice = await client.voices.get(DEFAULT_VOICE_ID)
                    url = await client.voices.preview_url(DEFAULT_VOICE_ID)
                    preview = await client.voices.preview(DEFAULT_VOICE_ID)
                    with pytest.raises(NotFoundError) as missing:
                        await client.voices.get("nobody")
                    with pytest.raises(NotFoundError) as no_preview:
                        await client.voices.preview("nobody")
    assert isinstance(voice, Voice)
    assert voice.voice_id == DEFAULT_VOICE_ID and voice.name
    assert url.startswith(server.url + "/signed/")
    assert preview[:4] == b"RIFF" and len(preview) > 1000
    assert missing.value.extra == {"voice_id": "nobody"}
    assert no_preview.value.code == "VOICE_PREVIEW_NOT_FOUND"
    (fetched,) = [r for r in server.log.http if r.path.startswith("/signed/")]
    # The signed URL may lead anywhere: neither our key nor our headers go with it.
    assert "x-api-key" not in fetched.headers
    assert "version" not in fetched.headers
    assert fetched.status == 200


async def test_clone_update_use_and_delete(server: LocalServer, tmp_path: Path) -> None:
    sample = tmp_path / "me.wav"
    sample.write_bytes(wav_bytes(6.0))
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voice = await client.voices.clone(
                sample, name="Me", description="test", gender="female", style="warm", enhance=True
            )
            assert voice.voice_type == "CUSTOM"
            assert (voice.name, voice.description, voice.language) == ("Me", "test", "en")
            mine = [v async for v in client.voices.list(my_voice=True)]
            assert [v.voice_id for v in mine] == [voice.voice_id]
            assert (mine[0].gender, mine[0].style) == ("Female", "warm")

            await client.voices.update(voice.voice_id, name="Still me", accent="irish")
            now = await client.voices.get(voice.voice_id)
            assert (now.name, now.accent) == ("Still me", "irish")

            async with open_synthesizer(base_url=server.url, voice_id=voice.voice_id) as synth:
                async with synth.speak("My own voice.") as u:
                    assert await u.read_all()

            await client.voices.delete(voice.voice_id)
            with pytest.raises(NotFoundError):
                await client.voices.get(voice.voice_id)
    (cloned,) = [r for r in server.log.http if r.path == "/voices/clone"]
    # Only the documented fields.
    assert cloned.body == {
        "name": "Me",
        "description": "test",
        "gender": "Female",
        "style": "warm",
        "enhance": "true",
        "audio": {"audio": ("me.wav", len(wav_bytes(6.0)))},
    }
    assert [r.status for r in server.log.http if r.method in ("PUT", "DELETE")] == [204, 204]


async def test_clone_refuses_bad_samples(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            with pytest.raises(InvalidRequestError) as unknown:
                await client.voices.clone(b"not audio at all", name="Bad")
            assert unknown.value.code == "FORMAT_NOT_RECOGNIZED"
            with pytest.raises(InvalidRequestError) as info:
                await client.voices.clone(wav_bytes(2.5), name="Short")
            assert info.value.code == "SHORT_SPEECH_DURATION"
            requests = len(server.log.http)
            with pytest.raises(ConfigurationError):
                await client.voices.clone(b"", name="Empty")
            with pytest.raises(ConfigurationError):
                await client.voices.clone(b"RIFF" + bytes(10 * 1024 * 1024), name="Huge")
            with pytest.raises(ConfigurationError):
                await client.voices.clone(wav_bytes(4.0), name="X", gender="robot")
            with pytest.raises(ConfigurationError):
                await client.voices.update(DEFAULT_VOICE_ID)
            assert len(server.log.http) == requests


async def test_predefined_voices_cannot_be_deleted(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            with pytest.raises(APIError):
                await client.voices.delete(DEFAULT_VOICE_ID)
            assert (await client.voices.get(DEFAULT_VOICE_ID)).voice_id == DEFAULT_VOICE_ID


async def test_status(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, api_key="sk_status") as client:
            status = await client.status()
    assert status == {"status": "ok", "version": "v1"}
    (record,) = server.log.http
    assert (record.method, record.path, record.status) == ("GET", "/", 200)
    assert record.headers["version"] == "v1"
    assert "api-version" not in record.headers


# ------------------------------------------- retries of requests that are not idempotent


async def test_non_idempotent_requests_are_not_retried_after_an_error_answer(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with open_client(base_url=server.url) as client:
            voice = await client.voices.clone(wav_bytes(4.0), name="Once")
            for status in (503, 429):
                server.faults.http_statuses = [status]
                with pytest.raises(ServerError if status == 503 else RateLimitError):
                    await client.voices.clone(wav_bytes(4.0), name="Twice?")
                server.faults.http_statuses = [status]
                with pytest.raises(APIError):
                    await client.voices.update(voice.voice_id, name="Renamed?")
                server.faults.http_statuses = [status]
                with pytest.raises(APIError):
                    await client.voices.delete(voice.voice_id)
            # An idempotent request is retried.
            server.faults.http_statuses = [503]
            assert (await client.voices.get(voice.voice_id)).name == "Once"
    methods = [(r.method, r.status) for r in server.log.http]
    once = [("POST", 503), ("PUT", 503), ("DELETE", 503), ("POST", 429), ("PUT", 429), ("DELETE", 429)]
    assert methods[1:7] == once
    assert methods[7:] == [("GET", 503), ("GET", 200)]
    assert [v.name for v in server.voices if v.voice_type == "CUSTOM"] == ["Once"]


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("slow"), True),
        (httpx.ReadError("reset"), False),
        (httpx.ReadTimeout("silent"), False),
        (httpx.RemoteProtocolError("cut"), False),
    ],
)
async def test_non_idempotent_requests_are_retried_only_if_never_sent(
    failure: httpx.HTTPError, retried: bool, jump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) % 2 == 1:
            raise failure
        if request.method == "POST":
            return httpx.Response(200, json={"id": "v1", "name": "N", "description": None, "language": "en"})
        return httpx.Response(204)

    with trio.fail_after(600):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            async with open_client(base_url="http://mock.invalid", client=http) as client:
                for call in (
                    lambda: client.voices.clone(wav_bytes(3.5), name="N"),
                    lambda: client.voices.update("v1", name="M"),
                    lambda: client.voices.delete("v1"),
                ):
                    calls.clear()
                    if retried:
                        await call()
                        assert len(calls) == 2
                    else:
                        with pytest.raises(AsyncAIError):
                            await call()
                        assert len(calls) == 1


# ------------------------------------------------ malformed answers (mock)


async def test_malformed_json_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/voices":
            return httpx.Response(200, content=b"{not json")
        if request.url.path == "/text_to_speech/with_timestamps":
            return httpx.Response(200, json={"audio_base64": "AAAA", "alignment": {"words": ["a"]}})
        if request.url.path.startswith("/voices/preview/"):
            return httpx.Response(200, json={"signed_url": "file:///etc/passwd"})
        return httpx.Response(200, json={"voices": "nope"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", voice_id="v", client=http) as client:
            with pytest.raises(ProtocolError):
                [v async for v in client.voices.list()]
            with pytest.raises(ProtocolError):
                await client.synthesize_with_timestamps("Hi.")
            with pytest.raises(ProtocolError):
                await client.voices.preview_url("v")
            with pytest.raises(ProtocolError):
                await client.voices.get_many(["v"])


async def test_a_page_that_does_not_move_on_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"voices": [{"voice_id": "same"}], "next_cursor": "more"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", client=http) as client:
            seen: list[str] = []
            with trio.fail_after(TIMEOUT), pytest.raises(ProtocolError):
                async for voice in client.voices.list():
                    seen.append(voice.voice_id)
    assert seen == ["same", "same"]


@pytest.mark.parametrize(
    ("content_type", "body", "error", "code"),
    [
        (
            "application/json",
            b'{"detail": {"error_code": "USAGE_LIMIT_EXCEEDED", "message": "m"}}',
            QuotaExceededError,
            "USAGE_LIMIT_EXCEEDED",
        ),
        (
            "application/json",
            b'{"error_code": "VOICE_NOT_FOUND", "message": "m"}',
            NotFoundError,
            "VOICE_NOT_FOUND",
        ),
        ("application/json; charset=utf-8", b'{"ok": true}', ProtocolError, None),
        ("text/html; charset=utf-8", b"<html>Sign in</html>", ProtocolError, None),
    ],
)
async def test_a_200_that_is_json_or_html_is_never_audio(
    content_type: str, body: bytes, error: type[Exception], code: str | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/voices/preview/"):
            return httpx.Response(200, json={"signed_url": "https://storage.invalid/preview.mp3?sig=x"})
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", voice_id="v", client=http, max_retries=0) as c:
            with trio.fail_after(TIMEOUT), pytest.raises(error) as info:
                await c.synthesize("Hi.")
            with trio.fail_after(TIMEOUT), pytest.raises(error):
                await c.voices.preview("v")
    assert getattr(info.value, "code", None) == code


@pytest.mark.parametrize(
    ("name", "sample", "mime"),
    [
        ("a.wav", b"RIFF\x00\x00\x00\x00WAVE", "audio/wav"),
        ("a.MP3", b"ID3", "audio/mpeg"),
        ("a.flac", b"fLaC", "audio/flac"),
        ("a.aiff", b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
        ("a.aif", b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
        (None, b"RIFF\x00\x00\x00\x00WAVE", "audio/wav"),
        (None, b"\xff\xfb\x90\x00", "audio/mpeg"),
        (None, b"fLaC\x00", "audio/flac"),
        (None, b"FORM\x00\x00\x00\x00AIFC", "audio/aiff"),
        (None, b"something else", "application/octet-stream"),
    ],
)
async def test_clone_labels_each_format(name: str | None, sample: bytes, mime: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "new", "name": "N", "description": None, "language": "en"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", client=http) as client:
            voice = await client.voices.clone(sample + bytes(100), name="N", filename=name)
    assert (voice.voice_id, voice.voice_type) == ("new", "CUSTOM")
    body = seen[0].read()
    assert f"Content-Type: {mime}".encode() in body
    if name is not None:
        assert f'filename="{name}"'.encode() in body


async def test_voice_ids_are_escaped_into_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", client=http) as client:
            for voice_id in ("a#b", "../status", "mine?x=1"):
                await client.voices.delete(voice_id)
    assert paths == ["/voices/a%23b", "/voices/..%2Fstatus", "/voices/mine%3Fx%3D1"]


@pytest.mark.parametrize(("status", "error"), [(403, APIError), (404, APIError), (503, ServerError)])
async def test_a_refused_signed_url_is_not_a_refused_key(status: int, error: type[APIError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/voices/preview/"):
            return httpx.Response(200, json={"signed_url": "https://storage.invalid/preview.mp3?sig=x"})
        # A storage host's answer: no Async error body.
        return httpx.Response(status, content=b"<Error><Code>AccessDenied</Code></Error>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", voice_id="v", client=http, max_retries=0) as c:
            with trio.fail_after(TIMEOUT), pytest.raises(APIError) as info:
                await c.voices.preview("v")
    assert type(info.value) is error
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.status == status
    assert "signed URL was refused" in info.value.message
