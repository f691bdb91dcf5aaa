"""The streaming sentence aggregator: whole sentences out of text that arrives in pieces."""

# ruff: noqa: RUF001 - full-width marks are what the run-on tests are about

from __future__ import annotations

import itertools
import re

import pytest
import sentencex  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_asyncai._aggregator import SentenceAggregator, _first_word_complete
from trio_asyncai._markup import inside, protected_spans

TRICKY = (
    "Dr. Smith paid $3.50 at 10.30 a.m. today. "
    "Then he e-mailed john.doe@example.com about the 2.5 kg parcel! "
    "Was it 12:45 already? "
    "Mr. Jones, e.g., said it cost £1,299.99 vs. $5.25 at St. Mary's. "
    "Yes."
)
TRICKY_SENTENCES = [
    "Dr. Smith paid $3.50 at 10.30 a.m. today.",
    "Then he e-mailed john.doe@example.com about the 2.5 kg parcel!",
    "Was it 12:45 already?",
    "Mr. Jones, e.g., said it cost £1,299.99 vs. $5.25 at St. Mary's.",
    "Yes.",
]


def tokens_of(text: str) -> list[str]:
    """Cut a text the way an LLM streams it: words with their space, punctuation apart."""
    return re.findall(r"\s*\w+|\s*[^\w\s]|\s+$", text)


def stream(aggregator: SentenceAggregator, pieces: list[str]) -> tuple[list[str], str]:
    """Push the pieces; return what was released on the way, and what the flush gave, joined."""
    released: list[str] = []
    for piece in pieces:
        released += aggregator.push(piece)
    return released, "".join(aggregator.flush())


def test_abbreviations_numbers_prices_times_and_emails_do_not_split_sentences() -> None:
    released, rest = stream(SentenceAggregator("en"), tokens_of(TRICKY + " "))
    assert [s.strip() for s in released] == TRICKY_SENTENCES[:-1]
    assert rest == "Yes. "


def test_a_sentence_is_released_once_the_next_one_has_begun() -> None:
    agg = SentenceAggregator("en")
    assert agg.push("It costs $3") == []
    assert agg.push(".") == []  # "$3." might go on as "$3.50"
    assert agg.push("50. ") == []  # the next sentence has not begun
    assert agg.push("Then") == []  # its first word may still be "Then" or "Thence"...
    assert agg.push(" we") == ["It costs $3.50. "]
    assert agg.pending == "Then we"
    assert agg.flush() == ["Then we"]
    assert agg.pending == ""


def test_the_word_after_an_abbreviation_decides() -> None:
    agg = SentenceAggregator("en")
    assert agg.push("I met Dr. ") == []
    assert agg.push("the ") == []  # lower case: the sentence goes on
    assert agg.push("doctor. It was ok. ") == ["I met Dr. the doctor. "]


def test_joining_everything_gives_back_the_text() -> None:
    text = "  Leading space.  Two spaces.\n\nA paragraph.\tA tab. The end"
    released, rest = stream(SentenceAggregator("en"), list(text))
    assert "".join(released) + rest == text


def test_quotations_hold_sentences_until_they_close() -> None:
    agg = SentenceAggregator("en")
    assert agg.push('He asked "Really? Yes') == []
    assert agg.push(', I did." Then he ') == ['He asked "Really? Yes, I did." ']


def test_an_unclosed_quote_does_not_hold_a_whole_reply() -> None:
    agg = SentenceAggregator("en")
    assert agg.push('The pipe is 12" long. ') == []
    released = []
    for _ in range(40):
        released += agg.push("This goes on and on. ")
    assert released, "an inch sign held back every sentence"


def test_languages_without_spaces() -> None:
    agg = SentenceAggregator("ja")
    assert agg.push("今日は晴れです。") == []
    assert agg.push("明日") == ["今日は晴れです。"]


def test_regional_tags_and_unknown_languages() -> None:
    assert SentenceAggregator("de-AT").language == "de"
    assert SentenceAggregator("").language == "en"
    released, rest = stream(SentenceAggregator("xx"), tokens_of("One. Two. Three."))
    assert released and "".join(released) + rest == "One. Two. Three."


def test_white_space_alone_releases_nothing() -> None:
    agg = SentenceAggregator("en")
    assert agg.push("   ") == []
    assert agg.push("") == []
    assert agg.flush() == ["   "]


# ------------------------------------------------------------- properties

WORDS = [
    "the", "Dr.", "Mr.", "e.g.", "i.e.", "U.S.", "$3.50", "3.14", "10:30", "p.m.", "a.m.", "etc.",
    "john.doe@example.com", "www.example.com", "No.", "St.", "vs.", "Apple", "said", "it",
    "1,299.99", "v2.0.1", "(aside)", "ok", "Yes", "Inc.",
]  # fmt: skip
ENDS = [".", "!", "?", "...", "?!"]
WRAPS = [("", ""), ('"', '"'), ("(", ")"), ("\u201c", "\u201d"), ('He said, "', '"')]
sentences = st.builds(
    lambda words, end, wrap: wrap[0] + " ".join(words) + end + wrap[1],
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8),
    st.sampled_from(ENDS),
    st.sampled_from(WRAPS),
)
texts = st.builds(
    lambda parts, gaps: "".join(p + g for p, g in zip(parts, gaps, strict=False)),
    st.lists(sentences, min_size=1, max_size=6),
    st.lists(st.sampled_from([" ", "  ", "\n", "\n\n"]), min_size=6, max_size=6),
)


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    return [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, cuts=st.lists(st.integers(0, 400), max_size=60))
def test_any_split_into_pieces_gives_the_sentences_of_the_whole(text: str, cuts: list[int]) -> None:
    # (No run-on cuts here: the property is about sentence boundaries.)
    released, rest = stream(SentenceAggregator("en", max_pending=None), split_at(text, cuts))
    whole: list[str] = sentencex.segment("en", text)
    # What was released is exactly the first sentences of the whole text;
    # what is left is exactly the rest of it.
    assert released == whole[: len(released)]
    assert rest == "".join(whole[len(released) :])


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_token_by_token_equals_all_at_once(text: str) -> None:
    by_token, rest_a = stream(SentenceAggregator("en", max_pending=None), tokens_of(text) or [text])
    by_char, rest_b = stream(SentenceAggregator("en", max_pending=None), list(text))
    assert "".join(by_token) + rest_a == "".join(by_char) + rest_b == text
    whole: list[str] = sentencex.segment("en", text)
    assert by_token == whole[: len(by_token)]
    assert by_char == whole[: len(by_char)]


JA_WORDS = ["今日は", "晴れ", "です", "明日", "東京", "3.5度", "「本当」", "\uff08注\uff09", "AI"]
ja_texts = st.lists(
    st.builds(
        lambda words, end: "".join(words) + end,
        st.lists(st.sampled_from(JA_WORDS), min_size=1, max_size=6),
        st.sampled_from(["。", "\uff01", "\uff1f"]),  # fullwidth ! and ?
    ),
    min_size=1,
    max_size=6,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=ja_texts, cuts=st.lists(st.integers(0, 100), max_size=30))
def test_japanese_splits_like_the_whole(text: str, cuts: list[int]) -> None:
    released, rest = stream(SentenceAggregator("ja"), split_at(text, cuts))
    whole: list[str] = sentencex.segment("ja", text)
    assert released == whole[: len(released)]
    assert rest == "".join(whole[len(released) :])


def test_the_flush_cuts_the_rest_into_sentences() -> None:
    agg = SentenceAggregator("en")
    assert agg.push("It was 10.30 a.m. on Jan") == []
    assert agg.flush() == ["It was 10.30 a.m. on Jan"]
    assert agg.push("First. Then Dr. Smith") == ["First. "]
    assert agg.flush() == ["Then Dr. Smith"]
    assert agg.push("One? Two! Three.") == ["One? "]  # "Three" may go on: "Three..."
    assert agg.flush() == ["Two! ", "Three."]
    assert agg.flush() == []


@pytest.mark.parametrize("text", [TRICKY, "One. Two. Three. Four. Five. Six."])
def test_sentences_come_out_before_the_end(text: str) -> None:
    released, _ = stream(SentenceAggregator("en"), tokens_of(text))
    # All but the last (whose end is the end of the text) and perhaps the
    # one before it (whose following word never got a space after it).
    assert len(released) >= len(sentencex.segment("en", text)) - 2 > 0


def test_a_numbered_list_is_not_cut_after_its_numbers() -> None:
    text = "Here are two tips:\n1. Drink water.\n2. Sleep well.\nThat is all."
    agg = SentenceAggregator("en")
    out: list[str] = []
    for token in re.findall(r"\s*\S+", text):
        out += agg.push(token)
    out += agg.flush()
    assert out == ["Here are two tips:\n", "1. Drink water.\n", "2. Sleep well.\nThat is all."]


def test_a_run_on_reply_is_released_at_commas_before_it_ends() -> None:
    clause = "and then we went on walking along the river, "
    agg = SentenceAggregator("en")
    released: list[str] = []
    for _ in range(12):  # about 540 characters, no full stop anywhere
        for token in re.findall(r"\s*\S+\s?", clause):
            released += agg.push(token)
    assert released, "a reply without full stops must not wait for its end"
    assert all(piece.endswith(", ") for piece in released)
    assert all(len(piece) <= 300 for piece in released)
    assert "".join(released) + "".join(agg.flush()) == clause * 12


MARKUP_SENTENCES = [
    "Call me at <digits>555. 123. 4567</digits> tomorrow. ",
    'Then wait <break time="1.5s"/> and go. ',
    "Say <phonemes>ˈhɛ.loʊ. wɝld</phonemes> now! ",  # IPA
    "Done.",
]


def balanced(piece: str) -> bool:
    """Whether a piece of text holds whole tags and whole digits/phonemes elements only."""
    for name in ("digits", "phonemes"):
        if piece.count(f"<{name}>") != piece.count(f"</{name}>"):
            return False
    return piece.count("<") == piece.count(">")


@settings(max_examples=200)
@given(cuts=st.lists(st.integers(0, 200), max_size=40))
def test_no_sentence_ends_inside_markup(cuts: list[int]) -> None:
    text = "".join(MARKUP_SENTENCES)
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    agg = SentenceAggregator()
    released: list[str] = []
    for piece in pieces:
        released += agg.push(piece)
    released += agg.flush()
    assert "".join(released) == text
    assert all(balanced(sentence) for sentence in released), released
    # The sentences around the markup are still found.
    assert released == MARKUP_SENTENCES


def test_a_run_on_is_not_cut_inside_markup() -> None:
    agg = SentenceAggregator(max_pending=40)
    text = "and the number is <digits>1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12</digits> and so on"
    released = agg.push(text)
    assert released
    assert all(balanced(piece) for piece in released)
    assert "".join(released) + agg.pending == text


# ------------------------------------------------------------- run-ons in any script


def test_cjk_joined_by_full_width_commas_is_released_before_the_flush() -> None:
    agg = SentenceAggregator("zh")
    text = "，".join(["我们今天去公园散步"] * 300)  # 3,000 characters, no sentence end
    released: list[str] = []
    for char in text:
        released += agg.push(char)
    assert released, "CJK text without a sentence end must not wait for the flush"
    assert all(piece.endswith("，") for piece in released)
    assert all(len(piece) <= 260 for piece in released)
    assert "".join(released) + "".join(agg.flush()) == text


@pytest.mark.parametrize("mark", ["、", "；", "：", "，", ", ", "; "])
def test_every_clause_mark_is_a_place_to_cut(mark: str) -> None:
    agg = SentenceAggregator("ja", max_pending=40)
    released = agg.push(mark.join(["とても長い文章です"] * 10))
    assert released
    assert released[0].endswith(mark)


def test_cjk_without_any_mark_is_cut_between_characters() -> None:
    agg = SentenceAggregator("zh", max_pending=40)
    text = "我们今天去公园散步" * 10
    released = agg.push(text)
    assert released and len(agg.pending) < 40
    assert "".join(released) + agg.pending == text


def test_an_ascii_comma_inside_a_number_is_no_place_to_cut() -> None:
    agg = SentenceAggregator("en", max_pending=20)
    released = agg.push("it cost 1,299 and then 3,000 more")
    assert released == ["it cost 1,299 and then 3,000 "]


RUN_ON_ALPHABET = st.sampled_from(
    [
        "我", "们", "公", "园", "ー", "っ", "，", "、", "；", "：", "。", "「", "」",
        "a", "word", " ", "  ", "\n", ",", ", ", ";", ":", ".", ". ", "!", "?", '"', "(", ")",
        "1,000", "e\u0301", "\u0915\u094d\u0937", "\u0964", "\U0001f44d\U0001f3fd",
        "<digits>12, 34</digits>", '<break time="1s"/>', "<phonemes>a, b</phonemes>", "<", ">",
    ]
)  # fmt: skip
run_on_pieces = st.lists(st.lists(RUN_ON_ALPHABET, min_size=1, max_size=12).map("".join), max_size=80)


def _held_by_quotation_or_next_word(agg: SentenceAggregator) -> bool:
    """Whether a sentence end is in the pending text, held back by an open quotation or an unfinished word."""
    pending = agg.pending
    spans = protected_spans(pending)
    ends = [
        end
        for end in itertools.accumulate(len(s) for s in sentencex.segment(agg.language, pending))
        if 0 < end < len(pending) and not inside(end, spans)
    ]
    if not ends:
        return False
    quotation_open = any(c in pending + agg._context for c in '"(“「（[«‹„')
    return quotation_open or not _first_word_complete(pending[ends[-1] :])


def _all_markup(text: str) -> bool:
    spans = protected_spans(text)
    return all(inside(i, spans) for i in range(1, len(text)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=run_on_pieces, language=st.sampled_from(["en", "zh", "ja", "hi"]), limit=st.integers(5, 80))
def test_a_run_on_in_any_script_is_released_whole_and_never_inside_markup(
    pieces: list[str], language: str, limit: int
) -> None:
    agg = SentenceAggregator(language, max_pending=limit)
    released: list[str] = []
    for piece in pieces:
        out = agg.push(piece)
        released += out
        if not out and len(agg.pending) > limit:
            # Too much held, and nothing released: only a sentence held back
            # (by an open quotation, or a next word not yet complete), or
            # markup that is not complete yet, may be the reason.
            assert _held_by_quotation_or_next_word(agg) or _all_markup(agg.pending), agg.pending
    released += agg.flush()
    text = "".join(pieces)
    assert "".join(released) == text
    # No piece is cut inside markup: each cut point is outside the protected spans of the whole.
    spans = protected_spans(text)
    cuts = list(itertools.accumulate(len(p) for p in released))[:-1]
    assert not any(inside(cut, spans) for cut in cuts)
