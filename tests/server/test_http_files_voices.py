"""Whole-file and timestamped synthesis, the status check and the voice endpoints, with httpx."""

from __future__ import annotations

import base64
import io
import struct
import wave
from typing import Any

import httpx
import pytest
import trio

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer
from trio_asyncai.server._voice_api import MIN_CLONE_SECONDS, parse_form

from .helpers import (
    HEADERS,
    SIGNAL_RATE,
    TIMEOUT,
    aiff,
    audio_of,
    connect,
    flac_header,
    http_body,
    http_error,
    init_message,
    signal_bytes,
    tone_wav,
)


async def request(server: LocalServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", HEADERS)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.request(method, path, **kwargs)


# ------------------------------------------------------------------ synthesis


async def test_whole_file_raw_equals_the_websocket_audio(server: LocalServer) -> None:
    text = "The same bytes either way."
    response = await request(server, "POST", "/text_to_speech", json=http_body(text, sample_rate=16000))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(sample_rate=16000)) as client:
            await client.finish(text, "c")
            streamed = audio_of(await client.until_finals("c"), "c")
    assert response.content == streamed


@pytest.mark.parametrize(("encoding", "tag", "width"), [("pcm_s16le", 1, 2), ("pcm_f32le", 3, 4)])
async def test_whole_file_wav(server: LocalServer, encoding: str, tag: int, width: int) -> None:
    response = await request(
        server, "POST", "/text_to_speech", json=http_body("A wav file.", container="wav", encoding=encoding)
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
        server, "POST", "/text_to_speech", json=http_body("Hi.", container="mp3", bit_rate=320000)
    )
    assert http_error(response, 400)["error_code"] == "FORMAT_NOT_RECOGNIZED"


async def test_timestamps_are_exact_for_the_signal(server: LocalServer) -> None:
    text = 'Every word <break time="500ms"/> gets its time.'
    response = await request(server, "POST", "/text_to_speech/with_timestamps", json=http_body(text))
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
        server, "POST", "/text_to_speech/with_timestamps", json=http_body("Fit the audio.", sample_rate=8000)
    )
    data = response.json()
    duration_ms = len(base64.b64decode(data["audio_base64"])) / (2 * 8000) * 1000
    assert max(data["alignment"]["word_end_times_milliseconds"]) <= duration_ms


async def test_status(server: LocalServer) -> None:
    # The status check needs only the version header.
    response = await request(server, "GET", "/", headers={"version": "v1"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "v1"}
    assert http_error(await request(server, "GET", "/", headers={"version": "v2"}), 404)
    assert (await request(server, "GET", "/status")).status_code == 404


# ------------------------------------------------------------------ voices


async def list_all(server: LocalServer, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Every voice, following ``after``; and the number of pages."""
    seen: list[dict[str, Any]] = []
    pages = 0
    after = None
    while True:
        page = (await request(server, "POST", "/voices", json={**query, "after": after})).json()
        pages += 1
        seen += page["voices"]
        assert isinstance(page["next_cursor"], str)
        if not page["next_cursor"]:
            return seen, pages
        assert page["next_cursor"] == page["voices"][-1]["voice_id"]
        after = page["voices"][-1]["voice_id"]


async def test_list_pages_and_filters(server: LocalServer) -> None:
    seen, pages = await list_all(server, limit=2)
    assert [v["voice_id"] for v in seen] == [v.voice_id for v in PREDEFINED_VOICES]
    assert pages == 2
    assert seen[0] == PREDEFINED_VOICES[0].to_json()
    everything = (await request(server, "POST", "/voices")).json()
    assert len(everything["voices"]) == 3
    assert everything["next_cursor"] == ""
    exact = (await request(server, "POST", "/voices", json={"limit": 3})).json()
    assert exact["next_cursor"] == ""

    async def ids(**query: Any) -> list[str]:
        response = await request(server, "POST", "/voices", json=query)
        assert response.status_code == 200, response.text
        return [v["voice_id"] for v in response.json()["voices"]]

    every = [v.voice_id for v in PREDEFINED_VOICES]
    assert await ids(gender="Male") == every
    assert await ids(gender="Female") == []
    assert await ids(language="en-US") == every
    assert await ids(language="nl") == []  # known to the list filter, spoken by no local voice
    assert await ids(accent="American") == every
    assert await ids(accent="british") == []
    assert await ids(style="calm") == [PREDEFINED_VOICES[1].voice_id]
    assert await ids(model_id="async_flash_v1.5") == every
    assert await ids(my_voice=True) == []
    assert await ids(my_voice=False) == every
    assert await ids(style="calm", after=PREDEFINED_VOICES[1].voice_id) == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": 0}, "INVALID_REQUEST"),
        ({"limit": 101}, "INVALID_REQUEST"),
        ({"limit": "5"}, "INVALID_REQUEST"),
        ({"after": "nobody"}, "INVALID_REQUEST"),
        ({"gender": "male"}, "INVALID_REQUEST"),
        ({"my_voice": "yes"}, "INVALID_REQUEST"),
        ({"language": "xx"}, "INVALID_LANGUAGE"),
        ([1], "INVALID_REQUEST"),
    ],
)
async def test_list_refuses_bad_queries(server: LocalServer, query: object, code: str) -> None:
    response = await request(server, "POST", "/voices", json=query)
    assert http_error(response, 400)["error_code"] == code


async def test_batch(server: LocalServer) -> None:
    first, second = PREDEFINED_VOICES[0], PREDEFINED_VOICES[1]
    ids = [second.voice_id, "nobody", first.voice_id]
    response = await request(server, "POST", "/voices/batch", json={"voice_ids": ids})
    assert response.json() == [second.to_json(), first.to_json()]
    empty = await request(server, "POST", "/voices/batch", json={"voice_ids": []})
    assert empty.json() == []
    for bad in ({"voice_ids": "x"}, {"voice_ids": [1]}, {}, [1]):
        assert http_error(await request(server, "POST", "/voices/batch", json=bad), 400)


async def test_get_preview_and_unknown(server: LocalServer) -> None:
    voice = (await request(server, "GET", f"/voices/{DEFAULT_VOICE_ID}")).json()
    assert voice == PREDEFINED_VOICES[0].to_json()
    signed = (await request(server, "GET", f"/voices/preview/{DEFAULT_VOICE_ID}")).json()
    assert set(signed) == {"signed_url"}
    url = signed["signed_url"]
    assert url.startswith(server.url + "/signed/voice-previews/")
    preview = await request(server, "GET", url, headers={})
    assert preview.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(preview.content), "rb") as w:
        assert w.getnframes() > 0
    missing = http_error(await request(server, "GET", "/voices/nobody"), 404)
    assert (missing["error_code"], missing["extra"]) == ("VOICE_NOT_FOUND", {"voice_id": "nobody"})
    no_preview = http_error(await request(server, "GET", "/voices/preview/nobody"), 404)
    assert (no_preview["error_code"], no_preview["extra"]) == (
        "VOICE_PREVIEW_NOT_FOUND",
        {"voice_id": "nobody"},
    )


async def test_a_signed_url_needs_its_signature(server: LocalServer) -> None:
    url = (await request(server, "GET", f"/voices/preview/{DEFAULT_VOICE_ID}")).json()["signed_url"]
    tampered = url.replace(DEFAULT_VOICE_ID, PREDEFINED_VOICES[1].voice_id)
    unsigned = url.split("?")[0]
    for bad in (tampered, unsigned, url.replace("expires=", "expires=1")):
        response = await request(server, "GET", bad, headers={})
        assert response.status_code == 403
        assert b"AccessDenied" in response.content


async def test_predefined_voices_are_read_only(server: LocalServer) -> None:
    update = await request(server, "PUT", f"/voices/{DEFAULT_VOICE_ID}", json={"name": "X"})
    delete = await request(server, "DELETE", f"/voices/{DEFAULT_VOICE_ID}")
    assert http_error(update, 400) and http_error(delete, 400)
    assert server.voices.get(DEFAULT_VOICE_ID) == PREDEFINED_VOICES[0]


async def test_clone_update_speak_delete(server: LocalServer) -> None:
    response = await request(
        server,
        "POST",
        "/voices/clone",
        data={"name": "Mine", "gender": "Female", "style": "calm,warm", "enhance": "false"},
        files={"audio": ("me.wav", tone_wav(3.0), "audio/wav")},
    )
    assert response.status_code == 200
    created = response.json()
    assert created == {"id": created["id"], "name": "Mine", "description": None, "language": "en"}
    voice_id = created["id"]
    assert server.log.http[-1].body["audio"] == {"audio": ("me.wav", len(tone_wav(3.0)))}
    voice = (await request(server, "GET", f"/voices/{voice_id}")).json()
    assert (voice["voice_type"], voice["gender"], voice["style"]) == ("CUSTOM", "Female", "calm,warm")

    mine = (await request(server, "POST", "/voices", json={"my_voice": True})).json()["voices"]
    assert [v["voice_id"] for v in mine] == [voice_id]
    warm = (await request(server, "POST", "/voices", json={"style": "warm"})).json()["voices"]
    assert [v["voice_id"] for v in warm] == [voice_id]
    updated = await request(server, "PUT", f"/voices/{voice_id}", json={"name": "Renamed", "accent": "Irish"})
    assert (updated.status_code, updated.content) == (204, b"")
    voice = (await request(server, "GET", f"/voices/{voice_id}")).json()
    assert (voice["name"], voice["accent"]) == ("Renamed", "Irish")
    assert http_error(await request(server, "PUT", f"/voices/{voice_id}", json={"name": ""}), 400)
    for field in ("language", "voice_id", "voice_type"):
        refused = http_error(await request(server, "PUT", f"/voices/{voice_id}", json={field: "x"}), 400)
        assert refused == {
            "error_code": "VOICE_FIELD_UPDATE_NOT_ALLOWED",
            "message": refused["message"],
            "extra": {"field": field},
        }

    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(voice_id=voice_id)) as client:
            await client.finish("My voice. ", "c")
            assert audio_of(await client.until_finals("c"), "c")

    deleted = await request(server, "DELETE", f"/voices/{voice_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await request(server, "GET", f"/voices/{voice_id}")).status_code == 404


@pytest.mark.parametrize(
    ("sample", "status", "code"),
    [
        (b"definitely not audio", 400, "FORMAT_NOT_RECOGNIZED"),
        (tone_wav(MIN_CLONE_SECONDS / 4), 400, "SHORT_SPEECH_DURATION"),
        (tone_wav(MIN_CLONE_SECONDS - 0.1), 400, "SHORT_SPEECH_DURATION"),
        (tone_wav(3.0, amplitude=0), 400, "BAD_SPEECH_QUALITY"),
        (b"RIFF\x00\x00\x00\x00WAVEbroken", 400, "FORMAT_NOT_RECOGNIZED"),
        (b"ID3" + bytes(100), 400, "SHORT_SPEECH_DURATION"),
        (flac_header(2.0), 400, "SHORT_SPEECH_DURATION"),
        (b"fLaC" + bytes(10), 400, "FORMAT_NOT_RECOGNIZED"),
        (aiff(1.0), 400, "SHORT_SPEECH_DURATION"),
        (b"FORM\x00\x00\x00\x04AIFF", 400, "FORMAT_NOT_RECOGNIZED"),
        (b"RIFF" + bytes(11 * 1024 * 1024), 413, "FILE_TOO_LARGE"),
    ],
)
async def test_clone_checks_the_sample(server: LocalServer, sample: bytes, status: int, code: str) -> None:
    response = await request(
        server, "POST", "/voices/clone", data={"name": "X"}, files={"audio": ("x.wav", sample, "audio/wav")}
    )
    assert http_error(response, status)["error_code"] == code
    assert len(server.voices) == 3


@pytest.mark.parametrize(
    ("name", "sample", "mime"),
    [
        ("a.mp3", b"ID3" + bytes(30_000), "audio/mpeg"),
        ("a.flac", flac_header(3.5), "audio/flac"),
        ("a.aiff", aiff(3.5), "audio/aiff"),
        ("a.wav", tone_wav(MIN_CLONE_SECONDS), "audio/wav"),
    ],
)
async def test_clone_takes_each_format(server: LocalServer, name: str, sample: bytes, mime: str) -> None:
    ok = await request(
        server, "POST", "/voices/clone", data={"name": "M"}, files={"audio": (name, sample, mime)}
    )
    assert ok.status_code == 200, ok.text


async def test_clone_needs_a_name_a_file_and_known_values(server: LocalServer) -> None:
    mp3 = b"ID3" + bytes(30_000)

    async def clone(**kwargs: Any) -> dict[str, Any]:
        return http_error(await request(server, "POST", "/voices/clone", **kwargs), 400)

    assert (await clone(files={"audio": ("a.mp3", mp3)}))["error_code"] == "INVALID_REQUEST"
    assert (await clone(data={"name": "M"}, files={"other": ("a", b"x")}))["error_code"] == "INVALID_REQUEST"
    assert (await clone(json={"name": "M"}))["error_code"] == "INVALID_REQUEST"
    for field in ({"gender": "male"}, {"enhance": "maybe"}):
        assert (await clone(data={"name": "M", **field}, files={"audio": ("a.mp3", mp3)}))["error_code"] == (
            "INVALID_REQUEST"
        )
    assert len(server.voices) == 3


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
