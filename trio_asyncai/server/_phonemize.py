"""Text to phonemes for the piper voice, in the language of the request.

piper-tts reads text with espeak-ng in its voice's one language. The server
reads it in the request's language instead (see ``_languages``), with what
piper-tts ships:

* espeak-ng, with the language's voice (``fr``, ``cmn`` for Chinese, ...),
  from the espeak-ng data inside piper-tts: every one of the 15 languages;
* before it, for Arabic, piper's libtashkeel model, which restores the
  vowel marks Arabic is written without (espeak-ng guesses badly without);
* instead of it, for Hebrew, piper's Nakdimon model (the niqqud) and its
  Hebrew G2P: espeak-ng reads unpointed Hebrew as consonants alone;
* instead of it, for Japanese, OpenJTalk (piper's Japanese phonemizer), when
  ``pyopenjtalk`` is installed (``pyopenjtalk-plus``, piper-tts's ``[ja]``
  extra, which ships its dictionary): espeak-ng spells kanji out as
  "Chinese letter". Without it, espeak-ng reads the kana and spells the kanji.

Text that Nakdimon or OpenJTalk cannot read (another script, or digits for
Nakdimon) goes to espeak-ng with the same language's voice, in place, so
that mixed scripts are all spoken. Chinese needs nothing more: espeak-ng's
``cmn`` dictionary reads hanzi (piper's own Chinese phonemizer downloads a
model at run time, which an offline server cannot, and its phonemes are for
Chinese voices only).

The voice is an English one, so the phonemes are filtered to what its id
map knows: unknown symbols, espeak-ng's tone numbers (Mandarin) and
OpenJTalk's pitch-accent marks are dropped (an accent phrase boundary
becomes a word boundary). What remains is that language's phonemes, spoken
with an English voice's accent.

Imported only by :class:`~trio_asyncai.server.PiperEngine`, which imports
piper-tts first.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, final

from ._languages import LANGUAGES, sentence_end

__all__ = ["MAX_PIECE_CHARS", "Phonemizer", "openjtalk_available", "reader_name"]

logger = logging.getLogger("trio_asyncai.server")

#: The longest piece of text handed to OpenJTalk, Nakdimon or libtashkeel at
#: once: longer sentences are cut at a comma or a space (libtashkeel refuses
#: more than 12,000 characters, and a huge piece would be one huge rendering).
MAX_PIECE_CHARS: Final = 400

#: Characters OpenJTalk reads: kana, CJK ideographs and their marks, the
#: full-width forms, Latin letters (as a Japanese speaker would), digits.
_JAPANESE_RUN: Final = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef0-9A-Za-z]+"
)
#: Characters Nakdimon reads: Hebrew letters and points, and the space between words.
_HEBREW_RUN: Final = re.compile(
    "[\u0590-\u05ff\ufb1d-\ufb4f]+(?:[ \u05be'\"]+[\u0590-\u05ff\ufb1d-\ufb4f]+)*"
)
#: Where a long sentence is best cut: after a comma-like mark, else at white space.
_CLAUSE_CUT: Final = re.compile("[,;:\u3001\uff0c\uff1b\uff1a\u060c\u061b]\\s*")
_DIGITS: Final = frozenset("0123456789")
#: espeak-ng's Mandarin writes some sounds in ASCII ("s." for the retroflex
#: s, "i." for the vowel after it): their IPA, so that "." is no full stop.
_CMN_SOUNDS: Final = (
    (re.compile(r"ts\.(?=[^\s\d.,;:!?])"), "tʂ"),
    (re.compile(r"s\.(?=[^\s\d.,;:!?])"), "ʂ"),
    (re.compile(r"i\.(?=\d)"), "ɨ"),
    (re.compile(r"o-(?=\d)"), "ɤ"),
)
#: A "." inside a word (espeak-ng's Arabic writes one between syllables) is no full stop.
_INNER_DOT: Final = re.compile(r"\.(?=[^\s\d.,;:!?\-])")
#: OpenJTalk's prosody marks (piper's Japanese phonemizer): rise, fall; ``#``
#: (an accent phrase boundary) becomes a space.
_PITCH_MARKS: Final = frozenset("\u2191\u2193")

#: espeak-ng is one instance per process, with one voice at a time: every
#: use goes through this lock (piper's own phonemizer takes its own; the
#: server calls only this one).
_espeak_lock = threading.Lock()
_espeak: Any = None


def openjtalk_available() -> bool:
    """Whether Japanese can be read with OpenJTalk (``pyopenjtalk`` importable). Imports nothing."""
    import importlib.util

    return importlib.util.find_spec("pyopenjtalk") is not None


def reader_name(language: str) -> str:
    """What reads ``language``: ``"espeak-ng fr"``, ``"OpenJTalk + espeak-ng ja"``, ...

    For Japanese without ``pyopenjtalk``, ``"espeak-ng ja"``.
    """
    rules = LANGUAGES[language]
    if rules.reader == "openjtalk" and openjtalk_available():
        return "OpenJTalk + espeak-ng ja"
    if rules.reader == "nakdimon":
        return "Nakdimon + espeak-ng he"
    if rules.reader == "tashkeel":
        return "libtashkeel + espeak-ng ar"
    return f"espeak-ng {rules.espeak_voice}"


def _cmn_sounds(sentence: Sequence[str]) -> list[str]:
    """espeak-ng's ASCII spellings of Mandarin sounds, as IPA (see :data:`_CMN_SOUNDS`)."""
    joined = "".join(sentence)
    for pattern, sound in _CMN_SOUNDS:
        joined = pattern.sub(sound, joined)
    return list(joined)


def _pieces(text: str, language: str) -> list[str]:
    """``text`` cut into sentences, and sentences longer than :data:`MAX_PIECE_CHARS` cut again."""
    pieces: list[str] = []
    start = 0
    ends = [m.end() for m in sentence_end(language).finditer(text)]
    for end in [*ends, len(text)]:
        sentence = text[start:end]
        start = end
        while len(sentence) > MAX_PIECE_CHARS:
            head = sentence[:MAX_PIECE_CHARS]
            cuts = [m.end() for m in _CLAUSE_CUT.finditer(head)] or [
                i + 1 for i, c in enumerate(head) if c.isspace()
            ]
            cut = cuts[-1] if cuts and cuts[-1] > MAX_PIECE_CHARS // 4 else MAX_PIECE_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if sentence.strip():
            pieces.append(sentence)
    return pieces


@final
class Phonemizer:
    """Phonemizes text in any of the 15 languages for one piper voice.

    ``known`` is the voice's phoneme id map's symbols: nothing else comes
    out. ``vowel_clusters`` is the voice's own setting, given to espeak-ng
    as piper gives it. The readers (OpenJTalk, Nakdimon, libtashkeel) are
    loaded on first use. Thread-safe.
    """

    def __init__(self, known: Collection[str], *, vowel_clusters: Any = None) -> None:
        self._known = frozenset(known) - _DIGITS
        self._vowel_clusters = vowel_clusters
        self._lock = threading.Lock()
        self._readers: dict[str, Any] = {}
        self._reader_locks: dict[str, threading.Lock] = {}

    def phonemize(self, text: str, language: str) -> list[list[str]]:
        """The phonemes of ``text`` read in ``language``, a list per sentence, each phoneme one symbol."""
        rules = LANGUAGES[language]
        sentences: list[list[str]]
        if rules.reader == "openjtalk" and openjtalk_available():
            sentences = self._by_runs(text, language, _JAPANESE_RUN, self._openjtalk)
        elif rules.reader == "nakdimon":
            sentences = self._by_runs(text, language, _HEBREW_RUN, self._nakdimon)
        elif rules.reader == "tashkeel":
            diacritize = self._tashkeel
            sentences = [
                s for piece in _pieces(text, language) for s in self._espeak("ar", diacritize(piece))
            ]
        else:
            sentences = self._espeak(rules.espeak_voice, text)
        if language == "zh":
            sentences = [_cmn_sounds(sentence) for sentence in sentences]
        return [cleaned for sentence in sentences if (cleaned := self._clean(sentence))]

    # ------------------------------------------------------------------ readers

    def _espeak(self, voice: str, text: str) -> list[list[str]]:
        global _espeak
        with _espeak_lock:
            if _espeak is None:
                from piper.phonemize_espeak import EspeakPhonemizer

                _espeak = EspeakPhonemizer()
            result: list[list[str]] = _espeak.phonemize(voice, text, vowel_clusters=self._vowel_clusters)
            return result

    def _load(self, name: str, factory: Callable[[], Any]) -> tuple[Any, threading.Lock]:
        with self._lock:
            if name not in self._readers:
                logger.debug("loading the %s reader", name)
                self._readers[name] = factory()
                self._reader_locks[name] = threading.Lock()
            return self._readers[name], self._reader_locks[name]

    def _openjtalk(self, text: str) -> list[list[str]]:
        def factory() -> Any:
            from piper.phonemize_japanese import JapanesePhonemizer

            return JapanesePhonemizer()

        reader, lock = self._load("OpenJTalk", factory)
        with lock:
            sentences: list[list[str]] = reader.phonemize(text)
        return [[" " if p == "#" else p for p in s if p not in _PITCH_MARKS] for s in sentences]

    def _nakdimon(self, text: str) -> list[list[str]]:
        def factory() -> Any:
            from piper.phonemize_hebrew import HebrewPhonemizer

            return HebrewPhonemizer()

        reader, lock = self._load("Nakdimon", factory)
        with lock:
            sentences: list[list[str]] = reader.phonemize(text)
        return sentences

    def _tashkeel(self, text: str) -> str:
        def factory() -> Any:
            from piper.tashkeel import TashkeelDiacritizer

            return TashkeelDiacritizer()

        reader, lock = self._load("libtashkeel", factory)
        if not text.strip():
            return text
        with lock:
            # piper's own setting for Arabic voices.
            diacritized: str = reader(text, taskeen_threshold=0.8)
        return diacritized

    def _by_runs(
        self,
        text: str,
        language: str,
        run: re.Pattern[str],
        read: Callable[[str], list[list[str]]],
    ) -> list[list[str]]:
        """Read each sentence's runs of ``run`` with ``read``, the rest with espeak-ng, in order."""
        voice = LANGUAGES[language].espeak_voice
        sentences: list[list[str]] = []
        for piece in _pieces(text, language):
            phonemes: list[str] = []
            position = 0
            for match in run.finditer(piece):
                if not any(c.isalnum() for c in match.group()):
                    continue  # marks alone: nothing to read (and OpenJTalk complains on stderr)
                self._extend(phonemes, self._espeak(voice, piece[position : match.start()]))
                self._extend(phonemes, read(match.group()))
                position = match.end()
            self._extend(phonemes, self._espeak(voice, piece[position:]))
            stripped = piece.rstrip()
            if phonemes and phonemes[-1] not in ".?!" and stripped and not stripped[-1].isalnum():
                # The readers drop or keep the end mark unevenly: end a sentence with one.
                phonemes.append("?" if stripped[-1] in "?\uff1f\u061f" else ".")
            sentences.append(phonemes)
        return sentences

    @staticmethod
    def _extend(phonemes: list[str], sentences: Sequence[Sequence[str]]) -> None:
        for sentence in sentences:
            if not any(p.strip() for p in sentence):
                continue
            if phonemes and phonemes[-1] != " ":
                phonemes.append(" ")
            phonemes.extend(sentence)

    def _clean(self, phonemes: Sequence[str]) -> list[str]:
        """Only symbols the voice knows, no full stop inside a word, single spaces; nothing if only spaces."""
        joined = "".join(phonemes)
        if "." in joined:
            phonemes = list(_INNER_DOT.sub("", joined))
        out: list[str] = []
        for phoneme in phonemes:
            if phoneme not in self._known:
                continue
            if phoneme == " " and (not out or out[-1] == " "):
                continue
            out.append(phoneme)
        while out and out[-1] == " ":
            out.pop()
        return out
