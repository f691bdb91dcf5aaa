"""The sans-I/O protocol core: messages built, messages parsed, context states.

No network and no trio here: :class:`ClientProtocol` is a pure state machine,
so it is driven back to back with hand-written server messages.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trio_asyncai import ConfigurationError, OutputFormat, ProtocolError, Settings
from trio_asyncai._protocol import (
    QUOTA_MARKER,
    AudioReceived,
    ClientProtocol,
    ContextFinished,
    ContextState,
    Event,
    FlushesCompleted,
    MessageIgnored,
    ServerErrorReceived,
    StreamScanner,
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


# ------------------------------------------------------------- initialize


def test_initialize_sends_the_connection_settings() -> None:
    proto = make_protocol(initialize=False)
    assert loads(proto.initialize()) == {
        "model_id": DEFAULT_MODEL,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 44100},
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
    with pytest.raises(ConfigurationError, match="already initialized"):
        proto.initialize()


def test_nothing_is_sent_before_initialize() -> None:
    proto = make_protocol(initialize=False)
    with pytest.raises(ConfigurationError, match="initialize"):
        proto.send_text("a", "hello ")
    with pytest.raises(ConfigurationError, match="initialize"):
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
    text = 'Grüße, 世界 <break time="1s"/> "quoted"\n '
    message = proto.send_text("a", text)
    assert loads(message)["transcript"] == text
    assert "Grüße" in message  # not \u-escaped


def test_contexts_are_tracked_oldest_first() -> None:
    proto = make_protocol()
    for ctx in ("c", "a", "b"):
        proto.send_text(ctx, "x ")
    proto.send_text("c", "more ")
    assert proto.tracked_contexts == ["c", "a", "b"]


@pytest.mark.parametrize("bad", ["", "x" * 257, 5, b"ctx"])
def test_send_text_rejects_bad_context_ids(bad: Any) -> None:
    proto = make_protocol()
    with pytest.raises(ConfigurationError, match="context_id"):
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
    with pytest.raises(ConfigurationError, match="flushed"):
        proto.send_text("a", "more ")


# ----------------------------------------------------------------- finish


def test_finish_with_text_sends_it_flushed() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert loads(proto.finish("a", "world.")) == {
        "transcript": "world.",
        "context_id": "a",
        "force": True,
    }
    assert proto.state("a") is ContextState.FLUSHED


def test_finish_of_nothing_still_asks_for_a_final() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")  # not flushed: no final asked for yet
    assert loads(proto.finish("a")) == {"transcript": " ", "context_id": "a", "force": True}
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.COMPLETE


def test_finish_sends_nothing_when_a_flush_is_pending() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    assert proto.finish("a") is None
    assert proto.state("a") is ContextState.FLUSHED
    # The final of the earlier flush ends the context.
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.COMPLETE


def test_finish_asks_again_when_the_pending_flush_was_answered() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    # Still open: no ContextFinished, but nothing is owed any more.
    assert proto.receive(final_msg("a")) == [FlushesCompleted("a")]
    assert proto.state("a") is ContextState.OPEN
    assert loads(proto.finish("a")) == {"transcript": " ", "context_id": "a", "force": True}
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


def test_finish_flushes_text_sent_after_the_pending_flush() -> None:
    # Regression: with a flush pending, finish() used to send nothing, so
    # "world " stayed buffered on the server, the context completed on the
    # first final, and the audio of "world " was then ignored.
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    proto.send_text("a", "world ")
    assert loads(proto.finish("a")) == {"transcript": " ", "context_id": "a", "force": True}
    assert proto.receive(final_msg("a")) == []
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(audio_msg("a", b"world")) == [AudioReceived("a", b"world")]
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


def test_finish_opens_a_new_context() -> None:
    # speak(): the whole text in one flushed message.
    proto = make_protocol()
    assert loads(proto.finish("a", "Hello.")) == {
        "transcript": "Hello.",
        "context_id": "a",
        "force": True,
    }
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(audio_msg("a", b"pcm")) == [AudioReceived("a", b"pcm")]
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]


@pytest.mark.parametrize("setup", ["flushed", "complete"])
def test_finish_twice_is_refused(setup: str) -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    proto.finish("a")
    if setup == "complete":
        proto.receive(final_msg("a"))
    with pytest.raises(ConfigurationError, match=setup):
        proto.finish("a")
    assert proto.state("a") is ContextState(setup)


def test_finish_needs_a_live_connection() -> None:
    proto = make_protocol(initialize=False)
    with pytest.raises(ConfigurationError, match="initialize"):
        proto.finish("a", "x")
    proto.initialize()
    proto.send_text("a", "x ")
    proto.terminate()
    with pytest.raises(ConfigurationError, match="terminated"):
        proto.finish("a")
    assert proto.tracked_contexts == []


def test_finish_rejects_bad_context_ids() -> None:
    proto = make_protocol()
    with pytest.raises(ConfigurationError, match="context_id"):
        proto.finish("", "x")
    assert proto.tracked_contexts == []


def test_one_final_per_force() -> None:
    proto = make_protocol()
    proto.send_text("a", "One. ", force=True)
    proto.send_text("a", "Two. ", force=True)
    assert proto.finish("a", "Three.") is not None
    assert proto.receive(final_msg("a")) == []
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(final_msg("a")) == []
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.COMPLETE


def test_complete_if_done() -> None:
    proto = make_protocol()
    assert proto.complete_if_done("nobody") is False
    proto.send_text("a", "Hi ")
    assert proto.complete_if_done("a") is False  # open
    proto.finish("a")
    assert proto.complete_if_done("a") is False  # final pending
    proto.receive(final_msg("a"))
    assert proto.complete_if_done("a") is True
    assert proto.state("a") is ContextState.COMPLETE


# ---------------------------------------------------------- close_context


def test_full_lifecycle_open_flushed_complete_closed() -> None:
    proto = make_protocol()
    assert proto.state("a") is ContextState.CLOSED  # untracked reads as closed
    proto.send_text("a", "Hello ")
    assert proto.state("a") is ContextState.OPEN
    proto.finish("a", "world.")
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(audio_msg("a", b"\x01\x02")) == [AudioReceived("a", b"\x01\x02")]
    assert proto.state("a") is ContextState.FLUSHED
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.COMPLETE
    assert loads(proto.close_context("a")) == {
        "close_context": True,
        "transcript": "",
        "context_id": "a",
    }
    assert proto.state("a") is ContextState.CLOSED
    assert proto.tracked_contexts == []


def test_close_context_once_only() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ")
    assert proto.close_context("a") is not None
    assert proto.close_context("a") is None
    assert proto.close_context("never-opened") is None


def test_close_an_open_context_interrupts_it() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hello ", force=True)
    proto.send_text("b", "Other ", force=True)
    assert proto.close_context("a") is not None
    assert proto.tracked_contexts == ["b"]
    # The reused id is a new context with no pending finals of its own.
    proto.send_text("a", "Again ")
    assert loads(proto.finish("a")) == {"transcript": " ", "context_id": "a", "force": True}


def test_close_default_context_has_no_context_id() -> None:
    proto = make_protocol()
    proto.send_text(None, "Hi ")
    assert loads(proto.close_context(None)) == {"close_context": True, "transcript": ""}
    assert proto.close_context(None) is None


# -------------------------------------------------------------- keepalive


def test_keepalive_without_contexts() -> None:
    proto = make_protocol()
    assert loads(proto.keepalive()) == {"transcript": " "}


def test_keepalive_picks_the_newest_open_context() -> None:
    proto = make_protocol()
    proto.send_text("old", "a ")
    proto.send_text("new", "b ")
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "new"}
    proto.finish("new")  # flushed: no longer open
    assert loads(proto.keepalive()) == {"transcript": " ", "context_id": "old"}
    proto.finish("old")
    assert loads(proto.keepalive()) == {"transcript": " "}


def test_keepalive_skips_closed_and_complete_contexts() -> None:
    proto = make_protocol()
    proto.send_text("a", "x ")
    proto.send_text("b", "y ")
    proto.send_text("c", "z ")
    proto.close_context("c")
    proto.finish("b")
    proto.receive(final_msg("b"))
    assert proto.state("b") is ContextState.COMPLETE
    assert loads(proto.keepalive())["context_id"] == "a"


def test_keepalive_does_not_name_the_default_context() -> None:
    proto = make_protocol()
    proto.send_text(None, "x ")
    assert loads(proto.keepalive()) == {"transcript": " "}


# -------------------------------------------------------------- terminate


def test_terminate() -> None:
    proto = make_protocol()
    proto.send_text("a", "x ")
    assert loads(proto.terminate()) == {"terminate": True}
    assert proto.tracked_contexts == []
    assert proto.state("a") is ContextState.CLOSED
    assert proto.close_context("a") is None
    with pytest.raises(ConfigurationError, match="terminated"):
        proto.send_text("b", "y ")
    with pytest.raises(ConfigurationError, match="terminated"):
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


def test_final_while_open_does_not_complete() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    # A stray final with no flush pending: nothing to finish.
    assert proto.receive(final_msg("a")) == []
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


def test_closed_context_audio_and_final_are_ignored() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ", force=True)
    proto.close_context("a")
    events = proto.receive(audio_msg("a", b"late"))
    assert len(events) == 1
    assert isinstance(events[0], MessageIgnored)
    assert events[0].context_id == "a"
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]
    assert proto.state("a") is ContextState.CLOSED


def test_complete_context_audio_is_ignored() -> None:
    proto = make_protocol()
    proto.send_text("a", "Hi ")
    proto.finish("a")
    proto.receive(final_msg("a"))
    assert proto.receive(audio_msg("a", b"late")) == [
        MessageIgnored("a", "audio for a context not awaiting audio")
    ]
    assert proto.receive(final_msg("a")) == [MessageIgnored("a", "final for a context not awaiting audio")]
    assert proto.state("a") is ContextState.COMPLETE


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
    assert proto.state("a") is ContextState.FLUSHED


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
TRACKED = ("open", "flushed", "complete", "closed")
context_ids = st.sampled_from([*TRACKED, "never", ""]) | st.text(max_size=8)
base64_audio = st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode("ascii"))
interesting_values = json_values | context_ids | base64_audio | st.sampled_from(["A", "AAA", "====", "é"])
message_dicts = st.dictionaries(
    st.sampled_from(["audio", "final", "error_code", "error", "message", "extra", "context_id", "other"]),
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
    proto.send_text("flushed", "b ")
    proto.finish("flushed")
    proto.send_text("complete", "c ")
    proto.finish("complete")
    proto.receive(final_msg("complete"))
    proto.send_text("closed", "d ")
    proto.close_context("closed")
    proto.send_text(None, "e ")
    return proto


def check_receive(message: str | bytes) -> None:
    proto = protocol_with_contexts()
    error: ProtocolError | None = None
    try:
        events = proto.receive(message)
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.raw is None or len(error.raw) <= 200
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(
            event, AudioReceived | ContextFinished | FlushesCompleted | ServerErrorReceived | MessageIgnored
        )
        if isinstance(event, AudioReceived | ContextFinished | FlushesCompleted):
            # Only a context the protocol tracks gets audio or an end.
            assert event.context_id in {"open", "flushed", None}
        if isinstance(event, AudioReceived):
            assert isinstance(event.audio, bytes)
            assert event.audio
        if isinstance(event, ServerErrorReceived):
            assert event.code is None or isinstance(event.code, str)
            assert isinstance(event.message, str)
            assert isinstance(event.extra, dict)


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
        proto.finish(ctx)
    proto.send_text("\x00closed", "text ", force=True)
    proto.close_context("\x00closed")

    labels = [ctx for ctx, audio in chunks.items() for _ in audio] + ["\x00closed"] * len(closed)
    order = data.draw(st.permutations(labels), label="interleaving")
    queues = {ctx: list(audio) for ctx, audio in chunks.items()} | {"\x00closed": list(closed)}

    received: dict[str | None, list[bytes]] = {ctx: [] for ctx in chunks}
    ignored = 0
    for ctx in order:
        events = proto.receive(audio_msg(ctx, queues[ctx].pop(0)))
        assert len(events) == 1
        event = events[0]
        if isinstance(event, AudioReceived):
            assert event.context_id == ctx
            received[ctx].append(event.audio)
        else:
            assert isinstance(event, MessageIgnored)
            assert ctx == "\x00closed"
            ignored += 1
    assert received == chunks
    assert ignored == len(closed)

    for ctx in reversed(list(chunks)):
        assert proto.receive(final_msg(ctx)) == [ContextFinished(ctx)]
    assert all(proto.state(ctx) is ContextState.COMPLETE for ctx in chunks)


# One step of a context's life: text (forced or not), or the server answering
# one outstanding flush with its final.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["", " ", "word "]), st.booleans()),
        st.tuples(st.just("final"), st.just(""), st.just(False)),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(steps, st.sampled_from(["", "last."]))
def test_a_context_completes_exactly_when_every_flush_is_answered(
    script: list[tuple[str, str, bool]], last_text: str
) -> None:
    proto = make_protocol()
    proto.send_text("a", "first ")
    sent: list[dict[str, Any]] = []
    outstanding = 0  # finals the (simulated) server still owes
    for kind, text, force in script:
        if kind == "send":
            message = loads(proto.send_text("a", text, force=force))
            sent.append(message)
            outstanding += bool(message.get("force"))
        elif outstanding:
            outstanding -= 1
            expected = [FlushesCompleted("a")] if outstanding == 0 else []
            assert proto.receive(final_msg("a")) == expected
            assert proto.state("a") is ContextState.OPEN
    finish = proto.finish("a", last_text)
    if finish is not None:
        message = loads(finish)
        assert message["force"] is True
        sent.append(message)
        outstanding += 1
    assert proto.state("a") is ContextState.FLUSHED

    # Whatever text was sent is followed by a flush: nothing stays buffered.
    last_force = max((i for i, m in enumerate(sent) if m.get("force")), default=-1)
    assert all(not m["transcript"] for m in sent[last_force + 1 :])
    assert outstanding >= 1  # "first " at least needed a flush

    events: list[Event] = []
    for _ in range(outstanding - 1):
        events += proto.receive(final_msg("a"))
        assert proto.state("a") is ContextState.FLUSHED
    assert events == []
    assert proto.receive(final_msg("a")) == [ContextFinished("a")]
    assert proto.state("a") is ContextState.COMPLETE


# ---------------------------------------------- the HTTP stream's quota marker


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def scan(pieces: list[bytes], frame_size: int) -> tuple[bytes, StreamScanner]:
    scanner = StreamScanner(frame_size)
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
        StreamScanner(0)
