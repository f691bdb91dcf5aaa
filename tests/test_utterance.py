"""An utterance on its own, fed by hand through a stand-in link: how receive() hands chunks over."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_asyncai import OutputFormat, SynthesisTimeout
from trio_asyncai._utterance import Utterance

FMT = OutputFormat()


class _Link:
    """A link that carries nothing: the test plays the transport."""

    async def send_text(self, text: str, *, force: bool) -> None:
        await trio.lowlevel.checkpoint()

    async def finish(self, text: str) -> None:
        await trio.lowlevel.checkpoint()

    def abandon(self) -> None:
        pass


def _utterance(audio_timeout: float | None = 10.0) -> Utterance:
    return Utterance(_Link(), "ctx", FMT, audio_timeout=audio_timeout, max_buffered_bytes=None)


async def test_a_waiting_chunk_is_a_checkpoint_and_a_cancel_loses_none() -> None:
    utterance = _utterance()
    utterance._deliver(b"\x01\x00")
    utterance._deliver(b"\x02\x00")
    with trio.CancelScope() as scope:
        scope.cancel()
        await utterance.receive()  # cancelled before it takes anything
    assert scope.cancelled_caught
    with trio.testing.assert_checkpoints():
        first = await utterance.receive()
    second = await utterance.receive()
    assert (first.audio, second.audio) == (b"\x01\x00", b"\x02\x00")


async def test_a_waiting_chunk_after_interrupt_is_dropped() -> None:
    utterance = _utterance()
    utterance._deliver(b"\x01\x00")
    utterance.interrupt()
    with pytest.raises(trio.EndOfChannel):
        await utterance.receive()


async def test_waiting_chunks_come_before_the_end_and_the_error() -> None:
    utterance = _utterance()
    utterance._deliver(b"\x01\x00")
    utterance._fail(SynthesisTimeout("gone"))
    assert (await utterance.receive()).audio == b"\x01\x00"
    with pytest.raises(SynthesisTimeout):
        await utterance.receive()


async def test_the_audio_timeout_still_runs_once_nothing_is_waiting(
    jump_clock: trio.testing.MockClock,
) -> None:
    utterance = _utterance(audio_timeout=5.0)
    utterance._note_finished()
    utterance._deliver(b"\x01\x00")
    assert (await utterance.receive()).audio == b"\x01\x00"
    start = trio.current_time()
    with pytest.raises(SynthesisTimeout):
        await utterance.receive()
    assert trio.current_time() - start == pytest.approx(5.0)
