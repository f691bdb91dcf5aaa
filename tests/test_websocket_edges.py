"""The WebSocket synthesizer at its edges: cancellation from outside, interrupts, races, backoff, hung peers.

Each test here pins down one way it used to go wrong, against the local
server in its default, reference-shaped mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_asyncai import (
    SynthesizerClosedError,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

TIMEOUT = 20  # seconds of trio time; every I/O test is bounded by it


def synth_for(server: LocalServer, **kwargs: Any) -> Any:
    kwargs.setdefault("voice_id", DEFAULT_VOICE_ID)
    kwargs.setdefault("sample_rate", 16000)
    return open_synthesizer(base_url=server.url, **kwargs)


# ------------------------------------------------------- cancelled from outside


async def test_cancelled_from_outside_it_still_closes_politely(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as outer:
            async with synth_for(server) as synth:
                async with synth.open_utterance() as utterance:
                    await utterance.send("Text the service has, and an utterance still open. ")
                    await server.log.wait_for(lambda log: bool(log.contexts_opened))
                    outer.cancel()
                    await trio.sleep_forever()
        assert outer.cancelled_caught
        await server.log.wait_for(lambda log: log.connections_closed == 1)
    record = server.log.connections[0]
    # What was queued went out: the context's close, then terminate, then the close frame.
    assert record.contexts_closed == [utterance.context_id]
    assert record.messages[-1] == {"terminate": True}
    assert record.close_code == 1000


@pytest.mark.parametrize("method", ["send", "flush", "finish"])
async def test_text_after_interrupt_in_the_same_task_cancels_the_block(
    server: LocalServer, method: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            reached_the_end = False
            async with synth.open_utterance() as utterance:
                await utterance.send("Some words. ")
                utterance.interrupt()
                if method == "send":
                    await utterance.send("more")
                elif method == "flush":
                    await utterance.flush()
                else:
                    await utterance.finish("more")
                reached_the_end = True  # pragma: no cover
            assert not reached_the_end
            # From outside the block the utterance is simply closed.
            with pytest.raises(SynthesizerClosedError):
                await utterance.send("after the block")


# ------------------------------------------------------------- racing aclose()


@pytest.mark.parametrize("checkpoints", range(40))
@pytest.mark.parametrize("how", ["speak", "open_utterance"])
async def test_an_utterance_racing_aclose_gets_synthesizer_closed(
    server: LocalServer, checkpoints: int, how: str
) -> None:
    """Whichever checkpoint aclose() lands on, the utterance fails as closed, nothing else."""
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:

            async def close_after_checkpoints() -> None:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                await synth.aclose()

            outcome: BaseException | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close_after_checkpoints)
                try:
                    if how == "speak":
                        async with synth.speak("Racing the close.") as utterance:
                            await utterance.read_all()
                    else:
                        async with synth.open_utterance() as utterance:
                            await utterance.send("Racing ")
                            await utterance.finish("the close.")
                            await utterance.read_all()
                except Exception as exc:
                    outcome = exc
        await server.log.wait_for(lambda log: log.connections_closed == log.connections_opened)
    # Either it was fast enough to finish, or it was closed: never another error.
    assert outcome is None or isinstance(outcome, SynthesizerClosedError), repr(outcome)
    assert server.log.unclosed_contexts() == []
