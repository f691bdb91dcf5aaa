"""mp3 output (LAME, through lameenc) on every synthesis endpoint, and through the SDK."""

from __future__ import annotations

import base64
import sys
from typing import Any, Final, NamedTuple

import httpx
import numpy as np
import pytest
import trio

import trio_asyncai
from trio_asyncai import AudioChunk, InvalidRequestError
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, RequestError
from trio_asyncai.server._mp3 import MP3_BIT_RATES, MP3_UNAVAILABLE, Mp3Encoder, split_frames
from trio_asyncai.server._requests import parse_output_format

from .helpers import (
    API_KEY,
    HEADERS,
    SIGNAL_RATE,
    TIMEOUT,
    GatedEngine,
    audio_of,
    connect,
    expect_init_error,
    http_body,
    http_error,
    init_message,
    post,
)

LONG_TEXT: Final = (
    "This is the first sentence of a longer text. Here comes a second one, a little longer. "
    "And a third, so that there is plenty of audio to stream in many pieces."
)

# ------------------------------------------------------------------ frames

_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_KBPS_V1: Final = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_KBPS_V2: Final = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


class Frame(NamedTuple):
    sample_rate: int
    bit_rate: int
    samples: int
    channels: int


def frames(data: bytes) -> list[Frame]:
    """Parse ``data`` as MPEG Layer III frames; it must be whole frames, nothing else."""
    assert data, "no audio"
    assert data[:3] != b"ID3", "no ID3 tag expected from LAME"
    found: list[Frame] = []
    offset = 0
    while offset < len(data):
        assert offset + 4 <= len(data), f"a partial frame header at byte {offset}"
        header = int.from_bytes(data[offset : offset + 4], "big")
        assert header >> 21 == 0x7FF, f"no frame sync (0xFFE) at byte {offset}: {header:08x}"
        version = (header >> 19) & 3
        assert version in _RATES, f"reserved MPEG version at byte {offset}"
        assert (header >> 17) & 3 == 1, "not Layer III"
        kbps = (_KBPS_V1 if version == 3 else _KBPS_V2)[(header >> 12) & 15]
        rate = _RATES[version][(header >> 10) & 3]
        padding = (header >> 9) & 1
        mono = (header >> 6) & 3 == 3
        length = (144000 if version == 3 else 72000) * kbps // rate + padding
        found.append(Frame(rate, 1000 * kbps, 1152 if version == 3 else 576, 1 if mono else 2))
        offset += length
    assert offset == len(data), "the last frame is cut short"
    return found


def check_mp3(data: bytes, sample_rate: int, bit_rate: int, *, min_seconds: float = 0.0) -> list[Frame]:
    """``data`` is a mono constant bit rate mp3 at ``sample_rate`` and ``bit_rate``."""
    parsed = frames(data)
    assert {f.sample_rate for f in parsed} == {sample_rate}
    assert {f.bit_rate for f in parsed} == {bit_rate}
    assert {f.channels for f in parsed} == {1}
    assert sum(f.samples for f in parsed) >= min_seconds * sample_rate
    return parsed


def signal_seconds(text: str) -> float:
    """How long the signal engine speaks ``text`` (0.06 s a character)."""
    return len(" ".join(text.split())) * 0.06


# ------------------------------------------------------------------ helpers


def body(transcript: str, **output_format: Any) -> dict[str, Any]:
    """A synthesis request for mp3 (no encoding) unless ``output_format`` says otherwise."""
    return http_body(transcript, **{"container": "mp3", "encoding": None, **output_format})


def mp3_init(**output_format: Any) -> dict[str, Any]:
    message = init_message()
    message["output_format"] = {"container": "mp3", "sample_rate": SIGNAL_RATE, **output_format}
    return message


def assert_refused(response: httpx.Response, *words: str) -> None:
    error = http_error(response, 400)
    assert error["error_code"] == "FORMAT_NOT_RECOGNIZED"
    for word in words:
        assert word in error["message"]


def lameenc_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import lameenc`` fail, as without the package."""
    monkeypatch.setitem(sys.modules, "lameenc", None)


# ------------------------------------------------------------------ validation


HIGHEST_BIT_RATES: Final = [
    *((rate, 64000) for rate in (8000, 11025, 12000)),
    *((rate, 160000) for rate in (16000, 22050, 24000)),
    *((rate, 320000) for rate in (32000, 44100, 48000)),
]


@pytest.mark.parametrize(("sample_rate", "highest"), HIGHEST_BIT_RATES)
def test_rates_and_their_bit_rates(sample_rate: int, highest: int) -> None:
    allowed = MP3_BIT_RATES[sample_rate]
    assert allowed[0] == 32000
    assert allowed[-1] == highest
    for bit_rate in allowed:
        fmt = parse_output_format(
            {"container": "mp3", "sample_rate": sample_rate, "bit_rate": bit_rate}, streaming=True
        )
        assert (fmt.container, fmt.sample_rate, fmt.bit_rate) == ("mp3", sample_rate, bit_rate)
    # Without a bit_rate: the API's 192000, or the highest the rate allows.
    fmt = parse_output_format({"container": "mp3", "sample_rate": sample_rate}, streaming=False)
    assert fmt.bit_rate == min(192000, highest)


def test_mp3_ignores_the_encoding() -> None:
    fmt = parse_output_format({"container": "mp3", "encoding": "mp3", "sample_rate": 44100}, streaming=True)
    assert fmt.container == "mp3"
    assert fmt.bit_rate == 192000


@pytest.mark.parametrize(
    ("output_format", "words"),
    [
        ({"sample_rate": 10000}, ["sample_rate", "8000", "48000", "10000"]),
        ({"sample_rate": 44000, "bit_rate": 128000}, ["sample_rate", "44000"]),
        ({"sample_rate": 44100, "bit_rate": 100000}, ["44100 Hz", "96000", "112000", "100000"]),
        ({"sample_rate": 44100, "bit_rate": 128001}, ["128001"]),
        ({"sample_rate": 24000, "bit_rate": 192000}, ["24000 Hz", "160000", "192000"]),
        ({"sample_rate": 24000, "bit_rate": 320000}, ["320000"]),
        ({"sample_rate": 8000, "bit_rate": 80000}, ["8000 Hz", "64000", "80000"]),
        ({"sample_rate": 44100, "bit_rate": 16000}, ["from 32000 to 320000"]),
        ({"sample_rate": 44100, "bit_rate": 384000}, ["from 32000 to 320000"]),
    ],
)
def test_what_lame_cannot_make_is_refused(output_format: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(RequestError) as refused:
        parse_output_format({"container": "mp3", **output_format}, streaming=False)
    assert refused.value.code == "FORMAT_NOT_RECOGNIZED"
    assert refused.value.status == 400
    for word in words:
        assert word in refused.value.message


def test_without_lameenc_mp3_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    lameenc_missing(monkeypatch)
    with pytest.raises(RequestError) as refused:
        parse_output_format({"container": "mp3", "sample_rate": 44100}, streaming=True)
    assert refused.value.code == "FORMAT_NOT_RECOGNIZED"
    assert refused.value.message == MP3_UNAVAILABLE
    assert "pip install 'trio-asyncai[server]'" in MP3_UNAVAILABLE
    # Other formats do not need it.
    assert parse_output_format({"container": "raw"}, streaming=True).container == "raw"


# ------------------------------------------------------------------ the encoder


def tone(seconds: float, rate: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)


def test_encoder_gives_whole_frames_and_flushes_the_rest() -> None:
    encoder = Mp3Encoder(24000, 64000)
    pending = [encoder.pending]
    assert encoder.flush() == b""
    pieces = [encoder.encode(tone(0.013, 24000)) for _ in range(40)]
    pending.append(encoder.pending)
    for piece in pieces:
        if piece:
            frames(piece)
    rest = encoder.flush()
    pending.append(encoder.pending)
    assert rest
    assert pending == [False, True, False]
    parsed = check_mp3(b"".join(pieces) + rest, 24000, 64000, min_seconds=40 * 0.013)
    # LAME's delay and padding add less than three frames.
    assert sum(f.samples for f in parsed) <= 40 * 312 + 3 * 576


def test_encoder_starts_a_new_stream_after_a_flush() -> None:
    encoder = Mp3Encoder(44100, 128000)
    first = encoder.encode(tone(0.5, 44100)) + encoder.flush()
    second = encoder.encode(tone(0.5, 44100)) + encoder.flush()
    check_mp3(first, 44100, 128000, min_seconds=0.5)
    assert second == first  # the same samples from a fresh stream: the same bytes
    assert encoder.encode(np.zeros(0, dtype=np.float32)) == b""
    assert not encoder.pending


def test_encoder_output_does_not_depend_on_how_samples_are_cut() -> None:
    samples = tone(1.0, 16000)
    whole = Mp3Encoder(16000, 32000)
    pieces = Mp3Encoder(16000, 32000)
    one = whole.encode(samples) + whole.flush()
    many = b"".join(pieces.encode(samples[i : i + 777]) for i in range(0, samples.size, 777))
    assert many + pieces.flush() == one


def test_split_frames_keeps_frames_whole() -> None:
    encoder = Mp3Encoder(24000, 48000)
    data = encoder.encode(tone(1.0, 24000)) + encoder.flush()
    chunks = list(split_frames(data, 3 * 576))
    assert b"".join(chunks) == data
    assert len(chunks) > 1
    for chunk in chunks:
        assert 1 <= len(frames(chunk)) <= 3
    # A frame longer than the chunk still goes out, alone.
    assert [len(frames(chunk)) for chunk in split_frames(data, 1)] == [1] * len(frames(data))


# ------------------------------------------------------------------ POST /text_to_speech


@pytest.mark.parametrize(
    ("sample_rate", "bit_rate"),
    [
        (8000, 32000),
        (12000, 64000),
        (16000, 160000),
        (22050, 96000),
        (24000, 144000),
        (32000, 40000),
        (44100, 192000),
        (48000, 320000),
    ],
)
async def test_whole_file_is_mp3(server: LocalServer, sample_rate: int, bit_rate: int) -> None:
    text = "A whole mp3 file."
    response = await post(server, "/text_to_speech", body(text, sample_rate=sample_rate, bit_rate=bit_rate))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.content[0] == 0xFF
    assert response.content[1] & 0xE0 == 0xE0
    check_mp3(response.content, sample_rate, bit_rate, min_seconds=signal_seconds(text))


async def test_whole_file_default_bit_rate(server: LocalServer) -> None:
    response = await post(server, "/text_to_speech", body("Default.", sample_rate=44100))
    assert response.status_code == 200
    check_mp3(response.content, 44100, 192000)
    response = await post(server, "/text_to_speech", body("Default.", sample_rate=24000))
    check_mp3(response.content, 24000, 160000)


async def test_bit_rate_is_honoured(server: LocalServer) -> None:
    text = "The same words, at two bit rates, make files of two sizes."
    low = await post(server, "/text_to_speech", body(text, sample_rate=44100, bit_rate=32000))
    high = await post(server, "/text_to_speech", body(text, sample_rate=44100, bit_rate=320000))
    check_mp3(low.content, 44100, 32000)
    check_mp3(high.content, 44100, 320000)
    # Constant bit rate: ten times the bit rate, ten times the bytes (padding aside).
    assert len(high.content) / len(low.content) == pytest.approx(10.0, rel=0.02)


@pytest.mark.parametrize(
    "path", ["/text_to_speech", "/text_to_speech/streaming", "/text_to_speech/with_timestamps"]
)
@pytest.mark.parametrize(
    ("output_format", "words"),
    [
        ({"sample_rate": 44100, "bit_rate": 100000}, ["bit_rate", "100000"]),
        ({"sample_rate": 24000, "bit_rate": 320000}, ["24000 Hz", "160000"]),
        ({"sample_rate": 30000}, ["sample_rate", "30000"]),
    ],
)
async def test_bad_mp3_formats_are_refused(
    server: LocalServer, path: str, output_format: dict[str, Any], words: list[str]
) -> None:
    response = await post(server, path, body("Refused.", **output_format))
    assert_refused(response, *words)
    assert server.log.http[-1].status == 400


@pytest.mark.parametrize(
    "path", ["/text_to_speech", "/text_to_speech/streaming", "/text_to_speech/with_timestamps"]
)
async def test_without_lameenc_http_is_a_clear_400(
    server: LocalServer, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lameenc_missing(monkeypatch)
    response = await post(server, path, body("No encoder.", sample_rate=44100))
    assert_refused(response, "lameenc", "pip install 'trio-asyncai[server]'")
    raw = await post(server, path, body("Raw still works.", container="raw"))
    assert raw.status_code == 200


# ------------------------------------------------------------------ POST /text_to_speech/streaming


async def test_streaming_mp3_is_the_whole_file_in_pieces(server: LocalServer) -> None:
    fmt = {"sample_rate": 22050, "bit_rate": 64000}
    streamed = await post(server, "/text_to_speech/streaming", body(LONG_TEXT, **fmt))
    whole = await post(server, "/text_to_speech", body(LONG_TEXT, **fmt))
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "application/octet-stream"
    assert streamed.headers["x-container"] == "mp3"
    assert streamed.headers["x-bit-rate"] == "64000"
    assert "content-length" not in streamed.headers
    check_mp3(streamed.content, 22050, 64000, min_seconds=signal_seconds(LONG_TEXT))
    assert streamed.content == whole.content


async def test_streaming_mp3_arrives_while_it_is_made(gated_server: LocalServer, gate: GatedEngine) -> None:
    text = "hold " + LONG_TEXT
    with trio.fail_after(TIMEOUT):
        async with (
            httpx.AsyncClient(base_url=gated_server.url) as http,
            http.stream("POST", "/text_to_speech/streaming", json=body(text), headers=HEADERS) as response,
        ):
            assert response.status_code == 200
            chunks = response.aiter_raw()
            first = await chunks.__anext__()
            # The engine is still held after its first piece: these frames were streamed.
            assert not gate.release.is_set()
            gate.release.set()
            rest = b"".join([chunk async for chunk in chunks])
    assert rest
    assert first[0] == 0xFF
    assert first[1] & 0xE0 == 0xE0
    check_mp3(first + rest, SIGNAL_RATE, 160000, min_seconds=signal_seconds(text))


# ------------------------------------------------------------------ POST /text_to_speech/with_timestamps


async def test_timestamps_with_mp3(server: LocalServer) -> None:
    text = 'Words <break time="300ms"/> and their times.'
    mp3 = await post(server, "/text_to_speech/with_timestamps", body(text, bit_rate=48000))
    raw = await post(server, "/text_to_speech/with_timestamps", body(text, container="raw"))
    assert mp3.status_code == 200, mp3.text
    result = mp3.json()
    audio = base64.b64decode(result["audio_base64"])
    check_mp3(
        audio,
        SIGNAL_RATE,
        48000,
        min_seconds=signal_seconds("Words") + 0.3 + signal_seconds("and their times."),
    )
    assert result["alignment"] == raw.json()["alignment"]
    assert result["alignment"]["words"] == ["Words", "and", "their", "times."]


# ------------------------------------------------------------------ the WebSocket


async def test_websocket_streams_mp3_frames(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, mp3_init(bit_rate=96000)) as client:
            await client.finish(LONG_TEXT)
            messages = await client.until_finals(None)
    audio_messages = [m for m in messages if not m["final"]]
    assert len(audio_messages) > 1
    assert messages[-1] == {"audio": "", "final": True}
    for message in audio_messages:
        assert "context_id" not in message
        frames(base64.b64decode(message["audio"]))  # every message: whole frames
    check_mp3(audio_of(messages, None), SIGNAL_RATE, 96000, min_seconds=signal_seconds(LONG_TEXT))


async def test_websocket_mp3_flushes_at_each_final(server: LocalServer) -> None:
    first, second = "The first sentence comes alone. ", "Then a second, forced."
    with trio.fail_after(TIMEOUT):
        async with connect(server, mp3_init(sample_rate=16000, bit_rate=32000)) as client:
            await client.text(first, "c")
            # A complete sentence is synthesized without a force: frames come...
            early = await client.receive()
            assert early["context_id"] == "c"
            assert not early["final"]
            frames(base64.b64decode(early["audio"]))
            # ...and the force flushes what LAME held back, before the final.
            await client.finish("", "c")
            messages = [early, *await client.until_finals("c")]
            one = audio_of(messages, "c")
            # The next text is a new stream, flushed at its own final.
            await client.finish(second, "c")
            messages = await client.until_finals("c")
            two = audio_of(messages, "c")
    check_mp3(one, 16000, 32000, min_seconds=signal_seconds(first))
    check_mp3(two, 16000, 32000, min_seconds=signal_seconds(second))
    # Each stream holds no more than LAME's delay and padding beyond its audio.
    assert sum(f.samples for f in frames(one)) <= signal_seconds(first) * 16000 + 3 * 576
    record = server.log.connections[0]
    # Each finish is a force and a close: both flush (the close's job has no text left).
    assert record.jobs == [
        ("c", first, False),
        ("c", "", True),
        ("c", "", True),
        ("c", second, True),
        ("c", "", True),
    ]
    assert record.finals_sent == 2


async def test_websocket_mp3_contexts_are_separate_streams(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, mp3_init(sample_rate=48000, bit_rate=320000)) as client:
            await client.finish("Context a speaks. ", "a")
            await client.finish("And context b speaks too. ", "b")
            messages = await client.until_finals("a", "b")
            await client.close_context("a")
            await client.close_context("b")
    check_mp3(audio_of(messages, "a"), 48000, 320000, min_seconds=signal_seconds("Context a speaks."))
    check_mp3(audio_of(messages, "b"), 48000, 320000, min_seconds=signal_seconds("And context b speaks too."))


async def test_websocket_late_audio_fault_is_mp3_too(server: LocalServer) -> None:
    server.faults.late_audio_after_close = True
    with trio.fail_after(TIMEOUT):
        async with connect(server, mp3_init(sample_rate=44100)) as client:
            await client.finish("Hi. ", "x")
            await client.until_finals("x")
            await client.close_context("x")
            late = await client.receive()
            assert await client.receive() == {"audio": "", "final": True, "context_id": "x"}
    check_mp3(base64.b64decode(late["audio"]), 44100, 192000)


@pytest.mark.parametrize(
    ("output_format", "word"),
    [({"bit_rate": 192000}, "160000"), ({"bit_rate": 100000}, "100000"), ({"sample_rate": 44000}, "44000")],
)
async def test_websocket_refuses_what_lame_cannot_make(
    server: LocalServer, output_format: dict[str, Any], word: str
) -> None:
    error = await expect_init_error(server, mp3_init(**output_format), "FORMAT_NOT_RECOGNIZED")
    assert word in error["message"]


async def test_websocket_without_lameenc(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lameenc_missing(monkeypatch)
    error = await expect_init_error(server, mp3_init(), "FORMAT_NOT_RECOGNIZED")
    assert error["message"] == MP3_UNAVAILABLE


# ------------------------------------------------------------------ the SDK


async def test_sdk_whole_file_mp3(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_client(
            api_key=API_KEY, base_url=server.url, voice_id=DEFAULT_VOICE_ID
        ) as client:
            mp3 = trio_asyncai.OutputFormat(container="mp3", sample_rate=44100)
            data = await client.synthesize("Compressed.", output_format=mp3)
            low = await client.synthesize(
                "Compressed.",
                output_format=trio_asyncai.OutputFormat(container="mp3", sample_rate=44100, bit_rate=32000),
            )
    check_mp3(data, 44100, 192000, min_seconds=signal_seconds("Compressed."))
    check_mp3(low, 44100, 32000)


async def test_sdk_refusal_is_typed(server: LocalServer) -> None:
    fmt = trio_asyncai.OutputFormat(container="mp3", sample_rate=24000, bit_rate=320000)
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_client(
            api_key=API_KEY, base_url=server.url, voice_id=DEFAULT_VOICE_ID
        ) as client:
            with pytest.raises(InvalidRequestError) as refused:
                await client.synthesize("No.", output_format=fmt)
    assert refused.value.code == "FORMAT_NOT_RECOGNIZED"


async def collect(utterance: trio_asyncai.Utterance) -> list[AudioChunk]:
    return [chunk async for chunk in utterance]


async def test_sdk_websocket_synthesizer_mp3(server: LocalServer) -> None:
    fmt = trio_asyncai.OutputFormat(container="mp3", sample_rate=32000, bit_rate=64000)
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_synthesizer(
            api_key=API_KEY, base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt
        ) as synth:
            async with synth.speak(LONG_TEXT) as utterance:
                chunks = await collect(utterance)
    assert len(chunks) > 1
    for chunk in chunks:
        assert (chunk.container, chunk.sample_rate, chunk.num_channels) == ("mp3", 32000, 1)
        assert chunk.duration == 0.0
        frames(chunk.audio)  # one audio message: whole frames
    check_mp3(b"".join(c.audio for c in chunks), 32000, 64000, min_seconds=signal_seconds(LONG_TEXT))


async def test_sdk_http_synthesizer_mp3(server: LocalServer) -> None:
    fmt = trio_asyncai.OutputFormat(container="mp3", sample_rate=44100, bit_rate=128000)
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_http_synthesizer(
            api_key=API_KEY, base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=fmt
        ) as synth:
            async with synth.speak(LONG_TEXT) as utterance:
                chunks = await collect(utterance)
    assert chunks
    assert {c.container for c in chunks} == {"mp3"}
    check_mp3(b"".join(c.audio for c in chunks), 44100, 128000, min_seconds=signal_seconds(LONG_TEXT))
