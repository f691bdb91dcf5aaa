"""One parser for error bodies: REST, the HTTP synthesizer and a refused WebSocket handshake.

Against the local server in its default mode (the service's nested
``{"detail": {...}}``) and with its ``flat_error_bodies`` fault (the flat
shape the reference also shows); the code-less 500 shape comes from the
``http_statuses`` fault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from helpers import TIMEOUT

from trio_asyncai import (
    AuthenticationError,
    NoAudioError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    open_client,
    open_http_synthesizer,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, open_local_server

KEY = "sk_right_key_for_the_twin"
WRONG = "sk_wrong_key_never_shown"


@pytest.fixture(params=["nested", "flat"])
async def keyed_server(request: pytest.FixtureRequest) -> AsyncIterator[LocalServer]:
    """A twin that wants ``KEY``, answering errors in each of the two shapes."""
    async with open_local_server(engine="signal", api_key=KEY, idle_timeout=None) as srv:
        srv.faults.flat_error_bodies = request.param == "flat"
        yield srv


def no_key_in(error: BaseException) -> None:
    text = f"{error!r} {error}"
    if isinstance(error, AuthenticationError | RateLimitError | ServerError | NotFoundError):
        text += repr(error.extra)
    for secret in (WRONG, WRONG[:4], KEY):
        assert secret not in text


async def test_rest_errors_are_typed_in_both_shapes(keyed_server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=keyed_server.url, api_key=KEY) as client:
            with pytest.raises(NotFoundError) as missing:
                await client.voices.get("nobody")
        async with open_client(base_url=keyed_server.url, api_key=WRONG) as client:
            with pytest.raises(AuthenticationError) as refused:
                await client.voices.get(DEFAULT_VOICE_ID)
    assert (missing.value.code, missing.value.status) == ("VOICE_NOT_FOUND", 404)
    assert missing.value.extra == {"voice_id": "nobody"}
    assert (refused.value.code, refused.value.status) == ("INVALID_API_KEY", 401)
    # The twin echoes the key's first 4 characters as extra.api_key, as the service does.
    assert refused.value.extra == {}
    no_key_in(refused.value)


async def test_the_http_synthesizer_reads_both_shapes(keyed_server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_http_synthesizer(base_url=keyed_server.url, api_key=KEY, voice_id="nobody") as synth:
            with pytest.raises(NotFoundError) as missing:
                async with synth.speak("Hi.") as u:
                    await u.read_all()
        async with open_http_synthesizer(
            base_url=keyed_server.url, api_key=WRONG, voice_id=DEFAULT_VOICE_ID
        ) as synth:
            with pytest.raises(AuthenticationError) as refused:
                async with synth.speak("Hi.") as u:
                    await u.read_all()
    assert missing.value.extra == {"voice_id": "nobody"}
    assert refused.value.extra == {}
    no_key_in(refused.value)


async def test_a_refused_handshake_reads_both_shapes(keyed_server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(AuthenticationError) as refused:
        async with open_synthesizer(
            base_url=keyed_server.url, api_key=WRONG, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0
        ):
            pass  # pragma: no cover
    assert (refused.value.code, refused.value.status) == ("INVALID_API_KEY", 401)
    assert refused.value.extra == {}
    no_key_in(refused.value)


@pytest.mark.parametrize("flat", [False, True])
async def test_a_refused_handshake_carries_retry_after(flat: bool) -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        server.faults.flat_error_bodies = flat
        # One refusal for each of the three attempts (no retries).
        server.faults.handshake_statuses = [429, 429, 500]
        server.faults.retry_after_ms = 2500
        with trio.fail_after(TIMEOUT), pytest.raises(RateLimitError) as limited:
            async with open_synthesizer(
                base_url=server.url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0
            ):
                pass  # pragma: no cover
        server.faults.retry_after_header = "7"
        with trio.fail_after(TIMEOUT), pytest.raises(RateLimitError) as headed:
            async with open_synthesizer(
                base_url=server.url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0
            ):
                pass  # pragma: no cover
        with trio.fail_after(TIMEOUT), pytest.raises(ServerError) as failed:
            async with open_synthesizer(
                base_url=server.url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0
            ):
                pass  # pragma: no cover
    assert limited.value.code == "RATE_LIMIT_EXCEEDED"
    assert limited.value.retry_after == 2.5
    assert limited.value.extra == {"limit": 60, "retry_after_ms": 2500}
    assert headed.value.retry_after == 7.0
    # The 500 shape: no code, the detail in the message, and retryable.
    assert (failed.value.code, failed.value.status, failed.value.retryable) == (None, 500, True)
    assert "injected by the local server's faults" in failed.value.message


@pytest.mark.parametrize("header", [None, "7"])
async def test_a_rate_limit_message_tells_its_wait_unless_the_header_fault_is_on(
    header: str | None,
) -> None:
    """A WebSocket error message follows the HTTP rule: no ``retry_after_ms`` with the header fault.

    A message has no header to carry the wait instead: the client then knows no wait.
    """
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        server.faults.retry_after_ms = 2500
        server.faults.retry_after_header = header
        server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
        with trio.fail_after(TIMEOUT):
            async with open_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
                with pytest.raises(RateLimitError) as limited:
                    async with synth.speak("Slow down.") as utterance:
                        await utterance.read_all()
    extra = {k: v for k, v in limited.value.extra.items() if k != "request_id"}
    if header is None:
        assert extra == {"limit": 60, "retry_after_ms": 2500}
        assert limited.value.retry_after == 2.5
    else:
        assert extra == {"limit": 60}
        assert limited.value.retry_after is None


@pytest.mark.parametrize("flat", [False, True])
async def test_rest_retries_wait_retry_after_ms(flat: bool, jump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        server.faults.flat_error_bodies = flat
        server.faults.retry_after_ms = 5000
        server.faults.http_statuses = [429]
        with trio.fail_after(600):
            async with open_client(base_url=server.url, retry_backoff=0.01) as client:
                start = trio.current_time()
                voice = await client.voices.get(DEFAULT_VOICE_ID)
                waited = trio.current_time() - start
    assert voice.voice_id == DEFAULT_VOICE_ID
    assert waited >= 5.0
    assert [r.status for r in server.log.http] == [429, 200]


async def test_http_synthesizer_retries_wait_the_retry_after_header(
    jump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        server.faults.retry_after_header = "6"
        server.faults.http_statuses = [503]
        with trio.fail_after(600):
            async with open_http_synthesizer(
                base_url=server.url, voice_id=DEFAULT_VOICE_ID, retry_backoff=0.01
            ) as synth:
                start = trio.current_time()
                async with synth.speak("After a pause.") as u:
                    audio = await u.read_all()
                waited = trio.current_time() - start
    assert audio
    assert waited >= 6.0
    assert [r.status for r in server.log.http] == [503, 200]


# ------------------------------------------- bodies nested too deep to read


async def test_rest_answers_nested_too_deep_fail_the_one_request() -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        async with open_client(base_url=server.url) as client:
            with trio.fail_after(TIMEOUT):
                server.faults.nested_json = 5000
                # An error answer: the status's own error.
                with pytest.raises(NotFoundError):
                    await client.voices.get("no-such-voice")
                # A 200 answer that cannot be read: a protocol error, for this request alone.
                with pytest.raises(ProtocolError, match="nested too deep"):
                    await client.voices.get(DEFAULT_VOICE_ID)
                # Nested, but within reach: read as usual.
                server.faults.nested_json = 50
                assert (await client.voices.get(DEFAULT_VOICE_ID)).voice_id == DEFAULT_VOICE_ID
                server.faults.nested_json = 0
                assert (await client.voices.get(DEFAULT_VOICE_ID)).voice_id == DEFAULT_VOICE_ID


async def test_an_http_error_body_nested_too_deep_fails_the_utterance_not_the_block() -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        async with open_http_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
            with trio.fail_after(TIMEOUT):
                server.faults.nested_json = 5000
                server.faults.http_statuses = [404]
                with pytest.raises(NotFoundError):
                    async with synth.speak("Nested.") as utterance:
                        await utterance.read_all()
                server.faults.reset()
                async with synth.speak("And the block goes on.") as utterance:
                    assert await utterance.read_all()


# ------------------------------------------------------ text and no audio


@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_no_audio_for_text_with_speech_is_an_error_and_for_text_without_none(transport: str) -> None:
    opener = open_synthesizer if transport == "websocket" else open_http_synthesizer
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        async with opener(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
            with trio.fail_after(TIMEOUT):
                server.faults.no_audio = True
                with pytest.raises(NoAudioError) as caught:
                    async with synth.speak("Words with sound in them.") as utterance:
                        await utterance.read_all()
                assert caught.value.utterance is utterance
                assert utterance.state == "failed"
                # Nothing to say: silence is the right answer.
                async with synth.speak('... <break time="0ms"/> !') as utterance:
                    assert await utterance.read_all() == b""
                assert utterance.state == "complete"
