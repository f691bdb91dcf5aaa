"""Unread audio: one limit rule for every format and both synthesizers; backpressure over HTTP."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, reader_caught_up

from trio_asyncai import OutputFormat, SlowConsumerError, open_http_synthesizer, open_synthesizer
from trio_asyncai._utterance import DEFAULT_MAX_BUFFERED_AUDIO, Utterance, buffer_limit
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

FIRST, SECOND = "Alpha bravo charlie delta echo foxtrot. ", "Golf hotel india juliet kilo lima."
TWO_SENTENCES = FIRST + SECOND
MP3_32K = OutputFormat(container="mp3", sample_rate=16000, bit_rate=32000)


@pytest.mark.parametrize(
    ("fmt", "per_second"),
    [
        (OutputFormat(sample_rate=16000), 32000),
        (OutputFormat(encoding="pcm_f32le", sample_rate=48000), 192000),
        (OutputFormat(encoding="pcm_mulaw", sample_rate=8000), 8000),
        (MP3_32K, 4000),
        (OutputFormat(container="mp3", sample_rate=44100), 24000),  # the service's default 192 kbit/s
    ],
)
def test_one_rule_for_every_format(fmt: OutputFormat, per_second: int) -> None:
    assert buffer_limit(fmt, 2.0) == 2 * per_second
    assert buffer_limit(fmt, None) is None


def test_the_default_is_bounded() -> None:
    assert DEFAULT_MAX_BUFFERED_AUDIO == 60.0
    worst = OutputFormat(encoding="pcm_f32le", sample_rate=48000)
    assert buffer_limit(worst, DEFAULT_MAX_BUFFERED_AUDIO) == 11_520_000  # 11.5 MB


def streaming_requests(server: LocalServer) -> int:
    return len([r for r in server.log.http if r.path == "/text_to_speech/streaming"])


async def settle_while_held_back(utterance: Utterance) -> None:
    """Wait until the synthesizer has filled the utterance's buffer and everything is idle."""
    while not utterance._buffer_full() and utterance.state == "finished":
        await trio.testing.wait_all_tasks_blocked()
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)


@pytest.mark.parametrize(
    ("fmt", "limit"),
    [
        # "Hi you" is 0.36 s: about 1400 bytes of mp3 at 32 kbit/s. A 0.25 s
        # limit is 1000 bytes by the bit rate (it would be 8000, never reached, as PCM).
        (MP3_32K, 1000),
        # 2880 mu-law bytes: 0.25 s is 2000 bytes at one byte a sample (4000,
        # never reached, at two).
        (OutputFormat(encoding="pcm_mulaw", sample_rate=8000), 2000),
    ],
    ids=["mp3", "mulaw"],
)
async def test_the_websocket_counts_each_format_by_its_own_rule(
    server: LocalServer, fmt: OutputFormat, limit: int
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt, max_buffered_audio=0.25
        ) as synth:
            async with synth.speak("Hi you") as utterance:
                await reader_caught_up(synth, server)
                assert utterance.state == "failed"
                # In the option's unit: seconds of audio, whatever the format.
                with pytest.raises(SlowConsumerError, match=r"^more than 0\.25 s of audio were waiting"):
                    async for _ in utterance:
                        pass
    assert 0 < utterance.metrics.audio_bytes <= limit


async def send_two_requests(utterance: Utterance) -> None:
    """The two sentences as two requests: the first flushed on its own, then the second."""
    await utterance.send(FIRST)
    await utterance.flush()
    await utterance.finish(SECOND)


@pytest.mark.parametrize("fmt", [OutputFormat(sample_rate=16000), MP3_32K], ids=["raw", "mp3"])
async def test_http_holds_back_while_the_buffer_is_full(server: LocalServer, fmt: OutputFormat) -> None:
    """An unread utterance over HTTP stops reading its body and sends no next request; reading resumes it."""
    with trio.fail_after(TIMEOUT):
        async with open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt, max_buffered_audio=None
        ) as synth:
            async with synth.open_utterance() as reference:
                await send_two_requests(reference)
                expected = await reference.read_all()
        server.log.http.clear()
        async with open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt, max_buffered_audio=0.25
        ) as synth:
            limit = buffer_limit(fmt, 0.25)
            assert limit is not None
            async with synth.open_utterance() as utterance:
                await send_two_requests(utterance)
                await settle_while_held_back(utterance)
                assert utterance.state == "finished"  # neither failed nor complete
                assert streaming_requests(server) == 1  # the second sentence waits
                held = utterance.metrics.audio_bytes
                assert limit <= held < len(expected)
                got = await utterance.read_all()
            end_state: str = utterance.state  # (mypy narrowed it above)
            assert end_state == "complete"
    assert got == expected
    assert streaming_requests(server) == 2


async def test_no_audio_timeout_while_held_back(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    # A reader that pauses for a minute, far past audio_timeout: no clock runs
    # while the synthesizer holds back for it.
    with trio.fail_after(600):
        async with open_http_synthesizer(
            base_url=server.url,
            voice_id=DEFAULT_VOICE_ID,
            sample_rate=16000,
            max_buffered_audio=0.25,
            audio_timeout=5,
        ) as synth:
            async with synth.speak(TWO_SENTENCES) as utterance:
                got = b""
                async for chunk in utterance:
                    if not got:
                        await trio.sleep(60)  # the slow consumer
                    got += chunk.audio
    assert utterance.state == "complete"
    limit = buffer_limit(OutputFormat(sample_rate=16000), 0.25)
    assert limit is not None
    assert len(got) == utterance.metrics.audio_bytes > limit
