"""Fixtures for the server tests: the shared ``server`` asks for an API key here; a gated engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from trio_asyncai.server import LocalServer, open_local_server

from .helpers import API_KEY, GatedEngine


@pytest.fixture
def server_api_key() -> str | None:
    """The server tests' ``server`` refuses every key but :data:`API_KEY`."""
    return API_KEY


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
