"""The service's inline markup, and where a transcript must not be cut because of it.

Transcripts may hold ``<break time="400ms"/>``, ``<digits>...</digits>`` and
``<phonemes>...</phonemes>`` (ASYNC_API.md, "Inline markup"). Clients pass
markup through untouched and never split a transcript inside a tag; the
content of a ``digits`` or ``phonemes`` element stays whole too, since a cut
there would send the service half an element (the HTTP synthesizer sends one
request per sentence, and ``"<digits>555. 123</digits>"`` has a full stop in it).

A ``<`` is markup only when what follows is, or may still become, one of
those tags: ``"a < b"`` and ``"x<y"`` are plain text.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["inside", "protected_spans"]

#: The tags the service reads in transcripts.
TAG_NAMES: Final = ("break", "digits", "phonemes")
#: A complete tag.
_TAG: Final = re.compile(r"</?(?:break|digits|phonemes)\b[^<>]*>")
#: A complete element whose content must stay whole.
_ELEMENT: Final = re.compile(r"<(digits|phonemes)\b[^>]*>.*?</\1>", re.DOTALL)
#: The opening tag of such an element.
_OPENING: Final = re.compile(r"<(digits|phonemes)\b")


def _may_start_a_tag(after: str) -> bool:
    """Whether the text after an unclosed ``<`` is, or may become, one of the service's tags."""
    name = after.removeprefix("/")
    match = re.match(r"[A-Za-z]*", name)
    word = match.group() if match else ""
    if word == name:  # the name is still being written
        return any(tag.startswith(word) for tag in TAG_NAMES)
    return word in TAG_NAMES


def protected_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of ``text`` that must not be cut.

    Every complete tag and element; and, when the text ends inside an
    unfinished tag or an element not yet closed, a span from its start to
    ``len(text) + 1`` (so that not even the end of the text counts as a place
    to cut: the rest of the markup is still to come).
    """
    spans = [m.span() for m in _TAG.finditer(text)]
    spans += [m.span() for m in _ELEMENT.finditer(text)]
    unfinished = len(text) + 1
    last_lt = text.rfind("<")
    if last_lt >= 0 and text.find(">", last_lt) < 0 and _may_start_a_tag(text[last_lt + 1 :]):
        spans.append((last_lt, unfinished))
    for opening in _OPENING.finditer(text):
        if text.find(f"</{opening.group(1)}>", opening.end()) < 0:
            spans.append((opening.start(), unfinished))
            break
    return spans


def inside(position: int, spans: list[tuple[int, int]]) -> bool:
    """Whether a cut at ``position`` would fall strictly inside one of ``spans``."""
    return any(start < position < end for start, end in spans)


def has_speech(text: str) -> bool:
    """Whether ``text`` has something to say: a letter or digit outside the markup tags.

    White space, punctuation and a ``<break>`` alone have none; the text of
    a ``<digits>`` or ``<phonemes>`` element has.
    """
    return any(char.isalnum() for char in _TAG.sub(" ", text))
