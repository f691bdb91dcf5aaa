"""An utterance on its own, fed by hand through a stand-in link: how receive() hands chunks over."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_asyncai import OutputFormat, ProtocolStateError, SynthesisTimeout
from trio_asyncai._utterance import TRANSITIONS, Utterance, UtteranceFeed, UtteranceState

FMT = OutputFormat()


class _Link:
    """A link that carries nothing: the test plays the transport through its feed."""

    def __init__(self, feed: UtteranceFeed) -> None:
        self.feed = feed

    def send_text(self, text: str, *, force: bool) -> None:
        pass

    def finish(self, text: str) -> bool:
        return True

    def abandon(self) -> None:
        pass


def _utterance(audio_timeout: float | None = 10.0) -> tuple[Utterance, UtteranceFeed]:
    links: list[_Link] = []

    def link(feed: UtteranceFeed) -> _Link:
        links.append(_Link(feed))
        return links[0]

    utterance = Utterance(link, "ctx", FMT, audio_timeout=audio_timeout, max_buffered_bytes=None)
    return utterance, links[0].feed


async def test_a_waiting_chunk_is_a_checkpoint_and_a_cancel_loses_none() -> None:
    utterance, feed = _utterance()
    feed.audio(b"\x01\x00")
    feed.audio(b"\x02\x00")
    with trio.CancelScope() as scope:
        scope.cancel()
        await utterance.receive()  # cancelled before it takes anything
    assert scope.cancelled_caught
    with trio.testing.assert_checkpoints():
        first = await utterance.receive()
    second = await utterance.receive()
    assert (first.audio, second.audio) == (b"\x01\x00", b"\x02\x00")


async def test_a_waiting_chunk_after_interrupt_is_dropped() -> None:
    utterance, feed = _utterance()
    feed.audio(b"\x01\x00")
    utterance.interrupt()
    with pytest.raises(trio.EndOfChannel):
        await utterance.receive()


async def test_waiting_chunks_come_before_the_end_and_the_error() -> None:
    utterance, feed = _utterance()
    feed.audio(b"\x01\x00")
    feed.fail(SynthesisTimeout("gone"))
    assert (await utterance.receive()).audio == b"\x01\x00"
    with pytest.raises(SynthesisTimeout):
        await utterance.receive()


async def test_the_audio_timeout_still_runs_once_nothing_is_waiting(
    jump_clock: trio.testing.MockClock,
) -> None:
    utterance, feed = _utterance(audio_timeout=5.0)
    await utterance.finish()
    feed.audio(b"\x01\x00")
    assert (await utterance.receive()).audio == b"\x01\x00"
    start = trio.current_time()
    with pytest.raises(SynthesisTimeout):
        await utterance.receive()
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_final_states_are_final() -> None:
    failed, failed_feed = _utterance()
    failed_feed.fail(SynthesisTimeout("gone"))
    failed.interrupt()
    failed_feed.complete()
    failed_feed.audio(b"\x01\x00")
    assert failed.state == UtteranceState.FAILED
    assert not failed.interrupted
    assert isinstance(failed.error, SynthesisTimeout)
    assert failed.metrics.audio_bytes == 0

    interrupted, feed = _utterance()
    interrupted.interrupt()
    feed.fail(SynthesisTimeout("late"))
    feed.complete()
    assert interrupted.state == "interrupted"
    assert interrupted.interrupted
    assert interrupted.error is None


def test_the_transition_table_ends_in_final_states() -> None:
    final = {state for state, moves in TRANSITIONS.items() if not moves}
    assert final == {"complete", "interrupted", "failed", "closed"}
    assert set(TRANSITIONS) == set(UtteranceState)
    assert all(moves <= set(UtteranceState) for moves in TRANSITIONS.values())


async def test_an_impossible_move_is_our_bug() -> None:
    _, feed = _utterance()
    with pytest.raises(ProtocolStateError):
        feed.complete()  # all audio "arrived" while text may still come
