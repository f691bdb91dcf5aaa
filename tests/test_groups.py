"""The ``open_*`` blocks hand the caller's exception back as itself: context, cause, traceback."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
from helpers import TIMEOUT

from trio_asyncai import Pipeline, PipelineTask, open_client, open_http_synthesizer, open_synthesizer
from trio_asyncai._groups import reraise, single_exception
from trio_asyncai.frames import EndFrame, Frame
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer, open_local_server


class Original(Exception):
    """The exception being handled when the caller raises theirs (A)."""


class Raised(Exception):
    """The caller's exception (B)."""


@asynccontextmanager
async def _pipeline_block(server: LocalServer) -> AsyncIterator[None]:
    """A PipelineTask whose one stage runs the body: the stage's exception comes out of run()."""
    body_error: list[BaseException] = []

    async def stage(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        await trio.lowlevel.checkpoint()
        if body_error:
            raise body_error[0]

    task = PipelineTask(Pipeline([stage]))
    await task.queue_frames([EndFrame()])
    # The body runs here; its exception is handed to the stage, which raises it inside run()'s nurseries.
    try:
        yield
    except Exception as exc:
        body_error.append(exc)
    await task.run()


def _openers() -> dict[str, Callable[[LocalServer], AbstractAsyncContextManager[Any]]]:
    return {
        "open_synthesizer": lambda s: open_synthesizer(base_url=s.url, voice_id=DEFAULT_VOICE_ID),
        "open_http_synthesizer": lambda s: open_http_synthesizer(base_url=s.url, voice_id=DEFAULT_VOICE_ID),
        "open_client": lambda s: open_client(base_url=s.url),
        "open_local_server": lambda s: open_local_server(engine="signal"),
        "PipelineTask.run": _pipeline_block,
    }


OPENERS = _openers()


def _raise_while_handling() -> None:
    try:
        raise Original("the first")
    except Original:
        raise Raised("the second")  # noqa: B904 - the implicit context is what is tested


@pytest.mark.parametrize("name", sorted(OPENERS))
async def test_an_exception_raised_while_handling_another_keeps_its_context(
    server: LocalServer, name: str
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(Raised) as info:
        async with OPENERS[name](server):
            _raise_while_handling()
    exc = info.value
    assert isinstance(exc.__context__, Original)
    assert exc.__context__.args == ("the first",)
    assert exc.__suppress_context__ is False
    assert exc.__cause__ is None
    # The traceback still reaches the line that raised it.
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name == "_raise_while_handling"
    assert (frames[-1].line or "").startswith('raise Raised("the second")')
    # And it prints as Python prints it: A, then "During handling...", then B; no group.
    printed = "".join(traceback.format_exception(exc))
    assert "During handling of the above exception" in printed
    assert "ExceptionGroup" not in printed


@pytest.mark.parametrize("name", sorted(OPENERS))
async def test_a_plain_exception_comes_out_as_itself(server: LocalServer, name: str) -> None:
    mine = Raised("plain")
    with trio.fail_after(TIMEOUT), pytest.raises(Raised) as info:
        async with OPENERS[name](server):
            raise mine
    assert info.value is mine
    assert mine.__context__ is None
    assert mine.__cause__ is None


@pytest.mark.parametrize("name", sorted(OPENERS))
async def test_an_explicit_cause_and_from_none_are_kept(server: LocalServer, name: str) -> None:
    cause = Original("cause")
    with trio.fail_after(TIMEOUT), pytest.raises(Raised) as info:
        async with OPENERS[name](server):
            raise Raised("caused") from cause
    assert info.value.__cause__ is cause
    assert info.value.__suppress_context__ is True
    with trio.fail_after(TIMEOUT), pytest.raises(Raised) as info:
        async with OPENERS[name](server):
            try:
                raise Original("hidden")
            except Original:
                raise Raised("from none") from None
    assert info.value.__suppress_context__ is True
    assert isinstance(info.value.__context__, Original)
    assert info.value.__cause__ is None


def test_single_exception_keeps_a_group_of_several_and_unwraps_one() -> None:
    first, second = Raised("1"), Raised("2")
    with pytest.raises(ExceptionGroup) as group_info, single_exception():
        raise ExceptionGroup("two", [first, second])
    assert group_info.value.exceptions == (first, second)
    with pytest.raises(Raised) as info, single_exception():
        raise ExceptionGroup("one", [first])
    assert info.value is first
    assert first.__context__ is None


def test_reraise_keeps_context_and_traceback() -> None:
    try:
        _raise_while_handling()
    except Raised as caught:
        exc = caught
    before = traceback.extract_tb(exc.__traceback__)
    try:
        raise ValueError("something being handled")
    except ValueError:
        with pytest.raises(Raised) as info:
            reraise(exc)
    assert info.value.__context__ is exc.__context__
    assert isinstance(exc.__context__, Original)
    after = traceback.extract_tb(exc.__traceback__)
    assert [f.name for f in after[-len(before) :]] == [f.name for f in before]


async def test_the_local_servers_own_failure_comes_out_with_its_own_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server task that fails (after handling another error) raises its exception, context and all."""
    import trio_asyncai.server._app as app

    async def failing_run(*args: object, **kwargs: object) -> None:
        await trio.lowlevel.checkpoint()
        _raise_while_handling()

    monkeypatch.setattr(app, "_run", failing_run)
    with trio.fail_after(TIMEOUT), pytest.raises(Raised) as info:
        async with open_local_server(engine="signal"):
            pass  # pragma: no cover - never entered
    assert isinstance(info.value.__context__, Original)
    assert info.value.__suppress_context__ is False
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "_raise_while_handling"
