"""Whole-file and timestamped synthesis, the status check and the voice endpoints, with httpx."""

from __future__ import annotations

import base64
import io
import struct
import wave
from typing import Any

import httpx
import numpy as np
import pytest
import trio

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer
from trio_asyncai.server._voice_api import MIN_CLONE_SECONDS, parse_form

from .helpers import API_KEY, SIGNAL_RATE, TIMEOUT, audio_of, connect, init_message, signal_bytes

HEADERS = {"x-api-key": API_KEY, "version": "v1"}


def body(transcript: str, **output_format: Any) -> dict[str, Any]:
    fmt: dict[str, Any] = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SIGNAL_RATE}
    fmt.update(output_format)
    return {
        "model_id": "async_flash_v1.0",
        "transcript": transcript,
        "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
        "output_format": fmt,
    }


async def request(server: LocalServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", HEADERS)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.request(method, path, **kwargs)


def tone_wav(seconds: float, *, amplitude: int = 8000, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * np.sin(2 * np.pi * 200 * t)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


# ------------------------------------------------------------------ synthesis


async def test_whole_file_raw_equals_the_websocket_audio(server: LocalServer) -> None:
    text = "The same bytes either way."
    response = await request(server, "POST", "/text_to_speech", json=body(text, sample_rate=16000))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(sample_rate=16000)) as client:
            await client.text(text, "c", force=True)
            streamed = audio_of(await client.until_finals("c"), "c")
    assert response.content == streamed


@pytest.mark.parametrize(("encoding", "tag", "width"), [("pcm_s16le", 1, 2), ("pcm_f32le", 3, 4)])
async def test_whole_file_wav(server: LocalServer, encoding: str, tag: int, width: int) -> None:
    response = await request(
        server, "POST", "/text_to_speech", json=body("A wav file.", container="wav", encoding=encoding)
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    data = response.content
    (
        riff,
        size,
        wave_id,
        fmt_id,
        fmt_size,
        fmt_tag,
        channels,
        rate,
        byte_rate,
        align,
        bits,
        data_id,
        data_size,
    ) = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    assert (riff, wave_id, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, fmt_tag, channels, rate, align, bits) == (16, tag, 1, SIGNAL_RATE, width, 8 * width)
    assert byte_rate == SIGNAL_RATE * width
    assert size == len(data) - 8
    assert data_size == len(data) - 44 == signal_bytes("A wav file.", width=width)
    if encoding == "pcm_s16le":
        with wave.open(io.BytesIO(data), "rb") as w:
            assert w.getnframes() * 2 == data_size


async def test_whole_file_mp3_lame_cannot_make_is_a_clear_400(server: LocalServer) -> None:
    # LAME makes at most 160 kbit/s at 24000 Hz (more in tests/server/test_mp3.py).
    response = await request(
        server, "POST", "/text_to_speech", json=body("Hi.", container="mp3", bit_rate=320000)
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "FORMAT_NOT_RECOGNIZED"


async def test_timestamps_are_exact_for_the_signal(server: LocalServer) -> None:
    text = 'Every word <break time="500ms"/> gets its time.'
    response = await request(server, "POST", "/text_to_speech/with_timestamps", json=body(text))
    assert response.status_code == 200
    data = response.json()
    audio = base64.b64decode(data["audio_base64"])
    alignment = data["alignment"]
    assert alignment["words"] == ["Every", "word", "gets", "its", "time."]
    starts = alignment["word_start_times_milliseconds"]
    ends = alignment["word_end_times_milliseconds"]
    # 60 ms per character, a space between words, 500 ms of silence at the break.
    assert starts == pytest.approx([0, 360, 1100, 1400, 1640])
    assert ends == pytest.approx([300, 600, 1340, 1580, 1940])
    assert len(audio) / (2 * SIGNAL_RATE) == pytest.approx(1.94)


async def test_timestamps_fit_resampled_audio(server: LocalServer) -> None:
    response = await request(
        server, "POST", "/text_to_speech/with_timestamps", json=body("Fit the audio.", sample_rate=8000)
    )
    data = response.json()
    duration_ms = len(base64.b64decode(data["audio_base64"])) / (2 * 8000) * 1000
    assert max(data["alignment"]["word_end_times_milliseconds"]) <= duration_ms


async def test_status(server: LocalServer) -> None:
    response = await request(server, "GET", "/status")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["engine"] == "signal"
    refused = await request(server, "GET", "/status", headers={"version": "v1"})
    assert refused.status_code == 401


# ------------------------------------------------------------------ voices


async def test_list_pages_and_filters(server: LocalServer) -> None:
    seen = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            query["cursor"] = cursor
        page = (await request(server, "POST", "/voices", json=query)).json()
        seen += page["voices"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [v["voice_id"] for v in seen] == [v.voice_id for v in PREDEFINED_VOICES]
    assert seen[0] == PREDEFINED_VOICES[0].to_json()
    everything = (await request(server, "POST", "/voices")).json()
    assert len(everything["voices"]) == 3
    assert everything["next_cursor"] is None
    males = (await request(server, "POST", "/voices", json={"gender": "MALE"})).json()["voices"]
    assert len(males) == 3
    mine = (await request(server, "POST", "/voices", json={"my_voice": True})).json()["voices"]
    assert mine == []


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"limit": "5"}, {"cursor": "x"}, [1]])
async def test_list_refuses_bad_queries(server: LocalServer, query: object) -> None:
    response = await request(server, "POST", "/voices", json=query)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_REQUEST"


async def test_get_preview_and_unknown(server: LocalServer) -> None:
    voice = (await request(server, "GET", f"/voices/{DEFAULT_VOICE_ID}")).json()
    assert voice == PREDEFINED_VOICES[0].to_json()
    preview = await request(server, "GET", f"/voices/{DEFAULT_VOICE_ID}/preview")
    assert preview.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(preview.content), "rb") as w:
        assert w.getnframes() > 0
    for path in ("/voices/nobody", "/voices/nobody/preview"):
        missing = await request(server, "GET", path)
        assert missing.status_code == 404
        assert missing.json()["error_code"] == "VOICE_NOT_FOUND"


async def test_predefined_voices_are_read_only(server: LocalServer) -> None:
    update = await request(server, "PUT", f"/voices/{DEFAULT_VOICE_ID}", json={"name": "X"})
    delete = await request(server, "DELETE", f"/voices/{DEFAULT_VOICE_ID}")
    assert update.status_code == delete.status_code == 400
    assert server.voices.get(DEFAULT_VOICE_ID) == PREDEFINED_VOICES[0]


async def test_clone_update_speak_delete(server: LocalServer) -> None:
    response = await request(
        server,
        "POST",
        "/voices/clone",
        data={"name": "Mine", "language": "de-DE", "gender": "female", "enhance": "false"},
        files={"audio": ("me.wav", tone_wav(3.0), "audio/wav")},
    )
    assert response.status_code == 200
    voice = response.json()
    assert voice["voice_type"] == "CUSTOM"
    assert (voice["name"], voice["language"], voice["gender"]) == ("Mine", "de", "female")
    voice_id = voice["voice_id"]
    assert server.log.http[-1].body["audio"] == {"audio": ("me.wav", len(tone_wav(3.0)))}

    mine = (await request(server, "POST", "/voices", json={"my_voice": True})).json()["voices"]
    assert [v["voice_id"] for v in mine] == [voice_id]
    updated = (await request(server, "PUT", f"/voices/{voice_id}", json={"name": "Renamed"})).json()
    assert updated["name"] == "Renamed"
    bad_update = await request(server, "PUT", f"/voices/{voice_id}", json={"name": ""})
    assert bad_update.status_code == 400

    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(voice_id=voice_id)) as client:
            await client.text("My voice. ", "c", force=True)
            assert audio_of(await client.until_finals("c"), "c")

    assert (await request(server, "DELETE", f"/voices/{voice_id}")).status_code == 200
    assert (await request(server, "GET", f"/voices/{voice_id}")).status_code == 404


@pytest.mark.parametrize(
    ("sample", "status", "code"),
    [
        (b"definitely not audio", 400, "FORMAT_NOT_RECOGNIZED"),
        (tone_wav(MIN_CLONE_SECONDS / 4), 400, "SHORT_SPEECH_DURATION"),
        (tone_wav(3.0, amplitude=0), 400, "BAD_SPEECH_QUALITY"),
        (b"RIFF\x00\x00\x00\x00WAVEbroken", 400, "FORMAT_NOT_RECOGNIZED"),
        (b"ID3" + bytes(100), 400, "SHORT_SPEECH_DURATION"),
        (b"RIFF" + bytes(11 * 1024 * 1024), 413, "FILE_TOO_LARGE"),
    ],
)
async def test_clone_checks_the_sample(server: LocalServer, sample: bytes, status: int, code: str) -> None:
    response = await request(
        server, "POST", "/voices/clone", data={"name": "X"}, files={"audio": ("x.wav", sample, "audio/wav")}
    )
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert len(server.voices) == 3


async def test_clone_accepts_mp3_and_needs_a_name_and_a_file(server: LocalServer) -> None:
    mp3 = b"ID3" + bytes(20_000)
    ok = await request(server, "POST", "/voices/clone", data={"name": "M"}, files={"audio": ("a.mp3", mp3)})
    assert ok.status_code == 200
    nameless = await request(server, "POST", "/voices/clone", files={"audio": ("a.mp3", mp3)})
    assert nameless.json()["error_code"] == "INVALID_REQUEST"
    fileless = await request(
        server, "POST", "/voices/clone", data={"name": "M"}, files={"other": ("a", b"x")}
    )
    assert fileless.json()["error_code"] == "INVALID_REQUEST"
    not_multipart = await request(server, "POST", "/voices/clone", json={"name": "M"})
    assert not_multipart.json()["error_code"] == "INVALID_REQUEST"


def test_parse_form() -> None:
    boundary = "XyZ"
    raw = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="name"\r\n\r\n'
            "Zoë\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + b"\x00\x01\r\n\xff"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    fields, files = parse_form(f"multipart/form-data; boundary={boundary}", raw)
    assert fields == {"name": "Zoë"}
    assert files == {"audio": ("a.wav", b"\x00\x01\r\n\xff")}
