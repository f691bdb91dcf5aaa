"""The sans-I/O protocol core: messages built, messages parsed, context states.

No network and no trio here: :class:`ClientProtocol` is a pure state machine,
so it is driven back to back with hand-written server messages.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trio_asyncai import ConfigurationError, OutputFormat, ProtocolError, ProtocolStateError, Settings
from trio_asyncai._markup import has_speech
from trio_asyncai._protocol import (
    QUOTA_MARKER,
    AudioReceived,
    ClientProtocol,
    ContextEndedEarly,
    ContextFinished,
    ContextState,
    Event,
    MessageIgnored,
    QuotaMarkerScanner,
    ServerErrorReceived,
)
from trio_asyncai._types import DEFAULT_MODEL

VOICE = "voice-123"


# ------------------------------------------------------------------ helpers


def make_protocol(*, initialize: bool = True, **settings_kw: Any) -> ClientProtocol:
    proto = ClientProtocol(Settings(voice_id=VOICE, **settings_kw))
    if initialize:
        proto.initialize()
    return proto


def loads(message: str | None) -> dict[str, Any]:
    assert message is not None
    data = json.loads(message)
    assert isinstance(data, dict)
    return data


def audio_msg(context_id: str | None, audio: bytes, *, final: bool = False) -> str:
    message: dict[str, Any] = {"audio": base64.b64encode(audio).decode("ascii"), "final": final}
    if context_id is not None:
        message["context_id"] = context_id
    return json.dumps(message)


def final_msg(context_id: str | None) -> str:
    return audio_msg(context_id, b"", final=True)


def error_msg(code: str | None, message: str | None = "boom", **rest: Any) -> str:
    data: dict[str, Any] = dict(rest)
    data["error_code"] = code
    if message is not None:
        data["message"] = message
    return json.dumps(data)


def split_text(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


# ------------------------------------------------------------- initialize


def test_initialize_sends_the_connection_settings() -> None:
    proto = make_protocol(initialize=False)
    assert loads(proto.initialize()) == {
        "model_id": DEFAULT_MODEL,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
    }


def test_initialize_carries_language_and_format() -> None:
    fmt = OutputFormat(container="mp3", sample_rate=24000, bit_rate=128000)
    proto = make_protocol(initialize=False, model="asyncflow_v2.0", language="en-US", output_format=fmt)
    body = loads(proto.initialize())
    assert body["model_id"] == "asyncflow_v2.0"
    assert body["language"] == "en"
    assert body["output_format"] == {
        "container": "mp3",
        "encoding": "pcm_s16le",
        "sample_rate": 24000,
        "bit_rate": 128000,
    }


def test_initialize_only_once() -> None:
    proto = make_protocol()
    with pytest.raises(ProtocolStateError, match="already initialized"):
        proto.initialize()


def test_nothing_is_sent_before_initialize() -> None:
    proto = make_protocol(initialize=False)
    with pytest.raises(ProtocolStateError, match="initialize"):
        proto.send_text("a", "hello ")
    with pytest.raises(ProtocolStateError, match="initialize"):
        proto.keepalive()
    # The failed send did not open the context.
    assert proto.tracked_contexts == []


# -------------------------------------------------------------- send_text


def test_send_text_plain() -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", "Hello ")) == {"transcript": "Hello ", "context_id": "a"}
    assert proto.state("a") is ContextState.OPEN
    assert proto.tracked_contexts == ["a"]


def test_send_text_forced() -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", "Hello ", force=True)) == {
        "transcript": "Hello ",
        "context_id": "a",
        "force": True,
    }
    # A flush does not end the context: more text may follow.
    assert proto.state("a") is ContextState.OPEN
    assert loads(proto.send_text("a", "again ")) == {"transcript": "again ", "context_id": "a"}


def test_send_text_default_context_has_no_context_id() -> None:
    proto = make_protocol()
    assert loads(proto.send_text(None, "Hi ")) == {"transcript": "Hi "}
    assert loads(proto.send_text(None, "there ", force=True)) == {"transcript": "there ", "force": True}
    assert proto.tracked_contexts == [None]
    assert proto.state(None) is ContextState.OPEN


def test_send_text_passes_markup_and_unicode_through() -> None:
    proto = make_protocol()
    message = proto.send_text("a", 'Grüße, 世界 <break time="1s"/> "quoted"\n ')
    # Inner whitespace and markup pass as they are; the chunk ends with one space.
    assert loads(message)["transcript"] == 'Grüße, 世界 <break time="1s"/> "quoted" '
    assert message is not None
    assert "Grüße" in message  # not \u-escaped


def test_send_text_holds_back_a_partial_word() -> None:
    proto = make_protocol()
    assert proto.send_text("a", "Hel") is None
    assert proto.state("a") is ContextState.OPEN
    assert loads(proto.send_text("a", "lo wor")) == {"transcript": "Hello ", "context_id": "a"}
    assert proto.send_text("a", "ld") is None
    assert [loads(m) for m in proto.finish("a", "!")] == [
        {"transcript": "world! ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_send_text_of_only_whitespace_sends_nothing(text: str) -> None:
    proto = make_protocol()
    assert proto.send_text("a", text) is None
    proto.send_text("a", "Hi ")
    # The last chunk already ends with a space.
    assert proto.send_text("a", text) is None


@pytest.mark.parametrize(
    ("text", "transcript"),
    [
        ("Hello  ", "Hello "),
        ("Hello\n", "Hello "),
        ("Hello \t\n ", "Hello "),
        ("one  two\nthree ", "one  two\nthree "),
        ("one two thr", "one two "),
    ],
)
def test_a_chunk_ends_with_exactly_one_space(text: str, transcript: str) -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", text))["transcript"] == transcript


def test_force_sends_the_held_partial_word() -> None:
    proto = make_protocol()
    assert proto.send_text("a", "Hel") is None
    assert loads(proto.send_text("a", "lo", force=True)) == {
        "transcript": "Hello ",
        "context_id": "a",
        "force": True,
    }


def test_force_with_nothing_to_speak_sends_nothing() -> None:
    proto = make_protocol()
    assert proto.send_text("a", "", force=True) is None
    assert proto.send_text("a", "Hi ", force=True) is not None
    # Everything was already forced out.
    assert proto.send_text("a", "  ", force=True) is None


def test_force_after_unforced_text_flushes_it() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    assert loads(proto.send_text("a", "", force=True)) == {
        "transcript": " ",
        "context_id": "a",
        "force": True,
    }
    assert proto.send_text("a", "", force=True) is None


def test_an_unfinished_tag_is_held_back() -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", 'Say <break time="1'))["transcript"] == "Say "
    assert loads(proto.send_text("a", 's"/> now ')) == {
        "transcript": '<break time="1s"/> now ',
        "context_id": "a",
    }


@pytest.mark.parametrize("element", ["digits", "phonemes"])
def test_an_unclosed_element_is_held_back(element: str) -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", f"Call <{element}>12 3"))["transcript"] == "Call "
    assert proto.send_text("a", "4 5") is None
    assert loads(proto.send_text("a", f"6</{element}> now ")) == {
        "transcript": f"<{element}>12 34 56</{element}> now ",
        "context_id": "a",
    }


def test_a_bare_less_than_is_not_a_tag() -> None:
    proto = make_protocol()
    assert loads(proto.send_text("a", "if a < b then"))["transcript"] == "if a < b "


def test_a_complete_tag_at_the_end_is_not_cut() -> None:
    # The text ends right after a tag with a space inside it: the only
    # whitespace to cut at is inside the tag.
    proto = make_protocol()
    message = proto.send_text("a", 'Hello <break time="1s"/>')
    assert message is not None
    assert loads(message)["transcript"] in ("Hello ", 'Hello <break time="1s"/> ')


@pytest.mark.parametrize("element", ["digits", "phonemes"])
def test_a_closed_element_at_the_end_is_not_cut(element: str) -> None:
    proto = make_protocol()
    message = proto.send_text("a", f"Call <{element}>123 456</{element}>")
    assert message is not None
    assert loads(message)["transcript"] in ("Call ", f"Call <{element}>123 456</{element}> ")


def test_contexts_are_tracked_oldest_first() -> None:
    proto = make_protocol()
    for ctx in ("c", "a", "b"):
        proto.send_text(ctx, "x ")
    proto.send_text("c", "more ")
    assert proto.tracked_contexts == ["c", "a", "b"]


@pytest.mark.parametrize("bad", ["", "x" * 257, 5, b"ctx"])
def test_send_text_rejects_bad_context_ids(bad: Any) -> None:
    proto = make_protocol()
    with pytest.raises(ProtocolStateError, match="context_id"):
        proto.send_text(bad, "hello ")
    assert proto.tracked_contexts == []


def test_send_text_accepts_longest_context_id() -> None:
    proto = make_protocol()
    ctx = "x" * 256
    assert loads(proto.send_text(ctx, "hi "))["context_id"] == ctx


@pytest.mark.parametrize("bad", [None, b"bytes", 3])
def test_send_text_rejects_non_str_text(bad: Any) -> None:
    proto = make_protocol()
    with pytest.raises(ConfigurationError, match="text must be a str"):
        proto.send_text("a", bad)


def test_no_text_after_finish() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    proto.finish("a")
    with pytest.raises(ProtocolStateError, match="closing"):
        proto.send_text("a", "more ")
    assert proto.state("a") is ContextState.CLOSING


# ------------------------------------------------------ the chunking rule

# Words, whitespace runs, and markup that must reach the service whole.
tokens = st.lists(
    st.sampled_from(
        [
            "Hello",
            "world.",
            "a",
            "1<2",
            "Grüße",
            " ",
            "  ",
            "\n",
            " \t ",
            '<break time="1s"/>',
            "<digits>12 34</digits>",
            "<phonemes>h e l o</phonemes>",
        ]
    ),
    max_size=16,
)
WHOLE = re.compile(r'<break time="1s"/>|<digits>.*?</digits>|<phonemes>.*?</phonemes>', re.DOTALL)


def markup_is_whole(transcript: str) -> bool:
    """The chunk holds only whole tags and elements: none of them was cut."""
    rest = WHOLE.sub("", transcript)
    return re.search(r"<[A-Za-z/]|>", rest) is None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(tokens, st.data())
def test_chunks_carry_the_same_words_and_never_cut_markup(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8), label="cuts")
    last = data.draw(st.sampled_from(["", "end.", " "]), label="last")
    pieces = split_text(text, cuts)
    proto = make_protocol()
    transcripts: list[str] = []
    for piece in pieces:
        message = proto.send_text("a", piece)
        if message is not None:
            sent = loads(message)
            assert "force" not in sent
            transcripts.append(sent["transcript"])
    messages = [loads(m) for m in proto.finish("a", last)]
    if messages:
        assert messages[-1] == {"close_context": True, "transcript": "", "context_id": "a"}
        for m in messages[:-1]:
            assert m["force"] is True
            transcripts.append(m["transcript"])
    assert proto.state("a") is (ContextState.CLOSING if messages else ContextState.CLOSED)

    # Joining the chunks gives the same words, markup included.
    assert "".join(transcripts).split() == (text + last).split()
    assert bool(messages) == bool((text + last).strip())
    for transcript in transcripts:
        assert transcript.endswith(" ")
        assert not transcript.strip() or not transcript[-2].isspace()
        assert markup_is_whole(transcript), transcript
    # Nothing but the finish's flush is whitespace only.
    assert all(t.strip() for t in transcripts[:-1])


# ----------------------------------------------------------------- finish


def test_finish_sends_the_last_text_then_closes() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert [loads(m) for m in proto.finish("a", "world.")] == [
        {"transcript": "world. ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]
    assert proto.state("a") is ContextState.CLOSING
    assert proto.tracked_contexts == ["a"]


def test_finish_then_final_finishes_the_context() -> None:
    proto = make_protocol()
    assert proto.state("a") is ContextState.CLOSED  # untracked reads as closed
    proto.send_text("a", "Hello ")
    assert proto.state("a") is ContextState.OPEN
    proto.finish("a", "world.")
    assert proto.state("a") is ContextState.CLOSING
    # The rest of the audio arrives after close_context, then the final.
    assert proto.receive(audio_msg("a", b"\x01\x02")) == [AudioReceived("a", b"\x01\x02")]
    assert proto.state("a") is ContextState.CLOSING
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.CLOSED
    assert proto.tracked_contexts == []
    # Forgotten: nothing more to close, and anything late goes nowhere.
    assert proto.close_context("a") is None
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]


def test_finish_of_unforced_text_forces_it() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert [loads(m) for m in proto.finish("a")] == [
        {"transcript": " ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]


def test_finish_after_a_force_only_closes() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    assert [loads(m) for m in proto.finish("a")] == [
        {"close_context": True, "transcript": "", "context_id": "a"}
    ]
    assert proto.state("a") is ContextState.CLOSING
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


def test_finish_sends_the_held_partial_word() -> None:
    proto = make_protocol()
    assert proto.send_text("a", "Hel") is None
    assert [loads(m) for m in proto.finish("a")] == [
        {"transcript": "Hel ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]


def test_finish_opens_a_new_context() -> None:
    # speak(): the whole text in one forced message, then the close.
    proto = make_protocol()
    assert [loads(m) for m in proto.finish("a", "Hello.")] == [
        {"transcript": "Hello. ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]
    assert proto.state("a") is ContextState.CLOSING
    assert proto.receive(audio_msg("a", b"pcm")) == [AudioReceived("a", b"pcm")]
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


@pytest.mark.parametrize("before", [None, "", "  ", "\n"])
@pytest.mark.parametrize("last", ["", " "])
def test_finish_of_a_never_sent_context_sends_nothing(before: str | None, last: str) -> None:
    proto = make_protocol()
    proto.send_text("other", "x ")
    if before is not None:
        assert proto.send_text("a", before) is None
        assert proto.tracked_contexts == ["other", "a"]
    assert proto.finish("a", last) == []
    assert proto.state("a") is ContextState.CLOSED
    assert proto.tracked_contexts == ["other"]
    assert proto.close_context("a") is None
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]


def test_a_finished_context_id_may_be_used_again() -> None:
    proto = make_protocol()
    proto.finish("a", "One.")
    proto.receive(final_msg("a"))
    assert loads(proto.send_text("a", "Two ")) == {"transcript": "Two ", "context_id": "a"}
    assert proto.state("a") is ContextState.OPEN


def test_finish_twice_is_refused() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    proto.finish("a")
    with pytest.raises(ProtocolStateError, match="closing"):
        proto.finish("a")
    assert proto.state("a") is ContextState.CLOSING


def test_finish_needs_a_live_connection() -> None:
    proto = make_protocol(initialize=False)
    with pytest.raises(ProtocolStateError, match="initialize"):
        proto.finish("a", "x")
    proto.initialize()
    proto.send_text("a", "x ")
    proto.terminate()
    with pytest.raises(ProtocolStateError, match="terminated"):
        proto.finish("a")
    assert proto.tracked_contexts == []


def test_finish_rejects_bad_context_ids() -> None:
    proto = make_protocol()
    with pytest.raises(ProtocolStateError, match="context_id"):
        proto.finish("", "x")
    assert proto.tracked_contexts == []


def test_force_gets_no_final() -> None:
    # The service answers force with audio only: audio for an open context is
    # delivered and changes nothing.
    proto = make_protocol()
    proto.send_text("a", "One. ", force=True)
    assert proto.receive(audio_msg("a", b"one")) == [AudioReceived("a", b"one")]
    proto.send_text("a", "Two. ", force=True)
    assert proto.receive(audio_msg("a", b"two")) == [AudioReceived("a", b"two")]
    assert proto.state("a") is ContextState.OPEN
    proto.finish("a", "Three.")
    assert proto.receive(audio_msg("a", b"three")) == [AudioReceived("a", b"three")]
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


# ------------------------------------------------------- a final too early


def test_final_before_close_ends_the_context_early() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ", force=True)
    assert proto.receive(audio_msg("a", b"hi")) == [AudioReceived("a", b"hi")]
    assert proto.receive(final_msg("a")) == [ContextEndedEarly("a")]
    assert proto.state("a") is ContextState.ENDED
    assert proto.tracked_contexts == ["a"]
    # Nothing after the final is delivered.
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]
    assert proto.state("a") is ContextState.ENDED
    # No more text, no finish; the context must still be closed.
    with pytest.raises(ProtocolStateError, match="ended"):
        proto.send_text("a", "more ")
    with pytest.raises(ProtocolStateError, match="ended"):
        proto.finish("a")
    assert loads(proto.close_context("a")) == {
        "close_context": True,
        "transcript": "",
        "context_id": "a",
    }
    assert proto.state("a") is ContextState.CLOSED
    assert proto.close_context("a") is None


def test_final_with_audio_before_close_delivers_the_audio() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    assert proto.receive(audio_msg("a", b"end", final=True)) == [
        AudioReceived("a", b"end"),
        ContextEndedEarly("a"),
    ]
    assert proto.state("a") is ContextState.ENDED


def test_an_ended_context_is_not_kept_alive() -> None:
    proto = make_protocol()
    proto.send_text("a", "x ")
    proto.send_text("b", "y ")
    proto.receive(final_msg("b"))
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "a"}


# ---------------------------------------------------------- close_context


def test_close_context_once_only() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert loads(proto.close_context("a")) == {
        "close_context": True,
        "transcript": "",
        "context_id": "a",
    }
    assert proto.state("a") is ContextState.CLOSED
    assert proto.close_context("a") is None
    assert proto.close_context("never-opened") is None


def test_close_after_finish_sends_nothing_more() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert len(proto.finish("a")) == 2
    # finish() sent the close already; this one only stops tracking.
    assert proto.close_context("a") is None
    assert proto.state("a") is ContextState.CLOSED
    assert proto.tracked_contexts == []
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]


def test_close_of_a_context_never_sent_sends_nothing() -> None:
    proto = make_protocol()
    assert proto.send_text("a", "Hel") is None
    assert proto.close_context("a") is None
    assert proto.tracked_contexts == []


def test_close_an_open_context_interrupts_it() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    proto.send_text("b", "Other ", force=True)
    assert proto.receive(audio_msg("a", b"early")) == [AudioReceived("a", b"early")]
    assert loads(proto.close_context("a")) == {
        "close_context": True,
        "transcript": "",
        "context_id": "a",
    }
    assert proto.tracked_contexts == ["b"]
    # The service still sends the rest of a's audio and its final: dropped.
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(audio_msg("a", b"last", final=True)) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]
    assert proto.state("b") is ContextState.OPEN
    assert proto.receive(audio_msg("b", b"b")) == [AudioReceived("b", b"b")]


def test_an_interrupted_id_may_be_used_again() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    proto.close_context("a")
    # The reused id is a new context: the old one's late final does not end it.
    assert loads(proto.send_text("a", "Again ")) == {"transcript": "Again ", "context_id": "a"}
    assert [loads(m) for m in proto.finish("a")] == [
        {"transcript": " ", "context_id": "a", "force": True},
        {"close_context": True, "transcript": "", "context_id": "a"},
    ]


def test_close_default_context_has_no_context_id() -> None:
    proto = make_protocol()
    proto.send_text(None, "Hi ")
    assert loads(proto.close_context(None)) == {"close_context": True, "transcript": ""}
    assert proto.close_context(None) is None


def test_finish_default_context_has_no_context_id() -> None:
    proto = make_protocol()
    assert [loads(m) for m in proto.finish(None, "Hi")] == [
        {"transcript": "Hi ", "force": True},
        {"close_context": True, "transcript": ""},
    ]


# -------------------------------------------------------------- keepalive


def test_keepalive_without_contexts() -> None:
    proto = make_protocol()
    assert loads(proto.keepalive()) == {"transcript": " "}


def test_keepalive_picks_the_newest_open_context() -> None:
    proto = make_protocol()
    proto.send_text("old", "a ")
    proto.send_text("new", "b ")
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "new"}
    proto.finish("new")  # closing: no longer open
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "old"}
    proto.finish("old")
    assert loads(proto.keepalive()) == {"transcript": " "}


def test_keepalive_skips_contexts_not_open_or_not_on_the_wire() -> None:
    proto = make_protocol()
    proto.send_text("a", "x ")
    proto.send_text("ended", "y ")
    proto.receive(final_msg("ended"))
    proto.send_text("closed", "z ")
    proto.close_context("closed")
    proto.send_text("closing", "w ")
    proto.finish("closing")
    assert proto.send_text("held", "Hel") is None  # tracked, but the service does not know it
    assert proto.state("held") is ContextState.OPEN
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "a"}


def test_keepalive_does_not_name_the_default_context() -> None:
    proto = make_protocol()
    proto.send_text(None, "x ")
    assert loads(proto.keepalive()) == {"transcript": " "}


def test_keepalive_changes_no_context() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ", force=True)
    proto.keepalive()
    # Nothing unforced is pending because of the keepalive.
    assert [loads(m) for m in proto.finish("a")] == [
        {"close_context": True, "transcript": "", "context_id": "a"}
    ]


# -------------------------------------------------------------- terminate


def test_terminate() -> None:
    proto = make_protocol()
    proto.send_text("a", "x ")
    assert loads(proto.terminate()) == {"terminate": True}
    assert proto.tracked_contexts == []
    assert proto.state("a") is ContextState.CLOSED
    assert proto.close_context("a") is None
    with pytest.raises(ProtocolStateError, match="terminated"):
        proto.send_text("b", "y ")
    with pytest.raises(ProtocolStateError, match="terminated"):
        proto.keepalive()
    # Audio still arriving after terminate goes nowhere.
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]


# ---------------------------------------------------------- receive: audio


def test_audio_for_a_tracked_context() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ", force=True)
    assert proto.receive(audio_msg("a", b"pcm")) == [AudioReceived("a", b"pcm")]


def test_audio_for_the_default_context() -> None:
    proto = make_protocol()
    proto.send_text(None, "Hi ")
    proto.finish(None)
    assert proto.receive(audio_msg(None, b"pcm")) == [AudioReceived(None, b"pcm")]
    assert proto.receive(final_msg(None)) == [ContextFinished(None)]


def test_audio_and_final_in_one_message() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.finish("a")
    assert proto.receive(audio_msg("a", b"end", final=True)) == [
        AudioReceived("a", b"end"),
        ContextFinished("a"),
    ]


@pytest.mark.parametrize(
    "message",
    [
        '{"final": true, "context_id": "a"}',
        '{"audio": null, "final": true, "context_id": "a"}',
        '{"audio": "", "final": true, "context_id": "a", "something_new": 1}',
    ],
)
def test_final_variants(message: str) -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.finish("a")
    assert proto.receive(message) == [ContextFinished("a")]


def test_empty_non_final_audio_is_no_event() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    assert proto.receive('{"audio": "", "final": null, "context_id": "a"}') == []
    assert proto.state("a") is ContextState.OPEN


def test_untracked_context_audio_is_ignored() -> None:
    proto = make_protocol()
    assert proto.receive(audio_msg("ghost", b"x")) == [
        MessageIgnored("ghost", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("ghost")) == [
        MessageIgnored("ghost", "final for a context not awaiting audio")
    ]
    # The default context is not tracked unless text was sent to it.
    assert proto.receive(audio_msg(None, b"x")) == [
        MessageIgnored(None, "audio for a context not awaiting audio")
    ]
    assert proto.tracked_contexts == []


def test_audio_repr_hides_bytes() -> None:
    event = AudioReceived("a", b"\x00" * 1000)
    assert "<1000 bytes>" in repr(event)
    assert "\\x00" not in repr(event)


# ---------------------------------------------------------- receive: error


def test_error_with_top_level_context_id() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    assert proto.receive(error_msg("BAD_SPEECH_QUALITY", "nope", context_id="a")) == [
        ServerErrorReceived(code="BAD_SPEECH_QUALITY", message="nope", context_id="a")
    ]


def test_error_with_context_id_in_extra() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    extra = {"context_id": "a", "detail": [1, 2]}
    [event] = proto.receive(error_msg("RATE_LIMIT_EXCEEDED", "slow down", extra=extra))
    assert event == ServerErrorReceived(
        code="RATE_LIMIT_EXCEEDED", message="slow down", context_id="a", extra=extra
    )


def test_top_level_context_id_wins_over_extra() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.send_text("b", "Hi ")
    [event] = proto.receive(error_msg("X", context_id="a", extra={"context_id": "b"}))
    assert isinstance(event, ServerErrorReceived)
    assert event.context_id == "a"


def test_error_without_context_is_about_the_connection() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    [event] = proto.receive(error_msg("VOICE_NOT_FOUND", "no such voice"))
    assert event == ServerErrorReceived(code="VOICE_NOT_FOUND", message="no such voice", context_id=None)
    # An error about the connection changes no context.
    assert proto.state("a") is ContextState.OPEN


def test_error_without_context_and_nothing_open() -> None:
    proto = make_protocol()
    [event] = proto.receive(error_msg("INVALID_API_KEY", "bad key"))
    assert isinstance(event, ServerErrorReceived)
    assert event.context_id is None
    assert event.code == "INVALID_API_KEY"


def test_error_extra_context_id_of_wrong_type_is_not_a_context() -> None:
    proto = make_protocol()
    [event] = proto.receive(error_msg("X", extra={"context_id": 7}))
    assert isinstance(event, ServerErrorReceived)
    assert event.context_id is None
    assert event.extra == {"context_id": 7}


@pytest.mark.parametrize("where", ["top", "extra"])
def test_error_for_an_untracked_context_is_ignored(where: str) -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.close_context("a")
    kw: dict[str, Any] = {"context_id": "a"} if where == "top" else {"extra": {"context_id": "a"}}
    [event] = proto.receive(error_msg("SHORT_SPEECH_DURATION", **kw))
    assert isinstance(event, MessageIgnored)
    assert event.context_id == "a"
    assert "SHORT_SPEECH_DURATION" in event.reason


def test_error_message_defaults() -> None:
    proto = make_protocol()
    [event] = proto.receive('{"error_code": "USAGE_LIMIT_EXCEEDED"}')
    assert event == ServerErrorReceived("USAGE_LIMIT_EXCEEDED", "USAGE_LIMIT_EXCEEDED", None)
    [event] = proto.receive('{"error_code": null, "extra": null}')
    assert event == ServerErrorReceived(None, "the server reported an error", None)


def test_error_under_the_error_key() -> None:
    proto = make_protocol()
    [event] = proto.receive('{"error": "INVALID_LANGUAGE", "message": "which?"}')
    assert event == ServerErrorReceived("INVALID_LANGUAGE", "which?", None)
    # An "error" that is not a code string still is an error, without a code.
    [event] = proto.receive('{"error": {"nested": true}, "message": "odd"}')
    assert event == ServerErrorReceived(None, "odd", None)


def test_error_does_not_change_context_state() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.finish("a")
    proto.receive(error_msg("X", context_id="a"))
    assert proto.state("a") is ContextState.CLOSING


def test_error_for_an_ended_context_is_reported() -> None:
    # An ended context is tracked until it is closed: its errors still count.
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.receive(final_msg("a"))
    [event] = proto.receive(error_msg("X", context_id="a"))
    assert isinstance(event, ServerErrorReceived)
    assert event.context_id == "a"
    assert proto.state("a") is ContextState.ENDED


def test_error_carries_the_request_id() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    [event] = proto.receive(error_msg("TIMEOUT", "idle", request_id="req-1", extra=None))
    assert event == ServerErrorReceived(
        code="TIMEOUT", message="idle", context_id=None, extra={}, request_id="req-1"
    )
    [event] = proto.receive(error_msg("X", context_id="a", request_id=None))
    assert isinstance(event, ServerErrorReceived)
    assert event.request_id is None


def test_a_request_id_that_is_not_a_string_is_kept_as_one() -> None:
    proto = make_protocol()
    [event] = proto.receive(error_msg("X", request_id=12345))
    assert isinstance(event, ServerErrorReceived)
    assert event.request_id == "12345"


def test_error_with_extra_null() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    [event] = proto.receive(
        '{"error_code": "INTERNAL_SERVER_ERROR", "message": "oops", "extra": null,'
        ' "request_id": "r", "context_id": "a"}'
    )
    assert event == ServerErrorReceived(
        code="INTERNAL_SERVER_ERROR", message="oops", context_id="a", extra={}, request_id="r"
    )


# -------------------------------------------------------- receive: invalid


@pytest.mark.parametrize(
    "message",
    [
        "",
        "not json",
        "{",
        "[]",
        '"audio"',
        "null",
        "42",
        "{}",
        '{"context_id": "a"}',
        '{"audio": 5, "context_id": "a"}',
        '{"audio": ["AAAA"], "context_id": "a"}',
        '{"audio": "not base64!", "context_id": "a"}',
        '{"audio": "AAA", "context_id": "a"}',
        '{"audio": "ÄÄÄÄ", "context_id": "a"}',
        '{"audio": "", "final": "yes", "context_id": "a"}',
        '{"audio": "", "final": 1, "context_id": "a"}',
        '{"audio": "", "context_id": 5}',
        '{"audio": "", "context_id": {"id": "a"}}',
        '{"error_code": 401, "message": "x"}',
        '{"error_code": "X", "message": 5}',
        '{"error_code": "X", "extra": []}',
        '{"error_code": "X", "extra": "a"}',
        '{"error_code": "X", "context_id": 1}',
        "[" * 100_000,
    ],
)
def test_invalid_messages_raise_protocol_error(message: str) -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    with pytest.raises(ProtocolError) as info:
        proto.receive(message)
    assert info.value.raw is None or len(info.value.raw) <= 200
    # A bad message changes nothing.
    assert proto.state("a") is ContextState.OPEN


def test_binary_message_is_a_protocol_error() -> None:
    proto = make_protocol()
    with pytest.raises(ProtocolError, match="binary") as info:
        proto.receive(b'{"audio": ""}' + b"\x00" * 500)
    assert info.value.raw == (b'{"audio": ""}' + b"\x00" * 500)[:200]
    with pytest.raises(ProtocolError, match="binary"):
        proto.receive(bytearray(b"{}"))  # type: ignore[arg-type]


def test_non_string_message_is_a_protocol_error() -> None:
    proto = make_protocol()
    with pytest.raises(ProtocolError):
        proto.receive(None)  # type: ignore[arg-type]


def test_protocol_error_keeps_a_prefix_of_the_raw_message() -> None:
    proto = make_protocol()
    message = "x" * 1000
    with pytest.raises(ProtocolError, match="not JSON") as info:
        proto.receive(message)
    assert info.value.raw == "x" * 200


# ------------------------------------------------------------- hypothesis

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
TRACKED = ("open", "closing", "ended", "closed", "finished")
context_ids = st.sampled_from([*TRACKED, "never", ""]) | st.text(max_size=8)
base64_audio = st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode("ascii"))
interesting_values = json_values | context_ids | base64_audio | st.sampled_from(["A", "AAA", "====", "é"])
message_dicts = st.dictionaries(
    st.sampled_from(
        ["audio", "final", "error_code", "error", "message", "extra", "context_id", "request_id", "other"]
    ),
    interesting_values,
    max_size=6,
) | st.fixed_dictionaries(
    {
        "error_code": interesting_values,
        "extra": st.dictionaries(st.sampled_from(["context_id", "detail"]), interesting_values, max_size=2)
        | json_values,
    }
)
# Mostly-valid audio and finals, each with one field that may be of any type.
message_dicts |= st.fixed_dictionaries(
    {"audio": base64_audio, "context_id": st.sampled_from([*TRACKED, "never"])},
    optional={"final": st.booleans(), "message": interesting_values},
) | st.fixed_dictionaries(
    {"audio": base64_audio | interesting_values, "final": st.booleans() | interesting_values},
    optional={"context_id": context_ids | interesting_values},
)


def protocol_with_contexts() -> ClientProtocol:
    """A protocol with one context in each state, and the default context open."""
    proto = make_protocol()
    proto.send_text("open", "a ", force=True)
    proto.send_text("closing", "b ")
    proto.finish("closing")
    proto.send_text("ended", "c ")
    proto.receive(final_msg("ended"))
    proto.send_text("closed", "d ")
    proto.close_context("closed")
    proto.finish("finished", "e")
    proto.receive(final_msg("finished"))
    proto.send_text(None, "f ")
    return proto


def check_receive(message: str | bytes) -> None:
    proto = protocol_with_contexts()
    states = {ctx: proto.state(ctx) for ctx in [*TRACKED, None]}
    error: ProtocolError | None = None
    try:
        events = proto.receive(message)
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.raw is None or len(error.raw) <= 200
        # A bad message changes nothing.
        assert {ctx: proto.state(ctx) for ctx in states} == states
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(
            event,
            AudioReceived | ContextFinished | ContextEndedEarly | ServerErrorReceived | MessageIgnored,
        )
        if isinstance(event, AudioReceived | ContextEndedEarly):
            # Only a context awaiting audio gets audio; only an open one ends early.
            assert event.context_id in {"open", "closing", None}
        if isinstance(event, ContextEndedEarly):
            assert states[event.context_id] is ContextState.OPEN
            assert proto.state(event.context_id) is ContextState.ENDED
        if isinstance(event, ContextFinished):
            assert event.context_id == "closing"
            assert proto.state("closing") is ContextState.CLOSED
        if isinstance(event, AudioReceived):
            assert isinstance(event.audio, bytes)
            assert event.audio
        if isinstance(event, ServerErrorReceived):
            assert event.code is None or isinstance(event.code, str)
            assert isinstance(event.message, str)
            assert isinstance(event.extra, dict)
            assert event.request_id is None or isinstance(event.request_id, str)
            assert event.context_id in {"open", "closing", "ended", None}
    # No message brings a context back, and only a final moves one.
    for ctx, before in states.items():
        after = proto.state(ctx)
        assert after is before or (before, after) in {
            (ContextState.OPEN, ContextState.ENDED),
            (ContextState.CLOSING, ContextState.CLOSED),
        }


@settings(max_examples=300)
@given(st.text())
def test_receive_any_text(message: str) -> None:
    check_receive(message)


@settings(max_examples=100)
@given(st.binary())
def test_receive_any_bytes(message: bytes) -> None:
    check_receive(message)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_receive_any_json(value: object) -> None:
    check_receive(json.dumps(value))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(message_dicts)
def test_receive_any_message_shaped_dict(value: dict[str, Any]) -> None:
    check_receive(json.dumps(value))


@settings(max_examples=200)
@given(st.data())
def test_interleaved_audio_goes_to_its_own_context(data: st.DataObject) -> None:
    chunks = data.draw(
        st.dictionaries(
            st.text(min_size=1, max_size=6),
            st.lists(st.binary(min_size=1, max_size=16), max_size=8),
            min_size=1,
            max_size=5,
        ),
        label="chunks",
    )
    # A context closed before its audio arrives: all of it must go nowhere.
    closed = data.draw(st.lists(st.binary(min_size=1, max_size=16), max_size=4), label="closed audio")
    proto = make_protocol()
    for ctx in chunks:
        proto.send_text(ctx, "text ")
        assert len(proto.finish(ctx)) == 2
    proto.send_text("\x00closed", "text ", force=True)
    assert proto.close_context("\x00closed") is not None
    assert all(proto.state(ctx) is ContextState.CLOSING for ctx in chunks)

    # Every context's audio, then its final, interleaved with the others'.
    labels = [ctx for ctx, audio in chunks.items() for _ in range(len(audio) + 1)]
    labels += ["\x00closed"] * (len(closed) + 1)
    order = data.draw(st.permutations(labels), label="interleaving")
    queues: dict[str, list[bytes | None]] = {ctx: [*audio, None] for ctx, audio in chunks.items()}
    queues["\x00closed"] = [*closed, None]

    received: dict[str, list[bytes]] = {ctx: [] for ctx in chunks}
    finished: list[str] = []
    ignored = 0
    for ctx in order:
        audio = queues[ctx].pop(0)
        # The final comes last for its context: permutations do not know that.
        if audio is None and queues[ctx]:
            queues[ctx].append(None)
            audio = queues[ctx].pop(0)
        events = proto.receive(final_msg(ctx) if audio is None else audio_msg(ctx, audio))
        assert len(events) == 1
        event = events[0]
        if ctx == "\x00closed":
            assert isinstance(event, MessageIgnored)
            ignored += 1
        elif audio is None:
            assert event == ContextFinished(ctx)
            assert proto.state(ctx) is ContextState.CLOSED
            finished.append(ctx)
        else:
            assert event == AudioReceived(ctx, audio)
            received[ctx].append(audio)
    assert received == chunks
    assert sorted(finished) == sorted(chunks)
    assert ignored == len(closed) + 1
    assert proto.tracked_contexts == []
    # Once finished, a context's audio goes nowhere.
    for ctx in chunks:
        [event] = proto.receive(audio_msg(ctx, b"late"))
        assert isinstance(event, MessageIgnored)


# One step of a context's life before its finish: text (forced or not), audio
# from the service, or a keepalive.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["", " ", "word ", "par", "tial "]), st.booleans()),
        st.tuples(st.just("audio"), st.just(""), st.just(False)),
        st.tuples(st.just("keepalive"), st.just(""), st.just(False)),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(steps, st.sampled_from(["", " ", "last."]))
def test_a_context_ends_exactly_on_the_final_after_its_close(
    script: list[tuple[str, str, bool]], last_text: str
) -> None:
    proto = make_protocol()
    proto.send_text("a", "first ")
    events: list[Event] = []
    for kind, text, force in script:
        if kind == "send":
            message = proto.send_text("a", text, force=force)
            if message is not None:
                assert bool(loads(message).get("force")) is force
        elif kind == "audio":
            events += proto.receive(audio_msg("a", b"pcm"))
        else:
            assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "a"}
        assert proto.state("a") is ContextState.OPEN
    # Force gets no final: only audio so far.
    assert all(event == AudioReceived("a", b"pcm") for event in events)

    messages = [loads(m) for m in proto.finish("a", last_text)]
    # "first " reached the service, so the context must be closed there.
    assert messages[-1] == {"close_context": True, "transcript": "", "context_id": "a"}
    assert all(m["force"] is True for m in messages[:-1])
    assert len(messages) <= 2
    assert proto.state("a") is ContextState.CLOSING
    assert proto.receive(audio_msg("a", b"rest")) == [AudioReceived("a", b"rest")]
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.CLOSED


# ---------------------------------------------- the HTTP stream's quota marker


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def scan(pieces: list[bytes], frame_size: int) -> tuple[bytes, QuotaMarkerScanner]:
    scanner = QuotaMarkerScanner(frame_size)
    out = b"".join(scanner.feed(piece) for piece in pieces) + scanner.end()
    return out, scanner


@settings(max_examples=300)
@given(
    st.binary(max_size=200),
    st.lists(st.integers(0, 260), max_size=8),
    st.sampled_from([1, 2, 4]),
    st.booleans(),
    st.binary(max_size=30),
)
def test_stream_scanner_delivers_audio_and_never_the_marker(
    audio: bytes, cuts: list[int], frame_size: int, quota: bool, after: bytes
) -> None:
    # Audio that (with the marker after it) first contains the marker where we put it.
    assume((audio + QUOTA_MARKER).find(QUOTA_MARKER) == len(audio))
    body = audio + QUOTA_MARKER + after if quota else audio
    out, scanner = scan(split(body, cuts), frame_size)
    assert out == audio[: len(audio) - len(audio) % frame_size]
    assert scanner.quota_exceeded is quota
    assert QUOTA_MARKER not in out
    # Once the marker was seen, nothing more is audio.
    assert scanner.feed(b"more") == (b"" if quota else scanner.feed(b""))


def test_stream_scanner_marker_split_byte_by_byte() -> None:
    audio = b"\x01\x02" * 50
    out, scanner = scan([bytes([b]) for b in audio + QUOTA_MARKER], 2)
    assert out == audio
    assert scanner.quota_exceeded


def test_stream_scanner_rejects_bad_frame_sizes() -> None:
    with pytest.raises(ConfigurationError, match="frame_size"):
        QuotaMarkerScanner(0)


@pytest.mark.parametrize(
    ("text", "speech"),
    [
        ("Hello.", True),
        ("こんにちは", True),
        ("<digits>42</digits>", True),
        ("<phonemes>hə\u02c8lo\u028a</phonemes>", True),
        ("   ", False),
        ("... !?", False),
        ('<break time="1s"/>', False),
        ('<break time="1s"/> — ', False),
    ],
)
def test_what_counts_as_text_with_speech(text: str, speech: bool) -> None:
    assert has_speech(text) is speech
