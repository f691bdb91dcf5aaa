"""Soak: many utterances with random barge-ins on one synthesizer, checked byte for byte.

Runs against the local server with the deterministic signal engine (the same
text always renders to the same bytes), so every utterance can be checked
against a reference: each distinct text is first spoken once, uninterrupted,
and its bytes kept. Then several workers share one synthesizer, each speaking
random texts one after another; about half the utterances are interrupted
(``interrupt()``) after a random number of chunks. Checked for each:

- an interrupted utterance's bytes are a prefix of the text's reference;
- a finished one's bytes equal it;
- no chunk is seen after ``interrupt()`` returned.

::

    python benchmarks/soak.py --minutes 2                      # WebSocket
    python benchmarks/soak.py --minutes 2 --transport http
    python benchmarks/soak.py --utterances 5000 --workers 8 --seed 7

Prints the counts of lost (a finished utterance short of its reference),
misrouted (bytes that match no prefix of the reference), stale, unclosed
contexts (named contexts the server saw no closeContext for, at the end) and
errors (exceptions out of an utterance); exits with status 1 if any is not zero.
"""

from __future__ import annotations

import argparse
import collections
import math
import platform
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from trio_asyncai import open_http_synthesizer, open_synthesizer
from trio_asyncai._synthesizer import BaseSynthesizer
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "small",
    "cats", "watch", "from", "under", "an", "old", "wooden", "table", "and", "nobody", "says",
    "anything", "about", "the", "weather", "today",
)  # fmt: skip


def _texts(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct texts of one to four sentences, of varying length."""
    texts: set[str] = set()
    while len(texts) < count:
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = rng.choices(_WORDS, k=rng.randint(2, 18))
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        texts.add(" ".join(sentences))
    return sorted(texts)


@attrs.define
class Counts:
    """What the soak found."""

    utterances: int = 0
    interrupted: int = 0
    finished: int = 0
    chunks: int = 0
    audio_bytes: int = 0
    lost: int = 0
    misrouted: int = 0
    stale: int = 0
    unclosed: int = 0
    errors: collections.Counter[str] = attrs.field(factory=collections.Counter)

    @property
    def failures(self) -> int:
        return self.lost + self.misrouted + self.stale + self.unclosed + sum(self.errors.values())


@asynccontextmanager
async def _open(transport: str, url: str, sample_rate: int) -> AsyncIterator[BaseSynthesizer[Any]]:
    if transport == "http":
        async with open_http_synthesizer(
            base_url=url, voice_id=DEFAULT_VOICE_ID, sample_rate=sample_rate
        ) as http:
            yield http
    else:
        async with open_synthesizer(base_url=url, voice_id=DEFAULT_VOICE_ID, sample_rate=sample_rate) as ws:
            yield ws


async def _reference(synth: BaseSynthesizer[Any], text: str) -> tuple[bytes, int]:
    """The bytes of ``text`` spoken whole, and how many chunks they came in."""
    parts: list[bytes] = []
    async with synth.speak(text) as utterance:
        async for chunk in utterance:
            parts.append(chunk.audio)
    return b"".join(parts), len(parts)


async def _one(
    synth: BaseSynthesizer[Any],
    text: str,
    reference: bytes,
    reference_chunks: int,
    rng: random.Random,
    counts: Counts,
) -> None:
    """Speak ``text``, perhaps interrupting it, and check what arrived."""
    barge_in = rng.random() < 0.5
    stop_after = rng.randint(1, max(1, reference_chunks)) if barge_in else math.inf
    received: list[bytes] = []
    interrupted = False
    counts.utterances += 1
    try:
        async with synth.speak(text) as utterance:
            async for chunk in utterance:
                if interrupted:
                    counts.stale += 1
                    continue
                received.append(chunk.audio)
                if len(received) >= stop_after:
                    utterance.interrupt()
                    interrupted = True
    except Exception as exc:  # every kind of failure is counted, none ends the soak
        counts.errors[type(exc).__name__] += 1
        return
    audio = b"".join(received)
    counts.chunks += len(received)
    counts.audio_bytes += len(audio)
    if not reference.startswith(audio):
        counts.misrouted += 1
    elif interrupted:
        counts.interrupted += 1
    elif audio != reference:
        counts.lost += 1
    else:
        counts.finished += 1


async def soak(
    *,
    transport: str,
    minutes: float | None,
    utterances: int,
    workers: int,
    distinct: int,
    seed: int,
    sample_rate: int,
) -> Counts:
    rng = random.Random(seed)
    texts = _texts(rng, distinct)
    counts = Counts()
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        async with _open(transport, server.url, sample_rate) as synth:
            references = {text: await _reference(synth, text) for text in texts}
            server.log.clear()
            deadline = None if minutes is None else trio.current_time() + minutes * 60
            remaining = utterances

            def more() -> bool:
                nonlocal remaining
                if deadline is not None:
                    return trio.current_time() < deadline
                remaining -= 1
                return remaining >= 0

            async def worker(worker_rng: random.Random) -> None:
                while more():
                    text = worker_rng.choice(texts)
                    await _one(synth, text, *references[text], worker_rng, counts)

            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(worker, random.Random(rng.getrandbits(64)))
        # The synthesizer is closed: every context it opened must have been closed.
        # The server may answer the close before it has read the last messages: wait for it.
        with trio.move_on_after(10):
            await server.log.wait_for(lambda log: log.connections_closed == log.connections_opened)
        counts.unclosed = len(server.log.unclosed_contexts())
    return counts


def _report(counts: Counts, args: argparse.Namespace, elapsed: float) -> None:
    duration = f"{args.minutes} min" if args.minutes is not None else f"{args.utterances} utterances"
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    print(
        f"soak: {args.transport}, {duration}, {args.workers} workers, {args.distinct} distinct texts, "
        f"seed {args.seed}, signal engine, pcm_s16le {args.sample_rate} Hz"
    )
    print(
        f"utterances: {counts.utterances} in {elapsed:.1f} s "
        f"({counts.interrupted} interrupted, {counts.finished} finished); "
        f"{counts.chunks} chunks, {counts.audio_bytes / 1e6:.1f} MB checked"
    )
    errors = ", ".join(f"{name} {n}" for name, n in sorted(counts.errors.items())) or "0"
    print(
        f"lost: {counts.lost}; misrouted: {counts.misrouted}; stale: {counts.stale}; "
        f"unclosed contexts: {counts.unclosed}; errors: {errors}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("websocket", "http"), default="websocket")
    parser.add_argument("--minutes", type=float, help="run this long (instead of --utterances)")
    parser.add_argument("--utterances", type=int, default=1000, help="how many, without --minutes")
    parser.add_argument("--workers", type=int, default=4, help="utterances in flight at once")
    parser.add_argument("--distinct", type=int, default=40, help="distinct texts spoken")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=24000)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts = trio.run(
        lambda: soak(
            transport=args.transport,
            minutes=args.minutes,
            utterances=args.utterances,
            workers=args.workers,
            distinct=args.distinct,
            seed=args.seed,
            sample_rate=args.sample_rate,
        )
    )
    _report(counts, args, time.perf_counter() - start)
    return 1 if counts.failures else 0


if __name__ == "__main__":
    sys.exit(main())
