"""WAV files of any raw encoding the service sends, and G.711 mu-law decoding.

The standard library's :mod:`wave` writes integer PCM only; a float or a
mu-law WAV needs its own format tag, an 18-byte ``fmt`` chunk and a ``fact``
chunk (the sample count), as the RIFF/WAVE specification asks of every
format that is not integer PCM. :class:`WavWriter` writes all three kinds,
streaming, and fills in the sizes when it is closed.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final, final

from ._types import Encoding

__all__ = ["WavWriter", "mulaw_to_pcm16"]

_WAVE_FORMAT_PCM: Final = 1
_WAVE_FORMAT_IEEE_FLOAT: Final = 3
_WAVE_FORMAT_MULAW: Final = 7
#: Format tag and bits per sample of each encoding.
_FORMATS: Final = {
    "pcm_s16le": (_WAVE_FORMAT_PCM, 16),
    "pcm_f32le": (_WAVE_FORMAT_IEEE_FLOAT, 32),
    "pcm_mulaw": (_WAVE_FORMAT_MULAW, 8),
}


def _mulaw_sample(byte: int) -> int:
    """The 16-bit linear value of one G.711 mu-law byte (ITU-T G.711, table 2a)."""
    u = ~byte & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


#: The little-endian 16-bit sample of each of the 256 mu-law bytes.
_MULAW_TO_PCM16: Final = tuple(struct.pack("<h", _mulaw_sample(b)) for b in range(256))


def mulaw_to_pcm16(data: bytes) -> bytes:
    """G.711 mu-law bytes -> ``pcm_s16le`` bytes (twice as long), by table."""
    return b"".join(map(_MULAW_TO_PCM16.__getitem__, data))


#: A RIFF size that says "unknown": the header of a WAV streamed before its length is known.
_UNKNOWN_SIZE: Final = 0xFFFFFFFF


@final
class WavWriter:
    """Write mono audio of one raw encoding into a seekable binary file as WAV.

    ``pcm_s16le`` becomes a plain 16-bit PCM WAV, ``pcm_f32le`` an IEEE
    float WAV and ``pcm_mulaw`` a mu-law WAV (format 7, 8 bits a sample),
    as telephony tools read them. The header is written first with zero
    sizes; :meth:`close` writes the real ones. With ``streaming`` (a pipe,
    a device: a file that cannot seek) the sizes are written once, as
    0xFFFFFFFF, "unknown", the convention of WAV streamed to a player.
    """

    def __init__(
        self, file: BinaryIO, *, sample_rate: int, encoding: Encoding, streaming: bool = False
    ) -> None:
        self._file = file
        self._tag, self._bits = _FORMATS[encoding]
        self._sample_rate = sample_rate
        self._width = self._bits // 8
        self._streaming = streaming
        self._data_bytes = 0
        self._start = 0 if streaming else file.tell()
        file.write(self._header())

    def _header(self) -> bytes:
        plain = self._tag == _WAVE_FORMAT_PCM
        fmt = struct.pack(
            "<HHIIHH",
            self._tag,
            1,
            self._sample_rate,
            self._sample_rate * self._width,
            self._width,
            self._bits,
        )
        if not plain:
            fmt += struct.pack("<H", 0)  # cbSize: no extra format bytes
        chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        if not plain:
            chunks += b"fact" + struct.pack("<II", 4, self._data_bytes // self._width)
        pad = self._data_bytes % 2  # a RIFF chunk's data is padded to an even length
        riff_size = 4 + len(chunks) + 8 + self._data_bytes + pad
        data_size = self._data_bytes
        if self._streaming:
            riff_size = data_size = _UNKNOWN_SIZE
        return (
            b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks + b"data" + struct.pack("<I", data_size)
        )

    def write(self, audio: bytes) -> None:
        """Append raw samples in the writer's encoding."""
        self._file.write(audio)
        self._data_bytes += len(audio)

    def close(self) -> None:
        """Pad the data to an even length and write the real sizes into the header (unless streaming)."""
        if self._streaming:
            return
        if self._data_bytes % 2:
            self._file.write(b"\0")
        end = self._file.tell()
        self._file.seek(self._start)
        self._file.write(self._header())
        self._file.seek(end)
