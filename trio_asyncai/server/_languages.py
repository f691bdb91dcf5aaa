"""The languages the local server speaks: how each is read, cut into sentences and into words.

The service speaks 15 languages (ASYNC_API.md, "Languages"); so does the
server, with one table, :data:`LANGUAGES`, that says for each:

* how the piper voice reads it: the espeak-ng voice that phonemizes it, and
  the reader used before espeak-ng where one does better (OpenJTalk for
  Japanese, when ``pyopenjtalk`` is installed; piper's Nakdimon niqqud model
  for Hebrew; piper's libtashkeel diacritizer before espeak-ng for Arabic);
* which marks end its sentences (the full-width marks of Japanese and
  Chinese, the Arabic question mark, the Devanagari danda, the Armenian full
  stop, ...), so that a WebSocket context is cut where the language cuts;
* whether its words are written apart (Japanese and Chinese are not: there
  every character is a word of the estimated timestamps).

A request's ``language`` forces the language, whatever the text (the
reference: "forces the language regardless of the text"). Without one, the
server reads the text in the language of its script (:func:`detect_language`,
*our choice*: the reference does not say how the service guesses), falling
back to the voice's own language for Latin script, which many of the
languages share; the ``language_from_voice`` behaviour switch
(:class:`~trio_asyncai.server.Faults`) makes it always speak the voice's
language instead, so that a client can be tested against both.

Nothing here imports piper: the engine does that (``_phonemize``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Final, Literal, final

import attrs

__all__ = [
    "SAMPLE_SENTENCES",
    "LANGUAGES",
    "LANGUAGE_CODES",
    "LanguageRules",
    "Reader",
    "detect_language",
    "sentence_end",
    "sentence_end_chars",
    "word_spans",
]

#: How a language is read before (or instead of) espeak-ng: ``"espeak"``
#: alone, ``"openjtalk"`` (Japanese, with ``pyopenjtalk``), ``"nakdimon"``
#: (Hebrew, niqqud restored, then piper's Hebrew G2P) or ``"tashkeel"``
#: (Arabic, diacritized, then espeak-ng).
Reader = Literal["espeak", "openjtalk", "nakdimon", "tashkeel"]

#: Marks that end a sentence when white space follows (the ASCII ones).
_ASCII_ENDS: Final = ".!?"
#: Full-width and ideographic marks: a sentence ends there, white space or not.
#: (ideographic full stop; full-width ! ? and full stop; half-width ideographic full stop).
_FULL_WIDTH_ENDS: Final = "\u3002\uff01\uff1f\uff0e\uff61"
#: Closing quotes and brackets that belong to the sentence they close.
_CLOSERS: Final = "\"'\u201d\u2019\u00bb)\\]\u300d\u300f\uff09\u3011\u3009\u300b"


@final
@attrs.frozen
class LanguageRules:
    """What the server knows of one language.

    ``espeak_voice`` is the espeak-ng voice (as piper-tts ships espeak-ng's
    data) that phonemizes it; ``reader`` what reads it first (see
    :data:`Reader`). ``sentence_marks`` end a sentence when white space
    follows; ``unspaced_marks`` end one whether or not it does.
    ``unspaced`` languages write words without spaces between them.
    """

    code: str
    name: str
    espeak_voice: str
    reader: Reader = "espeak"
    sentence_marks: str = _ASCII_ENDS
    unspaced_marks: str = ""
    unspaced: bool = False


def _rules(*rules: LanguageRules) -> dict[str, LanguageRules]:
    return {r.code: r for r in rules}


#: The 15 languages of text-to-speech, in the reference's order.
LANGUAGES: Final[Mapping[str, LanguageRules]] = _rules(
    LanguageRules("en", "English", "en-us"),
    LanguageRules("fr", "French", "fr"),
    LanguageRules("es", "Spanish", "es"),
    LanguageRules("de", "German", "de"),
    LanguageRules("it", "Italian", "it"),
    LanguageRules("pt", "Portuguese", "pt-br"),
    # The Arabic question mark and full stop (the latter mostly Urdu's), and the ASCII marks.
    LanguageRules("ar", "Arabic", "ar", reader="tashkeel", sentence_marks=_ASCII_ENDS + "\u061f\u06d4"),
    LanguageRules("ru", "Russian", "ru"),
    LanguageRules("ro", "Romanian", "ro"),
    LanguageRules("ja", "Japanese", "ja", reader="openjtalk", unspaced_marks=_FULL_WIDTH_ENDS, unspaced=True),
    # Sof pasuq.
    LanguageRules("he", "Hebrew", "he", reader="nakdimon", sentence_marks=_ASCII_ENDS + "\u05c3"),
    # The Armenian full stop (its question and exclamation marks sit on a word, not at the end).
    LanguageRules("hy", "Armenian", "hy", sentence_marks=_ASCII_ENDS + "\u0589"),
    LanguageRules("tr", "Turkish", "tr"),
    # The danda and the double danda.
    LanguageRules("hi", "Hindi", "hi", sentence_marks=_ASCII_ENDS + "\u0964\u0965"),
    LanguageRules("zh", "Chinese", "cmn", unspaced_marks=_FULL_WIDTH_ENDS, unspaced=True),
)

#: The language codes, in the reference's order.
LANGUAGE_CODES: Final = tuple(LANGUAGES)


# --------------------------------------------------------------------------- sentences


#: One fixed text per language, two short sentences: what the tests and the per-language
#: table in the docs (benchmarks/languages_table.py) speak.
SAMPLE_SENTENCES: Final[Mapping[str, str]] = {
    "en": "Hello, world. The weather is nice today.",
    "fr": "Bonjour le monde. Il fait beau aujourd'hui.",
    "es": "Hola mundo. Hoy hace buen tiempo.",
    "de": "Hallo Welt. Heute ist schönes Wetter.",
    "it": "Ciao mondo. Oggi fa bel tempo.",
    "pt": "Olá mundo. Hoje está um dia bonito.",
    "ar": "مرحبا بالعالم. الطقس جميل اليوم.",
    "ru": "Привет, мир. Сегодня хорошая погода.",
    "ro": "Salut lume. Astăzi este vreme frumoasă.",
    "ja": "こんにちは、世界。今日はいい天気ですね。",
    "he": "שלום עולם. היום מזג האוויר יפה.",
    "hy": "Բարեւ աշխարհ։ Այսօր եղանակը լավ է։",  # noqa: RUF001 - Armenian's own full stop
    "tr": "Merhaba dünya. Bugün hava çok güzel.",
    "hi": "नमस्ते दुनिया। आज मौसम अच्छा है।",
    "zh": "你好，世界。今天天气很好。",  # noqa: RUF001 - Chinese's own comma
}


@cache
def sentence_end(language: str | None) -> re.Pattern[str]:
    """The pattern of a sentence end in ``language`` (``None``: in any of them).

    A sentence ends with its marks (perhaps closed by quotes or brackets,
    perhaps after a space, as French closes its guillemets) followed by
    white space, or with a full-width mark (Japanese, Chinese) whatever
    follows.
    """
    rules = list(LANGUAGES.values()) if language is None else [LANGUAGES[language]]
    spaced = "".join(sorted({c for r in rules for c in r.sentence_marks}))
    unspaced = "".join(sorted({c for r in rules for c in r.unspaced_marks}))
    # A closing mark may follow a space: French sets one before its guillemet.
    closers = f"(?:[ \\u00a0\\u202f]?[{_CLOSERS}])*"
    pattern = f"[{re.escape(spaced)}]+{closers}\\s+"
    if unspaced:
        pattern += f"|[{re.escape(unspaced)}]+{closers}\\s*"
    return re.compile(pattern)


@cache
def sentence_end_chars(language: str | None) -> frozenset[str]:
    """What a sentence end of ``language`` is made of, white space aside."""
    rules = list(LANGUAGES.values()) if language is None else [LANGUAGES[language]]
    marks = {c for r in rules for c in r.sentence_marks + r.unspaced_marks}
    return frozenset(marks | set(_CLOSERS.replace("\\", "")))


# --------------------------------------------------------------------------- scripts

#: Scripts told apart by :func:`detect_language`, each with its letters' ranges.
_SCRIPTS: Final = {
    "kana": "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
    "cyrillic": "\u0400-\u04ff\u0500-\u052f",
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
    "hebrew": "\u0590-\u05ff\ufb1d-\ufb4f",
    "armenian": "\u0530-\u058f\ufb13-\ufb17",
    "devanagari": "\u0900-\u097f\ua8e0-\ua8ff",
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff",
}
_SCRIPT_PATTERNS: Final = {name: re.compile(f"[{ranges}]") for name, ranges in _SCRIPTS.items()}
_SCRIPT_LANGUAGE: Final = {
    "cyrillic": "ru",
    "arabic": "ar",
    "hebrew": "he",
    "armenian": "hy",
    "devanagari": "hi",
}


def detect_language(text: str) -> str | None:
    """The language of ``text``'s script, or ``None`` for Latin script, none, or another.

    The script with the most letters wins; Han characters with kana are
    Japanese, without kana Chinese. Latin script is shared by eight of the
    languages (and no letters at all says nothing): the caller falls back to
    the voice's own language then.
    """
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPT_PATTERNS.items()}
    counts["cjk"] = counts.pop("kana") + counts.pop("han")
    script, count = max(counts.items(), key=lambda item: item[1])
    if count == 0 or script == "latin":
        return None
    if script == "cjk":
        return "ja" if _SCRIPT_PATTERNS["kana"].search(text) else "zh"
    return _SCRIPT_LANGUAGE[script]


# --------------------------------------------------------------------------- words

#: Characters written without spaces between words: kana and CJK ideographs.
_UNSPACED: Final = _SCRIPTS["kana"] + _SCRIPTS["han"]
#: Kana that never start a word (small kana, the long-vowel mark, the iteration marks).
_NOT_FIRST: Final = (
    "\u3041\u3043\u3045\u3047\u3049\u3063\u3083\u3085\u3087\u308e"  # small hiragana
    "\u30a1\u30a3\u30a5\u30a7\u30a9\u30c3\u30e3\u30e5\u30e7\u30ee"  # small katakana
    "\u30fc\u309d\u309e\u30fd\u30fe\u3005\uff70"  # long vowel marks, iteration marks
)
_UNSPACED_CHAR: Final = re.compile(f"[{_UNSPACED}]")
_TOKEN: Final = re.compile(r"\S+")


def _spoken(char: str) -> bool:
    """Whether a character is part of what is said: a letter, a digit or a combining mark."""
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _unspaced_breaks(token: str) -> list[int]:
    """Where words begin inside a token of an unspaced language (after the first).

    Between two characters at least one of which is kana or an ideograph,
    unless the second is a mark, a small kana or a long-vowel mark, or
    neither is said (punctuation stays with the word before it).
    """
    breaks = []
    for index in range(1, len(token)):
        before, char = token[index - 1], token[index]
        if char in _NOT_FIRST or not _spoken(char):
            continue
        if _UNSPACED_CHAR.match(char) or (_UNSPACED_CHAR.match(before) and _spoken(before)):
            breaks.append(index)
        elif not _spoken(before) and any(_UNSPACED_CHAR.match(c) for c in token[:index]):
            # After punctuation that closed an unspaced word: 「東京」Tower.
            breaks.append(index)
    return breaks


def word_spans(text: str, language: str | None) -> list[tuple[int, int]]:
    """The words of ``text`` as (start, end) offsets, for the estimated timestamps.

    Words are what white space separates, and in Japanese and Chinese each
    character (a small kana or a long-vowel mark stays with the one before).
    A token that says nothing (``!`` after a French space, a danda ``।``
    after a space, a dash) joins the word before it, or the one after it at
    the start, so that no timestamp is given to punctuation alone.
    """
    unspaced = language is not None and LANGUAGES[language].unspaced
    spans: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        token = match.group()
        starts = [0, *_unspaced_breaks(token)] if unspaced else [0]
        for begin, finish in zip(starts, [*starts[1:], len(token)], strict=True):
            spans.append((start + begin, start + finish))
    merged: list[tuple[int, int]] = []
    pending_start: int | None = None
    for start, end in spans:
        if not any(_spoken(c) for c in text[start:end]):
            if merged:
                merged[-1] = (merged[-1][0], end)
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        merged.append((start, end))
    if pending_start is not None:  # nothing said at all: one "word"
        merged.append((pending_start, spans[-1][1]))
    return merged
