"""Time to first audio, end of utterance and audio throughput of the WebSocket Synthesizer.

Runs against the local server with the instant signal engine, so what is
measured is the SDK and the server's transport, not a voice model::

    python benchmarks/bench_synthesizer.py            # defaults
    python benchmarks/bench_synthesizer.py --rounds 200 --concurrency 8
    python benchmarks/bench_synthesizer.py --engine piper --language ja

``--language`` speaks that language's sentences (see ``TEXTS``) with the
request's ``language`` set, so that the real voice's phonemizer for it is
timed too.

Prints one line per figure, ready to paste into docs/benchmarks.rst.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import trio

from trio_asyncai import Synthesizer, open_synthesizer
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

#: Per language: a short text (time to first audio) and a sentence repeated 20
#: times (throughput).
TEXTS: dict[str, tuple[str, str]] = {
    "en": ("Hello there.", "The quick brown fox jumps over the lazy dog."),
    "fr": ("Bonjour à tous.", "Le renard brun rapide saute par-dessus le chien paresseux."),
    "ja": ("こんにちは。", "今日はいい天気ですね、散歩に行きましょう。"),
    "zh": ("你好。", "今天天气很好，我们去公园散步吧。"),  # noqa: RUF001 (a full-width comma)
    "ru": ("Привет всем.", "Быстрая коричневая лиса прыгает через ленивую собаку."),
    "hi": ("नमस्ते।", "आज मौसम बहुत अच्छा है, चलो पार्क में टहलने चलते हैं।"),
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def _ttfb(synth: Synthesizer, rounds: int, short: str) -> list[float]:
    out = []
    for _ in range(rounds):
        async with synth.speak(short) as utterance:
            await utterance.read_all()
        assert utterance.metrics.ttfb is not None
        out.append(utterance.metrics.ttfb)
    return out


async def _end_after_last_audio(synth: Synthesizer, rounds: int, short: str) -> list[float]:
    """Seconds from the caller's last chunk to the end of iteration (the context's final)."""
    out = []
    for _ in range(rounds):
        last = 0.0
        async with synth.speak(short) as utterance:
            async for _chunk in utterance:
                last = time.perf_counter()
        out.append(time.perf_counter() - last)
    return out


async def _throughput(
    synth: Synthesizer, concurrency: int, sample_rate: int, long: str
) -> tuple[float, float]:
    total = 0

    async def one() -> None:
        nonlocal total
        async with synth.speak(long) as utterance:
            # Not `total += len(await ...)`: that reads `total` before the await,
            # and concurrent utterances would overwrite each other's counts.
            size = len(await utterance.read_all())
        total += size

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(one)
    elapsed = time.perf_counter() - start
    audio_seconds = total / (2 * sample_rate)
    return audio_seconds / elapsed, total / elapsed / 1e6


async def main(
    rounds: int, concurrency: int, sample_rate: int, base_url: str | None, engine: str, language: str | None
) -> None:
    short, sentence = TEXTS[language or "en"]
    long = " ".join([sentence] * 20)
    async with open_local_server(engine=engine) as server:
        async with open_synthesizer(
            base_url=base_url or server.url,
            voice_id=DEFAULT_VOICE_ID,
            sample_rate=sample_rate,
            language=language,
        ) as synth:
            await _ttfb(synth, 5, short)  # warm up
            ttfbs = sorted(await _ttfb(synth, rounds, short))
            ends = sorted(await _end_after_last_audio(synth, rounds, short))
            rt1, mb1 = await _throughput(synth, 1, sample_rate, long)
            rtn, mbn = await _throughput(synth, concurrency, sample_rate, long)
    p95 = ttfbs[min(len(ttfbs) - 1, int(len(ttfbs) * 0.95))]
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    print(f"engine: {engine}; language: {language or '(none)'}; format: raw pcm_s16le {sample_rate} Hz")
    print(f"rounds: {rounds}; short text: {short!r}")
    print(f"time to first audio: median {_ms(statistics.median(ttfbs))}, p95 {_ms(p95)}")
    print(f"end after the last audio: median {_ms(statistics.median(ends))}, max {_ms(ends[-1])}")
    print(f"throughput, 1 utterance: {rt1:.0f}x real time ({mb1:.1f} MB/s)")
    print(f"throughput, {concurrency} concurrent utterances: {rtn:.0f}x real time ({mbn:.1f} MB/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument(
        "--base-url", help="a server run separately (trio-asyncai serve --engine signal), to measure apart"
    )
    parser.add_argument(
        "--engine", default="signal", choices=("signal", "piper"), help="the local server's voice engine"
    )
    parser.add_argument(
        "--language",
        choices=sorted(TEXTS),
        help="speak this language's texts, with the request's language set (default: English, unset)",
    )
    args = parser.parse_args()
    trio.run(main, args.rounds, args.concurrency, args.sample_rate, args.base_url, args.engine, args.language)
