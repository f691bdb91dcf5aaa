"""Whole-file synthesis, word timestamps, voices and status, against the local server."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import httpx
import pytest
import trio

from trio_asyncai import (
    APIError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutputFormat,
    ProtocolError,
    Voice,
    open_client,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer

TIMEOUT = 20


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
            data = await client.synthesize("Compressed.", output_format=OutputFormat(container="mp3"))
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


async def test_list_follows_every_page(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voices = [v async for v in client.voices.list(page_size=1)]
            pages = len([r for r in server.log.http if r.path == "/voices"])
    assert {v.voice_id for v in voices} == {v.voice_id for v in PREDEFINED_VOICES}
    assert all(v.voice_type == "PREDEFINED" for v in voices)
    assert pages >= len(PREDEFINED_VOICES)


async def test_list_filters(server: LocalServer) -> None:
    gender = PREDEFINED_VOICES[0].gender
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            same = [v async for v in client.voices.list(gender=gender)]
            mine = [v async for v in client.voices.list(my_voice=True)]
    assert same and all(v.gender == gender for v in same)
    assert mine == []
    with pytest.raises(ConfigurationError):
        async with open_client(base_url=server.url) as client:
            [v async for v in client.voices.list(page_size=0)]


async def test_get_and_preview(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voice = await client.voices.get(DEFAULT_VOICE_ID)
            preview = await client.voices.preview(DEFAULT_VOICE_ID)
            with pytest.raises(NotFoundError):
                await client.voices.get("nobody")
    assert isinstance(voice, Voice)
    assert voice.voice_id == DEFAULT_VOICE_ID and voice.name
    assert preview[:4] == b"RIFF" and len(preview) > 1000


async def test_clone_update_use_and_delete(server: LocalServer, tmp_path: Path) -> None:
    sample = tmp_path / "me.wav"
    sample.write_bytes(wav_bytes(6.0))
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            voice = await client.voices.clone(sample, name="Me", language="en-US", description="test")
            assert voice.voice_type == "CUSTOM"
            assert voice.name == "Me" and voice.language == "en"
            mine = [v async for v in client.voices.list(my_voice=True)]
            assert [v.voice_id for v in mine] == [voice.voice_id]

            renamed = await client.voices.update(voice.voice_id, name="Still me")
            assert renamed.name == "Still me"
            assert (await client.voices.get(voice.voice_id)).name == "Still me"

            async with open_synthesizer(base_url=server.url, voice_id=voice.voice_id) as synth:
                async with synth.speak("My own voice.") as u:
                    assert await u.read_all()

            await client.voices.delete(voice.voice_id)
            with pytest.raises(NotFoundError):
                await client.voices.get(voice.voice_id)


async def test_clone_refuses_bad_samples(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            with pytest.raises(InvalidRequestError):
                await client.voices.clone(b"not audio at all", name="Bad")
            with pytest.raises(InvalidRequestError) as info:
                await client.voices.clone(wav_bytes(0.2), name="Short")
            assert info.value.code == "SHORT_SPEECH_DURATION"
            with pytest.raises(ConfigurationError):
                await client.voices.clone(b"", name="Empty")
            with pytest.raises(ConfigurationError):
                await client.voices.update(DEFAULT_VOICE_ID)


async def test_predefined_voices_cannot_be_deleted(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            with pytest.raises(APIError):
                await client.voices.delete(DEFAULT_VOICE_ID)
            assert (await client.voices.get(DEFAULT_VOICE_ID)).voice_id == DEFAULT_VOICE_ID


async def test_status(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(base_url=server.url) as client:
            status = await client.status()
    assert status


# ------------------------------------------------ malformed answers (mock)


async def test_malformed_json_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/voices":
            return httpx.Response(200, content=b"{not json")
        if request.url.path == "/text_to_speech/with_timestamps":
            return httpx.Response(200, json={"audio_base64": "AAAA", "alignment": {"words": ["a"]}})
        return httpx.Response(200, json={"voices": "nope"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", voice_id="v", client=http) as client:
            with pytest.raises(ProtocolError):
                [v async for v in client.voices.list()]
            with pytest.raises(ProtocolError):
                await client.synthesize_with_timestamps("Hi.")


async def test_voice_ids_are_escaped_into_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with open_client(base_url="http://mock.invalid", client=http) as client:
            for voice_id in ("a#b", "../status", "mine?x=1"):
                await client.voices.delete(voice_id)
    assert paths == ["/voices/a%23b", "/voices/..%2Fstatus", "/voices/mine%3Fx%3D1"]
