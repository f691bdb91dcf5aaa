"""Fixtures shared by the test suite: the project's own local server, on 127.0.0.1, port 0."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import trio
import trio.testing

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, open_local_server

#: ``TRIO_ASYNCAI_HYPOTHESIS=fuzz`` (``nox -s fuzz``): every hypothesis test runs
#: this many examples, whatever its own settings say. Unset: each test's own.
FUZZ_EXAMPLES = 100_000
hypothesis.settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None)
_PROFILE = os.environ.get("TRIO_ASYNCAI_HYPOTHESIS")
if _PROFILE:
    hypothesis.settings.load_profile(_PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the fuzz profile, raise the examples of tests whose ``@settings`` names its own count."""
    if _PROFILE != "fuzz":
        return
    for item in items:
        test = getattr(item, "obj", None)
        # hypothesis reads a @given test's settings from this attribute as it runs.
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(own, hypothesis.settings):
            test._hypothesis_internal_use_settings = hypothesis.settings(  # type: ignore[union-attr]
                own, max_examples=FUZZ_EXAMPLES, deadline=None
            )


@pytest.fixture
def jump_clock() -> trio.testing.MockClock:
    """A clock that jumps ahead when every task has waited 20 ms of real time.

    Lets keepalive, idle-timeout and backoff tests run their minutes of trio
    time in milliseconds, while loopback I/O still gets the real time it needs.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A local server with the instant, deterministic signal engine."""
    async with open_local_server(engine="signal", idle_timeout=None) as srv:
        yield srv


def synth_for(server: LocalServer, **kwargs: Any) -> Any:
    """``open_synthesizer`` against the local server, with its voice, at 16 kHz unless told otherwise."""
    kwargs.setdefault("voice_id", DEFAULT_VOICE_ID)
    kwargs.setdefault("sample_rate", 16000)
    return trio_asyncai.open_synthesizer(base_url=server.url, **kwargs)


async def reader_caught_up(synth: Any, server: LocalServer, *, finals: int = 1) -> None:
    """Return once the WebSocket synthesizer has read all the server sent up to its ``finals``-th final
    (on the newest connection).

    The reader takes messages in order, so once an utterance spoken after
    them is complete, it has handled every earlier one: an utterance nobody
    reads has met its fate by then, with no sleep.
    """
    await server.log.wait_for(lambda log: log.connections[-1].finals_sent >= finals)
    async with synth.speak("Barrier.") as barrier:
        await barrier.read_all()


def tasks_named(fragment: str) -> list[str]:
    """The names of every running task whose name contains ``fragment``."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if fragment in task.name:
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found
