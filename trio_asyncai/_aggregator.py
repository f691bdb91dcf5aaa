"""Streaming sentence aggregation: text arrives in pieces, sentences leave whole.

The TTS stages hand text to the service a sentence at a time, because a
sentence is what a voice can say with the right intonation, and because
"Dr." or "3." alone must not be spoken as if a sentence ended there. Finding
sentence ends is delegated to `sentencex <https://pypi.org/project/sentencex/>`__,
which knows the abbreviations, numbers and quoting rules of some 300 languages.

sentencex segments a whole text. Here the text grows piece by piece (LLM
tokens), so :class:`SentenceAggregator` keeps the text not yet released and
segments it again after each piece. A sentence is released only once the
first word of the *following* sentence is complete: with ``"It costs $3."``
in hand nobody can tell whether ``"50"`` comes next, and after ``"Dr."`` a
following ``"the "`` or ``"Inc. "`` means no sentence ended, so the segmenter
needs that word to decide. While a quotation or a parenthesis is open it
cannot tell either, so nothing is released until it closes (unless it has
been open for 250 characters: an inch sign must not hold up a whole reply).
What precedes a boundary matters too, so the end of the text already
released (up to 1000 characters, whole sentences) is segmented again with
the new text, as it would be in the whole.
The rest is released by :meth:`~SentenceAggregator.flush`, at the end of the
response; it may hold more than one sentence.

Cutting a text into pieces anywhere gives the same sentences as segmenting
it whole (the tests check this with hypothesis), for text whose quotations
close; an unclosed quotation leaves sentencex itself unsure.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Final, final

import sentencex  # type: ignore[import-untyped]  # no type information shipped

from ._markup import inside, protected_spans
from ._types import normalize_language

__all__ = ["SentenceAggregator", "pack", "split_text"]

#: A list item's number (``1.``, ``2)``) at the end of a piece of text.
_LIST_NUMBER_AT_END: Final = re.compile(r"(?:^|\n)[ \t]*\d{1,3}[.)]\s*$")
#: How far back from a boundary a list number is looked for: searching from the
#: text's start at every boundary would make a long text quadratic.
_LIST_NUMBER_REACH: Final = 80

#: Quotation marks and brackets: closing character for each opening one.
_PAIRS: Final = {
    "\u201c": "\u201d",  # “ ”
    "\u201e": "\u201c",  # „ “ (German)
    "\u00ab": "\u00bb",  # « »
    "\u2039": "\u203a",  # single angle quotes
    "\u300c": "\u300d",  # 「 」
    "\u300e": "\u300f",  # 『 』
    "(": ")",
    "[": "]",
    "\uff08": "\uff09",  # fullwidth parentheses
}
_CLOSERS: Final = {close: open_ for open_, close in _PAIRS.items() if open_ != "\u201e"}
#: A quotation open for more than this many characters no longer holds sentences back.
_MAX_HOLD: Final = 250
#: Text held without a sentence end before it is released at a comma or space.
_MAX_PENDING: Final = 250
#: Characters of released text kept as context for the segmenter.
_CONTEXT: Final = 1000
#: Characters written without spaces between words: kana, CJK ideographs (the run-on cut's word breaks).
_UNSPACED: Final = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff"
#: Kana that never start a word (small kana, the long-vowel mark, the iteration marks).
_NOT_FIRST: Final = (
    "\u3041\u3043\u3045\u3047\u3049\u3063\u3083\u3085\u3087"  # small hiragana
    "\u30a1\u30a3\u30a5\u30a7\u30a9\u30c3\u30e3\u30e5\u30e7"  # small katakana
    "\u30fc\u309d\u309e\u30fd\u30fe\u3005"  # long vowel mark, iteration marks
)
#: A clause or sentence mark, and the white space after it: where a run-on is best cut.
#: Ideographic and full-width marks (comma, enumeration comma, semicolon, colon,
#: full stop, ! and ?, and their half-width forms),
#: Arabic, Devanagari and Ethiopic ones, anywhere; ASCII ``, ; :`` and dashes
#: only before white space or an unspaced character ("1,000" and "12:45" stay whole).
_CLAUSE_MARK: Final = re.compile(
    "(?:[\u3001\u3002\uff0c\uff1b\uff1a\uff01\uff1f\uff61\uff64\u060c\u061b\u0964\u0965\u1361-\u1366]"
    f"|[,;:!?\u2014\u2013](?=\\s|[{_UNSPACED}]))\\s*"
)
#: A word break: after white space, or between two unspaced characters.
_WORD_BREAK: Final = re.compile(f"\\s+|(?<=[{_UNSPACED}])(?=[{_UNSPACED}])(?![{_NOT_FIRST}])")


def _first_word_complete(text: str, start: int = 0) -> bool:
    """Whether ``text[start:]`` holds a whole word: letters or digits, then white space.

    In languages written without spaces (Japanese, Chinese) a word never
    ends that way; there two characters of the next sentence are enough.
    (Read from ``start`` in place: a slice per boundary would make a long
    text quadratic.)
    """
    seen = 0
    for index in range(start, len(text)):
        char = text[index]
        if char.isalnum():
            seen += 1
            if seen >= 2 and _unspaced(char):
                return True
        elif seen and char.isspace():
            return True
    return False


_UNSPACED_CHAR: Final = re.compile(f"[{_UNSPACED}]")


def _unspaced(char: str) -> bool:
    """Whether a character belongs to a script written without spaces between words."""
    return _UNSPACED_CHAR.match(char) is not None


def _unclosed_since(text: str) -> int | None:
    """Where the earliest quotation or bracket still open at the end of ``text`` begins.

    Straight double quotes pair up in turn; the others pair with their own
    closing character (``“`` with ``”``, ``(`` with ``)``, ...). Apostrophes
    are not quotes here: "it's" would never close.
    """
    straight: int | None = None
    stacks: dict[str, list[int]] = {}
    for index, char in enumerate(text):
        if char == '"':
            straight = index if straight is None else None
        elif char == "\u201c" and stacks.get("\u201e"):
            stacks["\u201e"].pop()  # „...“ (German): here “ closes
        elif char in _PAIRS:
            stacks.setdefault(char, []).append(index)
        elif char in _CLOSERS and stacks.get(_CLOSERS[char]):
            stacks[_CLOSERS[char]].pop()
    opened = [stack[0] for stack in stacks.values() if stack]
    if straight is not None:
        opened.append(straight)
    return min(opened, default=None)


@final
class SentenceAggregator:
    """Gathers text pieces into whole sentences, for one language.

    ::

        agg = SentenceAggregator("en")
        agg.push("Dr. Smith paid $3")   # []
        agg.push(".50. He left")        # ["Dr. Smith paid $3.50. "]
        agg.flush()                     # ["He left"]

    Sentences come back exactly as written, with their white space: joining
    everything :meth:`push` and :meth:`flush` return gives back the text
    pushed. Not thread-safe; one per utterance being aggregated.

    :param language: an ISO 639-1 code for sentencex (``"en"``, ``"ja"``, ...);
        a regional tag is reduced to its base code, and a language sentencex
        does not know falls back to its generic rules.
    """

    def __init__(self, language: str = "en", *, max_pending: int | None = _MAX_PENDING) -> None:
        self.language = normalize_language(language or None) or "en"
        #: Characters held without a sentence end before a run-on is cut
        #: (``None``: never; then only sentence ends release text).
        self.max_pending = max_pending
        #: The end of the text already released, segmented again as context.
        self._context = ""
        self._buffer = ""

    def __repr__(self) -> str:
        return f"<SentenceAggregator {self.language} pending={self._buffer!r}>"

    @property
    def pending(self) -> str:
        """The text received and not yet released."""
        return self._buffer

    def push(self, text: str) -> list[str]:
        """Add a piece of text; return the sentences it completed (often none).

        Text that runs on for more than ``max_pending`` characters (250)
        without any sentence end is released at its last clause mark (comma,
        semicolon, colon, dash; the ideographic and full-width ones too), else at
        its last word break (a space, or between two characters of Chinese or
        Japanese, written without spaces), else before its last character: a
        reply written without full stops is still spoken as it comes, in any
        script. Only an open quotation holding a sentence back, or markup not
        yet complete, keeps such text waiting.
        """
        released = self._push(text)
        if not released and self.max_pending is not None and len(self._buffer) > self.max_pending:
            released = self._release_run_on()
        return released

    def _release_run_on(self) -> list[str]:
        """Cut a run-on: at its last clause mark, else its last word break, else its last character.

        Nothing is cut while a sentence end is there but held back by an
        open quotation (it is released once the quotation closes, or has been
        open for :data:`_MAX_HOLD` characters) or by the next word, still
        incomplete; and nothing inside markup.
        """
        buffer = self._buffer
        spans = protected_spans(buffer)
        ends = itertools.accumulate(len(s) for s in sentencex.segment(self.language, buffer))
        held = [end for end in ends if 0 < end < len(buffer) and not inside(end, spans)]
        if held:
            full = self._context + buffer
            opened = _unclosed_since(full)
            if opened is not None and len(full) - opened <= _MAX_HOLD:
                return []  # a sentence is there, only held back by an open quotation: wait
            if not _first_word_complete(buffer, held[-1]):
                return []  # a sentence ends, once the next word shows it does: wait for that word
        cut = _run_on_cut(buffer, spans)
        if cut is None:
            return []  # all of it is unfinished markup: nothing may be cut yet
        piece, self._buffer = buffer[:cut], buffer[cut:]
        self._context = ""  # a cut mid-sentence: no boundary context to carry
        return [piece]

    def _push(self, text: str) -> list[str]:
        if not text:
            return []
        self._buffer += text
        if not self._buffer.strip():
            return []
        # sentencex decides some boundaries by what precedes them ("the p.m.
        # Dr." is cut after "p.m." in mid-text, not at the start of one), so
        # it sees the end of the released text too, as it would the whole.
        full = self._context + self._buffer
        segments: list[str] = list(sentencex.segment(self.language, full))
        if "".join(segments) != full:
            return []  # defensively: the segmenter did not give back its text
        start = len(self._context)
        # No sentence ends inside the service's markup ("<digits>555. 123</digits>").
        spans = protected_spans(full)
        boundaries = [end for end in (0, *itertools.accumulate(map(len, segments))) if not inside(end, spans)]
        # A boundary counts once the first word after it is complete: that
        # word can decide it ("the" after "." goes on with the sentence, so
        # does "Inc." after "Dr."). The end of the text is no boundary.
        confirmed = [
            end
            for end in boundaries
            if start < end < len(full)
            and _first_word_complete(full, end)
            # "...tips:\n1. " looks like a sentence ending in "1." until the
            # item's text has come: a list number opens a sentence, it never ends one.
            and not _LIST_NUMBER_AT_END.search(full, max(0, end - _LIST_NUMBER_REACH), end)
        ]
        if not confirmed:
            return []
        opened = _unclosed_since(full)
        if opened is not None and len(full) - opened <= _MAX_HOLD:
            # Inside an open quotation sentencex cannot tell yet where
            # sentences end ('Really? "Yes' is cut after the quote, '"Dr. t'
            # after "Dr."): release nothing until it closes.
            return []
        released: list[str] = []
        position = start
        for end in boundaries:
            if position < end <= confirmed[-1]:
                released.append(full[position:end])
                position = end
        self._buffer = full[position:]
        self._context = _tail(full[:position], [end for end in boundaries if end <= position])
        return released

    def flush(self) -> list[str]:
        """Release everything still held (the end of the text), cut into sentences; start afresh.

        Nothing follows any more, so every boundary the segmenter sees counts.
        """
        rest, self._buffer = self._buffer, ""
        context, self._context = self._context, ""
        if not rest:
            return []
        full = context + rest
        segments: list[str] = list(sentencex.segment(self.language, full))
        if "".join(segments) != full:
            return [rest]
        sentences: list[str] = []
        position = len(context)
        spans = protected_spans(full)
        for end in itertools.accumulate(map(len, segments)):
            if end > position and (end == len(full) or not inside(end, spans)):
                sentences.append(full[position:end])
                position = end
        return sentences


def _run_on_cut(text: str, spans: list[tuple[int, int]]) -> int | None:
    """Where to cut a run-on ``text``: the best place, the latest of its kind; ``None`` if none.

    In order of preference: after a clause or sentence mark (full-width
    ones anywhere, ASCII ones before white space or a character of a script
    written without spaces: ``1,000`` is not cut); at a word break (after
    white space, or between two characters of such a script); and, for a
    run-on that is one enormous word, before its last character that starts
    a grapheme. Never inside ``spans`` (markup), never at 0.
    """
    for pattern in (_CLAUSE_MARK, _WORD_BREAK):
        cuts = [m.end() for m in pattern.finditer(text)]
        cuts = [cut for cut in cuts if 0 < cut < len(text) and not inside(cut, spans)]
        if cuts:
            return max(cuts)
    for cut in range(len(text) - 1, 0, -1):
        if not inside(cut, spans) and _starts_grapheme(text, cut):
            return cut
    return None


def _starts_grapheme(text: str, index: int) -> bool:
    """Whether a cut before ``text[index]`` leaves every character whole.

    Roughly: not before a combining mark, a joiner or a selector, nor inside CR LF.
    """
    char, before = text[index], text[index - 1]
    if unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200c\u200d" or before in "\u200d":
        return False
    if "\ufe00" <= char <= "\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff":  # selectors, skin tones
        return False
    return not (before == "\r" and char == "\n")


def _next_grapheme(text: str, index: int) -> int:
    """The first place at or after ``index`` where a cut leaves every character whole."""
    return next((i for i in range(max(index, 1), len(text)) if _starts_grapheme(text, i)), len(text))


def _tail(text: str, boundaries: list[int]) -> str:
    """The end of ``text``, cut at a sentence boundary, at most about :data:`_CONTEXT` long."""
    for boundary in boundaries:
        if len(text) - boundary <= _CONTEXT:
            return text[boundary:]
    return ""


def pack(pieces: Iterable[str], max_chars: int) -> Iterator[str]:
    """Consecutive ``pieces`` joined into runs of at most ``max_chars`` characters, in order.

    A piece longer than ``max_chars`` goes alone. Joining what comes out gives
    back the pieces joined: nothing is added or dropped.
    """
    run = ""
    for piece in pieces:
        if run and len(run) + len(piece) > max_chars:
            yield run
            run = ""
        run += piece
    if run:
        yield run


def split_text(text: str, max_chars: int, *, language: str = "en") -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars`` characters, at sentence ends where it can.

    For a text too long for one utterance: speak the pieces one after
    another, each as an utterance of its own, into the same output::

        for piece in trio_asyncai.split_text(book, 50_000, language="en"):
            async with synth.speak(piece) as utterance:
                async for chunk in utterance:
                    sink.write(chunk.audio)

    Sentences are found as the synthesizers find them (sentencex, for
    ``language``) and packed whole into each piece. A sentence longer than
    ``max_chars`` is cut where a run-on would be: at its last clause mark,
    else its last word break, within the limit. Markup (``<break .../>``,
    ``<digits>...</digits>``) is never cut, nor a character from its
    combining marks: an element (or a character with its marks) longer than
    ``max_chars`` is the one piece that may be longer. Joining the pieces
    gives back ``text`` exactly.

    :raises ValueError: ``max_chars`` below 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be 1 or more, not {max_chars}")
    aggregator = SentenceAggregator(language, max_pending=None)
    sentences = [*aggregator.push(text), *aggregator.flush()]
    return list(pack(itertools.chain.from_iterable(_within(s, max_chars) for s in sentences), max_chars))


def _within(sentence: str, max_chars: int) -> Iterator[str]:
    """``sentence`` in pieces of at most ``max_chars``, cut as a run-on is (see :func:`_run_on_cut`)."""
    rest = sentence
    while len(rest) > max_chars:
        spans = protected_spans(rest)
        cut = _run_on_cut(rest[: max_chars + 1], [span for span in spans if span[0] < max_chars])
        if cut is None:
            # The limit falls inside markup (cut after its outermost element), or
            # inside one character (a base and its marks: cut after it).
            enclosing = [end for start, end in spans if start < max_chars < end]
            cut = max(enclosing) if enclosing else _next_grapheme(rest, max_chars)
            if cut >= len(rest):
                break
        yield rest[:cut]
        rest = rest[cut:]
    if rest:
        yield rest
