"""Every fault the local server can inject, against both synthesizers.

For each: the exception is the documented one; the audio that arrived before
it was all delivered; no task of the SDK and no file descriptor is left
behind; and the next utterance on the same synthesizer works. The times
each fault takes to surface are in docs/errors.rst and its tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from helpers import TIMEOUT, cut_then_forward, reader_caught_up, tasks_named, tcp_peer

import trio_asyncai
from trio_asyncai import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ContextEndedError,
    InvalidRequestError,
    NoAudioError,
    NotFoundError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    SynthesisTimeout,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, Faults, LocalServer, open_local_server

TEXT = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima."


@attrs.frozen
class Case:
    """One fault: how to switch it on, and what the caller must see."""

    name: str
    switch_on: Callable[[Faults], None]
    #: The exception the utterance raises (``None``: it completes).
    error: type[Exception] | None
    #: Options for the synthesizer.
    options: dict[str, Any] = attrs.field(factory=dict)
    #: Speak with a flush before the finish (a final-per-force fault needs one).
    flush: bool = False
    #: Whether the next utterance can work (not with options that caused the fault).
    recovers: bool = True


def _set(**values: Any) -> Callable[[Faults], None]:
    def switch_on(faults: Faults) -> None:
        for name, value in values.items():
            setattr(faults, name, value)

    return switch_on


WEBSOCKET_CASES = [
    Case("garbage frames", _set(garbage_before_audio=True), None),
    Case("late audio and finals", _set(late_audio_after_close=True), None),
    Case("drop with a close frame", _set(drop_after_audio_messages=2), ConnectionLostError),
    Case("stall", _set(stall_after_audio_messages=1), SynthesisTimeout),
    Case("slow audio", _set(chunk_delay=20.0), SynthesisTimeout),
    Case("no final after the close", _set(no_final_on_close=True), SynthesisTimeout),
    Case("a final before the close", _set(final_per_force=True), ContextEndedError, flush=True),
    Case("unreadable audio", _set(corrupt_next_audio=True), ProtocolError),
    Case(
        "oversized message",
        _set(),
        ConnectionLostError,
        options={"max_message_size": 512},
        recovers=False,
    ),
    Case("error INVALID_LANGUAGE", _set(error_on_text="INVALID_LANGUAGE"), InvalidRequestError),
    Case("error VOICE_NOT_FOUND", _set(error_on_text="VOICE_NOT_FOUND"), NotFoundError),
    Case("error RATE_LIMIT_EXCEEDED", _set(error_on_text="RATE_LIMIT_EXCEEDED"), RateLimitError),
    Case("error USAGE_LIMIT_EXCEEDED", _set(error_on_text="USAGE_LIMIT_EXCEEDED"), QuotaExceededError),
    Case("error INTERNAL_SERVER_ERROR", _set(error_on_text="INTERNAL_SERVER_ERROR"), ServerError),
    # Each status refuses one handshake: four are the first attempt and the
    # three retries of max_reconnect_attempts.
    Case("handshake refused 401 on reconnect", _set(handshake_statuses=[401]), AuthenticationError),
    Case("handshake refused 503 on reconnect", _set(handshake_statuses=[503] * 4), ServerError),
    Case("handshake refused 429 on reconnect", _set(handshake_statuses=[429] * 4), RateLimitError),
    Case("handshake refused 503 once, then fine, on reconnect", _set(handshake_statuses=[503]), None),
    Case(
        "handshake refused 503, nested JSON, on reconnect",
        _set(handshake_statuses=[503] * 4, nested_json=5000),
        ServerError,
    ),
    Case(
        "handshake refused 404, nested JSON, on reconnect",
        _set(handshake_statuses=[404], nested_json=5000),
        NotFoundError,
    ),
    Case("no audio for text with speech", _set(no_audio=True), NoAudioError),
]

HTTP_CASES = [
    Case("slow audio", _set(chunk_delay=20.0), SynthesisTimeout),
    Case("quota marker", _set(http_quota_after_bytes=3000), QuotaExceededError),
    Case("503 again and again", _set(http_statuses=[503] * 6), ServerError),
    Case("429 again and again", _set(http_statuses=[429] * 6), RateLimitError),
    Case("one 503, then fine", _set(http_statuses=[503]), None),
    Case("401", _set(http_statuses=[401]), AuthenticationError),
    Case("404", _set(http_statuses=[404]), NotFoundError),
    Case("400", _set(http_statuses=[400]), InvalidRequestError),
    Case("flat error bodies", _set(http_statuses=[401], flat_error_bodies=True), AuthenticationError),
    Case("400, nested JSON", _set(http_statuses=[400], nested_json=5000), InvalidRequestError),
    Case("503 again and again, nested JSON", _set(http_statuses=[503] * 6, nested_json=5000), ServerError),
    Case("empty 200 body", _set(no_audio=True), NoAudioError),
]


def _open(transport: str, server: LocalServer, case: Case) -> AbstractAsyncContextManager[Any]:
    options: dict[str, Any] = {"base_url": server.url, "voice_id": DEFAULT_VOICE_ID, "sample_rate": 16000}
    options.update(case.options)
    if transport == "websocket":
        return trio_asyncai.open_synthesizer(**options)
    return trio_asyncai.open_http_synthesizer(**options)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _speak(synth: Any, server: LocalServer, case: Case) -> tuple[int, int, Exception | None]:
    """Speak TEXT, fed by one task and read by another, as the docs show it.

    Returns the bytes delivered, the bytes the utterance counted, and the
    error that iteration raised (the feeder's own errors are the same ones,
    raised where the text goes in: the reader gets the audio first).
    """
    delivered = 0
    error: Exception | None = None
    utterance = None

    async def feed(utterance: Any) -> None:
        with contextlib.suppress(trio_asyncai.AsyncAIError):
            if case.flush:
                await utterance.send("A first sentence, flushed.")
                await utterance.flush()
                # The flush's answer (its final too, with the fault) is read before the finish.
                await reader_caught_up(synth, server)
            await utterance.finish(TEXT)

    try:
        async with synth.open_utterance() as utterance, trio.open_nursery() as nursery:
            nursery.start_soon(feed, utterance)
            async for chunk in utterance:
                delivered += len(chunk.audio)
    except Exception as exc:  # which one it is, is the point
        error = exc
        # The reader's error comes out of the feeder's nursery in a group of one.
        while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
    return delivered, 0 if utterance is None else utterance.metrics.audio_bytes, error


def _new_voice(synth: Any) -> None:
    """Make the next utterance need a new connection (settings are per connection)."""
    voices = trio_asyncai.server.PREDEFINED_VOICES
    current = synth.settings.voice_id
    synth.update_settings(voice_id=next(v.voice_id for v in voices if v.voice_id != current))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts file descriptors in /proc")
@pytest.mark.parametrize(
    ("transport", "case"),
    [("websocket", c) for c in WEBSOCKET_CASES] + [("http", c) for c in HTTP_CASES],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
async def test_fault(transport: str, case: Case, jump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        fds_before = _open_fds()
        with trio.fail_after(600):
            async with _open(transport, server, case) as synth:
                if "reconnect" in case.name:
                    _new_voice(synth)
                case.switch_on(server.faults)
                delivered, counted, error = await _speak(synth, server, case)
                server.faults.reset()
                if "reconnect" in case.name:
                    _new_voice(synth)  # a refusal for good is remembered for its settings
                if case.recovers:
                    # The synthesizer is still good for the next utterance.
                    async with synth.speak("And the next one.") as after:
                        assert await after.read_all()
            assert tasks_named("trio_asyncai._") == []
            await server.log.wait_for(lambda log: log.connections_closed == log.connections_opened)
            await trio.testing.wait_all_tasks_blocked()  # the server's side of the sockets too
        fds_after = _open_fds()
    if case.error is None:
        assert error is None, repr(error)
        assert delivered > 0
    else:
        assert isinstance(error, case.error), repr(error)
        assert isinstance(error, trio_asyncai.AsyncAIError)
    # Whatever arrived before the error was delivered, all of it.
    assert delivered == counted
    assert fds_after == fds_before


# ---------------------------------------------- the network under the WebSocket


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("when", ["open", "reconnect"])
async def test_a_handshake_cut_by_the_peer_is_retried_at_once(
    server: LocalServer, how: str, when: str, jump_clock: trio.testing.MockClock
) -> None:
    """The peer reads the upgrade request, then closes or resets: a connect failure, retried at once."""
    cuts: list[str] = []
    with trio.fail_after(600):
        async with tcp_peer(cut_then_forward(cuts, server.port)) as peer:
            if when == "open":
                cuts.append(how)
            start = trio.current_time()
            async with trio_asyncai.open_synthesizer(base_url=peer.url, voice_id=DEFAULT_VOICE_ID) as synth:
                if when == "reconnect":
                    cuts.append(how)
                    _new_voice(synth)
                    start = trio.current_time()
                async with synth.speak("After the cut.") as utterance:
                    assert await utterance.read_all()
                took = trio.current_time() - start
            assert tasks_named("trio_asyncai._") == []
    assert cuts == []  # the cut happened
    assert peer.accepted >= 2
    # One backoff step (0.5 to 0.75 s) and no connect_timeout (10 s) spent waiting on a dead handshake.
    assert took < 1.0


async def test_every_handshake_cut_surfaces_as_a_connect_error(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    cuts = ["rst"] * 10
    with trio.fail_after(600):
        async with tcp_peer(cut_then_forward(cuts, server.port)) as peer:
            start = trio.current_time()
            with pytest.raises(ConnectError, match=r"handshake .* was cut"):
                async with trio_asyncai.open_synthesizer(base_url=peer.url, voice_id=DEFAULT_VOICE_ID):
                    pass  # pragma: no cover
            took = trio.current_time() - start
    assert peer.accepted == 4  # the first attempt and max_reconnect_attempts=3 more
    assert took < 5.0  # the backoff's three waits (0.5 + 1 + 2, jittered), not connect_timeout


async def test_https_to_a_plain_http_port_is_a_connect_error(server: LocalServer) -> None:
    # One attempt, and a connect_timeout the test's bound is far below: only a
    # handshake failure seen at once, as a ConnectError, ends it in time. (The real
    # clock: a jumping one would leap to that deadline whenever the loopback I/O
    # took more than its threshold, on a busy machine.)
    url = server.url.replace("http://", "https://")
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError):
        async with trio_asyncai.open_synthesizer(
            base_url=url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0, connect_timeout=10 * TIMEOUT
        ):
            pass  # pragma: no cover
    assert tasks_named("trio_asyncai._") == []
