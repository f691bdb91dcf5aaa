"""The 15 languages: what the twin reads each with, where it cuts sentences and words, the voice list.

The language is checked the way it reaches the engine (a recording engine, no
voice model), and, with the real voice (``voice`` marker), by the phonemes the
model is given: that language's, not an English reading of its letters.
"""

# ruff: noqa: RUF001 - full-width and non-Latin marks are what these tests are about

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import attrs
import httpx
import hypothesis.strategies as st
import numpy as np
import numpy.typing as npt
import pytest
import trio
from cli_run import Cli
from hypothesis import given
from trio_websocket import ConnectionClosed

from trio_asyncai.server import (
    DEFAULT_VOICE_ID,
    PREDEFINED_VOICES,
    SUPPORTED_LANGUAGES,
    LibraryVoice,
    LocalServer,
    PiperEngine,
    SignalEngine,
    open_local_server,
    piper_available,
)
from trio_asyncai.server._audio import (
    render_all,
    sentence_scan_start,
    speaking_language,
    split_complete_sentences,
)
from trio_asyncai.server._languages import (
    LANGUAGE_CODES,
    LANGUAGES,
    SAMPLE_SENTENCES,
    detect_language,
    word_spans,
)
from trio_asyncai.server._requests import MAX_JSON_BODY_BYTES, MAX_TRANSCRIPT_CHARS, AudioFormat
from trio_asyncai.server._websocket import MAX_MESSAGE_SIZE

from .helpers import (
    API_KEY,
    HEADERS,
    SIGNAL_RATE,
    TIMEOUT,
    close_of,
    connect,
    http_body,
    http_error,
    init_message,
    post,
)

SENTENCES: Final = SAMPLE_SENTENCES
#: Text in every script of the 15 languages at once, in one sentence.
MIXED: Final = "Hello 世界 こんにちは Привет שלום مرحبا नमस्ते Բարեւ 123!"
EVERY: Final = ",".join(LANGUAGE_CODES)


class RecordingEngine:
    """The signal engine, noting the language each text was given to it in."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = SignalEngine(sample_rate=SIGNAL_RATE)
        self.native_sample_rate = self.inner.native_sample_rate
        self.calls: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[npt.NDArray[np.float32]]:
        with self._lock:
            self.calls.append((text, voice.params.language))
        yield from self.inner.synthesize(text, voice)

    @property
    def languages(self) -> list[str | None]:
        return [language for _, language in self.calls]


@pytest.fixture
def recorder() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
async def lang_server(recorder: RecordingEngine) -> AsyncIterator[LocalServer]:
    async with open_local_server(api_key=API_KEY, engine=recorder, idle_timeout=None) as srv:
        yield srv


# ------------------------------------------------------------------ the table


def test_the_table_has_the_fifteen_languages_in_the_references_order() -> None:
    reference = ("en", "fr", "es", "de", "it", "pt", "ar", "ru", "ro", "ja", "he", "hy", "tr", "hi", "zh")
    assert reference == LANGUAGE_CODES
    assert set(LANGUAGES) == SUPPORTED_LANGUAGES
    assert "nl" not in LANGUAGES
    assert LANGUAGES["zh"].espeak_voice == "cmn"
    assert {code for code, rules in LANGUAGES.items() if rules.unspaced} == {"ja", "zh"}


@pytest.mark.voice
@pytest.mark.skipif(not piper_available(), reason="the [voice] extra (piper) is not installed")
def test_piper_ships_espeak_data_for_every_language() -> None:
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    for rules in LANGUAGES.values():
        dictionary = rules.espeak_voice.split("-")[0]
        assert (ESPEAK_DATA_DIR / f"{dictionary}_dict").is_file(), rules


# ------------------------------------------------------------------ scripts


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (SENTENCES["ja"], "ja"),
        ("東京タワー", "ja"),
        (SENTENCES["zh"], "zh"),
        (SENTENCES["ru"], "ru"),
        (SENTENCES["ar"], "ar"),
        (SENTENCES["he"], "he"),
        (SENTENCES["hy"], "hy"),
        (SENTENCES["hi"], "hi"),
        (SENTENCES["fr"], None),  # Latin: the voice's own language
        ("123 !?", None),
        ("", None),
        ("안녕하세요", None),  # Korean: not a TTS language
        ("Hello, Привет мир!", "ru"),  # the script with the most letters
    ],
)
def test_detect_language_by_script(text: str, language: str | None) -> None:
    assert detect_language(text) == language


def _voice(language: str | None = None, *, speaks: str = EVERY) -> LibraryVoice:
    voice = PREDEFINED_VOICES[0]
    return attrs.evolve(voice, language=speaks, params=attrs.evolve(voice.params, language=language))


def test_speaking_language() -> None:
    assert speaking_language(SENTENCES["ja"], _voice("fr")) == "fr"  # forced, whatever the text
    assert speaking_language(SENTENCES["ja"], _voice()) == "ja"
    assert speaking_language(SENTENCES["de"], _voice()) == "en"  # Latin: the voice's first language
    assert speaking_language(SENTENCES["de"], _voice(speaks="de,en")) == "de"
    assert speaking_language(SENTENCES["de"], _voice(speaks="nl")) == "en"
    assert speaking_language('<break time="1s"/>' + SENTENCES["hi"], _voice()) == "hi"


# ------------------------------------------------------------------ sentences


@pytest.mark.parametrize(
    ("language", "buffer", "complete"),
    [
        ("ja", "今日は。明日", "今日は。"),
        ("ja", "「はい。」と言った", "「はい。」"),
        ("ja", "本当？はい！まだ", "本当？はい！"),
        ("zh", "你好！世界", "你好！"),
        ("zh", "Hello. 你好", "Hello. "),
        ("hi", "नमस्ते दुनिया। आज", "नमस्ते दुनिया। "),
        ("hi", "पहला॥ दूसरा", "पहला॥ "),
        ("hi", "नमस्ते दुनिया।", ""),  # a danda ends a sentence once white space follows
        ("ar", "كيف حالك؟ بخير", "كيف حالك؟ "),
        ("ar", "مرحبا. الطقس", "مرحبا. "),
        ("he", "שלום עולם. היום", "שלום עולם. "),
        ("he", "בראשית׃ ויאמר", "בראשית׃ "),
        ("hy", "Բարեւ աշխարհ։ Այսօր", "Բարեւ աշխարհ։ "),
        ("fr", "« Bonjour. » Il", "« Bonjour. » "),
        ("en", "Hello. World", "Hello. "),
        # A language is cut by its own marks, not another's.
        ("en", "नमस्ते। आज", ""),
        ("hi", "今日は。明日", ""),
        ("ru", "Привет. Мир", "Привет. "),
    ],
)
def test_sentences_are_cut_as_the_language_cuts_them(language: str, buffer: str, complete: str) -> None:
    assert split_complete_sentences(buffer, language=language) == (complete, buffer[len(complete) :])


def test_without_a_language_every_languages_marks_cut() -> None:
    for buffer, complete in [
        ("今日は。明日", "今日は。"),
        ("नमस्ते। आज", "नमस्ते। "),
        ("كيف حالك؟ بخير", "كيف حالك؟ "),
        ("Բարեւ։ Այսօր", "Բարեւ։ "),
    ]:
        assert split_complete_sentences(buffer) == (complete, buffer[len(complete) :])


@given(st.sampled_from([None, *LANGUAGE_CODES]), st.text(alphabet="ab .!?。！？।॥؟։׃»」 \n"), st.text())
def test_a_scan_from_the_tail_finds_what_a_full_scan_finds_in_every_language(
    language: str | None, held: str, more: str
) -> None:
    if split_complete_sentences(held, language=language)[0]:
        held = ""  # the server holds only text with no complete sentence in it
    full = held + more
    start = sentence_scan_start(held, language=language)
    assert split_complete_sentences(full, start, language=language) == split_complete_sentences(
        full, language=language
    )


@pytest.mark.parametrize("language", ["ja", "hi", "ar", "hy", "he", "zh"])
async def test_a_websocket_context_is_cut_at_its_languages_sentence_ends(
    lang_server: LocalServer, recorder: RecordingEngine, language: str
) -> None:
    first, second = {
        "ja": ("今日は。", "明日"),
        "zh": ("你好！", "世界"),
        "hi": ("नमस्ते दुनिया। ", "आज"),
        "ar": ("كيف حالك؟ ", "بخير"),
        "hy": ("Բարեւ աշխարհ։ ", "Այսօր"),
        "he": ("בראשית׃ ", "ויאמר"),
    }[language]
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server, init_message(language=language)) as client:
            await client.text(first + second, "c")
            await lang_server.log.wait_for(lambda log: len(log.connections[0].jobs) == 1)
            await client.close_context("c")
            await client.until_finals("c")
    assert [text for _, text, _ in lang_server.log.connections[0].jobs] == [first, second]
    assert recorder.calls == [(first, language), (second, language)]


# ------------------------------------------------------------------ words and timestamps


def _words(text: str, language: str | None) -> list[str]:
    return [text[start:end] for start, end in word_spans(text, language)]


@pytest.mark.parametrize(
    ("language", "text", "words"),
    [
        ("ja", "こんにちは、世界。", ["こ", "ん", "に", "ち", "は、", "世", "界。"]),
        ("ja", "チョコレートを食べた", ["チョ", "コ", "レー", "ト", "を", "食", "べ", "た"]),
        ("ja", "東京タワーはTokyo Towerです", ["東", "京", "タ", "ワー", "は", "Tokyo", "Tower", "で", "す"]),
        ("ja", "「東京」Tower", ["「東", "京」", "Tower"]),
        ("ja", "333メートル", ["333", "メー", "ト", "ル"]),
        ("zh", "你好，世界。", ["你", "好，", "世", "界。"]),
        ("fr", "Bonjour ! Ça va ?", ["Bonjour !", "Ça", "va ?"]),
        ("hi", "आज मौसम अच्छा है । नमस्ते।", ["आज", "मौसम", "अच्छा", "है ।", "नमस्ते।"]),
        ("ar", "مرحبا، كيف حالك ؟", ["مرحبا،", "كيف", "حالك ؟"]),
        ("he", "שלום, עולם. בית־ספר", ["שלום,", "עולם.", "בית־ספר"]),
        ("en", "— Hello there —", ["— Hello", "there —"]),
        ("en", "!!! ???", ["!!! ???"]),
        # Japanese read as English (forced): no spaces, one word.
        ("en", "こんにちは", ["こんにちは"]),
    ],
)
def test_words_of_each_script(language: str, text: str, words: list[str]) -> None:
    assert _words(text, language) == words


def test_no_word_is_lost_and_words_do_not_overlap() -> None:
    for language, text in SENTENCES.items():
        spans = word_spans(text, language)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
        said = "".join(text[s:e] for s, e in spans)
        assert [c for c in said if not c.isspace()] == [c for c in text if not c.isspace()]


@pytest.mark.parametrize("language", ["ja", "zh", "hi", "ar", "he"])
async def test_timestamps_follow_the_language(lang_server: LocalServer, language: str) -> None:
    text = SENTENCES[language]
    response = await post(
        lang_server, "/text_to_speech/with_timestamps", http_body(text) | {"language": language}
    )
    assert response.status_code == 200, response.text
    alignment = response.json()["alignment"]
    spans = word_spans(text, language)
    assert alignment["words"] == [text[s:e] for s, e in spans]
    # Exact with the signal engine: 60 ms a character, the spaces between words included.
    per_char = 60.0
    assert alignment["word_start_times_milliseconds"] == pytest.approx([s * per_char for s, _ in spans])
    assert alignment["word_end_times_milliseconds"] == pytest.approx([e * per_char for _, e in spans])


async def test_breaks_in_unspaced_text(lang_server: LocalServer, recorder: RecordingEngine) -> None:
    text = '今日は<break time="500ms"/>いい天気'
    response = await post(lang_server, "/text_to_speech/with_timestamps", http_body(text))
    assert response.status_code == 200, response.text
    alignment = response.json()["alignment"]
    assert alignment["words"] == ["今", "日", "は", "い", "い", "天", "気"]
    # The second piece starts after the first's 3 characters and the pause.
    assert alignment["word_start_times_milliseconds"][3] == pytest.approx(3 * 60.0 + 500.0)
    # Both pieces in the language of the whole text (the second alone could be Chinese or Japanese).
    assert recorder.calls == [("今日は", "ja"), ("いい天気", "ja")]


# ------------------------------------------------------------------ the language reaches the engine


@pytest.mark.parametrize("language", LANGUAGE_CODES)
async def test_every_language_reaches_the_engine_over_http_and_the_websocket(
    lang_server: LocalServer, recorder: RecordingEngine, language: str
) -> None:
    text = SENTENCES[language]
    response = await post(lang_server, "/text_to_speech", http_body(text) | {"language": language})
    assert response.status_code == 200, response.text
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server, init_message(language=language)) as client:
            await client.finish(text + " ", "c")
            await client.until_finals("c")
    assert set(recorder.languages) == {language}


async def test_a_regional_tag_is_its_base_language(
    lang_server: LocalServer, recorder: RecordingEngine
) -> None:
    response = await post(lang_server, "/text_to_speech", http_body("Bonjour.") | {"language": "fr-CA"})
    assert response.status_code == 200
    assert recorder.languages == ["fr"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (SENTENCES["ja"], "ja"),
        (SENTENCES["zh"], "zh"),
        (SENTENCES["ru"], "ru"),
        (SENTENCES["hi"], "hi"),
        (SENTENCES["de"], "en"),
        (MIXED, "ja"),
    ],
)
async def test_without_a_language_the_text_is_read_in_its_scripts(
    lang_server: LocalServer, recorder: RecordingEngine, text: str, language: str
) -> None:
    response = await post(lang_server, "/text_to_speech", http_body(text))
    assert response.status_code == 200, response.text
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server) as client:
            await client.finish(text + " ", "c")
            await client.until_finals("c")
    assert set(recorder.languages) == {language}


async def test_language_from_voice_reads_everything_in_the_voices_language(
    lang_server: LocalServer, recorder: RecordingEngine
) -> None:
    lang_server.faults.language_from_voice = True
    response = await post(lang_server, "/text_to_speech", http_body(SENTENCES["ja"]))
    assert response.status_code == 200, response.text
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server) as client:
            await client.finish(SENTENCES["ru"] + " ", "c")
            await client.until_finals("c")
    # A language asked for still wins.
    response = await post(lang_server, "/text_to_speech", http_body(SENTENCES["ja"]) | {"language": "ja"})
    assert response.status_code == 200
    assert recorder.languages == ["en", "en", "ja"]
    lang_server.faults.reset()
    assert not lang_server.faults.language_from_voice


@pytest.mark.parametrize("language", ["nl", "ko", "xx", "zh-TW-x", "cmn"])
async def test_a_language_the_service_does_not_speak_is_invalid(
    lang_server: LocalServer, recorder: RecordingEngine, language: str
) -> None:
    response = await post(lang_server, "/text_to_speech", http_body("Hello.") | {"language": language})
    if language == "zh-TW-x":  # a regional tag of zh is zh
        assert response.status_code == 200
        return
    assert http_error(response, 400)["error_code"] == "INVALID_LANGUAGE"
    assert recorder.calls == []


# ------------------------------------------------------------------ limits and odd text


async def test_a_megabyte_transcript_gets_the_documented_limit_errors(lang_server: LocalServer) -> None:
    megabyte = 1_000_000
    japanese = "今日はいい天気" * (megabyte // 21)  # 3 bytes a character in UTF-8: a megabyte
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=lang_server.url) as http:
            for text in ("a" * megabyte, japanese):
                # A body under 1 MiB, a transcript over the limit: 400.
                content = json.dumps(http_body(text) | {"language": "ja"}, ensure_ascii=False).encode()
                assert len(content) < MAX_JSON_BODY_BYTES
                response = await http.post("/text_to_speech", content=content, headers=HEADERS)
                error = http_error(response, 400)
                assert error["error_code"] == "INVALID_REQUEST"
                assert str(MAX_TRANSCRIPT_CHARS) in error["message"]
            # The same Japanese as JSON escapes (\uXXXX, as Python's json writes it): over 1 MiB, 413.
            content = json.dumps(http_body(japanese) | {"language": "ja"}).encode()
            assert len(content) > MAX_JSON_BODY_BYTES
            response = await http.post("/text_to_speech", content=content, headers=HEADERS)
            assert http_error(response, 413)["error_code"] == "FILE_TOO_LARGE"
    # On the WebSocket: the megabyte of Japanese as UTF-8 is one message under the 1 MiB limit, and
    # more than a context may hold: refused, and the context goes on.
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server, init_message(language="ja")) as client:
            message = json.dumps({"transcript": japanese, "context_id": "c"}, ensure_ascii=False)
            assert len(message.encode()) < MAX_MESSAGE_SIZE
            await client.ws.send_message(message)
            error = await client.receive()
            assert error["error_code"] == "INVALID_REQUEST" and error["context_id"] == "c"
            await client.finish("今日は。", "c")
            messages = await client.until_finals("c")
    assert any(m.get("audio") for m in messages)
    # As JSON escapes it is a 2 MB message: the connection is closed with 1009.
    with trio.fail_after(TIMEOUT):
        async with connect(lang_server, init_message(language="ja")) as client:
            await client.text(japanese, "c")
            with pytest.raises(ConnectionClosed) as closed:
                await client.receive()
    assert close_of(closed.value)[0] == 1009


@pytest.mark.parametrize("language", LANGUAGE_CODES)
def test_the_signal_renders_any_script_in_any_language(language: str) -> None:
    fmt = AudioFormat(sample_rate=SIGNAL_RATE)
    for text in (MIXED, SENTENCES["en"], SENTENCES["ja"], "…", "🙂"):
        assert render_all(SignalEngine(), text, _voice(language), fmt)


# ------------------------------------------------------------------ the voice list


async def test_the_predefined_voices_speak_every_language(lang_server: LocalServer) -> None:
    every = sorted(v.voice_id for v in PREDEFINED_VOICES)
    for voice in PREDEFINED_VOICES:
        assert voice.language == EVERY
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=lang_server.url) as http:

            async def ids(**filters: Any) -> list[str]:
                response = await http.post("/voices", headers=HEADERS, json={"limit": 100, **filters})
                assert response.status_code == 200, response.text
                return sorted(v["voice_id"] for v in response.json()["voices"])

            for language in LANGUAGE_CODES:
                assert await ids(language=language) == every, language
            assert await ids(language="pt-BR") == every
            assert await ids(language="nl") == []
            voice = (await http.get(f"/voices/{DEFAULT_VOICE_ID}", headers=HEADERS)).json()
    assert voice["language"].split(",") == list(LANGUAGE_CODES)


# ------------------------------------------------------------------ the real voice


@pytest.mark.voice
@pytest.mark.parametrize("language", LANGUAGE_CODES)
def test_each_language_is_phonemized_as_that_language(piper: PiperEngine, language: str) -> None:
    text = SENTENCES[language]
    own = piper.phonemize(text, language)
    assert own, language
    if language not in ("en", "hi"):
        # Not what an English reading of the same letters gives (espeak-ng's English voice
        # switches to Hindi by itself for Devanagari: there the readings agree).
        assert own != piper.phonemize(text, "en")
    said = "".join(own)
    # No letter spelled out by name ("Chinese letter", "Japanese letter"), no tone numbers.
    assert "lˈɛɾɚ" not in said and "lˈe̞tə" not in said, said
    assert not any(c.isdigit() for c in said)
    # Each a sentence of its own: the two sentences of each text; a full stop only at the end of one
    # (espeak-ng's Mandarin spells the retroflex s "s.", its Arabic puts dots between syllables).
    assert len(own) == 2, own
    assert all("." not in sentence[:-1] for sentence in own), own


@pytest.mark.voice
def test_what_reads_each_language(piper: PiperEngine) -> None:
    readers = {language: piper.reader(language) for language in LANGUAGE_CODES}
    assert readers["zh"] == "espeak-ng cmn"
    assert readers["fr"] == "espeak-ng fr"
    assert readers["en"] == "espeak-ng en-us"
    assert readers["he"] == "Nakdimon + espeak-ng he"
    assert readers["ar"] == "libtashkeel + espeak-ng ar"
    assert readers["ja"] == "OpenJTalk + espeak-ng ja"
    with pytest.raises(ValueError, match="unknown language"):
        piper.reader("nl")


@pytest.mark.voice
@pytest.mark.parametrize(
    ("language", "marks"),
    [
        # Sounds of each language that English has not: its phonemes, not English ones.
        ("fr", "ʁ"),
        ("de", "ʃø"),
        ("ru", "ʲ"),
        ("ar", "ħʕ"),
        ("ja", "ɯɕ"),
        ("zh", "ɕ"),
        ("he", "ʔ"),
        ("hi", "ʰ"),
        ("tr", "ø"),
        ("es", "θβ"),
    ],
)
def test_phonemes_have_the_languages_own_sounds(piper: PiperEngine, language: str, marks: str) -> None:
    said = "".join(piper.phonemize(SENTENCES[language], language))
    assert any(mark in said for mark in marks), said


@pytest.mark.voice
def test_kanji_are_read_not_spelled(piper: PiperEngine) -> None:
    # 今日は: "kyou wa", the particle read as "wa".
    assert piper.phonemize("今日は。", "ja") == ["kʲoowa."]
    assert piper.phonemize("今天天气很好。", "zh") == ["tɕˈin thˈiɛn thˈiɛn tɕhˈi χənχˈɑu"]
    # 知道这是: zhidao zhe shi, in IPA (espeak-ng spells the retroflexes "ts." and "s.").
    assert piper.phonemize("知道这是", "zh") == ["tʂɨtˈɑu tʂˈɤ ʂˈɨ"]


@pytest.mark.voice
def test_without_openjtalk_japanese_falls_back_to_espeak(
    piper: PiperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_asyncai.server import _phonemize

    monkeypatch.setattr(_phonemize, "openjtalk_available", lambda: False)
    assert piper.reader("ja") == "espeak-ng ja"
    said = "".join(piper.phonemize("こんにちは。", "ja"))
    assert said.startswith("kˌonnitɕˈiha")  # the kana, read by espeak-ng (は as "ha")


@pytest.mark.voice
@pytest.mark.parametrize("language", LANGUAGE_CODES)
def test_mixed_scripts_and_foreign_text_are_read(piper: PiperEngine, language: str) -> None:
    for text in (MIXED, SENTENCES["en"] if language != "en" else SENTENCES["ja"], "123."):
        said = piper.phonemize(text, language)
        assert said and all(said), (language, text)
    # Marks alone: whatever espeak-ng makes of them (English reads "!!!" out), never an error.
    piper.phonemize("!!! 。。。 ।", language)


@pytest.mark.voice
@pytest.mark.parametrize("language", ["ja", "he", "ar"])
def test_mixed_scripts_are_spoken(piper: PiperEngine, language: str) -> None:
    audio = np.concatenate(list(piper.synthesize("Tokyo 東京 Привет שלום مرحبا 12.", _voice(language))))
    assert audio.size > piper.native_sample_rate // 2
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_long_text_without_a_sentence_end_is_read_in_bounded_pieces() -> None:
    from trio_asyncai.server._phonemize import MAX_PIECE_CHARS, _pieces

    for text in ("x" * 1000, "今日は" * 400, "word, " * 300, "שלום " * 300):
        pieces = _pieces(text, "ja")
        assert "".join(pieces) == text.rstrip() or "".join(pieces) == text
        assert all(len(piece) <= MAX_PIECE_CHARS for piece in pieces)
    assert _pieces("今日は。明日も。", "ja") == ["今日は。", "明日も。"]


@pytest.mark.voice
def test_hebrew_outside_hebrew_letters_is_read_by_espeak(piper: PiperEngine) -> None:
    said = piper.phonemize("שלום Hello 123 עולם!", "he")
    assert len(said) == 1
    assert said[0].startswith("ʃˈ") and "həlˈəʊ" in said[0] and said[0].endswith("ʔˈolam.")


@pytest.mark.parametrize("language", [*LANGUAGE_CODES, "nl"])
def test_voices_list_language_agrees_with_the_rest_filter(cli: Cli, language: str) -> None:
    run = cli("voices", "list", "--json", "--language", language)
    assert run.code == 0, run.err
    listed = sorted(v["voice_id"] for v in json.loads(run.out))
    assert listed == ([] if language == "nl" else sorted(v.voice_id for v in PREDEFINED_VOICES))
