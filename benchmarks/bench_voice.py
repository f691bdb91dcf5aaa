"""The piper voice's own speed through the local server's rendering: time to first audio, real-time factor.

No sockets and no client: the text goes through the server's ``render``
(breaks, the engine, resampling to 24 kHz, encoding), so what is timed is the
voice (phonemizing and the model) and the server's audio path::

    python benchmarks/bench_voice.py --language en
    python benchmarks/bench_voice.py --language ja --rounds 30

Each figure is given in wall time and in CPU time (the process's, the
model's threads included): on a shared machine the CPU time is the steadier.
The texts are ``bench_synthesizer.TEXTS``: the short one for the first
audio, its sentence repeated 20 times for the real-time factor. Runs with
any tree's ``trio_asyncai`` first on ``PYTHONPATH``, for before-and-after
figures (a tree that does not know languages reads every text as English).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import attrs
from bench_synthesizer import TEXTS

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, PiperEngine
from trio_asyncai.server._audio import render
from trio_asyncai.server._requests import AudioFormat

RATE = 24000


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(language: str, rounds: int) -> None:
    engine = PiperEngine()
    engine.preload()
    voice = next(v for v in PREDEFINED_VOICES if v.voice_id == DEFAULT_VOICE_ID)
    if any(field.name == "language" for field in attrs.fields(type(voice.params))):
        voice = attrs.evolve(voice, params=attrs.evolve(voice.params, language=language))
    fmt = AudioFormat(sample_rate=RATE)
    short, sentence = TEXTS[language]
    long = " ".join([sentence] * 20)

    def first_audio() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        pieces = render(engine, short, voice, fmt)
        next(pieces)
        result = time.perf_counter() - wall, time.process_time() - cpu
        pieces.close()
        return result

    for _ in range(3):
        first_audio()  # warm up (the readers load on first use)
    firsts = [first_audio() for _ in range(rounds)]
    wall, cpu = time.perf_counter(), time.process_time()
    size = sum(len(piece) for piece in render(engine, long, voice, fmt))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    seconds = size / 2 / RATE
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    print(f"language: {language}; rounds: {rounds}; short text: {short!r}")
    print(
        f"first audio: median {_ms(statistics.median(w for w, _ in firsts))} wall, "
        f"{_ms(statistics.median(c for _, c in firsts))} CPU"
    )
    print(
        f"long text: {seconds:.1f} s of audio, {seconds / wall:.1f}x real time (wall), "
        f"{seconds / cpu:.1f}x per CPU second"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="en", choices=sorted(TEXTS))
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    main(args.language, args.rounds)
