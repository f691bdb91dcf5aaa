"""A synthesizer from ``connect_*`` that is garbage collected without ``aclose()`` warns (anyio's habit)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import trio
from helpers import TIMEOUT

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

CONNECTS: list[Callable[..., Any]] = [trio_asyncai.connect_synthesizer, trio_asyncai.connect_http_synthesizer]
OPENS: list[Callable[..., Any]] = [trio_asyncai.open_synthesizer, trio_asyncai.open_http_synthesizer]


async def _connected(server: LocalServer, connect: Callable[..., Any], *, aclose: bool) -> Any:
    """A synthesizer from ``connect`` whose nursery has ended, closed with ``aclose()`` or not."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            synth = await connect(nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID)
            if aclose:
                await synth.aclose()
            else:
                nursery.cancel_scope.cancel()  # its nursery ends it, but nobody closed it
    return synth


def _drop(holder: list[Any]) -> None:
    """Let go of the last reference, and collect."""
    holder.clear()
    gc.collect()


def _collected_warnings(holder: list[Any]) -> list[warnings.WarningMessage]:
    """The ResourceWarnings raised while the last reference goes and the GC runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _drop(holder)
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("connect", CONNECTS, ids=lambda f: f.__name__)
async def test_a_connect_synthesizer_collected_without_aclose_warns(
    server: LocalServer, connect: Callable[..., Any]
) -> None:
    synth = await _connected(server, connect, aclose=False)
    name = type(synth).__name__
    holder = [synth]
    del synth

    with pytest.warns(ResourceWarning, match=f"{name} made by connect_\\* was never closed"):
        _drop(holder)


@pytest.mark.parametrize("connect", CONNECTS, ids=lambda f: f.__name__)
async def test_a_connect_synthesizer_closed_with_aclose_does_not_warn(
    server: LocalServer, connect: Callable[..., Any]
) -> None:
    synth = await _connected(server, connect, aclose=True)
    holder = [synth]
    del synth

    assert _collected_warnings(holder) == []


@pytest.mark.parametrize("opener", OPENS, ids=lambda f: f.__name__)
async def test_an_open_synthesizer_does_not_warn(server: LocalServer, opener: Callable[..., Any]) -> None:
    with trio.fail_after(TIMEOUT):
        async with opener(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
            pass
    holder = [synth]
    del synth

    assert _collected_warnings(holder) == []
