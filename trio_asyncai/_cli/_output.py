"""Where ``speak`` and ``batch`` put audio: its format, a file written atomically, the speakers, a
progress line."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import IO, Any, BinaryIO, Literal, cast

import trio

from .._types import DEFAULT_SAMPLE_RATE, Encoding, OutputFormat
from .._wav import WavWriter
from ._common import CommandError

__all__ = [
    "AudioFile",
    "FileFormat",
    "Player",
    "Progress",
    "add_format_options",
    "check_format_options",
    "format_of",
    "open_output",
    "replacing",
    "open_player",
    "output_format",
]

FileFormat = Literal["wav", "raw", "mp3"]
#: The formats ``speak`` tells by a file's extension.
EXTENSIONS: dict[str, FileFormat] = {".wav": "wav", ".raw": "raw", ".pcm": "raw", ".mp3": "mp3"}
PLAY_EXTRA = "pip install 'trio-asyncai[play]'"


def format_of(path: str) -> FileFormat | None:
    """The format a file name asks for by its extension (``None``: not one we know)."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """The options of the audio asked for: ``--sample-rate``, ``--encoding``, ``--pcm16``, ``--bit-rate``."""
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=DEFAULT_SAMPLE_RATE,
        help="Hz, 8000 to 48000 (default: %(default)s)",
    )
    parser.add_argument(
        "--encoding",
        choices=("pcm_s16le", "pcm_f32le", "pcm_mulaw"),
        help=(
            "sample format of wav and raw output (default: pcm_s16le; pcm_mulaw at 8000 Hz is the "
            "telephony format, a mu-law WAV)"
        ),
    )
    parser.add_argument(
        "--pcm16",
        action="store_true",
        help="with --encoding pcm_mulaw: decode the audio and write 16-bit PCM instead",
    )
    parser.add_argument("--bit-rate", type=int, help="mp3 only: bits per second (default: the service's)")


def check_format_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, file_format: FileFormat
) -> None:
    """Refuse (usage error, exit 2) the options of :func:`add_format_options` ``file_format`` cannot take."""
    if file_format == "mp3":
        for flag, given in (("--encoding", args.encoding), ("--pcm16", args.pcm16 or None)):
            if given is not None:
                parser.error(f"{flag} applies to wav and raw output, not mp3")
    elif args.bit_rate is not None:
        parser.error("--bit-rate applies to mp3 output only")
    if args.pcm16 and args.encoding != "pcm_mulaw":
        parser.error("--pcm16 converts mu-law audio: use it with --encoding pcm_mulaw")


def output_format(args: argparse.Namespace, file_format: FileFormat) -> tuple[OutputFormat, Encoding]:
    """The format to ask the service for, and the encoding of the samples written to a wav or raw file.

    The two differ only for mu-law with ``--pcm16``: the audio comes as
    mu-law and is written decoded (:func:`~trio_asyncai._wav.mulaw_to_pcm16`).
    """
    if file_format == "mp3":
        fmt = OutputFormat(container="mp3", sample_rate=args.sample_rate, bit_rate=args.bit_rate)
    else:
        fmt = OutputFormat(sample_rate=args.sample_rate, encoding=args.encoding or "pcm_s16le")
    written: Encoding = "pcm_s16le" if fmt.encoding == "pcm_mulaw" and args.pcm16 else fmt.encoding
    return fmt, written


def _mode_for(path: str) -> int:
    """The permissions the output gets: those of the file it replaces, else what ``open`` gives."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.asynccontextmanager
async def open_output(path: str) -> AsyncIterator[BinaryIO]:
    """The file ``-o PATH`` names, opened for writing as a user expects of it.

    - A regular file (or a new one) is written atomically: a temporary file
      beside it replaces it when the block succeeds. If the block fails, or
      the command is interrupted, the temporary file is removed and whatever
      the path held before is untouched: no half-written file is ever left.
    - A symbolic link to a regular file: its target is written that way,
      and the link stays a link.
    - Anything else that exists (``/dev/null``, ``/dev/stdout``, a FIFO, a
      terminal, ``>(command)``) is written into as it is, never replaced.
    - A file we may not write, or one that no one may write (mode
      ``r--r--r--``, even for root), is refused, as the shell's ``>``
      refuses it; so is a directory.
    """
    try:
        status = os.stat(path)  # follows links: what a write would reach
    except FileNotFoundError:
        status = None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise CommandError(f"cannot write {path}: it is a directory")
    if status is not None and not stat.S_ISREG(status.st_mode):
        special = await _open_special(path)
        with special:
            yield special
        return
    # No write bit is refused even for root, whom every access check lets through.
    if status is not None and (not status.st_mode & 0o222 or not os.access(path, os.W_OK)):
        raise CommandError(f"cannot write {path}: permission denied (the file is read-only)")
    with replacing(os.path.realpath(path), shown=path) as file:  # noqa: ASYNC240 - once, before any request
        yield file


async def _open_special(path: str) -> BinaryIO:
    """``path`` (a FIFO, a device, a terminal) opened for writing, as the shell's ``>`` opens it.

    A FIFO is opened once a process reads it, as with ``>``; the wait is in
    a worker thread, so that Ctrl+C still stops the command (a plain
    ``open`` in the event loop's thread would be deaf to it: the signal only
    wakes the loop, and the system call is retried).
    """
    try:
        fd = await trio.to_thread.run_sync(os.open, path, os.O_WRONLY, abandon_on_cancel=True)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    return open(fd, "wb")  # noqa: ASYNC230 - wraps a descriptor already open: nothing waits


@contextlib.contextmanager
def replacing(path: str, *, shown: str) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` that replaces it when the block succeeds."""
    directory, name = os.path.split(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise CommandError(f"cannot write {shown}: {exc.strerror or exc}") from None
    file = cast("BinaryIO", os.fdopen(fd, "wb"))
    try:
        yield file
        file.close()
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except BaseException:
        file.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class AudioFile:
    """Audio into an open file: as a WAV file or bytes as they come.

    A WAV file's header gets its real sizes at the end when the file is a
    regular one; standard output, a pipe or a device gets a header whose
    sizes say "unknown" (the streaming convention players read), and the
    audio as it comes.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        file_format: FileFormat,
        sample_rate: int,
        encoding: Encoding,
        streaming: bool,
    ) -> None:
        self._file = file
        streaming = streaming or not _regular(file)
        self._wav = (
            WavWriter(file, sample_rate=sample_rate, encoding=encoding, streaming=streaming)
            if file_format == "wav"
            else None
        )

    def write(self, audio: bytes) -> None:
        if self._wav is not None:
            self._wav.write(audio)
        else:
            self._file.write(audio)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()


def _regular(file: BinaryIO) -> bool:
    """Whether ``file`` is a regular file on disk, where a header can be rewritten."""
    try:
        return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _import_sounddevice() -> ModuleType:
    try:
        import sounddevice as module
    except ImportError:
        raise CommandError(f"--play needs the [play] extra: {PLAY_EXTRA}") from None
    except OSError as exc:  # sounddevice is there, the PortAudio library is not
        raise CommandError(
            f"--play cannot load the PortAudio library ({exc}): install it "
            "(Debian, Ubuntu: apt install libportaudio2; Fedora: dnf install portaudio; "
            "macOS: brew install portaudio)"
        ) from None
    loaded: ModuleType = module
    return loaded


class Player:
    """Raw audio to the speakers as it arrives, in whole samples (``sounddevice``, the [play] extra)."""

    def __init__(self, stream: Any, frame_bytes: int) -> None:
        self._stream = stream
        self._frame_bytes = frame_bytes
        self._pending = b""

    async def play(self, audio: bytes) -> None:
        data = self._pending + audio
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        if whole:
            await trio.to_thread.run_sync(self._stream.write, data[:whole])

    async def close(self) -> None:
        """Let what was written play out, then close the device."""
        await trio.to_thread.run_sync(self._stream.stop)
        self._stream.close()


_DTYPES = {"pcm_s16le": ("int16", 2), "pcm_f32le": ("float32", 4)}


def open_player(sample_rate: int, encoding: Encoding) -> Player:
    """A started output stream for mono audio (16-bit or float; mu-law is decoded first)."""
    sounddevice = _import_sounddevice()
    dtype, width = _DTYPES[encoding]
    try:
        stream = sounddevice.RawOutputStream(samplerate=sample_rate, channels=1, dtype=dtype)
        stream.start()
    except (sounddevice.PortAudioError, ValueError) as exc:
        raise CommandError(f"--play: no audio output device to play on ({exc})") from None
    return Player(stream, width)


class Progress:
    """One line on a terminal, rewritten as audio arrives: seconds received, times real time."""

    def __init__(self, stream: IO[str] | None, bytes_per_second: float) -> None:
        #: None: say nothing (not a terminal, or --quiet).
        self._stream = stream
        self._per_second = bytes_per_second
        self._start = time.monotonic()
        self._shown_at: float | None = None

    def update(self, audio_bytes: int) -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        if self._shown_at is not None and now - self._shown_at < 0.1:
            return
        self._shown_at = now
        seconds = audio_bytes / self._per_second
        elapsed = max(now - self._start, 1e-3)
        speed = seconds / elapsed
        self._stream.write(
            f"\r\x1b[K{seconds:.1f} s of audio received in {elapsed:.1f} s ({speed:.1f}x real time)"
        )
        self._stream.flush()

    def clear(self) -> None:
        if self._stream is not None and self._shown_at is not None:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
