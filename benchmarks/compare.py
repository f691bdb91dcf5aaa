"""Side-by-side benchmarks: trio-asyncai, minimal raw clients (the floor) and pipecat, on one local server.

The harness starts one local server (``trio-asyncai serve --engine signal``:
instant, deterministic audio, raw ``pcm_s16le`` at 24 kHz) in a process of
its own (and for ``cpu1-paced`` a paced one, in another), then runs every
client through every scenario, each measurement in a fresh child process so
that CPU time and peak RSS are the client's alone::

    python benchmarks/compare.py                       # every client found
    python benchmarks/compare.py --runs 5 --clients asyncai-ws,floor-ws
    python benchmarks/compare.py --rst docs/benchmarks_compare.rst
    python benchmarks/compare.py --sdk-path before=/work/before   # before / after

The clients (those whose libraries are not installed are skipped):

- ``asyncai-ws`` / ``asyncai-http``: this SDK's synthesizers, used directly.
- ``asyncai-pipe-ws`` / ``asyncai-pipe-http``: its pipeline stages
  (:class:`~trio_asyncai.WebSocketTTS`, :class:`~trio_asyncai.HttpTTS`).
- ``floor-ws``: the least a client can do over the WebSocket (``websockets``
  on asyncio: JSON and base64, nothing else); ``floor-trio-ws``: the same
  on trio-websocket, the library this SDK uses; ``floor-httpx``: one streaming
  httpx request on trio; ``floor-aiohttp``: the same with aiohttp on asyncio.
- ``pipecat-ws`` / ``pipecat-http``: pipecat's Async services in a pipecat
  pipeline (``nox -s bench-compare`` installs pipecat).

The scenarios, each a median over ``--runs`` child processes:

- ``ttfb-idle`` / ``ttfb-b2b``: time to first audio of a short sentence, p50
  and p90, with the client idle for a moment before each, or back to back.
- ``end``: from the last audio to the end of the utterance, as the caller
  sees them.
- ``cpu1`` / ``cpu8``: client CPU (user + system) per second of audio, one
  utterance at a time, or eight at once.
- ``cpu1-paced``: ``cpu1`` against a second server that sends its audio at a
  pace instead of in one burst, as a service does that sends audio as it
  makes it: it waits ``--pace-ms`` (5 by default) before each chunk of 80 ms
  of audio (3,840 bytes), each WebSocket message or HTTP body chunk, so
  about 4 KiB every 5 ms. Per-chunk costs (a wake-up of the event loop, a
  task switch, a read) show here: a burst lets a client batch them.
  The pacing is the server's own ``chunk_delay`` switch
  (:class:`trio_asyncai.server.Faults`), set by this script in the server's
  process (``--serve-paced``), so the server package is unchanged and its
  CPU is not the client's. Over the WebSocket the pause is per connection.
- ``wall40``: wall time of 40 utterances of 6 s of audio, back to back.
- ``bargein``: how long an interruption takes to return, and the bytes of the
  interrupted utterance that reach the caller after it (trio-asyncai only).
- ``rss``: peak RSS of a client whose consumer stalls while 60 s of audio
  arrive.

Each CPU figure is also given over the floor on the client's own stack
(``asyncai-*-ws``: ``floor-trio-ws``; ``asyncai-*-http``: ``floor-httpx``;
``pipecat-ws``: ``floor-ws``; ``pipecat-http``: ``floor-aiohttp``) and over
the fastest floor of its transport in the same scenario, when those floors
were run.

Before and after: ``--sdk-path [LABEL=]DIR`` (repeatable) runs every
``asyncai-*`` client a second time on the ``trio_asyncai`` package of
another checkout, put first on the child's PYTHONPATH, as
``asyncai-ws@LABEL`` and so on (LABEL defaults to DIR's name), right after
the current tree's in every run; the servers and the other clients stay the
current tree's. The harness prints where such a child imports the package
from and refuses to go on unless it is DIR, and every child reports its
``trio_asyncai.__file__`` for the driver to check. (``bargein`` starts its
server in the child, so there the server is the checkout's too.)

No timing is asserted anywhere: the figures go to docs/benchmarks.rst. To
see where a client's time goes, profile one child (the scenario only, not
the imports)::

    BENCH_PROFILE=/tmp/ws.prof python benchmarks/compare.py --child asyncai-ws cpu1 URL VOICE

For a paced child, start the paced server by hand and give its URL::

    python benchmarks/compare.py --serve-paced 0.005 &
    BENCH_PROFILE=/tmp/ws.prof python benchmarks/compare.py --child asyncai-ws cpu1-paced URL VOICE
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

SAMPLE_RATE = 24000
BYTES_PER_SECOND = SAMPLE_RATE * 2
SHORT = "Hello there."
#: 100 characters: 6 s of audio from the signal engine (0.06 s a character).
SIX_SECONDS = (
    "The quick brown fox jumps over the lazy dog, and then it runs back home again to sleep until dawn."
)
#: About 54 s of audio.
LONG = " ".join([SIX_SECONDS] * 9)
API_KEY = "sk_bench"
SCENARIOS = ("ttfb-idle", "ttfb-b2b", "end", "cpu1", "cpu8", "cpu1-paced", "wall40", "bargein", "rss")
#: Scenarios run against the paced server (see ``_serve_paced``), not the bursting one.
PACED = {"cpu1-paced"}
#: Scenarios whose figure is client CPU per audio second, also given against the floors.
CPU_SCENARIOS = ("cpu1", "cpu8", "cpu1-paced")
#: The default pause before each audio message or HTTP body chunk of the paced server, in ms.
PACE_MS = 5.0


@attrs.define
class Spoken:
    """What one utterance looked like from the caller's side (perf_counter seconds)."""

    sent: float
    first: float | None = None
    last: float | None = None
    end: float | None = None
    nbytes: int = 0

    def audio(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.nbytes += len(data)


Speak = Callable[[str], Awaitable[Spoken]]
#: A client: an async context manager giving ``speak``; ``shared`` says
#: whether one may serve concurrent utterances (else each worker opens one).
Opener = Callable[[str, str], AbstractAsyncContextManager[Speak]]


# ------------------------------------------------------------ trio-asyncai


@asynccontextmanager
async def _asyncai(url: str, voice: str, *, http: bool) -> AsyncIterator[Speak]:
    import trio_asyncai

    opener = trio_asyncai.open_http_synthesizer if http else trio_asyncai.open_synthesizer
    async with opener(api_key=API_KEY, base_url=url, voice_id=voice, sample_rate=SAMPLE_RATE) as synth:

        async def speak(text: str) -> Spoken:
            spoken = Spoken(time.perf_counter())
            async with synth.speak(text) as utterance:
                async for chunk in utterance:
                    spoken.audio(chunk.audio)
            spoken.end = time.perf_counter()
            return spoken

        yield speak


@asynccontextmanager
async def _asyncai_pipeline(url: str, voice: str, *, http: bool) -> AsyncIterator[Speak]:
    import trio

    import trio_asyncai
    from trio_asyncai.frames import EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame

    stage_type = trio_asyncai.HttpTTS if http else trio_asyncai.WebSocketTTS
    tts = stage_type(api_key=API_KEY, base_url=url, voice_id=voice)
    current: list[Spoken] = []
    done = trio.Event()

    async def sink(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        nonlocal done
        async for frame in receive:
            if isinstance(frame, TTSAudioRawFrame):
                current[-1].audio(frame.audio)
            elif isinstance(frame, TTSStoppedFrame):
                current[-1].end = time.perf_counter()
                done.set()
            elif isinstance(frame, EndFrame):
                return

    task = trio_asyncai.PipelineTask(
        trio_asyncai.Pipeline([tts, sink]), params=trio_asyncai.PipelineParams(sample_rate=SAMPLE_RATE)
    )

    async def speak(text: str) -> Spoken:
        nonlocal done
        done = trio.Event()
        current.append(Spoken(time.perf_counter()))
        await task.queue_frame(TTSSpeakFrame(text))
        await done.wait()
        return current[-1]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(task.run)
        yield speak
        await task.queue_frame(EndFrame())


# ------------------------------------------------------------------- floor


class _FloorProtocol:
    """The least a WebSocket client does (JSON and base64), shared by both floors; events are theirs."""

    def __init__(self, url: str, voice: str) -> None:
        self.url = (
            "ws" + url.removeprefix("http") + f"/text_to_speech/websocket/ws?api_key={API_KEY}&version=v1"
        )
        self.init = json.dumps(
            {
                "model_id": "async_flash_v1.5",
                "voice": {"mode": "id", "id": voice},
                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE},
            }
        )
        #: context id -> (what arrived, the callable that says it is complete)
        self.contexts: dict[str, tuple[Spoken, Callable[[], None]]] = {}

    def utterance(self, text: str, spoken: Spoken, done: Callable[[], None]) -> tuple[str, str]:
        """The two messages of one utterance (its text, then its close); ``done`` is called on its final."""
        context_id = str(uuid.uuid4())
        self.contexts[context_id] = (spoken, done)
        return (
            json.dumps({"transcript": text.strip() + " ", "context_id": context_id, "force": True}),
            json.dumps({"close_context": True, "transcript": "", "context_id": context_id}),
        )

    def receive(self, message: str | bytes) -> None:
        data = json.loads(message)
        entry = self.contexts.get(data.get("context_id", ""))
        if entry is None:
            return
        if data.get("audio"):
            entry[0].audio(base64.b64decode(data["audio"]))
        if data.get("final"):
            entry[0].end = time.perf_counter()
            del self.contexts[data["context_id"]]
            entry[1]()


@asynccontextmanager
async def _floor_ws(url: str, voice: str) -> AsyncIterator[Speak]:
    import websockets

    protocol = _FloorProtocol(url, voice)
    async with websockets.connect(protocol.url, compression=None, max_size=None) as ws:
        await ws.send(protocol.init)

        async def read() -> None:
            async for message in ws:
                protocol.receive(message)

        reader = asyncio.create_task(read())

        async def speak(text: str) -> Spoken:
            spoken, finished = Spoken(time.perf_counter()), asyncio.Event()
            for message in protocol.utterance(text, spoken, finished.set):
                await ws.send(message)
            await finished.wait()
            return spoken

        try:
            yield speak
        finally:
            reader.cancel()


@asynccontextmanager
async def _floor_trio_ws(url: str, voice: str) -> AsyncIterator[Speak]:
    """The same least client on trio-websocket (this SDK's WebSocket library): the floor on trio."""
    import trio
    import trio_websocket

    protocol = _FloorProtocol(url, voice)
    async with (
        trio_websocket.open_websocket_url(
            protocol.url, max_message_size=2**24, receive_buffer_size=None
        ) as ws,
        trio.open_nursery() as nursery,
    ):
        await ws.send_message(protocol.init)

        async def read() -> None:
            while True:
                protocol.receive(await ws.get_message())

        nursery.start_soon(read)

        async def speak(text: str) -> Spoken:
            spoken, finished = Spoken(time.perf_counter()), trio.Event()
            for message in protocol.utterance(text, spoken, finished.set):
                await ws.send_message(message)
            await finished.wait()
            return spoken

        yield speak
        nursery.cancel_scope.cancel()


def _http_body(voice: str, text: str) -> dict[str, Any]:
    return {
        "model_id": "async_flash_v1.5",
        "transcript": text,
        "voice": {"mode": "id", "id": voice},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE},
    }


_HEADERS = {"x-api-key": API_KEY, "version": "v1"}


@asynccontextmanager
async def _floor_httpx(url: str, voice: str) -> AsyncIterator[Speak]:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers=_HEADERS, timeout=30) as client:

        async def speak(text: str) -> Spoken:
            spoken = Spoken(time.perf_counter())
            async with client.stream("POST", "/text_to_speech/streaming", json=_http_body(voice, text)) as r:
                async for data in r.aiter_raw():
                    spoken.audio(data)
            spoken.end = time.perf_counter()
            return spoken

        yield speak


@asynccontextmanager
async def _floor_aiohttp(url: str, voice: str) -> AsyncIterator[Speak]:
    import aiohttp

    async with aiohttp.ClientSession(base_url=url, headers=_HEADERS) as session:

        async def speak(text: str) -> Spoken:
            spoken = Spoken(time.perf_counter())
            async with session.post("/text_to_speech/streaming", json=_http_body(voice, text)) as r:
                async for data in r.content.iter_any():
                    spoken.audio(data)
            spoken.end = time.perf_counter()
            return spoken

        yield speak


# ----------------------------------------------------------------- pipecat


@asynccontextmanager
async def _pipecat(url: str, voice: str, *, http: bool) -> AsyncIterator[Speak]:
    import aiohttp
    from pipecat.frames.frames import EndFrame, TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.asyncai.tts import AsyncAIHttpTTSService, AsyncAITTSService

    current: list[Spoken] = []
    done = asyncio.Event()

    class Sink(FrameProcessor):  # type: ignore[misc,unused-ignore]  # pipecat: Any unless installed
        async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame) and current:
                current[-1].audio(frame.audio)
            elif isinstance(frame, TTSStoppedFrame) and current:
                current[-1].end = time.perf_counter()
                done.set()
            await self.push_frame(frame, direction)

    async with aiohttp.ClientSession() as session:
        tts: Any
        if http:
            tts = AsyncAIHttpTTSService(
                api_key=API_KEY, voice_id=voice, aiohttp_session=session, url=url, sample_rate=SAMPLE_RATE
            )
        else:
            ws_url = "ws" + url.removeprefix("http") + "/text_to_speech/websocket/ws"
            tts = AsyncAITTSService(api_key=API_KEY, voice_id=voice, url=ws_url, sample_rate=SAMPLE_RATE)
        task = PipelineTask(
            Pipeline([tts, Sink()]),
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE),
            enable_rtvi=False,
        )
        runner = asyncio.create_task(PipelineRunner(handle_sigint=False).run(task))

        async def speak(text: str) -> Spoken:
            done.clear()
            current.append(Spoken(time.perf_counter()))
            await task.queue_frame(TTSSpeakFrame(text))
            await done.wait()
            return current[-1]

        try:
            yield speak
        finally:
            await task.queue_frame(EndFrame())
            await runner


#: name -> (opener, backend, shared: one opener serves concurrent utterances, module it needs)
CLIENTS: dict[str, tuple[Callable[[str, str], AbstractAsyncContextManager[Speak]], str, bool, str]] = {
    "asyncai-ws": (lambda u, v: _asyncai(u, v, http=False), "trio", True, "trio_asyncai"),
    "asyncai-http": (lambda u, v: _asyncai(u, v, http=True), "trio", True, "trio_asyncai"),
    "asyncai-pipe-ws": (lambda u, v: _asyncai_pipeline(u, v, http=False), "trio", False, "trio_asyncai"),
    "asyncai-pipe-http": (lambda u, v: _asyncai_pipeline(u, v, http=True), "trio", False, "trio_asyncai"),
    "floor-ws": (_floor_ws, "asyncio", True, "websockets"),
    "floor-trio-ws": (_floor_trio_ws, "trio", True, "trio_websocket"),
    "floor-httpx": (_floor_httpx, "trio", True, "httpx"),
    "floor-aiohttp": (_floor_aiohttp, "asyncio", True, "aiohttp"),
    "pipecat-ws": (lambda u, v: _pipecat(u, v, http=False), "asyncio", False, "pipecat"),
    "pipecat-http": (lambda u, v: _pipecat(u, v, http=True), "asyncio", False, "pipecat"),
}
#: client -> (the floor on its own stack: same transport library and event loop, its transport)
STACKS: dict[str, tuple[str, str]] = {
    "asyncai-ws": ("floor-trio-ws", "ws"),
    "asyncai-pipe-ws": ("floor-trio-ws", "ws"),
    "asyncai-http": ("floor-httpx", "http"),
    "asyncai-pipe-http": ("floor-httpx", "http"),
    "floor-ws": ("floor-ws", "ws"),
    "floor-trio-ws": ("floor-trio-ws", "ws"),
    "floor-httpx": ("floor-httpx", "http"),
    "floor-aiohttp": ("floor-aiohttp", "http"),
    "pipecat-ws": ("floor-ws", "ws"),  # pipecat's WebSocket service is on websockets
    "pipecat-http": ("floor-aiohttp", "http"),
}
#: transport -> its floors
FLOORS = {"ws": ("floor-ws", "floor-trio-ws"), "http": ("floor-httpx", "floor-aiohttp")}


def _base(client: str) -> str:
    """``asyncai-ws@before`` -> ``asyncai-ws``: the client a labelled SDK checkout runs as."""
    return client.split("@", 1)[0]


# --------------------------------------------------------------- scenarios


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _timed(
    opener: Opener,
    shared: bool,
    url: str,
    voice: str,
    workers: int,
    work: Callable[[Speak], Coroutine[Any, Any, None]],
) -> tuple[float, float]:
    """CPU and wall seconds of ``workers`` running ``work`` at once, clients opened and warm beforehand.

    Opening a client (an SSL context, a connection, a pipeline) is not part
    of the figure: only the utterances are.
    """
    async with AsyncExitStack() as stack:
        speakers = [await stack.enter_async_context(opener(url, voice))] if shared else []
        if not shared:
            for _ in range(workers):
                speakers.append(await stack.enter_async_context(opener(url, voice)))
        for speak in speakers:
            await speak(SHORT)  # connected and warm
        cpu, wall = _cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(workers):
                tg.start_soon(work, speakers[index % len(speakers)])
        return _cpu() - cpu, time.perf_counter() - wall


async def _scenario(name: str, opener: Opener, shared: bool, url: str, voice: str) -> dict[str, Any]:
    if name in ("ttfb-idle", "ttfb-b2b", "end"):
        ttfb: list[float] = []
        ends: list[float] = []
        async with opener(url, voice) as speak:
            await speak(SHORT)  # connect and warm up
            for _ in range(40):
                if name == "ttfb-idle":
                    await anyio.sleep(0.02)
                spoken = await speak(SHORT)
                assert spoken.first is not None
                assert spoken.last is not None
                assert spoken.end is not None
                ttfb.append(spoken.first - spoken.sent)
                ends.append(spoken.end - spoken.last)
        if name == "end":
            return {"p50": statistics.median(ends), "p90": statistics.quantiles(ends, n=10)[-1]}
        return {"p50": statistics.median(ttfb), "p90": statistics.quantiles(ttfb, n=10)[-1]}
    if name in (*CPU_SCENARIOS, "wall40"):
        workers = 8 if name == "cpu8" else 1
        text, rounds = (SIX_SECONDS, 40) if name == "wall40" else (LONG, 2)
        total = 0

        async def work(speak: Speak) -> None:
            nonlocal total
            for _ in range(rounds):
                spoken = await speak(text)
                total += spoken.nbytes  # not `total += (await ...)`: that reads total before the await

        cpu, wall = await _timed(opener, shared, url, voice, workers, work)
        audio = total / BYTES_PER_SECOND
        return {"cpu_per_audio_s": cpu / audio, "wall": wall, "audio": audio}
    if name == "rss":
        return await _rss(url, voice)
    if name == "bargein":
        return await _bargein(voice)
    raise ValueError(name)


async def _rss(url: str, voice: str) -> dict[str, Any]:
    """Peak RSS while 60 s of audio arrive for a consumer that reads nothing for a while."""
    import trio_asyncai

    async with trio_asyncai.open_synthesizer(
        api_key=API_KEY, base_url=url, voice_id=voice, sample_rate=SAMPLE_RATE
    ) as synth:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with synth.speak(" ".join([SIX_SECONDS] * 10)) as utterance:
            await anyio.sleep(1.0)  # the stall: every chunk arrives meanwhile
            await utterance.read_all()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024}


def _closed_at_least(count: int, log: Any) -> bool:
    return bool(log.contexts_closed >= count)


async def _bargein(voice: str) -> dict[str, Any]:
    """interrupt() after the first chunk: its time, what arrives after it, when the service hears of it.

    This one runs a server of its own in the process, to see on its log when
    the close_context has arrived (time from interrupt() returning to the
    server having read it: the client's send, the loopback and the server's
    parse, on one CPU).
    """
    import trio_asyncai
    from trio_asyncai.server import open_local_server

    returns: list[float] = []
    on_the_wire: list[float] = []
    stale = 0
    async with (
        open_local_server(engine="signal", log_details=True) as server,
        trio_asyncai.open_synthesizer(
            api_key=API_KEY, base_url=server.url, voice_id=voice, sample_rate=SAMPLE_RATE
        ) as synth,
    ):
        for index in range(40):
            async with synth.speak(LONG) as utterance:
                await utterance.receive()
                start = time.perf_counter()
                utterance.interrupt()
                returns.append(time.perf_counter() - start)
                async for chunk in utterance:  # pragma: no cover - must not run
                    stale += len(chunk.audio)
            await server.log.wait_for(functools.partial(_closed_at_least, index + 1))
            on_the_wire.append(time.perf_counter() - start)
    return {
        "p50": statistics.median(returns),
        "max": max(returns),
        "stale_bytes": stale,
        "close_seen_p50": statistics.median(on_the_wire),
    }


def _child(client: str, scenario: str, url: str, voice: str) -> None:
    opener, backend, shared, _ = CLIENTS[_base(client)]
    profile_to = os.environ.get("BENCH_PROFILE")  # a path: cProfile the scenario (not the imports)
    if profile_to:
        import cProfile

        with cProfile.Profile() as profiler:
            result = anyio.run(_scenario, scenario, opener, shared, url, voice, backend=backend)
        profiler.dump_stats(profile_to)
    else:
        result = anyio.run(_scenario, scenario, opener, shared, url, voice, backend=backend)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sdk = sys.modules.get("trio_asyncai")
    if sdk is not None:  # which checkout ran: the driver checks it
        result["sdk"] = sdk.__file__
    print(json.dumps(result))


def _serve_paced(delay: float) -> None:
    """The local server as ``trio-asyncai serve --engine signal`` runs it, with every audio chunk paced.

    The server's ``chunk_delay`` switch (:class:`trio_asyncai.server.Faults`)
    waits ``delay`` seconds before each WebSocket audio message and each HTTP
    body chunk; a chunk is 80 ms of audio (3,840 bytes of pcm_s16le at
    24 kHz), so the default 5 ms sends about 4 KiB every 5 ms, some 16 times
    real time, as a service that sends audio as it makes it. Over the
    WebSocket the pause is per connection (one sender per connection).
    """
    import trio

    from trio_asyncai.server import LocalServer, serve

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            server: LocalServer = await nursery.start(functools.partial(serve, engine="signal", port=0))
            server.faults.chunk_delay = delay
            print(f"serving the Async API on {server.url} (paced: {delay * 1e3:g} ms a chunk)", flush=True)

    trio.run(run)


# ------------------------------------------------------------------ driver


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _start_server(pace: float | None = None) -> tuple[subprocess.Popen[str], str]:
    """The bursting server (``trio-asyncai serve``), or with ``pace`` the paced one; its URL."""
    if pace is None:
        command = [str(Path(sys.executable).with_name("trio-asyncai")), "serve", "--engine", "signal"]
        command += ["--port", "0"]
    else:
        command = [sys.executable, __file__, "--serve-paced", repr(pace)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    match = re.search(r"http://[\w.:\[\]]+", line)
    if match is None:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, match.group(0)


def _sdk_paths(specs: list[str]) -> dict[str, Path]:
    """``--sdk-path [LABEL=]DIR`` options -> label -> DIR; a label defaults to DIR's name."""
    paths: dict[str, Path] = {}
    for spec in specs:
        label, equals, directory = spec.rpartition("=")
        path = Path(directory).resolve()
        label = label if equals else path.name
        if not (path / "trio_asyncai" / "__init__.py").is_file():
            raise SystemExit(f"--sdk-path {spec}: no trio_asyncai package in {path}")
        if not re.fullmatch(r"[\w.-]+", label) or label in paths:
            raise SystemExit(
                f"--sdk-path {spec}: give it a distinct label (letters, digits, . _ -): LABEL=DIR"
            )
        paths[label] = path
    return paths


def _child_env(client: str, sdk_paths: dict[str, Path]) -> dict[str, str] | None:
    """The environment of a child: for ``client@LABEL``, LABEL's checkout first on PYTHONPATH."""
    label = client.partition("@")[2]
    if not label:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(sdk_paths[label]), env.get("PYTHONPATH", "")) if p)
    return env


def _package_dir(client: str, sdk_paths: dict[str, Path]) -> Path:
    """The trio_asyncai package a child running ``client`` must import."""
    label = client.partition("@")[2]
    if label:
        return sdk_paths[label] / "trio_asyncai"
    import trio_asyncai

    return Path(trio_asyncai.__file__).resolve().parent


def _which_sdk() -> None:
    """(--which-sdk) Print where trio_asyncai comes from, with a child's own sys.path."""
    import trio_asyncai

    print(trio_asyncai.__file__)


def _check_sdk(label: str, sdk_paths: dict[str, Path]) -> str:
    """Where a child for ``@label`` imports trio_asyncai from, a line to print; stops if not LABEL's DIR."""
    child = subprocess.run(
        [sys.executable, __file__, "--which-sdk"],
        env=_child_env(f"asyncai@{label}", sdk_paths),
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"@{label}: a child cannot import trio_asyncai from {sdk_paths[label]}: {last}")
    found = Path(child.stdout.strip())
    if not found.resolve().is_relative_to(_package_dir(f"asyncai@{label}", sdk_paths)):
        raise SystemExit(f"@{label}: a child imports trio_asyncai from {found}, not from {sdk_paths[label]}")
    return f"``asyncai-*@{label}``: trio_asyncai from ``{found}`` ({_revision(sdk_paths[label])})"


def _revision(directory: Path) -> str:
    """The checkout's commit, with ``-dirty`` if it has changes, or ``not a git checkout``."""
    try:
        described = subprocess.run(
            ["git", "-C", str(directory), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return "commit " + described.stdout.strip()


#: The figure each scenario puts in the table, and how to print it.
FIGURES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "ttfb-idle": ("first audio, idle p50 / p90", lambda r: f"{r['p50'] * 1e3:.2f} / {r['p90'] * 1e3:.2f} ms"),
    "ttfb-b2b": (
        "first audio, back to back p50 / p90",
        lambda r: f"{r['p50'] * 1e3:.2f} / {r['p90'] * 1e3:.2f} ms",
    ),
    "end": ("end after last audio p50", lambda r: f"{r['p50'] * 1e3:.2f} ms"),
    "cpu1": ("CPU per audio s, 1 at once", lambda r: f"{r['cpu_per_audio_s'] * 1e3:.2f} ms"),
    "cpu8": ("CPU per audio s, 8 at once", lambda r: f"{r['cpu_per_audio_s'] * 1e3:.2f} ms"),
    "cpu1-paced": ("CPU per audio s, 1 at once, paced", lambda r: f"{r['cpu_per_audio_s'] * 1e3:.2f} ms"),
    "wall40": ("40 x 6 s, wall", lambda r: f"{r['wall']:.2f} s"),
    "bargein": (
        "interrupt() p50 / stale bytes / close_context at the server p50",
        lambda r: f"{r['p50'] * 1e6:.0f} us / {r['stale_bytes']} / {r['close_seen_p50'] * 1e3:.2f} ms",
    ),
    "rss": ("peak RSS, stalled consumer", lambda r: f"{r['peak_mib']:.0f} MiB"),
}
#: Scenarios that measure this SDK's own API rather than a client's.
ASYNCAI_ONLY = {"bargein", "rss"}

Medians = dict[tuple[str, str], dict[str, Any]]


def _median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _cpu_of(medians: Medians, client: str, scenario: str) -> float | None:
    result = medians.get((client, scenario))
    return None if result is None else float(result["cpu_per_audio_s"])


def _fastest_floor(medians: Medians, transport: str, scenario: str) -> tuple[float, str] | None:
    floors = [(cpu, floor) for floor in FLOORS[transport] if (cpu := _cpu_of(medians, floor, scenario))]
    return min(floors) if floors else None


def _against_floors(medians: Medians, client: str, scenario: str) -> str:
    """`` (1.17x own, 1.52x fastest)``: a CPU figure over its stack's floor and its transport's fastest."""
    own, transport = STACKS[_base(client)]
    value = _cpu_of(medians, client, scenario)
    assert value is not None
    parts = []
    own_cpu = _cpu_of(medians, own, scenario)
    if own != client and own_cpu:
        parts.append(f"{value / own_cpu:.2f}x own")
    fastest = _fastest_floor(medians, transport, scenario)
    if fastest is not None:
        parts.append("fastest floor" if fastest[1] == client else f"{value / fastest[0]:.2f}x fastest")
    return f" ({', '.join(parts)})" if parts else ""


def _legend(medians: Medians, scenarios: list[str], pace_ms: float) -> str:
    """What the ratios after the CPU figures are over, and what the paced scenario paces."""
    lines = []
    shown = [s for s in scenarios if s in CPU_SCENARIOS]
    if shown:
        fastest = []
        for scenario in shown:
            for transport in FLOORS:
                found = _fastest_floor(medians, transport, scenario)
                if found is not None:
                    fastest.append(f"{scenario} {transport}: {found[1]}")
        lines.append(
            "CPU per audio s is followed by its ratio to the floor on the client's own stack "
            "(*own*: asyncai-\\*-ws to floor-trio-ws, asyncai-\\*-http to floor-httpx, "
            "pipecat-ws to floor-ws, pipecat-http to floor-aiohttp) and to the fastest floor of its "
            "transport in the same scenario (*fastest*: " + ("; ".join(fastest) or "none measured") + ")."
        )
    if any(s in PACED for s in scenarios):
        lines.append(
            f"*paced*: the server waits {pace_ms:g} ms before each audio chunk (80 ms of audio, "
            "3,840 bytes), WebSocket message or HTTP body chunk, instead of sending as fast as it can."
        )
    return "\n\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="child processes per figure (median)")
    parser.add_argument("--clients", help="comma-separated subset of: " + ", ".join(CLIENTS))
    parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(SCENARIOS))
    parser.add_argument("--rst", help="also write the table as reStructuredText to this file")
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=PACE_MS,
        help="the paced server's pause before each audio chunk, in ms (default: %(default)g)",
    )
    parser.add_argument(
        "--sdk-path",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="also run the asyncai-* clients on the trio_asyncai package of the checkout DIR "
        "(first on the child's PYTHONPATH), as asyncai-ws@LABEL etc.; LABEL defaults to DIR's name; "
        "repeatable",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("CLIENT", "SCENARIO", "URL", "VOICE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-paced", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument("--which-sdk", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.serve_paced is not None:
        _serve_paced(args.serve_paced)
        return
    if args.which_sdk:
        _which_sdk()
        return
    from trio_asyncai.server import DEFAULT_VOICE_ID

    clients = args.clients.split(",") if args.clients else list(CLIENTS)
    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    unknown = [c for c in clients if c not in CLIENTS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown client or scenario: {', '.join(unknown)}")
    sdk_paths = _sdk_paths(args.sdk_path)
    import trio_asyncai

    here = Path(trio_asyncai.__file__)
    checkouts = [f"``asyncai-*``: trio_asyncai from ``{here}`` ({_revision(here.parent)})"]
    checkouts += [_check_sdk(label, sdk_paths) for label in sdk_paths]
    print("\n".join(checkouts), flush=True)
    # Each labelled checkout's client right after the current tree's: run for run, interleaved.
    clients = [
        labelled
        for c in clients
        if _installed(CLIENTS[c][3])
        for labelled in [c, *(f"{c}@{label}" for label in sdk_paths if c.startswith("asyncai-"))]
    ]
    pairs = [(c, s) for s in scenarios for c in clients if s not in ASYNCAI_ONLY or _base(c) == "asyncai-ws"]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    failed: dict[tuple[str, str], str] = {}
    servers: dict[bool, tuple[subprocess.Popen[str], str]] = {}
    try:
        if any(sc not in PACED for sc in scenarios):
            servers[False] = _start_server()
        if any(sc in PACED for sc in scenarios):
            servers[True] = _start_server(args.pace_ms / 1e3)
        # Run by run, every client in turn: a machine that drifts (another
        # tenant, a thermal limit) then weighs on every client alike.
        for run in range(args.runs):
            for client, scenario in pairs:
                if (client, scenario) in failed:
                    continue
                url = servers[scenario in PACED][1]
                child = subprocess.run(
                    [sys.executable, __file__, "--child", client, scenario, url, DEFAULT_VOICE_ID],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    env=_child_env(client, sdk_paths),
                )
                if child.returncode != 0:
                    last = (child.stderr.strip().splitlines() or ["?"])[-1]
                    failed[client, scenario] = f"failed: {last[:60]}"
                    continue
                result = json.loads(child.stdout.strip().splitlines()[-1])
                sdk = result.pop("sdk", None)  # asyncai-* only
                if sdk is not None and not Path(sdk).resolve().is_relative_to(
                    _package_dir(client, sdk_paths)
                ):
                    failed[client, scenario] = f"failed: trio_asyncai imported from {sdk}"
                    continue
                results[client, scenario].append(result)
            print(f"run {run + 1} of {args.runs} done", flush=True)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(10)
    medians = {pair: _median_result(results[pair]) for pair in pairs if pair not in failed and results[pair]}
    table: dict[str, dict[str, str]] = {client: {} for client in clients}
    for client, scenario in pairs:
        if (client, scenario) in failed:
            table[client][scenario] = failed[client, scenario]
        else:
            table[client][scenario] = FIGURES[scenario][1](medians[client, scenario])
            if scenario in CPU_SCENARIOS:
                table[client][scenario] += _against_floors(medians, client, scenario)
        print(f"{client:26} {FIGURES[scenario][0]:40} {table[client][scenario]}")
    _report(table, scenarios, args, [*checkouts, _legend(medians, scenarios, args.pace_ms)])


def _report(
    table: dict[str, dict[str, str]], scenarios: list[str], args: argparse.Namespace, notes: list[str]
) -> None:
    import trio

    machine = (
        f"{os.cpu_count()} cores ({platform.machine()}), CPython {platform.python_version()}, "
        f"trio {trio.__version__}; median of {args.runs} runs; {time.strftime('%Y-%m-%d')}"
    )
    shown = [
        a for a, before in zip(sys.argv[1:], ["", *sys.argv[1:]], strict=False) if "--rst" not in (a, before)
    ]
    command = "python benchmarks/compare.py " + " ".join(shown)
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - figure"]
    lines += [f"     - {client}" for client in table]
    for scenario in scenarios:
        lines.append(f"   * - {FIGURES[scenario][0]}")
        lines += [f"     - {row.get(scenario, 'n/a')}" for row in table.values()]
    text = f"Measured with ``{command.strip()}``: {machine}.\n\n"
    text += "".join(f"{note}\n\n" for note in notes if note)
    text += "\n".join(lines) + "\n"
    print()
    print(text)
    if args.rst:
        with open(args.rst, "w", encoding="utf-8") as out:
            out.write(text)


if __name__ == "__main__":
    main()
