"""The API key is reachable from no traceback the SDK raises: not a frame local, not a kept context.

Error reporters (Sentry, ``rich`` tracebacks) print the locals of every frame
of a traceback, and of its chained contexts, and often their attributes one
level down. So for each kind of failure the walk below reads all of that, as
they would, and looks for the key. The test's own frame is left out: the
caller's variables are the caller's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from helpers import TIMEOUT, cut_then_forward, tcp_peer

import trio_asyncai
from trio_asyncai import AsyncAIError, WebSocketTTS
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, open_local_server

SECRET = "sk_Tr4ceback_secret_0123456789"
RIGHT = "sk_the_twins_own_key"


def _shallow(value: Any) -> Iterator[Any]:
    """``value``, and what it holds one level down (attributes, items)."""
    yield value
    if isinstance(value, str | bytes | int | float | bool | type(None)):
        return
    if isinstance(value, Mapping | httpx.Headers):
        for key, item in list(value.items()):
            yield key
            yield item
        return
    if isinstance(value, list | tuple | set | frozenset):
        yield from value
        return
    for name in getattr(type(value), "__slots__", ()):
        if hasattr(value, name):
            yield getattr(value, name)
    yield from getattr(value, "__dict__", {}).values()


def _texts(value: Any) -> Iterator[str]:
    for item in _shallow(value):
        if isinstance(item, str):
            yield item
        elif isinstance(item, bytes | bytearray):
            yield bytes(item).decode("latin-1")
        else:
            try:
                yield repr(item)
            except Exception:
                continue


def _reachable(error: BaseException) -> Iterator[str]:
    """Everything an error reporter could print of ``error``: its chain, and each frame's locals."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield from (repr(exc), str(exc))
        yield from _texts(vars(exc))
        pending += [exc.__context__, exc.__cause__]
        if isinstance(exc, BaseExceptionGroup):
            pending += list(exc.exceptions)
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if not (code.co_filename == __file__ and code.co_name.startswith("test_")):
                for value in tb.tb_frame.f_locals.values():
                    yield from _texts(value)
            tb = tb.tb_next


def assert_no_key(error: BaseException) -> None:
    found = [text for text in _reachable(error) if SECRET in text or SECRET[3:15] in text]
    assert found == [], found[:3]


# ------------------------------------------------------- the argument checks


@pytest.mark.parametrize(
    "options",
    [
        {"keepalive_interval": -1},
        {"max_reconnect_attempts": "three"},
        {"sample_rate": 96000},
        {"bogus": 1},
    ],
)
async def test_a_refused_argument_leaves_no_key_in_the_traceback(options: dict[str, Any]) -> None:
    openers = (trio_asyncai.open_synthesizer, trio_asyncai.open_http_synthesizer, trio_asyncai.open_client)
    for opener in openers:
        with pytest.raises((AsyncAIError, TypeError)) as caught:
            async with opener(api_key=SECRET, voice_id=DEFAULT_VOICE_ID, **options):
                pass  # pragma: no cover
        assert_no_key(caught.value)


async def test_a_refused_key_leaves_no_key_in_the_traceback() -> None:
    bad = SECRET[:10] + " " + SECRET[10:]
    with pytest.raises(AsyncAIError) as caught:
        async with trio_asyncai.open_synthesizer(api_key=bad, voice_id=DEFAULT_VOICE_ID):
            pass  # pragma: no cover
    assert_no_key(caught.value)


async def test_no_voice_leaves_no_key_in_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCAI_VOICE_ID", raising=False)
    with pytest.raises(AsyncAIError) as caught:
        async with trio_asyncai.open_synthesizer(api_key=SECRET, base_url="http://127.0.0.1:9"):
            pass  # pragma: no cover
    assert "no voice" in str(caught.value)
    assert_no_key(caught.value)


def test_a_stage_s_refused_argument_leaves_no_key_in_the_traceback() -> None:
    with pytest.raises(AsyncAIError) as caught:
        WebSocketTTS(api_key=SECRET, voice_id=DEFAULT_VOICE_ID, aggregate="word")  # type: ignore[arg-type]
    assert_no_key(caught.value)


# ------------------------------------------------------- the service's answers


@pytest.fixture
async def twin() -> Any:
    async with open_local_server(engine="signal", api_key=RIGHT, idle_timeout=None) as server:
        yield server


async def test_a_refused_rest_request_leaves_no_key_in_the_traceback(twin: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_client(api_key=SECRET, base_url=twin.url) as client:
            with pytest.raises(trio_asyncai.AuthenticationError) as caught:
                await client.voices.get(DEFAULT_VOICE_ID)
    assert_no_key(caught.value)


async def test_an_unreadable_rest_answer_leaves_no_key_in_the_traceback(twin: LocalServer) -> None:
    twin.faults.nested_json = 5000
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_client(api_key=RIGHT, base_url=twin.url) as client:
            with pytest.raises(trio_asyncai.ProtocolError) as caught:
                await client.voices.get(DEFAULT_VOICE_ID)
    # RIGHT is the key here: look for it instead.
    assert not [text for text in _reachable(caught.value) if RIGHT in text]


async def test_a_refused_http_synthesis_leaves_no_key_in_the_traceback(twin: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_asyncai.open_http_synthesizer(
            api_key=SECRET, base_url=twin.url, voice_id=DEFAULT_VOICE_ID
        ) as synth:
            with pytest.raises(trio_asyncai.AuthenticationError) as caught:
                async with synth.speak("Refused.") as utterance:
                    await utterance.read_all()
    assert_no_key(caught.value)


async def test_a_broken_http_stream_leaves_no_key_in_the_traceback() -> None:
    async def headers_then_gone(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n"
            + b"\x00" * 1000
        )

    with trio.fail_after(TIMEOUT):
        async with tcp_peer(headers_then_gone) as peer:
            async with trio_asyncai.open_http_synthesizer(
                api_key=SECRET, base_url=peer.url, voice_id="v"
            ) as synth:
                with pytest.raises(trio_asyncai.ConnectionLostError) as caught:
                    async with synth.speak("Broken off.") as utterance:
                        await utterance.read_all()
    assert_no_key(caught.value)


async def test_a_refused_handshake_leaves_no_key_in_the_traceback(twin: LocalServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(trio_asyncai.AuthenticationError) as caught:
        async with trio_asyncai.open_synthesizer(
            api_key=SECRET, base_url=twin.url, voice_id=DEFAULT_VOICE_ID
        ):
            pass  # pragma: no cover
    assert_no_key(caught.value)


async def test_a_cut_handshake_leaves_no_key_in_the_traceback(
    twin: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with tcp_peer(cut_then_forward(["fin"] * 10, twin.port)) as peer:
            with pytest.raises(trio_asyncai.ConnectError) as caught:
                async with trio_asyncai.open_synthesizer(
                    api_key=SECRET, base_url=peer.url, voice_id=DEFAULT_VOICE_ID
                ):
                    pass  # pragma: no cover
    assert_no_key(caught.value)


def test_the_walk_finds_a_key_where_there_is_one() -> None:
    """The check itself can fail: a key in a frame of ours is found."""

    def holds_it(api_key: str) -> None:
        raise trio_asyncai.ConfigurationError("bad")

    with pytest.raises(trio_asyncai.ConfigurationError) as caught:
        holds_it(SECRET)
    with pytest.raises(AssertionError):
        assert_no_key(caught.value)
