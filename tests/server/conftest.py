"""Fixtures for the server tests: servers with the signal engine (or a gated one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio.testing

from trio_asyncai.server import LocalServer, SignalEngine, open_local_server

from .helpers import API_KEY, SIGNAL_RATE, GatedEngine


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A server with an API key, the signal engine and no idle timeout."""
    async with open_local_server(
        api_key=API_KEY, engine=SignalEngine(sample_rate=SIGNAL_RATE), idle_timeout=None
    ) as srv:
        yield srv


@pytest.fixture
def gate() -> Iterator[GatedEngine]:
    """A gated engine, released at the end of the test so no worker thread lingers."""
    engine = GatedEngine()
    yield engine
    engine.release.set()


@pytest.fixture
async def gated_server(gate: GatedEngine) -> AsyncIterator[LocalServer]:
    """A server whose engine holds on any text containing "hold"."""
    async with open_local_server(api_key=API_KEY, engine=gate, idle_timeout=None) as srv:
        yield srv
        gate.release.set()


@pytest.fixture
def small_jump_clock() -> trio.testing.MockClock:
    """Trio time that jumps ahead once every task has waited 10 ms of real time."""
    return trio.testing.MockClock(autojump_threshold=0.01)
