"""The HTTP synthesizer: against the local server, and with httpx.MockTransport for edge cases."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from helpers import TIMEOUT, StreamedBody, mock_client, synth_for

from trio_asyncai import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    SynthesisTimeout,
    open_http_synthesizer,
    open_synthesizer,
)
from trio_asyncai._http import MAX_REQUEST_CHARS
from trio_asyncai._protocol import QUOTA_MARKER
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer, open_local_server

LONG_TEXT = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima."


# ----------------------------------------------------- against the local server


async def test_http_and_websocket_give_the_same_audio(server: LocalServer) -> None:
    text = "Same interface, same sound."
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            async with synth.speak(text) as utterance:
                over_http = await utterance.read_all()
        async with open_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=16000) as ws:
            async with ws.speak(text) as utterance2:
                over_ws = await utterance2.read_all()
    assert over_http == over_ws != b""
    assert utterance.state == "complete"
    assert utterance.metrics.characters == len(text)
    assert utterance.metrics.ttfb is not None


async def test_http_streamed_text_is_sent_sentence_by_sentence(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            async with synth.open_utterance() as utterance:
                for token in ["One ", "sentence. ", "Two ", "sentences", "."]:
                    await utterance.send(token)
                await utterance.finish()
                audio = await utterance.read_all()
            assert synth.statistics().requests_sent == 2
    bodies = [r.body for r in server.log.http if r.path == "/text_to_speech/streaming"]
    assert [b["transcript"] for b in bodies] == ["One sentence. ", "Two sentences."]
    assert audio


async def test_http_sends_a_whole_text_in_one_request(server: LocalServer) -> None:
    text = "One sentence. Two sentences. And a third."
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            async with synth.speak(text) as utterance:
                audio = await utterance.read_all()
            assert synth.statistics().requests_sent == 1
    assert [r.body["transcript"] for r in server.log.http] == [text]
    assert audio


async def test_http_splits_sentences_ready_together_at_the_request_cap(server: LocalServer) -> None:
    sentence = "x" * 300 + ". "
    text = sentence * 7  # 2,114 characters: 3 + 3 + 1 sentences under the 1,000-character cap
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            async with synth.speak(text) as utterance:
                await utterance.read_all()
    sent = [r.body["transcript"] for r in server.log.http]
    assert [len(s) for s in sent] == [906, 906, 302]
    assert "".join(sent) == text
    assert all(len(s) <= MAX_REQUEST_CHARS for s in sent)


async def test_http_does_not_cut_at_abbreviations_or_prices(server: LocalServer) -> None:
    tokens = ["Dr. ", "Smith ", "paid ", "$3", ".50 ", "at ", "10:30. ", "Then ", "he ", "left."]
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth, synth.open_utterance() as utterance:
            for token in tokens:
                await utterance.send(token)
            await utterance.finish()
            assert await utterance.read_all()
    sent = [r.body["transcript"] for r in server.log.http]
    assert sent == ["Dr. Smith paid $3.50 at 10:30. ", "Then he left."]


async def test_http_errors_are_typed(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True, voice_id="nobody") as synth:
            with pytest.raises(NotFoundError) as info:
                async with synth.speak("Hi.") as u:
                    await u.read_all()
            assert info.value.code == "VOICE_NOT_FOUND"
        async with synth_for(server, http=True, language="xx") as synth:
            with pytest.raises(InvalidRequestError) as info2:
                async with synth.speak("Hi.") as u:
                    await u.read_all()
            assert info2.value.code == "INVALID_LANGUAGE"


async def test_http_bad_key_is_an_authentication_error() -> None:
    secret = "sk_not_this_one"
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key="sk_yes") as server:
            async with synth_for(server, http=True, api_key=secret) as synth:
                with pytest.raises(AuthenticationError) as info:
                    async with synth.speak("Hi.") as u:
                        await u.read_all()
    assert secret not in str(info.value) + repr(info.value)


async def test_http_retries_429_and_503_before_audio(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.http_statuses = [429, 503]
    with trio.fail_after(600):
        async with synth_for(server, http=True) as synth:
            async with synth.speak("Third time lucky.") as u:
                audio = await u.read_all()
            assert synth.statistics().requests_sent == 1
    assert audio
    assert len([r for r in server.log.http if r.path == "/text_to_speech/streaming"]) == 3


async def test_http_retries_are_bounded(server: LocalServer, jump_clock: trio.testing.MockClock) -> None:
    server.faults.http_statuses = [429] * 10
    with trio.fail_after(600):
        async with synth_for(server, http=True, max_retries=2) as synth:
            with pytest.raises(RateLimitError):
                async with synth.speak("Never.") as u:
                    await u.read_all()
    assert len(server.log.http) == 3


async def test_http_quota_marker_from_the_server_is_never_audio(server: LocalServer) -> None:
    server.faults.http_quota_after_bytes = 3000
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            delivered = b""
            with pytest.raises(QuotaExceededError):
                async with synth.speak(LONG_TEXT) as u:
                    async for chunk in u:
                        delivered += chunk.audio
    assert QUOTA_MARKER not in delivered
    assert b"--ERROR" not in delivered
    assert len(delivered) == 3000


async def test_http_interrupt_mid_body_stops_delivery(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.chunk_delay = 0.5
    with trio.fail_after(600):
        async with synth_for(server, http=True) as synth:
            got = 0
            async with synth.speak(LONG_TEXT) as u:
                async for chunk in u:
                    got += len(chunk.audio)
                    u.interrupt()
            assert u.interrupted
            assert u.metrics.audio_bytes == got > 0
            server.faults.chunk_delay = 0
            async with synth.speak("Next.") as u2:
                assert await u2.read_all()


async def test_http_settings_apply_to_the_next_request(server: LocalServer) -> None:
    other = next(v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            async with synth.speak("One.") as u:
                await u.read_all()
            synth.update_settings(voice_id=other, model="async_flash_v1.5")
            async with synth.speak("Two.") as u:
                await u.read_all()
    bodies = [r.body for r in server.log.http]
    assert bodies[0]["voice"]["id"] == DEFAULT_VOICE_ID
    assert bodies[1]["voice"]["id"] == other
    assert bodies[1]["model_id"] == "async_flash_v1.5"


async def test_http_silence_between_chunks_times_out(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.chunk_delay = 100
    with trio.fail_after(600):
        async with synth_for(server, http=True, audio_timeout=5) as synth:
            with pytest.raises(SynthesisTimeout):
                async with synth.speak(LONG_TEXT) as u:
                    await u.read_all()


async def test_wav_is_refused_for_streaming(server: LocalServer) -> None:
    from trio_asyncai import OutputFormat

    with pytest.raises(ConfigurationError):
        async with synth_for(server, http=True, output_format=OutputFormat(container="wav")):
            pass  # pragma: no cover


# --------------------------------------------------- with httpx.MockTransport


def mock_synth(handler: Callable[[httpx.Request], Any], **kwargs: Any) -> Any:
    client = mock_client(handler)
    kwargs.setdefault("max_retries", 0)
    return client, open_http_synthesizer(
        base_url="http://mock.invalid", voice_id="v", sample_rate=16000, client=client, **kwargs
    )


async def test_audio_is_delivered_as_the_body_arrives() -> None:
    first_seen = trio.Event()

    async def parts() -> AsyncGenerator[bytes, None]:
        yield b"\x01\x00" * 100
        await first_seen.wait()  # only once the caller has the first chunk
        yield b"\x02\x00" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=StreamedBody(parts))

    client, cm = mock_synth(handler)
    chunks = []
    with trio.fail_after(TIMEOUT):
        async with client, cm as synth, synth.speak("Hi.") as u:
            async for chunk in u:
                chunks.append(chunk.audio)
                first_seen.set()
    assert b"".join(chunks) == b"\x01\x00" * 100 + b"\x02\x00" * 100
    assert len(chunks) >= 2


@pytest.mark.parametrize("split", [1, 5, len(QUOTA_MARKER) - 1])
async def test_quota_marker_split_across_chunks(split: int) -> None:
    audio = b"\x10\x00" * 50

    async def parts() -> AsyncGenerator[bytes, None]:
        yield audio + QUOTA_MARKER[:split]
        yield QUOTA_MARKER[split:]
        yield b"\x99" * 10

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=StreamedBody(parts))

    client, cm = mock_synth(handler)
    delivered = b""
    with trio.fail_after(TIMEOUT), pytest.raises(QuotaExceededError) as info:
        async with client, cm as synth, synth.speak("Hi.") as u:
            async for chunk in u:
                delivered += chunk.audio
    assert delivered == audio
    assert info.value.code == "USAGE_LIMIT_EXCEEDED"
    assert not info.value.retryable


async def test_retry_after_is_honoured(jump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(trio.current_time())
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "7"}, json={"error_code": "RATE_LIMIT_EXCEEDED"}
            )
        return httpx.Response(200, content=b"\x00\x00" * 10)

    client, cm = mock_synth(handler, max_retries=1, retry_backoff=0.01)
    with trio.fail_after(600):
        async with client, cm as synth, synth.speak("Hi.") as u:
            assert await u.read_all() == b"\x00\x00" * 10
    assert calls[1] - calls[0] >= 7


async def test_no_retry_once_audio_has_started() -> None:
    calls = 0

    async def parts() -> AsyncGenerator[bytes, None]:
        yield b"\x00\x00" * 20
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, stream=StreamedBody(parts))

    client, cm = mock_synth(handler, max_retries=3)
    got = b""
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionLostError):
        async with client, cm as synth, synth.speak("Hi.") as u:
            async for chunk in u:
                got += chunk.audio
    assert got == b"\x00\x00" * 20
    assert calls == 1


async def test_error_body_that_is_not_json_still_maps_by_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=b"<html>oops</html>")

    client, cm = mock_synth(handler)
    with trio.fail_after(TIMEOUT), pytest.raises(ServerError) as info:
        async with client, cm as synth, synth.speak("Hi.") as u:
            await u.read_all()
    assert info.value.status == 500


async def test_requests_carry_version_and_key_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x00\x00")

    client, cm = mock_synth(handler, api_key="sk_header_key", language="fr-FR")
    with trio.fail_after(TIMEOUT):
        async with client, cm as synth, synth.speak("Bonjour.") as u:
            await u.read_all()
    (request,) = seen
    assert request.headers["x-api-key"] == "sk_header_key"
    assert request.headers["version"] == "v1"
    assert "api-version" not in request.headers  # no other version header exists
    assert "sk_header_key" not in str(request.url)
    body = json.loads(request.content)
    assert body["language"] == "fr"
    assert body["voice"] == {"mode": "id", "id": "v"}
    assert body["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


async def test_a_callers_client_is_left_open() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"\x00\x00")

    client, cm = mock_synth(handler)
    async with client:
        async with cm as synth, synth.speak("Hi.") as u:
            await u.read_all()
        assert not client.is_closed


async def test_connect_http_synthesizer_runs_in_the_callers_nursery(server: LocalServer) -> None:
    from trio_asyncai import SynthesizerClosedError, connect_http_synthesizer

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            synth = await connect_http_synthesizer(nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID)
            async with synth.speak("Own nursery.") as u:
                assert await u.read_all()
            await synth.aclose()
            with pytest.raises(SynthesizerClosedError):
                async with synth.speak("Too late."):
                    pass  # pragma: no cover


async def test_interrupt_reaches_audio_that_arrived_but_was_not_read(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=True) as synth:
            went_on = False
            async with synth.speak("All of this arrives before anyone reads it.") as u:
                await server.log.wait_for(lambda log: len(log.http) == 1)
                # Let the whole body arrive, unread (an utterance's state has no event).
                while u.state != "complete":
                    await trio.testing.wait_all_tasks_blocked()
                synth.interrupt()
                await trio.lowlevel.checkpoint()
                went_on = True
            assert not went_on, "the block went on after interrupt()"
            # It had completed: a final state, which the interrupt does not rewrite.
            assert u.state == "complete"
            assert not u.interrupted
            assert u.metrics.audio_bytes > 0
            with pytest.raises(trio.EndOfChannel):
                await u.receive()


@pytest.mark.parametrize("value", ["soon", "Wed, 99 Foo 2026", "nan"])
async def test_an_unreadable_retry_after_is_ignored(value: str, jump_clock: trio.testing.MockClock) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": value}, json={"error_code": "RATE_LIMIT_EXCEEDED"})

    client, cm = mock_synth(handler, max_retries=2)
    with trio.fail_after(600), pytest.raises(RateLimitError):
        async with client, cm as synth, synth.speak("Hi.") as u:
            await u.read_all()
    assert calls == 3


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        ("application/json", b'{"detail": {"error_code": "VOICE_NOT_FOUND", "message": "m"}}', NotFoundError),
        ("application/json", b'{"error_code": "INVALID_LANGUAGE", "message": "m"}', InvalidRequestError),
        ("application/json", b"{}", ProtocolError),
        ("text/html", b"<html><body>Please sign in</body></html>", ProtocolError),
    ],
)
async def test_a_200_that_is_json_or_html_is_never_audio(
    content_type: str, body: bytes, error: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    client, cm = mock_synth(handler)
    with trio.fail_after(TIMEOUT), pytest.raises(error):
        async with client, cm as synth, synth.speak("Hi.") as u:
            async for _ in u:
                raise AssertionError("an error body was delivered as audio")


def test_the_http_synthesizer_runs_under_anyio() -> None:
    import anyio

    async def main() -> bytes:
        async with open_local_server(engine="signal") as server, synth_for(server, http=True) as synth:
            async with synth.speak("Hello from anyio, over HTTP.") as utterance:
                audio: bytes = await utterance.read_all()
                return audio

    assert anyio.run(main, backend="trio")
