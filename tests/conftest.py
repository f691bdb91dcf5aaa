"""Fixtures shared by the test suite: the project's own local server, on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_asyncai.server import LocalServer, open_local_server


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
