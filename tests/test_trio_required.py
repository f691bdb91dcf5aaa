"""Under asyncio, every entry point says that trio-asyncai needs trio."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

import trio_asyncai
from trio_asyncai import ConfigurationError
from trio_asyncai.frames import EndFrame

NEEDS_TRIO = r"trio-asyncai needs trio, and was called under asyncio: run it with trio\.run\(\)"
URL = "http://127.0.0.1:9"  # never connected to: the check comes first


def _open_synthesizer() -> Any:
    return trio_asyncai.open_synthesizer(base_url=URL, voice_id="v")


def _open_http_synthesizer() -> Any:
    return trio_asyncai.open_http_synthesizer(base_url=URL, voice_id="v")


def _open_client() -> Any:
    return trio_asyncai.open_client(base_url=URL)


@pytest.mark.parametrize("opener", [_open_synthesizer, _open_http_synthesizer, _open_client])
def test_open_under_asyncio(opener: Callable[[], Any]) -> None:
    async def main() -> None:
        async with opener():
            pass  # pragma: no cover - never entered

    with pytest.raises(ConfigurationError, match=NEEDS_TRIO):
        anyio.run(main, backend="asyncio")


@pytest.mark.parametrize("connect", [trio_asyncai.connect_synthesizer, trio_asyncai.connect_http_synthesizer])
def test_connect_under_asyncio(connect: Any) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as group:
            # Caught in the block: the task group would wrap it in a group of its own.
            with pytest.raises(ConfigurationError, match=NEEDS_TRIO):
                await connect(group, base_url=URL, voice_id="v")

    anyio.run(main, backend="asyncio")


def test_a_pipeline_task_under_asyncio() -> None:
    task = trio_asyncai.PipelineTask(trio_asyncai.Pipeline([trio_asyncai.WebSocketTTS(voice_id="v")]))

    async def queue() -> None:
        await task.queue_frame(EndFrame())

    async def run() -> None:
        await task.run()

    for main in (queue, run):
        with pytest.raises(ConfigurationError, match=NEEDS_TRIO):
            anyio.run(main, backend="asyncio")


def test_under_anyio_trio_backend_the_check_passes() -> None:
    async def main() -> None:
        # Refused by the argument check that follows, not by the trio check.
        with pytest.raises(ConfigurationError, match="sample_rate"):
            async with trio_asyncai.open_synthesizer(base_url=URL, voice_id="v", sample_rate=5):
                pass  # pragma: no cover

    anyio.run(main, backend="trio")


@pytest.mark.parametrize("entry", ["open_local_server", "serve"])
def test_the_local_server_under_asyncio(entry: str) -> None:
    from trio_asyncai.server import open_local_server, serve

    async def main() -> None:
        if entry == "serve":
            await serve(port=0, engine="signal")
        else:
            async with open_local_server(engine="signal"):
                pass  # pragma: no cover - never entered

    with pytest.raises(RuntimeError, match=r"the local server needs trio, and was started under asyncio"):
        anyio.run(main, backend="asyncio")
