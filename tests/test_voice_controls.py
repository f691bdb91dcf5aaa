"""speed_control, stability and pcm_mulaw from the client to the twin and back, on every transport."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio
from helpers import TIMEOUT, synth_for

from trio_asyncai import (
    ConfigurationError,
    OutputFormat,
    open_client,
)
from trio_asyncai._synthesizer import BaseSynthesizer
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, SignalEngine
from trio_asyncai.server._audio import mulaw_encode

TEXT = "Say it quickly."
SIGNAL = SignalEngine()  # the twin's engine in these tests (24 kHz)
TELEPHONY = OutputFormat(encoding="pcm_mulaw", sample_rate=8000)


def sent_settings(kind: str, server: LocalServer) -> list[dict[str, Any]]:
    """What each connection's init (WebSocket) or each request (HTTP) asked for."""
    if kind == "websocket":
        return [conn.messages[0] for conn in server.log.connections]
    return [dict(r.body) for r in server.log.http]


async def speak(synth: BaseSynthesizer[Any], text: str = TEXT) -> bytes:
    async with synth.speak(text) as utterance:
        return await utterance.read_all()


@pytest.fixture(params=["websocket", "http"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_speed_and_stability_are_sent_and_honoured(kind: str, server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        # At the signal engine's own rate: its sample count for the text, unresampled.
        at_24k: dict[str, Any] = {"sample_rate": 24000, "model": "async_flash_v1.0"}
        async with synth_for(server, http=kind == "http", **at_24k) as synth:
            normal = await speak(synth)
        async with synth_for(server, http=kind == "http", **at_24k, speed_control=2.0, stability=35) as synth:
            assert (synth.settings.speed_control, synth.settings.stability) == (2.0, 35)
            fast = await speak(synth)
    plain, controlled = sent_settings(kind, server)
    assert "speed_control" not in plain and "stability" not in plain
    assert (controlled["speed_control"], controlled["stability"]) == (2.0, 35)
    assert len(normal) == SIGNAL.samples_for(TEXT) * 2
    assert len(fast) == len(normal) // 2  # the twin's voice speaks twice as fast


async def test_update_settings_changes_the_voice_controls(kind: str, server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=kind == "http", speed_control=0.8) as synth:
            await speak(synth, "One.")
            synth.update_settings(speed_control=1.5, stability=90)
            await speak(synth, "Two.")
            synth.update_settings(model="async_pro_v1.0")  # the controls stay
            await speak(synth, "Three.")
            with pytest.raises(ConfigurationError, match="speed_control"):
                synth.update_settings(speed_control=2.5)
            with pytest.raises(ConfigurationError, match="stability"):
                synth.update_settings(stability=12.5)  # not an int
    sent = sent_settings(kind, server)
    assert [(s.get("speed_control"), s.get("stability")) for s in sent] == [
        (0.8, None),
        (1.5, 90),
        (1.5, 90),
    ]
    assert sent[2]["model_id"] == "async_pro_v1.0"
    assert sent[0]["model_id"] == "async_flash_v1.5"  # the default model


@pytest.mark.parametrize("bad", [{"speed_control": 0.6}, {"stability": -5}, {"stability": "50"}])
async def test_out_of_range_controls_are_refused_before_connecting(
    kind: str, server: LocalServer, bad: dict[str, Any]
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConfigurationError):
        async with synth_for(server, http=kind == "http", **bad):
            pass  # pragma: no cover
    assert server.log.connections_opened == 0
    assert not server.log.http


async def test_mulaw_chunks_know_their_width(kind: str, server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, http=kind == "http", sample_rate=8000) as synth:
            pcm = await speak(synth)
        chunks = []
        async with synth_for(server, http=kind == "http", output_format=TELEPHONY) as synth:
            async with synth.speak(TEXT) as utterance:
                async for chunk in utterance:
                    chunks.append(chunk)
    assert {(c.encoding, c.sample_rate) for c in chunks} == {("pcm_mulaw", 8000)}
    mulaw = b"".join(c.audio for c in chunks)
    assert len(mulaw) * 2 == len(pcm)
    # The twin codes the same samples the 16-bit stream carries.
    assert mulaw == mulaw_encode(np.frombuffer(pcm, dtype="<i2"))
    assert sum(c.duration for c in chunks) == pytest.approx(len(pcm) / 2 / 8000)
    assert utterance.metrics.audio_bytes == len(mulaw)
    assert sent_settings(kind, server)[-1]["output_format"]["encoding"] == "pcm_mulaw"


async def test_the_client_takes_voice_controls_and_refuses_mulaw(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url, model="async_flash_v1.0", stability=70) as client:
            fast = await client.synthesize(
                TEXT,
                voice_id=DEFAULT_VOICE_ID,
                speed_control=2.0,
                output_format=OutputFormat(sample_rate=24000),
            )
            timed = await client.synthesize_with_timestamps(TEXT, voice_id=DEFAULT_VOICE_ID)
            with pytest.raises(ConfigurationError, match="pcm_mulaw"):
                await client.synthesize(TEXT, voice_id=DEFAULT_VOICE_ID, output_format=TELEPHONY)
            with pytest.raises(ConfigurationError, match="speed_control"):
                await client.synthesize(TEXT, voice_id=DEFAULT_VOICE_ID, speed_control=3)
    first, second = (r.body for r in server.log.http)
    assert (first["model_id"], first["speed_control"], first["stability"]) == ("async_flash_v1.0", 2.0, 70)
    assert (second["model_id"], second["stability"]) == ("async_flash_v1.0", 70)
    assert "speed_control" not in second
    assert len(fast) == SIGNAL.samples_for(TEXT)  # 2 bytes a sample, half the samples
    assert [w.word for w in timed.words] == TEXT.split()


@pytest.mark.parametrize("bad", [{"output_format": TELEPHONY}, {"speed_control": 2.1}, {"stability": 101}])
async def test_open_client_checks_its_defaults(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        async with open_client(base_url="http://127.0.0.1:9", **bad):
            pass  # pragma: no cover
