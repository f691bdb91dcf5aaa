"""From text to encoded audio: sentences, ``<break>`` markup, resampling, encoding.

The pipeline is a synchronous generator, :func:`render`, driven one step at a
time from a worker thread by :func:`stream_audio`, so the event loop never
waits on the engine and a cancelled request stops at the next step. Each step
synthesizes and encodes: to pcm bytes, or to mp3 frames through an
:class:`~._mp3.Mp3Encoder` (which may hold audio back until it is flushed).
"""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import IO, Final, Protocol, final

import attrs
import numpy as np
import numpy.typing as npt
import soxr
import trio

from ._engines import Engine, FloatArray
from ._languages import LANGUAGES, detect_language, sentence_end, sentence_end_chars, word_spans
from ._mp3 import Mp3Encoder, split_frames
from ._requests import AudioFormat
from ._voices import LibraryVoice

__all__ = [
    "CHUNK_SECONDS",
    "MAX_BREAK_SECONDS",
    "AudioEncoder",
    "PcmEncoder",
    "WAV_HEADER_BYTES",
    "WordTiming",
    "encode",
    "encode_all",
    "make_encoder",
    "mulaw_encode",
    "render",
    "render_all",
    "render_to_file",
    "split_breaks",
    "sentence_scan_start",
    "speaking_language",
    "split_complete_sentences",
    "stream_audio",
    "wav_file",
    "wav_header",
]

#: One word and its (start, end) in seconds from the start of the audio.
WordTiming = tuple[str, float, float]

#: Longest stretch of audio in one WebSocket message or HTTP body chunk.
CHUNK_SECONDS: Final = 0.08
#: A ``<break>`` longer than this is cut to it.
MAX_BREAK_SECONDS: Final = 10.0

_BREAK: Final = re.compile(
    r"""<break\s+time\s*=\s*(["']?)\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*\1\s*/?\s*>""",
    re.IGNORECASE,
)


def split_complete_sentences(buffer: str, start: int = 0, *, language: str | None = None) -> tuple[str, str]:
    """Split ``buffer`` into (its complete sentences, the unfinished rest).

    A sentence ends as ``language`` ends one (:func:`~._languages.sentence_end`:
    ``. ! ?`` and the language's own marks, such as the danda or the Arabic
    question mark, followed by white space, or a full-width mark in Japanese
    and Chinese); with ``language=None``, as any of the 15 languages ends one.
    Sentence ends are looked for from ``start`` on (see :func:`sentence_scan_start`),
    so that text arriving in small pieces is not scanned again and again.
    """
    end = 0
    for match in sentence_end(language).finditer(buffer, start):
        end = match.end()
    return buffer[:end], buffer[end:]


def sentence_scan_start(held: str, *, language: str | None = None) -> int:
    """Where a sentence end may begin in ``held`` + more text, if ``held`` holds no complete one.

    Only in the trailing run of sentence-end characters and white space: a
    sentence end that began earlier would have been complete already.
    """
    marks = sentence_end_chars(language)
    start = len(held)
    while start > 0 and (held[start - 1] in marks or held[start - 1].isspace()):
        start -= 1
    return start


def split_breaks(text: str) -> list[str | float]:
    """Split text at ``<break time="..."/>`` tags: text pieces and pause lengths in seconds.

    Whitespace-only pieces are dropped. Other markup stays in the text.
    """
    parts: list[str | float] = []
    position = 0
    for match in _BREAK.finditer(text):
        piece = text[position : match.start()]
        if piece.strip():
            parts.append(piece)
        seconds = float(match.group(2))
        if match.group(3).lower() == "ms":
            seconds /= 1000.0
        parts.append(min(seconds, MAX_BREAK_SECONDS))
        position = match.end()
    rest = text[position:]
    if rest.strip():
        parts.append(rest)
    return parts


#: G.711 mu-law: the bias added to a 16-bit magnitude, and the largest magnitude coded.
_MULAW_BIAS: Final = 0x84
_MULAW_CLIP: Final = 32635


def mulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """16-bit linear samples -> G.711 mu-law bytes, exactly as the ITU-T G.191 reference coder.

    Each byte is the inverted sign bit, a 3-bit segment (exponent) and a
    4-bit step within it: 0 -> 0xFF, -1 -> 0x7F, 32767 -> 0x80, -32768 -> 0x00.
    """
    values = pcm.astype(np.int32)
    negative = values < 0
    sign = negative.astype(np.int32) << 7
    # A negative sample's magnitude is its one's complement (-x - 1), as in
    # the ITU-T G.191 reference coder: -1 codes as "negative zero".
    magnitude = np.where(negative, -values - 1, values)
    magnitude = np.minimum(magnitude, _MULAW_CLIP) + _MULAW_BIAS
    # magnitude is 132..32767: its bit length, less 8, is the segment 0..7.
    _, bits = np.frexp(magnitude.astype(np.float64))
    exponent = bits.astype(np.int32) - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    coded = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return bytes(coded.astype(np.uint8).tobytes())


def encode(samples: FloatArray, encoding: str) -> bytes:
    """Mono float samples -> little-endian ``pcm_s16le`` or ``pcm_f32le`` bytes, or ``pcm_mulaw``.

    mu-law is coded from the same 16-bit samples ``pcm_s16le`` gives.
    """
    clipped = np.clip(samples, -1.0, 1.0)
    if encoding == "pcm_f32le":
        return bytes(clipped.astype("<f4").tobytes())
    pcm = np.rint(clipped * 32767.0).astype("<i2")
    if encoding == "pcm_mulaw":
        return mulaw_encode(pcm)
    return bytes(pcm.tobytes())


class AudioEncoder(Protocol):
    """Turns mono float samples at the output rate into the bytes of one output format."""

    @property
    def pending(self) -> bool:
        """Whether :meth:`flush` has audio to give."""
        ...

    def encode(self, samples: FloatArray) -> bytes:
        """The encoded bytes that are ready (perhaps fewer than ``samples`` make)."""
        ...

    def flush(self) -> bytes:
        """The rest: everything held back, ending the stream."""
        ...


@final
@attrs.frozen
class PcmEncoder:
    """Raw ``pcm_s16le``, ``pcm_f32le`` or ``pcm_mulaw`` bytes: nothing is ever held back."""

    encoding: str

    @property
    def pending(self) -> bool:
        """Always False."""
        return False

    def encode(self, samples: FloatArray) -> bytes:
        """See :func:`encode`."""
        return encode(samples, self.encoding)

    def flush(self) -> bytes:
        """Nothing."""
        return b""


def make_encoder(output_format: AudioFormat) -> AudioEncoder:
    """A new encoder for ``output_format`` (an mp3 one starts a new mp3 stream)."""
    if output_format.container == "mp3":
        assert output_format.bit_rate is not None
        return Mp3Encoder(output_format.sample_rate, output_format.bit_rate)
    return PcmEncoder(output_format.encoding)


def encode_all(samples: FloatArray, output_format: AudioFormat) -> bytes:
    """``samples`` as a complete stream in ``output_format`` (blocking)."""
    encoder = make_encoder(output_format)
    return encoder.encode(samples) + encoder.flush()


def _word_timings(
    text: str, start: float, duration: float, out: list[WordTiming], language: str | None
) -> None:
    """Spread ``duration`` over the words of ``text`` in proportion to their characters.

    Words are those of ``language`` (:func:`~._languages.word_spans`: in
    Japanese and Chinese, each character; punctuation alone is no word).
    Each character counts, and so does the one space between two words
    written apart. Exact for the signal engine (a fixed time per character);
    an estimate for others, whose speech is not so regular.
    """
    spoken = " ".join(text.split())
    if not spoken:
        return
    per_char = duration / len(spoken)
    for begin, end in word_spans(spoken, language):
        out.append((spoken[begin:end], start + begin * per_char, start + end * per_char))


def speaking_language(text: str, voice: LibraryVoice) -> str:
    """The language ``voice`` speaks ``text`` in: its ``params.language`` if set, else the text's.

    The text's is that of its script (:func:`~._languages.detect_language`,
    ``<break>`` tags aside); for Latin script, or none, the voice's own
    language (the first of its ``language`` codes), else English.
    """
    if voice.params.language is not None:
        return voice.params.language
    detected = detect_language(_BREAK.sub(" ", text))
    if detected is not None:
        return detected
    own = voice.language.split(",", 1)[0].strip().lower()
    return own if own in LANGUAGES else "en"


def _samples(
    engine: Engine,
    text: str,
    voice: LibraryVoice,
    out_rate: int,
    timings: list[WordTiming] | None,
) -> Generator[FloatArray, None, None]:
    """Synthesize ``text``: float samples at ``out_rate``, a piece per engine step.

    The whole text is spoken in one language (:func:`speaking_language`),
    the pieces between ``<break>`` tags too, and the engine is given it as
    the voice's ``params.language``.
    """
    language = speaking_language(text, voice)
    if voice.params.language != language:
        voice = attrs.evolve(voice, params=attrs.evolve(voice.params, language=language))
    in_rate = engine.native_sample_rate * voice.params.pitch
    resampler: soxr.ResampleStream | None = None

    def resampled(samples: FloatArray, *, last: bool = False) -> FloatArray:
        nonlocal resampler
        if in_rate == out_rate:
            return samples
        if resampler is None:
            resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        result: FloatArray = resampler.resample_chunk(samples, last=last)
        if last:
            resampler = None
        return result

    elapsed = 0.0  # seconds of audio so far
    for part in split_breaks(text):
        if isinstance(part, float):
            if resampler is not None:
                tail = resampled(np.zeros(0, dtype=np.float32), last=True)
                if tail.size:
                    yield tail
            silence = np.zeros(round(part * out_rate), dtype=np.float32)
            elapsed += silence.size / out_rate
            if silence.size:
                yield silence
            continue
        produced = 0
        for samples in engine.synthesize(part, voice):
            samples = np.asarray(samples, dtype=np.float32).reshape(-1)
            produced += samples.size
            out = resampled(samples)
            if out.size:
                yield out
        if timings is not None:
            _word_timings(part, elapsed, produced / in_rate, timings, language)
        elapsed += produced / in_rate
    if resampler is not None:
        tail = resampled(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield tail


def render(
    engine: Engine,
    text: str,
    voice: LibraryVoice,
    output_format: AudioFormat,
    *,
    timings: list[WordTiming] | None = None,
    encoder: AudioEncoder | None = None,
    flush: bool = True,
) -> Generator[bytes, None, None]:
    """Synthesize ``text`` and yield it as encoded bytes, a piece per engine step.

    Blocking: meant to be stepped from a worker thread. ``<break>`` pauses
    become exact digital silence of the asked length at the output rate.
    With ``timings``, the time of each word (``<break>`` tags are not words)
    is appended to it as its text is synthesized.

    ``encoder`` (a new one for ``output_format`` if None) may be shared by
    the renderings of one stream; ``flush=False`` leaves what it holds back in
    it (mp3) for the next rendering. Empty pieces are not yielded.
    """
    if encoder is None:
        encoder = make_encoder(output_format)
    for samples in _samples(engine, text, voice, output_format.sample_rate, timings):
        data = encoder.encode(samples)
        if data:
            yield data
    if flush:
        data = encoder.flush()
        if data:
            yield data


def render_all(
    engine: Engine,
    text: str,
    voice: LibraryVoice,
    output_format: AudioFormat,
    *,
    timings: list[WordTiming] | None = None,
) -> bytes:
    """All of :func:`render` at once (blocking), the same bytes a stream would carry.

    With ``timings``, word times are clamped to the length of the audio made.
    """
    encoder = make_encoder(output_format)
    pieces: list[bytes] = []
    produced = 0
    for samples in _samples(engine, text, voice, output_format.sample_rate, timings):
        produced += samples.size
        pieces.append(encoder.encode(samples))
    pieces.append(encoder.flush())
    if timings is not None:
        length = produced / output_format.sample_rate
        timings[:] = [(w, min(s, length), min(e, length)) for w, s, e in timings]
    return b"".join(pieces)


def wav_file(pcm: bytes, sample_rate: int, encoding: str) -> bytes:
    """Mono pcm bytes in a WAV container (16-bit PCM, or 32-bit IEEE float)."""
    return wav_header(len(pcm), sample_rate, encoding) + pcm


#: The length of :func:`wav_header`'s header.
WAV_HEADER_BYTES: Final = 44


def wav_header(data_bytes: int, sample_rate: int, encoding: str) -> bytes:
    """The 44-byte header of a mono WAV file whose samples take ``data_bytes`` bytes."""
    float_samples = encoding == "pcm_f32le"
    width = 4 if float_samples else 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        3 if float_samples else 1,  # WAVE_FORMAT_IEEE_FLOAT or WAVE_FORMAT_PCM
        1,
        sample_rate,
        sample_rate * width,
        width,
        8 * width,
        b"data",
        data_bytes,
    )


def _next_piece(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)


def _write_next_piece(pieces: Iterator[bytes], file: IO[bytes]) -> int | None:
    data = next(pieces, None)
    if data is None:
        return None
    file.write(data)
    return len(data)


async def render_to_file(
    engine: Engine,
    limiter: trio.CapacityLimiter,
    text: str,
    voice: LibraryVoice,
    output_format: AudioFormat,
    file: IO[bytes],
) -> int:
    """Write the encoded audio of ``text`` to ``file``; return how many bytes were written.

    As :func:`stream_audio`, one engine step at a time in a worker thread
    (which also writes what it made), so that no more than a step's audio is
    ever in memory and a cancelled request stops at the next step.
    """
    pieces = render(engine, text, voice, output_format)
    written = 0
    try:
        while True:
            size = await trio.to_thread.run_sync(_write_next_piece, pieces, file, limiter=limiter)
            if size is None:
                return written
            written += size
    finally:
        pieces.close()


async def stream_audio(
    engine: Engine,
    limiter: trio.CapacityLimiter,
    text: str,
    voice: LibraryVoice,
    output_format: AudioFormat,
    *,
    chunk_seconds: float = CHUNK_SECONDS,
    encoder: AudioEncoder | None = None,
    flush: bool = True,
) -> AsyncGenerator[bytes, None]:
    """Yield the encoded audio of ``text`` in chunks of at most ``chunk_seconds``.

    Each engine step (a sentence or so) runs in a worker thread under
    ``limiter``, and encodes what it made in that same thread. Cancellation
    waits for the step in progress to finish: an abandoned thread could still
    be inside the voice model when the process exits, which crashes
    onnxruntime. Use with :func:`contextlib.aclosing`.

    ``encoder`` and ``flush`` are as for :func:`render`. mp3 chunks are whole
    frames (one at least, even when a frame lasts longer than ``chunk_seconds``).
    """
    samples_per_chunk = max(1, round(output_format.sample_rate * chunk_seconds))
    chunk_bytes = samples_per_chunk * output_format.sample_width
    mp3 = output_format.container == "mp3"
    pieces = render(engine, text, voice, output_format, encoder=encoder, flush=flush)
    try:
        while True:
            data = await trio.to_thread.run_sync(_next_piece, pieces, limiter=limiter)
            if data is None:
                return
            if mp3:
                for chunk in split_frames(data, samples_per_chunk):
                    yield chunk
            else:
                for start in range(0, len(data), chunk_bytes):
                    yield data[start : start + chunk_bytes]
    finally:
        # No thread is running the generator now (steps are never abandoned).
        pieces.close()
