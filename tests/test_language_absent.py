"""A client without a ``language``, against both ways the twin may read such text.

The reference says only that ``language`` forces a language "regardless of
the text". The local server reads text without one in the language of its
script, or, with the ``language_from_voice`` switch, in the voice's own
language: the client must work the same against both, and send no language
of its own.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import numpy.typing as npt
import pytest
import trio
from helpers import TIMEOUT

from trio_asyncai import Language, open_http_synthesizer, open_synthesizer
from trio_asyncai.server import DEFAULT_VOICE_ID, LibraryVoice, LocalServer, SignalEngine, open_local_server

JAPANESE = "こんにちは、世界。今日はいい天気ですね。"


class LanguageRecorder:
    """The signal engine, noting the language the server gave each text."""

    name = "recorder"

    def __init__(self) -> None:
        self.inner = SignalEngine()
        self.native_sample_rate = self.inner.native_sample_rate
        self.languages: list[str | None] = []
        self._lock = threading.Lock()

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[npt.NDArray[np.float32]]:
        with self._lock:
            self.languages.append(voice.params.language)
        yield from self.inner.synthesize(text, voice)


@pytest.fixture
def recorder() -> LanguageRecorder:
    return LanguageRecorder()


@pytest.fixture
async def twin(recorder: LanguageRecorder) -> AsyncIterator[LocalServer]:
    async with open_local_server(engine=recorder, idle_timeout=None) as server:
        yield server


@pytest.mark.parametrize("from_voice", [False, True], ids=["by-script", "language-from-voice"])
@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_text_without_a_language_is_spoken_either_way(
    twin: LocalServer, recorder: LanguageRecorder, from_voice: bool, transport: str
) -> None:
    twin.faults.language_from_voice = from_voice
    opener = open_synthesizer if transport == "websocket" else open_http_synthesizer
    with trio.fail_after(TIMEOUT):
        async with opener(base_url=twin.url, voice_id=DEFAULT_VOICE_ID) as synth:
            async with synth.speak(JAPANESE) as utterance:
                audio = await utterance.read_all()
    assert audio
    sent = twin.log.messages[0] if transport == "websocket" else twin.log.http[0].body
    assert "language" not in sent
    assert set(recorder.languages) == {"en" if from_voice else "ja"}


async def test_a_language_asked_for_wins_over_the_switch(
    twin: LocalServer, recorder: LanguageRecorder
) -> None:
    twin.faults.language_from_voice = True
    with trio.fail_after(TIMEOUT):
        async with open_synthesizer(
            base_url=twin.url, voice_id=DEFAULT_VOICE_ID, language=Language.JA
        ) as synth:
            async with synth.speak(JAPANESE) as utterance:
                assert await utterance.read_all()
    assert set(recorder.languages) == {"ja"}
