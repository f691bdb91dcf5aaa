"""A server that cannot be reached: every transport names the address and the system's reason."""

from __future__ import annotations

import socket

import pytest
import trio
from helpers import TIMEOUT

from trio_asyncai import ConnectError, open_client, open_http_synthesizer, open_synthesizer
from trio_asyncai._errors import os_reason


@pytest.fixture
def closed_url() -> str:
    """The URL of a port on this machine that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_rest(closed_url: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError) as caught:
        async with open_client(base_url=closed_url, api_key="k", max_retries=0) as client:
            await client.voices.get("v")
    assert str(caught.value) == f"getting a voice: could not connect to {closed_url}: Connection refused"


async def test_http_synthesis(closed_url: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError) as caught:
        async with (
            open_http_synthesizer(base_url=closed_url, api_key="k", voice_id="v", max_retries=0) as synth,
            synth.speak("Hi.") as utterance,
        ):
            async for _ in utterance:
                pass
    assert str(caught.value).endswith(f": could not connect to {closed_url}: Connection refused")


async def test_websocket(closed_url: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectError) as caught:
        async with (
            open_synthesizer(
                base_url=closed_url, api_key="k", voice_id="v", max_reconnect_attempts=0
            ) as synth,
            synth.speak("Hi.") as utterance,
        ):
            async for _ in utterance:
                pass
    assert str(caught.value) == f"could not connect to {closed_url}: Connection refused"


def test_the_reason_is_the_systems() -> None:
    refused = ConnectionRefusedError(111, "Error connecting to ('127.0.0.1', 9): Connection refused")
    group = ExceptionGroup("all attempts to connect to 127.0.0.1:9 failed", [refused])
    wrapper = OSError("all attempts to connect to 127.0.0.1:9 failed")
    wrapper.__cause__ = group
    assert os_reason(wrapper) == "Connection refused"
    assert os_reason(socket.gaierror(-2, "Name or service not known")) == "Name or service not known"
    assert os_reason(RuntimeError("no OS error here")) == "no OS error here"
    assert os_reason(RuntimeError()) == "RuntimeError"
