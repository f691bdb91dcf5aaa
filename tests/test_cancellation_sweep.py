"""Cancellation at every checkpoint leaves nothing open on the server.

trio's own pattern: run a scenario once to count its checkpoints, then again
with a cancel scope that cancels it after k checkpoints, for every k. Each
run must end with every context the server saw closed and the connection
closed, and with no task of the SDK left.

The count is of trio's schedule points in the scenario's task (each
``await`` that reaches the scheduler), found by instrumenting trio's run
loop; a cancellation delivered at any of them is what a user's
``move_on_after``, Ctrl-C or a pipeline's cancel would do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers import tasks_named

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

Scenario = Callable[[Any], Awaitable[None]]


async def speak(synth: Any) -> None:
    async with synth.speak("One sentence to say, start to end.") as utterance:
        await utterance.read_all()


async def stream_text(synth: Any) -> None:
    async with synth.open_utterance() as utterance:
        await utterance.send("Text as an LLM writes it, ")
        await utterance.flush()
        await utterance.send("in pieces. ")
        await utterance.finish("The end.")
        await utterance.read_all()


async def interrupt_midway(synth: Any) -> None:
    async with synth.speak("Long enough to be cut off in the middle, surely, twice over.") as utterance:
        async for _ in utterance:
            utterance.interrupt()


async def close_early(synth: Any) -> None:
    async with synth.open_utterance() as utterance:
        await utterance.send("Never finished, ")
    await synth.aclose()


SCENARIOS = {
    "speak": speak,
    "stream_text": stream_text,
    "interrupt": interrupt_midway,
    "aclose": close_early,
}


class _CountCheckpoints(trio.abc.Instrument):
    """Counts how often one task is scheduled: its checkpoints that reached the run loop."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


def _opener(transport: str) -> Any:
    return trio_asyncai.open_synthesizer if transport == "websocket" else trio_asyncai.open_http_synthesizer


async def _run(server: LocalServer, transport: str, scenario: Scenario, cancel_after: int | None) -> int:
    """Run the scenario in a task of its own; cancel it after that many steps. Return its steps."""

    async def body(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with _opener(transport)(
                base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=16000
            ) as synth:
                await scenario(synth)

    counter: _CountCheckpoints | None = None
    try:
        async with trio.open_nursery() as nursery:
            scope: trio.CancelScope = await nursery.start(body)
            counter = _CountCheckpoints(next(iter(nursery.child_tasks)))
            trio.lowlevel.add_instrument(counter)
            if cancel_after is not None:
                while counter.count < cancel_after and nursery.child_tasks:
                    await trio.lowlevel.checkpoint()
                scope.cancel()
    finally:
        if counter is not None:
            trio.lowlevel.remove_instrument(counter)
    assert counter is not None
    return counter.count


@pytest.mark.parametrize("transport", ["websocket", "http"])
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_cancelled_at_every_checkpoint(server: LocalServer, transport: str, name: str) -> None:
    scenario = SCENARIOS[name]
    with trio.fail_after(60):
        total = await _run(server, transport, scenario, None)
    assert total >= 3
    for k in range(1, total + 2):
        with trio.fail_after(60):
            await _run(server, transport, scenario, k)
            if transport == "websocket":
                await server.log.wait_for(lambda log: log.connections_closed == log.connections_opened)
                assert server.log.unclosed_contexts() == [], f"cancelled after {k} steps"
        assert tasks_named("trio_asyncai._") == [], f"cancelled after {k} steps"
