"""``split_text``: a text too long for one utterance, in pieces cut at sentence ends; and ``pack``."""

from __future__ import annotations

import itertools

import pytest
import sentencex  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

import trio_asyncai
from trio_asyncai._aggregator import pack, split_text
from trio_asyncai._markup import protected_spans

WORDS = st.sampled_from(
    ["Dr. Smith", "paid", "$3.50", "today", "e.g.", "a", "longer-word", "12:45", "parcel", "今日は"]
)
SENTENCES = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(WORDS, min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", ",", ""]),
)
TEXTS = st.lists(st.tuples(SENTENCES, st.sampled_from([" ", "  ", "\n"])), min_size=1, max_size=20).map(
    lambda parts: "".join(s + gap for s, gap in parts)
)


def test_it_is_public() -> None:
    assert trio_asyncai.split_text is split_text


@given(text=TEXTS, max_chars=st.integers(1, 300))
def test_the_pieces_are_the_text_and_within_the_limit(text: str, max_chars: int) -> None:
    pieces = split_text(text, max_chars)
    assert "".join(pieces) == text
    assert all(piece and len(piece) <= max_chars for piece in pieces)


@given(text=TEXTS, max_chars=st.integers(120, 400))
def test_sentences_that_fit_are_never_cut(text: str, max_chars: int) -> None:
    sentences: list[str] = sentencex.segment("en", text)
    ends = {sum(map(len, sentences[: i + 1])) for i in range(len(sentences))}
    position = 0
    for piece in split_text(text, max_chars)[:-1]:
        position += len(piece)
        within = [s for s in sentences if len(s) > max_chars]
        if not within:  # every sentence fits: every piece ends where a sentence does
            assert position in ends


def test_a_long_text_becomes_few_pieces_of_whole_sentences() -> None:
    text = "This sentence is spoken again and again. " * 3000  # 123,000 characters
    pieces = split_text(text, 50_000)
    assert [len(p) for p in pieces] == [49_979, 49_979, 23_042]
    assert all(p.endswith("again. ") for p in pieces)


def test_markup_is_never_cut() -> None:
    text = 'Call <digits>555 123 4567</digits> now, <break time="1s"/> please.'
    for max_chars in range(1, len(text) + 1):
        pieces = split_text(text, max_chars)
        assert "".join(pieces) == text
        for piece in pieces:
            assert piece.count("<digits>") == piece.count("</digits>")
            assert piece.count("<") == piece.count(">")
        # A piece over the limit is one whole element, nothing more.
        assert all(len(p) <= max_chars or protected_spans(p)[-1] == (0, len(p)) for p in pieces)


def test_unspaced_scripts_are_cut_between_characters() -> None:
    text = "今日は晴れです。" * 10 + "明日も晴れ" * 20
    pieces = split_text(text, 30, language="ja")
    assert "".join(pieces) == text
    assert all(len(p) <= 30 for p in pieces)
    assert pieces[0].endswith("。")


def test_a_character_and_its_marks_stay_whole() -> None:
    text = "e\u0301\u0301e\u0301"  # é with two accents, then é
    assert split_text(text, 1) == ["e\u0301\u0301", "e\u0301"]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_chars must be 1 or more, not 0"):
        split_text("Hi.", 0)


@given(pieces=st.lists(st.text(min_size=1, max_size=20), max_size=20), max_chars=st.integers(1, 50))
def test_pack_joins_in_order_within_the_limit(pieces: list[str], max_chars: int) -> None:
    runs = list(pack(pieces, max_chars))
    assert "".join(runs) == "".join(pieces)
    # A run over the limit is one piece that alone is over it.
    assert all(len(run) <= max_chars or run in pieces for run in runs)
    # No two neighbours could have been one run.
    assert all(len(a) + len(b) > max_chars for a, b in itertools.pairwise(runs))
