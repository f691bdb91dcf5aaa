"""The text and audio pipeline, without a network: sentences, breaks, encoding, resampling."""

from __future__ import annotations

from contextlib import aclosing

import numpy as np
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, AudioFormat, LocalServer, SignalEngine
from trio_asyncai.server._audio import (
    MAX_BREAK_SECONDS,
    encode,
    render,
    sentence_scan_start,
    split_breaks,
    split_complete_sentences,
    stream_audio,
)

from .helpers import SIGNAL_RATE, TIMEOUT, audio_of, connect, init_message, s16, signal_bytes

VOICE = next(v for v in PREDEFINED_VOICES if v.voice_id == DEFAULT_VOICE_ID)


@pytest.mark.parametrize(
    ("buffer", "complete", "rest"),
    [
        ("Hello", "", "Hello"),
        ("Hello.", "", "Hello."),
        ("Hello. ", "Hello. ", ""),
        ("Hello. Wor", "Hello. ", "Wor"),
        ("One! Two? Three", "One! Two? ", "Three"),
        ('He said "stop." Then', 'He said "stop." ', "Then"),
        ("Pi is 3.14 and", "", "Pi is 3.14 and"),
        ("Wait... what", "Wait... ", "what"),
        ("你好。世界", "你好。", "世界"),
    ],
)
def test_split_complete_sentences(buffer: str, complete: str, rest: str) -> None:
    assert split_complete_sentences(buffer) == (complete, rest)


@given(st.text())
def test_split_complete_sentences_loses_nothing(text: str) -> None:
    complete, rest = split_complete_sentences(text)
    assert complete + rest == text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("plain", ["plain"]),
        ('a <break time="500ms"/> b', ["a ", 0.5, " b"]),
        ("<break time='1s'/>", [1.0]),
        ('x<break time="1.5s" />y', ["x", 1.5, "y"]),
        ('<BREAK TIME="250MS">', [0.25]),
        ('<break time="99s"/>', [MAX_BREAK_SECONDS]),
        ("<emphasis>kept</emphasis>", ["<emphasis>kept</emphasis>"]),
        ("<break/> stays", ["<break/> stays"]),
        (' <break time="1s"/> ', [1.0]),
    ],
)
def test_split_breaks(text: str, parts: list[str | float]) -> None:
    assert split_breaks(text) == parts


def test_encode() -> None:
    samples = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -3.0], dtype=np.float32)
    assert np.frombuffer(encode(samples, "pcm_s16le"), dtype="<i2").tolist() == [
        0,
        32767,
        -32767,
        16384,
        32767,
        -32767,
    ]
    assert np.frombuffer(encode(samples, "pcm_f32le"), dtype="<f4").tolist() == [
        0.0,
        1.0,
        -1.0,
        0.5,
        1.0,
        -1.0,
    ]


@pytest.mark.parametrize("sample_rate", [8000, 16000, SIGNAL_RATE, 44100])
def test_break_is_exact_silence(sample_rate: int) -> None:
    engine = SignalEngine(sample_rate=SIGNAL_RATE)
    fmt = AudioFormat(sample_rate=sample_rate)
    audio = s16(b"".join(render(engine, 'Hi <break time="500ms"/> there', VOICE, fmt)))
    silent = np.flatnonzero(audio == 0)
    # The longest run of exact zeros is the break.
    runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    assert max(len(run) for run in runs) >= round(0.5 * sample_rate)
    spoken = (engine.samples_for("Hi") + engine.samples_for("there")) * sample_rate / SIGNAL_RATE
    assert abs(audio.size - spoken - 0.5 * sample_rate) <= 4


def test_break_alone_is_only_silence() -> None:
    audio = b"".join(render(SignalEngine(), '<break time="1s"/>', VOICE, AudioFormat(sample_rate=16000)))
    assert audio == bytes(2 * 16000)


async def test_break_over_the_websocket(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(sample_rate=SIGNAL_RATE)) as client:
            await client.finish('One <break time="1s"/> two. ', "c")
            audio = s16(audio_of(await client.until_finals("c"), "c"))
    assert audio.size * 2 == signal_bytes("One") + signal_bytes("two.") + 2 * SIGNAL_RATE
    assert not audio[signal_bytes("One") // 2 : signal_bytes("One") // 2 + SIGNAL_RATE].any()


async def test_stream_audio_chunks_are_bounded_and_sample_aligned() -> None:
    engine = SignalEngine()
    fmt = AudioFormat(encoding="pcm_f32le", sample_rate=22050)
    with trio.fail_after(TIMEOUT):
        async with aclosing(
            stream_audio(engine, trio.CapacityLimiter(1), "A few words to stream.", VOICE, fmt)
        ) as chunks:
            sizes = [len(chunk) async for chunk in chunks]
    assert all(0 < size <= round(22050 * 0.08) * 4 and size % 4 == 0 for size in sizes)
    assert abs(sum(sizes) // 4 - engine.samples_for("A few words to stream.") * 22050 / 24000) <= 2


async def test_stream_audio_can_be_left_early() -> None:
    with trio.fail_after(TIMEOUT):
        async with aclosing(
            stream_audio(SignalEngine(), trio.CapacityLimiter(1), "word " * 50, VOICE, AudioFormat())
        ) as chunks:
            async for _ in chunks:
                break


def test_pitch_changes_length_and_is_applied_for_every_engine() -> None:
    calm, bright = (v for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)
    engine = SignalEngine()
    fmt = AudioFormat(sample_rate=SIGNAL_RATE)
    lengths = {
        v.name: len(b"".join(render(engine, "Same words here.", v, fmt))) for v in (VOICE, calm, bright)
    }
    # Lower pitch plays slower (longer), higher pitch faster (shorter).
    assert lengths["Joe Calm"] > lengths["Joe"] > lengths["Joe Bright"]


@given(st.text(), st.text())
def test_a_scan_from_the_held_texts_tail_finds_what_a_full_scan_finds(held: str, more: str) -> None:
    if split_complete_sentences(held)[0]:
        held = ""  # the server holds only text with no complete sentence in it
    full = held + more
    assert split_complete_sentences(full, sentence_scan_start(held)) == split_complete_sentences(full)


def test_unfinished_text_is_not_scanned_again() -> None:
    held = "word " * 10_000
    assert sentence_scan_start(held) == len(held) - 1  # only its trailing space
    assert sentence_scan_start("Wait... ") == 4
