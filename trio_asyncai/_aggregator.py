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
from typing import Final, final

import sentencex  # type: ignore[import-untyped]  # no type information shipped

from ._markup import inside, protected_spans
from ._types import normalize_language

__all__ = ["SentenceAggregator"]

#: A list item's number (``1.``, ``2)``) at the end of a piece of text.
_LIST_NUMBER_AT_END: Final = re.compile(r"(?:^|\n)[ \t]*\d{1,3}[.)]\s*$")

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


def _first_word_complete(text: str) -> bool:
    """Whether ``text`` holds a whole word: letters or digits, then white space.

    In languages written without spaces (Japanese, Chinese) a word never
    ends that way; there two characters of the next sentence are enough.
    """
    seen = 0
    for char in text:
        if char.isalnum():
            seen += 1
            if seen >= 2 and _unspaced(char):
                return True
        elif seen and char.isspace():
            return True
    return False


def _unspaced(char: str) -> bool:
    """Whether a character belongs to a script written without spaces between words."""
    return "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


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
        without any sentence end is released at its last comma, semicolon or
        space, so that a reply written without full stops is still spoken as
        it comes.
        """
        released = self._push(text)
        if not released and self.max_pending is not None and len(self._buffer) > self.max_pending:
            released = self._release_run_on()
        return released

    def _release_run_on(self) -> list[str]:
        buffer = self._buffer
        if len(list(sentencex.segment(self.language, buffer))) > 1:
            return []  # sentences are there, only held back (an open quotation): wait
        cut = max(buffer.rfind(mark) for mark in (", ", "; ", ": ", " \u2014 "))
        cut = cut + 2 if cut > 0 else buffer.rstrip().rfind(" ") + 1
        spans = protected_spans(buffer)
        if inside(cut, spans):  # not inside markup: before it
            cut = min(start for start, end in spans if start < cut < end)
        if cut <= 0:
            return []  # one enormous word: nothing sensible to cut
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
        boundaries = [
            end for end in (0, *itertools.accumulate(map(len, segments))) if not inside(end, spans)
        ]
        # A boundary counts once the first word after it is complete: that
        # word can decide it ("the" after "." goes on with the sentence, so
        # does "Inc." after "Dr."). The end of the text is no boundary.
        confirmed = [
            end
            for end in boundaries
            if start < end < len(full)
            and _first_word_complete(full[end:])
            # "...tips:\n1. " looks like a sentence ending in "1." until the
            # item's text has come: a list number opens a sentence, it never ends one.
            and not _LIST_NUMBER_AT_END.search(full, 0, end)
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

    def reset(self) -> None:
        """Drop everything still held (after an interruption)."""
        self._buffer = ""
        self._context = ""


def _tail(text: str, boundaries: list[int]) -> str:
    """The end of ``text``, cut at a sentence boundary, at most about :data:`_CONTEXT` long."""
    for boundary in boundaries:
        if len(text) - boundary <= _CONTEXT:
            return text[boundary:]
    return ""
