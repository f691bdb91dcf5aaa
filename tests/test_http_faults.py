"""The HTTP synthesizer and the REST client under faults: quota markers, a racing close, a hung service.

The hung-service tests run on trio's MockClock and assert how much trio time
passed before the error surfaced: these are the figures docs/errors.rst gives.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from helpers import TIMEOUT, StreamedBody, mock_client, tcp_peer

from trio_asyncai import (
    QuotaExceededError,
    SynthesisTimeout,
    SynthesizerClosedError,
    connect_http_synthesizer,
    open_client,
    open_http_synthesizer,
)
from trio_asyncai._protocol import QUOTA_MARKER
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

LONG_TEXT = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima."


# ------------------------------------------------------------- item: quota wins


@pytest.mark.parametrize("split", [0, 7])
async def test_a_quota_marker_then_a_broken_body_is_the_quota_error(split: int) -> None:
    audio = b"\x10\x00" * 50

    async def parts() -> AsyncGenerator[bytes, None]:
        yield audio + QUOTA_MARKER[: split or None]
        if split:
            yield QUOTA_MARKER[split:]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    client = mock_client(lambda request: httpx.Response(200, stream=StreamedBody(parts)))
    delivered = b""
    with trio.fail_after(TIMEOUT), pytest.raises(QuotaExceededError) as info:
        async with (
            client,
            open_http_synthesizer(
                base_url="http://mock.invalid", voice_id="v", sample_rate=16000, client=client, max_retries=3
            ) as synth,
            synth.speak("Hi.") as u,
        ):
            async for chunk in u:
                delivered += chunk.audio
    assert delivered == audio
    assert not info.value.retryable


# --------------------------------------------------- item: open racing aclose


async def _race_once(how: str) -> tuple[bool, str]:
    """One round of open_utterance() against aclose(): (whether the window was hit, the outcome)."""
    flags = {"entering": False, "entered": False, "hit": False}
    outcome = ""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"\x00\x00" * 100)

    client = mock_client(handler)
    kwargs: dict[str, Any] = {"base_url": "http://mock.invalid", "voice_id": "v", "client": client}
    async with client, trio.open_nursery() as outer:
        if how == "aclose":
            cm = open_http_synthesizer(**kwargs)
            synth = await cm.__aenter__()
        else:
            synth = await connect_http_synthesizer(outer, **kwargs)

        async def opener() -> None:
            nonlocal outcome
            flags["entering"] = True  # no checkpoint from here to open_utterance's own
            try:
                async with synth.open_utterance() as u:
                    flags["entered"] = True
                    await u.finish("Hi.")
                    await u.read_all()
            except SynthesizerClosedError:
                outcome = "closed"
            else:
                outcome = "spoke after aclose"

        async def closer() -> None:
            while not flags["entering"]:
                await trio.lowlevel.checkpoint()
            flags["hit"] = not flags["entered"]
            await synth.aclose()

        async with trio.open_nursery() as race:
            race.start_soon(closer)
            race.start_soon(opener)
        if how == "aclose":
            await cm.__aexit__(None, None, None)
    return flags["hit"], outcome


@pytest.mark.parametrize("how", ["aclose", "connect_aclose"])
async def test_open_utterance_racing_aclose_raises_synthesizer_closed(how: str) -> None:
    """aclose() lands while open_utterance() is at its checkpoint: a SynthesizerClosedError.

    The closer watches two flags the opener sets around ``open_utterance()``:
    ``entering`` just before the call (with no checkpoint before the call's
    own), ``entered`` inside the block. Seeing the first and not the second,
    it knows the opener is parked at that checkpoint, and closes then: the
    window is hit for certain whenever the closer sees it open (trio picks
    the order within a batch at random, so the loop runs until it has been
    hit 30 times). Before the fix the opener then got a live utterance
    from a closed synthesizer, or ``RuntimeError: Nursery is closed``.
    """
    hits = 0
    outcomes: set[str] = set()
    with trio.fail_after(TIMEOUT):
        for _ in range(200):
            hit, outcome = await _race_once(how)
            hits += hit
            outcomes.add(outcome)
            if hits >= 30:
                break
    assert hits >= 30
    assert outcomes == {"closed"}


# --------------------------------------------------------- item: a hung service


async def never_answer(stream: trio.SocketStream) -> None:
    """Accept the connection, answer nothing."""
    await trio.sleep_forever()


async def _read_head(stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        more = await stream.receive_some()
        if not more:
            return
        data += more


AUDIO_BEFORE_STALL = b"\x01\x00" * 100


async def audio_then_stall(stream: trio.SocketStream) -> None:
    """Answer 200 with one chunk of audio, then send nothing more, keeping the connection open."""
    await _read_head(stream)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (len(AUDIO_BEFORE_STALL), AUDIO_BEFORE_STALL)
    await stream.send_all(head + chunk)
    await trio.sleep_forever()


async def _fail_utterance(synth: Any, text: str = "Hi.") -> tuple[bytes, float, BaseException]:
    """Speak ``text``; the audio delivered, the trio time until the error, and the error."""
    start = trio.current_time()
    got = b""
    with pytest.raises(SynthesisTimeout) as info:
        async with synth.speak(text) as u:
            async for chunk in u:
                got += chunk.audio
    return got, trio.current_time() - start, info.value


async def test_a_service_that_never_answers_surfaces_after_two_connect_timeouts(
    jump_clock: trio.testing.MockClock,
) -> None:
    # Defaults: connect_timeout 5 s bounds connecting and the wait for headers,
    # one retry after a timeout, backoff 0.5 s jittered to [0.5, 0.75): 5 + 0.5.. + 5 s.
    with trio.fail_after(600):
        async with (
            tcp_peer(never_answer) as peer,
            open_http_synthesizer(base_url=peer.url, voice_id="v") as synth,
        ):
            got, took, error = await _fail_utterance(synth)
    assert got == b""
    assert 10.5 <= took < 10.75
    assert peer.accepted == 2
    assert "no answer within 5.0 s" in str(error)


async def test_a_mock_transport_that_never_answers_is_bounded_too(jump_clock: trio.testing.MockClock) -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    client = mock_client(handler)
    with trio.fail_after(600):
        async with (
            client,
            open_http_synthesizer(
                base_url="http://mock.invalid", voice_id="v", client=client, connect_timeout=2, max_retries=5
            ) as synth,
        ):
            _, took, _ = await _fail_utterance(synth)
    # Timeouts are retried once whatever max_retries says: 2 + 0.5 (jittered) + 2.
    assert 4.5 <= took < 4.75
    assert calls == 2


async def test_a_stall_after_audio_surfaces_after_one_audio_timeout(
    jump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with (
            tcp_peer(audio_then_stall) as peer,
            open_http_synthesizer(base_url=peer.url, voice_id="v", sample_rate=16000) as synth,
        ):
            got, took, _ = await _fail_utterance(synth)
    assert got == AUDIO_BEFORE_STALL
    assert took == pytest.approx(10.0)  # audio_timeout, not retried
    assert peer.accepted == 1


async def test_headers_then_silence_surfaces_after_one_audio_timeout(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    # The twin sends the headers at once, then waits chunk_delay before each chunk.
    server.faults.chunk_delay = 1000
    with trio.fail_after(600):
        async with open_http_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
            got, took, _ = await _fail_utterance(synth, LONG_TEXT)
    assert got == b""
    assert took == pytest.approx(10.0)
    assert len([r for r in server.log.http if r.path == "/text_to_speech/streaming"]) == 1


async def test_the_rest_client_against_a_hung_service(jump_clock: trio.testing.MockClock) -> None:
    # open_client's timeout (60 s) bounds each phase; a timeout is retried once.
    with trio.fail_after(600):
        async with tcp_peer(never_answer) as peer, open_client(base_url=peer.url) as client:
            start = trio.current_time()
            with pytest.raises(SynthesisTimeout):
                await client.status()
            took = trio.current_time() - start
            # Not idempotent: a request that may have arrived is never retried.
            start = trio.current_time()
            with pytest.raises(SynthesisTimeout):
                await client.voices.delete("some-voice")
            took_delete = trio.current_time() - start
    assert 120.5 <= took < 120.75
    assert took_delete == pytest.approx(60.0)
    assert peer.accepted == 3
