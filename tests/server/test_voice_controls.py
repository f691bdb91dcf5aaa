"""speed_control, stability, pcm_mulaw, the TTS languages and the model ids, as the reference has them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import attrs
import httpx
import numpy as np
import pytest
import trio

from trio_asyncai.server import (
    DEFAULT_VOICE_ID,
    PREDEFINED_VOICES,
    LocalServer,
    PiperEngine,
    SignalEngine,
    VoiceLibrary,
    piper_available,
)
from trio_asyncai.server._audio import encode, mulaw_encode
from trio_asyncai.server._engines import noise_factor
from trio_asyncai.server._requests import KNOWN_MODELS, parse_synthesis_request

from .helpers import (
    SIGNAL_RATE,
    TIMEOUT,
    audio_of,
    connect,
    expect_init_error,
    http_body,
    init_message,
    post,
    s16,
    signal_bytes,
)

ENDPOINTS = ("/text_to_speech/streaming", "/text_to_speech", "/text_to_speech/with_timestamps")
TEXT = "Speak this at any speed."


def body(transcript: str = TEXT, *, encoding: str = "pcm_s16le", **fields: Any) -> dict[str, Any]:
    return http_body(transcript, encoding=encoding) | fields


def error_code(response: httpx.Response) -> str:
    """The error code of an error body, nested under ``detail`` or flat."""
    data = response.json()
    detail = data.get("detail")
    error = detail if isinstance(detail, dict) else data
    assert error["message"]
    code = error["error_code"]
    assert isinstance(code, str)
    return code


async def ws_audio(server: LocalServer, init: dict[str, Any], text: str = TEXT) -> bytes:
    """The audio of one context, up to its final (the one place these tests end a context)."""
    with trio.fail_after(TIMEOUT):
        async with connect(server, init) as client:
            await client.finish(text + " ", "c")
            return audio_of(await client.until_finals("c"), "c")


# ---------------------------------------------------------------- G.711


def g191_ulaw_compress(x: int) -> int:
    """One sample through the ITU-T G.191 reference coder (g711.c, ulaw_compress), as written there."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    out = ((8 - segno) << 4) | (15 - ((absno >> segno) & 0x0F))
    return out | 0x80 if x >= 0 else out


def test_mulaw_codes_known_values() -> None:
    pcm = np.array([0, -1, 1, 32767, -32768, 100, -100, 1000, -1000], dtype=np.int16)
    assert mulaw_encode(pcm) == bytes([0xFF, 0x7F, 0xFF, 0x80, 0x00, 0xF2, 0x73, 0xCE, 0x4E])


def test_mulaw_is_the_g191_reference_coder_for_every_sample() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(pcm) == bytes(g191_ulaw_compress(int(x)) for x in pcm)


def test_mulaw_decodes_back_within_a_step() -> None:
    from trio_asyncai._wav import mulaw_to_pcm16

    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = s16(mulaw_to_pcm16(mulaw_encode(pcm))).astype(np.int32)
    error = np.abs(back - pcm.astype(np.int32))
    # mu-law's steps grow with the magnitude: 1/16 of the segment, at most 1024.
    assert int(error.max()) <= 1024
    small = np.abs(pcm.astype(np.int32)) < 100
    assert int(error[small].max()) <= 4


def test_float_samples_encode_to_mulaw_of_their_s16_rendering() -> None:
    samples = np.sin(np.linspace(0, 20, 4000)).astype(np.float32) * 0.8
    assert encode(samples, "pcm_mulaw") == mulaw_encode(s16(encode(samples, "pcm_s16le")))


# ---------------------------------------------------------------- pcm_mulaw


async def test_streaming_mulaw_is_the_s16_audio_coded(server: LocalServer) -> None:
    s16_response = await post(server, ENDPOINTS[0], body())
    mulaw_response = await post(server, ENDPOINTS[0], body(encoding="pcm_mulaw"))
    assert mulaw_response.status_code == 200
    assert len(mulaw_response.content) == signal_bytes(TEXT, width=1)
    assert mulaw_response.content == mulaw_encode(s16(s16_response.content))


async def test_websocket_mulaw_at_8_khz(server: LocalServer) -> None:
    s16_audio = await ws_audio(server, init_message(sample_rate=8000))
    mulaw_audio = await ws_audio(server, init_message(encoding="pcm_mulaw", sample_rate=8000))
    assert len(mulaw_audio) * 2 == len(s16_audio)
    assert mulaw_audio == mulaw_encode(s16(s16_audio))


@pytest.mark.parametrize("path", ENDPOINTS[1:])
async def test_whole_file_endpoints_refuse_mulaw(server: LocalServer, path: str) -> None:
    response = await post(server, path, body(encoding="pcm_mulaw"))
    assert response.status_code == 400
    assert error_code(response) == "FORMAT_NOT_RECOGNIZED"


# ------------------------------------------------------------- speed, stability


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "fields",
    [
        {"speed_control": 0.69},
        {"speed_control": 2.01},
        {"speed_control": "fast"},
        {"speed_control": True},
        {"stability": -1},
        {"stability": 101},
        {"stability": 50.5},
        {"stability": "50"},
        {"stability": False},
    ],
)
async def test_http_refuses_voice_controls_out_of_range(
    server: LocalServer, path: str, fields: dict[str, Any]
) -> None:
    response = await post(server, path, body(**fields))
    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"


@pytest.mark.parametrize("fields", [{"speed_control": 0.5}, {"stability": 200}])
async def test_websocket_refuses_voice_controls_out_of_range(
    server: LocalServer, fields: dict[str, Any]
) -> None:
    await expect_init_error(server, init_message(**fields), "INVALID_REQUEST")


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_http_accepts_voice_controls_in_range(server: LocalServer, path: str) -> None:
    accepted: list[dict[str, Any]] = [
        {"speed_control": 0.7, "stability": 0},
        {"speed_control": 2, "stability": 100.0},
    ]
    for fields in accepted:
        response = await post(server, path, body(**fields))
        assert response.status_code == 200, response.text
    assert server.log.http[-1].body["stability"] == 100.0  # logged as sent


async def test_speed_shortens_the_signal_on_both_transports(server: LocalServer) -> None:
    normal = await post(server, ENDPOINTS[0], body())
    fast = await post(server, ENDPOINTS[0], body(speed_control=2.0))
    slow = await post(server, ENDPOINTS[0], body(speed_control=0.8))
    assert len(fast.content) == signal_bytes(TEXT) // 2
    assert len(slow.content) > len(normal.content) == signal_bytes(TEXT)
    ws_fast = await ws_audio(server, init_message(speed_control=2.0, stability=30))
    assert len(ws_fast) == len(fast.content)


async def test_only_async_flash_v1_0_honours_speed(server: LocalServer) -> None:
    lengths = {}
    for model in ("async_flash_v1.5", "async_pro_v1.0", "async_flash_v1.0"):
        response = await post(server, ENDPOINTS[0], body(model_id=model, speed_control=2.0, stability=10))
        assert response.status_code == 200
        lengths[model] = len(response.content)
    assert lengths["async_flash_v1.5"] == lengths["async_pro_v1.0"] == signal_bytes(TEXT)
    assert lengths["async_flash_v1.0"] == signal_bytes(TEXT) // 2


@pytest.mark.skipif(not piper_available(), reason="the [voice] extra (piper) is not installed")
def test_piper_speaks_faster_at_speed_2(piper: PiperEngine) -> None:
    engine = piper
    voice = PREDEFINED_VOICES[0]
    fast = attrs.evolve(voice, params=attrs.evolve(voice.params, speed=2.0))
    text = "The quick brown fox jumps over the lazy dog."
    normal_samples = sum(chunk.size for chunk in engine.synthesize(text, voice))
    fast_samples = sum(chunk.size for chunk in engine.synthesize(text, fast))
    # Pauses and rounding keep it from exactly half: clearly shorter is the point.
    assert fast_samples < 0.75 * normal_samples


def test_signal_engine_speed_is_exact() -> None:
    engine = SignalEngine(sample_rate=SIGNAL_RATE)
    assert engine.samples_for("abcd", speed=2.0) * 2 == engine.samples_for("abcd")


# ------------------------------------------------------------ languages, models


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_http_refuses_nl_for_synthesis(server: LocalServer, path: str) -> None:
    response = await post(server, path, body(language="nl"))
    assert response.status_code == 400
    assert error_code(response) == "INVALID_LANGUAGE"


async def test_websocket_refuses_nl(server: LocalServer) -> None:
    await expect_init_error(server, init_message(language="nl-BE"), "INVALID_LANGUAGE")


@pytest.mark.parametrize("model", [*KNOWN_MODELS, "future_v9"])
async def test_every_model_id_is_accepted(server: LocalServer, model: str) -> None:
    assert await ws_audio(server, init_message(model_id=model))
    response = await post(server, ENDPOINTS[1], body(model_id=model))
    assert response.status_code == 200


# ------------------------------------------------------------------ stability


@pytest.mark.parametrize(("model", "expected"), [("async_flash_v1.0", 80), ("async_flash_v1.5", None)])
def test_stability_reaches_the_voice_when_the_model_honours_it(model: str, expected: int | None) -> None:
    body = {
        "model_id": model,
        "transcript": "Hi. ",
        "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
        "output_format": {"container": "raw", "sample_rate": 24000},
        "stability": 80,
    }
    request = parse_synthesis_request(body, VoiceLibrary(), streaming=True)
    assert request.stability == 80
    assert request.voice.params.stability == expected


def test_noise_factor() -> None:
    assert [noise_factor(s) for s in (0, 50, 100)] == [1.5, 1.0, 0.5]


@pytest.mark.skipif(not piper_available(), reason="needs the [voice] extra")
def test_piper_scales_its_noise_by_stability() -> None:
    """What piper is asked for; that the noise scales change what it says is piper's business."""

    class FakePiperVoice:
        def __init__(self) -> None:
            self.config = SimpleNamespace(length_scale=1.0, noise_scale=0.6, noise_w_scale=0.8)
            self.configs: list[Any] = []

        def phonemes_to_ids(self, phonemes: list[str]) -> list[int]:
            return [1] * len(phonemes)

        def phoneme_ids_to_audio(self, ids: list[int], syn_config: Any) -> np.ndarray[Any, Any]:
            self.configs.append(syn_config)
            return np.zeros(10, dtype=np.float32)

    class FakePhonemizer:
        def phonemize(self, text: str, language: str) -> list[list[str]]:
            return [list("hi.")]

    engine = PiperEngine()
    fake = FakePiperVoice()
    engine._voice = fake  # type: ignore[assignment]
    engine._phonemizer = FakePhonemizer()  # type: ignore[assignment]
    voice = PREDEFINED_VOICES[0]
    for stability in (None, 100, 0):
        params = attrs.evolve(voice.params, stability=stability, noise_scale=None, noise_w_scale=None)
        list(engine.synthesize("Hi.", attrs.evolve(voice, params=params)))
    plain, stable, loose = fake.configs
    assert (plain.noise_scale, plain.noise_w_scale) == (None, None)
    assert (stable.noise_scale, stable.noise_w_scale) == pytest.approx((0.3, 0.4))
    assert (loose.noise_scale, loose.noise_w_scale) == pytest.approx((0.9, 1.2))
