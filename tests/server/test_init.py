"""initializeConnection: validated like the service; errors are a message then close 1008."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer

from .helpers import (
    TIMEOUT,
    audio_of,
    connect,
    expect_init_error,
    init_message,
    signal_bytes,
)


async def test_unknown_voice(server: LocalServer) -> None:
    await expect_init_error(server, init_message(voice_id="no-such-voice"), "VOICE_NOT_FOUND")


@pytest.mark.parametrize(
    "output_format",
    [
        {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 24000},
        {"container": "mp3", "encoding": "pcm_s16le", "sample_rate": 24000, "bit_rate": 192000},
        {"container": "ogg", "encoding": "pcm_s16le", "sample_rate": 24000},
        {"container": "raw", "encoding": "pcm_u8", "sample_rate": 24000},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 7999},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 48001},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": "24000"},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": True},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000, "bit_rate": 1000},
        "raw",
    ],
)
async def test_bad_output_format(server: LocalServer, output_format: object) -> None:
    message = init_message()
    message["output_format"] = output_format
    await expect_init_error(server, message, "FORMAT_NOT_RECOGNIZED")


@pytest.mark.parametrize("language", ["xx", "klingon", 42, "e"])
async def test_unknown_language(server: LocalServer, language: object) -> None:
    await expect_init_error(server, init_message(language=language), "INVALID_LANGUAGE")


@pytest.mark.parametrize(
    "first",
    [
        "this is not JSON",
        "[1, 2, 3]",
        {"transcript": "Hello. "},
        {"voice": {"mode": "id", "id": DEFAULT_VOICE_ID}},
        {"model_id": 7, "voice": {"mode": "id", "id": DEFAULT_VOICE_ID}},
        {"model_id": "m"},
        {"model_id": "m", "voice": DEFAULT_VOICE_ID},
        {"model_id": "m", "voice": {"mode": "clone", "id": DEFAULT_VOICE_ID}},
    ],
)
async def test_malformed_init(server: LocalServer, first: str | dict[str, Any]) -> None:
    await expect_init_error(server, first, "INVALID_REQUEST")


@pytest.mark.parametrize("language", [None, "en", "en-US", "fr", "pt_BR", "ZH"])
async def test_known_languages_and_regional_tags_are_accepted(
    server: LocalServer, language: str | None
) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(language=language)) as client:
            await client.finish("Hi. ", "c")
            await client.until_finals("c")


async def test_unknown_model_and_every_predefined_voice_are_accepted(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        for voice in PREDEFINED_VOICES:
            init = init_message(voice_id=voice.voice_id, model_id="some_future_model_v9")
            async with connect(server, init) as client:
                await client.finish("Hi. ", "c")
                messages = await client.until_finals("c")
                assert audio_of(messages, "c")


async def test_default_output_format_is_raw_s16_44100(server: LocalServer) -> None:
    init = init_message()
    del init["output_format"]
    with trio.fail_after(TIMEOUT):
        async with connect(server, init) as client:
            await client.finish("Hello there. ", "c")
            audio = audio_of(await client.until_finals("c"), "c")
    # The signal engine makes 24 kHz; resampled to 44.1 kHz, 16-bit.
    expected = signal_bytes("Hello there.") * 44100 // 24000
    assert len(audio) % 2 == 0
    assert abs(len(audio) - expected) <= 4


async def test_init_may_carry_the_first_text(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(transcript="Hi. ", context_id="c", force=True)) as client:
            await client.close_context("c")
            messages = await client.until_finals("c")
    assert len(audio_of(messages, "c")) == signal_bytes("Hi.")
