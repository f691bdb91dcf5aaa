"""One fixed sentence per language through the piper engine: the table in docs/server.rst.

For each of the 15 languages: the seconds of audio the twin makes now, and
before it read languages (piper's own English reading of the same text, with
its letters spelled by name where English has no reading), what phonemized
it, the phonemes of its first sentence, and an offline stand-in for a
listener: is the audio closer to espeak-ng's own reading of the sentence in
that language, or to espeak-ng's English reading of it? (MFCCs, compared by
dynamic time warping; needs the ``espeak-ng`` program, Debian's package.)
Both renderings are noise-free (piper's noise scales at 0)::

    python benchmarks/languages_table.py --rst docs/languages_table.txt
"""

# ruff: noqa: RUF001 - IPA and non-Latin marks are what this table is about

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import wave
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, PiperEngine
from trio_asyncai.server._languages import LANGUAGES, SAMPLE_SENTENCES

Array = npt.NDArray[np.float64]

#: One fixed sentence per language: two short sentences.
SENTENCES = SAMPLE_SENTENCES
#: An English reading that names letters it cannot read ("Chinese letter", "Arabic ...").
_NAMED_LETTER = re.compile("lˈɛɾɚ|lˌɛɾɚ|ˈæɹəbɪk|hˈiːbɹuː|sɪɹˈɪlɪk|ɑːɹmˈiːniən")
_RATE = 22050
#: The verdict, from the phonemes (checked by tests/server/test_languages.py) and the last column.
_HEARD = {
    "en": "yes",
    "zh": "yes, accented, without tones",
    "ja": "yes, accented, kanji read",
    "ar": "yes, accented, vowels restored",
    "he": "yes, accented, vowels restored",
}


def _espeak(voice: str, text: str) -> Array:
    with tempfile.NamedTemporaryFile(suffix=".wav") as file:
        subprocess.run(["espeak-ng", "-v", voice, "-w", file.name, text], check=True, capture_output=True)
        with wave.open(file.name) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
            if wav.getframerate() != _RATE:
                raise RuntimeError(f"espeak-ng wrote {wav.getframerate()} Hz, not {_RATE}")
    return samples / 32768.0


def _mel_filters(n_fft: int, n_mels: int = 26) -> Array:
    def mel(hz: Array) -> Array:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(mels: Array) -> Array:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)

    points = hz(np.linspace(mel(np.array(80.0)), mel(np.array(7600.0)), n_mels + 2))
    bins = np.floor((n_fft + 1) * points / _RATE).astype(int)
    filters = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        low, mid, high = bins[i], bins[i + 1], bins[i + 2]
        filters[i, low:mid] = (np.arange(low, mid) - low) / max(mid - low, 1)
        filters[i, mid:high] = (high - np.arange(mid, high)) / max(high - mid, 1)
    return filters


def _mfcc(samples: npt.NDArray[Any]) -> Array:
    """12 cepstral coefficients per 10 ms of speech (silence dropped), normalized per utterance."""
    x = np.asarray(samples, dtype=np.float64)
    x = x / (np.abs(x).max() + 1e-9)
    size, hop, n_fft = 551, 220, 1024
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop] * np.hamming(size)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    energy = power.sum(axis=1)
    log_mel = np.log(power[energy > energy.max() * 1e-4] @ _mel_filters(n_fft).T + 1e-10)
    k = np.arange(26)
    dct = np.cos(np.pi / 26 * (k[None, :] + 0.5) * np.arange(1, 13)[:, None])
    cepstra: Array = log_mel @ dct.T
    normalized: Array = (cepstra - cepstra.mean(axis=0)) / (cepstra.std(axis=0) + 1e-9)
    return normalized


def _dtw(a: Array, b: Array) -> float:
    """The dynamic-time-warping distance of two feature sequences, per step of the path."""
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, previous, costs = acc[i], acc[i - 1], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = costs[j - 1] + min(previous[j], previous[j - 1], row[j - 1])
    return float(acc[n, m] / (n + m))


def main(rst: str | None) -> None:
    from piper import PiperVoice, SynthesisConfig

    engine = PiperEngine()
    engine.preload()
    piper_voice = PiperVoice.load(engine.model_path, config_path=engine.config_path)  # the English reading
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, volume=0.9)
    voice = next(v for v in PREDEFINED_VOICES if v.voice_id == DEFAULT_VOICE_ID)
    listen = shutil.which("espeak-ng") is not None
    rows = []
    for language, text in SENTENCES.items():
        params = attrs.evolve(voice.params, language=language, noise_scale=0.0, noise_w_scale=0.0)
        now = np.concatenate(list(engine.synthesize(text, attrs.evolve(voice, params=params))))
        chunks = list(piper_voice.synthesize(text, syn_config=quiet))
        before = np.concatenate([chunk.audio_float_array for chunk in chunks])
        english = "".join("".join(sentence) for sentence in piper_voice.phonemize(text))
        named = len(_NAMED_LETTER.findall(english))
        check = "not run (no espeak-ng)"
        if listen:
            native = _mfcc(_espeak(LANGUAGES[language].espeak_voice, text))
            reading = _mfcc(_espeak("en-us", text))
            now_features, before_features = _mfcc(now), _mfcc(before)
            margin_now = _dtw(now_features, reading) - _dtw(now_features, native)
            margin_before = _dtw(before_features, reading) - _dtw(before_features, native)
            if english == "".join(engine.phonemize(text, language)):
                # English itself; and espeak-ng's English voice switches to Hindi for Devanagari.
                check = "(the same reading)"
            else:
                closer = "native" if margin_now > 0 else "English"
                check = f"{closer} ({margin_now:+.2f}; before {margin_before:+.2f})"
        rows.append(
            (
                language,
                text,
                f"{now.size / engine.native_sample_rate:.1f} s",
                f"{before.size / engine.native_sample_rate:.1f} s"
                + (f", {named} letter{'s' if named > 1 else ''} named" if named else ""),
                engine.reader(language),
                engine.phonemize(text, language)[0],
                check,
                _HEARD.get(language, "yes, accented"),
            )
        )
        print(" | ".join(rows[-1]), flush=True)
    if rst is not None:
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 5 18 6 10 13 20 13 10", ""]
        headers = (
            "language",
            "sentence",
            "audio",
            "before",
            "phonemized with",
            "phonemes, first sentence",
            "closer to espeak-ng's own reading or its English one?",
            "heard as that language?",
        )
        lines += [f"   {'*' if i == 0 else ' '} - {h}" for i, h in enumerate(headers)]
        for language, text, now_s, before_s, reader, phonemes, check, heard in rows:
            cells = (f"``{language}``", text, now_s, before_s, reader, f"``{phonemes}``", check, heard)
            lines += [f"   {'*' if i == 0 else ' '} - {c}" for i, c in enumerate(cells)]
        with open(rst, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rst", help="write the table as reStructuredText to this file")
    main(parser.parse_args().rst)
