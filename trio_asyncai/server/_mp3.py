"""MP3 output through LAME, from the ``lameenc`` package (in the ``[server]`` extra).

``lameenc`` (LGPL) is imported lazily, when an mp3 request is checked or
encoded; without it the server refuses mp3 with 400 ``FORMAT_NOT_RECOGNIZED``.

LAME writes mono MPEG Layer III at the asked sample rate, without resampling,
so only the nine MPEG rates can be had: MPEG-1 at 32000, 44100 and 48000 Hz,
MPEG-2 at 16000, 22050 and 24000 Hz, MPEG-2.5 at 8000, 11025 and 12000 Hz. The
bit rates (constant) are those of the MPEG version, within the API's 32000 to
320000 bit/s: see :data:`MP3_BIT_RATES`. LAME would silently round any other
bit rate to a nearby one; the server refuses it instead. When a request has no
``bit_rate``, the API's default of 192000 applies, lowered to the highest bit
rate of the MPEG-2 (160000) or MPEG-2.5 (64000) rates.

The encoder gives out whole frames only (LAME itself hands out frames in
pieces), so every chunk of a stream starts with a frame header.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Final, final

import attrs
import numpy as np

from ._engines import FloatArray

__all__ = [
    "DEFAULT_MP3_BIT_RATE",
    "MP3_BIT_RATES",
    "MP3_UNAVAILABLE",
    "Mp3Encoder",
    "load_lameenc",
    "mp3_bit_rate",
    "split_frames",
]

#: The API's mp3 bit rate when a request names none.
DEFAULT_MP3_BIT_RATE: Final = 192000
#: Why mp3 is refused when LAME is not installed.
MP3_UNAVAILABLE: Final = "mp3 needs the lameenc package: pip install 'trio-asyncai[server]'"

_MPEG1: Final = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2: Final = (32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# LAME stops MPEG-2.5 at 64 kbps.
_MPEG25: Final = (32, 40, 48, 56, 64)

#: The bit rates (bit/s) LAME makes exactly at each sample rate it takes (Hz).
MP3_BIT_RATES: Final[Mapping[int, tuple[int, ...]]] = {
    rate: tuple(1000 * kbps for kbps in table)
    for rates, table in (
        ((8000, 11025, 12000), _MPEG25),
        ((16000, 22050, 24000), _MPEG2),
        ((32000, 44100, 48000), _MPEG1),
    )
    for rate in rates
}

# Frame headers: the version bits (0 = MPEG-2.5, 2 = MPEG-2, 3 = MPEG-1), and
# the sample rate of each rate index per version.
_HEADER_RATES: Final[Mapping[int, tuple[int, int, int]]] = {
    0: (11025, 12000, 8000),
    2: (22050, 24000, 16000),
    3: (44100, 48000, 32000),
}
_HEADER_KBPS: Final[Mapping[int, tuple[int, ...]]] = {
    0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
}


def load_lameenc() -> Any:
    """The ``lameenc`` module; :exc:`ImportError` if it is not installed."""
    return importlib.import_module("lameenc")


def mp3_bit_rate(sample_rate: int, bit_rate: int | None) -> int:
    """The bit rate (bit/s) an mp3 at ``sample_rate`` is made with.

    ``None`` gives the default (see the module docstring). Raises
    :exc:`ValueError`, with a message for the client, for a sample rate or a bit
    rate LAME cannot make.
    """
    allowed = MP3_BIT_RATES.get(sample_rate)
    if allowed is None:
        rates = ", ".join(str(r) for r in sorted(MP3_BIT_RATES))
        raise ValueError(f"mp3 sample_rate must be one of {rates} Hz, not {sample_rate}")
    if bit_rate is None:
        return min(DEFAULT_MP3_BIT_RATE, allowed[-1])
    if bit_rate not in allowed:
        rates = ", ".join(str(r) for r in allowed)
        raise ValueError(
            f"an mp3 at {sample_rate} Hz can have a bit_rate of {rates}; LAME cannot make {bit_rate}"
        )
    return bit_rate


def _frame(data: bytes | bytearray, offset: int) -> tuple[int, int]:
    """(length in bytes, samples) of the Layer III frame whose header is at ``offset``."""
    header = int.from_bytes(data[offset : offset + 4], "big")
    version = (header >> 19) & 3
    layer = (header >> 17) & 3
    kbps_index = (header >> 12) & 15
    rate_index = (header >> 10) & 3
    if header >> 21 != 0x7FF or version not in _HEADER_RATES or layer != 1 or rate_index == 3:
        raise ValueError(f"not an MPEG Layer III frame header at byte {offset}: {header:08x}")
    kbps = _HEADER_KBPS[version][kbps_index]
    if kbps_index in (0, 15):
        raise ValueError(f"unsupported bit rate index {kbps_index} at byte {offset}")
    rate = _HEADER_RATES[version][rate_index]
    padding = (header >> 9) & 1
    if version == 3:
        return 144000 * kbps // rate + padding, 1152
    return 72000 * kbps // rate + padding, 576


def _whole_frames(data: bytes | bytearray) -> int:
    """How many leading bytes of ``data`` are complete frames."""
    end = 0
    while end + 4 <= len(data):
        length, _ = _frame(data, end)
        if end + length > len(data):
            break
        end += length
    return end


def split_frames(data: bytes, max_samples: int) -> Iterator[bytes]:
    """Whole frames of ``data`` in chunks of at most ``max_samples`` samples (one frame at least)."""
    start = end = samples = 0
    while end < len(data):
        length, frame_samples = _frame(data, end)
        if end > start and samples + frame_samples > max_samples:
            yield data[start:end]
            start, samples = end, 0
        end += length
        samples += frame_samples
    if end > start:
        yield data[start:end]


@final
@attrs.define(eq=False)
class Mp3Encoder:
    """Mono float samples -> constant bit rate MP3 frames, through LAME.

    :meth:`encode` returns the frames completed so far (LAME keeps about a
    frame and a half of audio back); :meth:`flush` ends the stream with the
    rest. The next :meth:`encode` after a flush starts a new LAME stream.
    Blocking, and not for two threads at once.
    """

    sample_rate: int
    bit_rate: int
    _lame: Any = attrs.field(default=None, init=False)
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def pending(self) -> bool:
        """Whether audio was encoded since the last flush (so a flush gives more frames)."""
        return self._lame is not None

    def _start(self) -> Any:
        lame = load_lameenc().Encoder()
        lame.set_channels(1)
        lame.set_in_sample_rate(self.sample_rate)
        lame.set_out_sample_rate(self.sample_rate)
        lame.set_bit_rate(self.bit_rate // 1000)
        lame.set_quality(2)
        lame.silence()
        return lame

    def encode(self, samples: FloatArray) -> bytes:
        """Encode more samples; the whole frames that are ready."""
        if samples.size == 0:
            return b""
        if self._lame is None:
            self._lame = self._start()
        pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        self._buffer += self._lame.encode(pcm)
        ready = _whole_frames(self._buffer)
        data = bytes(self._buffer[:ready])
        del self._buffer[:ready]
        return data

    def flush(self) -> bytes:
        """End the stream: every frame still held back."""
        if self._lame is not None:
            self._buffer += self._lame.flush()
            self._lame = None
        data = bytes(self._buffer)
        self._buffer.clear()
        return data
