"""What ``speak -o PATH`` does to the path it is given: a user's files are never harmed.

A regular file is replaced atomically; anything else that exists (a FIFO,
a device, standard output) is written into, never replaced; a link stays a
link; a read-only file is refused. Special files are made in a temporary
directory: no test touches a real ``/dev`` node.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import wave
from pathlib import Path

import pytest
import trio
import trio.testing
from cli_run import Cli, names, one_line_error
from helpers import TIMEOUT

from trio_asyncai._cli._common import CommandError
from trio_asyncai._cli._output import open_output, open_player
from trio_asyncai._wav import WavWriter
from trio_asyncai.server import SignalEngine

TEXT = "Hello from the command line."
SIGNAL = ("--engine", "signal")
AUDIO_BYTES = 2 * SignalEngine().samples_for(TEXT)


def read_fifo(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    """A thread that reads everything written into ``fifo``."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    return reader, got


def release(fifo: Path, reader: threading.Thread) -> None:
    """Let the reader go if the command never opened the FIFO (it replaced it instead)."""
    reader.join(TIMEOUT if fifo.is_fifo() else 0)
    if reader.is_alive():
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        reader.join(TIMEOUT)


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path, cli: Cli) -> None:
    fifo = tmp_path / "f.raw"
    os.mkfifo(fifo)
    reader, got = read_fifo(fifo)
    run = cli("speak", TEXT, "-o", str(fifo), *SIGNAL)
    release(fifo, reader)
    assert run.code == 0, run.err
    assert fifo.is_fifo()  # still a FIFO
    assert len(got[0]) == AUDIO_BYTES
    assert names(tmp_path) == ["f.raw"]


def test_a_wav_into_a_fifo_streams_with_unknown_sizes(tmp_path: Path, cli: Cli) -> None:
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    reader, got = read_fifo(fifo)
    run = cli("speak", TEXT, "-o", str(fifo), *SIGNAL)
    release(fifo, reader)
    assert run.code == 0, run.err
    assert got[0][4:8] == got[0][40:44] == b"\xff\xff\xff\xff"
    assert len(got[0]) == 44 + AUDIO_BYTES


def test_a_symlink_stays_a_link_and_its_target_is_written(tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "target.raw"
    target.write_bytes(b"old")
    link = tmp_path / "link.raw"
    link.symlink_to(target.name)
    run = cli("speak", TEXT, "-o", str(link), *SIGNAL)
    assert run.code == 0, run.err
    assert link.is_symlink() and os.readlink(link) == "target.raw"
    assert len(target.read_bytes()) == AUDIO_BYTES
    assert names(tmp_path) == ["link.raw", "target.raw"]


def test_a_read_only_file_is_refused(tmp_path: Path, cli: Cli) -> None:
    # Refused by its mode, as root too (whom every access check lets through).
    ro = tmp_path / "ro.wav"
    ro.write_bytes(b"keep me")
    ro.chmod(0o444)
    run = cli("speak", TEXT, "-o", str(ro), *SIGNAL)
    one_line_error(run, f"cannot write {ro}: permission denied (the file is read-only)")
    assert ro.read_bytes() == b"keep me"
    assert names(tmp_path) == ["ro.wav"]


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "out.raw"
    out.write_bytes(b"old")
    out.chmod(0o640)
    assert cli("speak", TEXT, "-o", str(out), *SIGNAL).code == 0
    assert out.stat().st_mode & 0o777 == 0o640
    assert len(out.read_bytes()) == AUDIO_BYTES


def test_wav_to_standard_output_streams(tmp_path: Path, cli: Cli) -> None:
    run = cli("speak", TEXT, "-o", "-", "--format", "wav", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.stdout[:4] == b"RIFF" and run.stdout[4:8] == b"\xff\xff\xff\xff"
    assert len(run.stdout) == 44 + AUDIO_BYTES
    assert names(tmp_path) == []


def test_a_streamed_wav_header_reads_as_unknown_length() -> None:
    buffer = io.BytesIO()
    writer = WavWriter(buffer, sample_rate=16000, encoding="pcm_s16le", streaming=True)
    writer.write(b"\x01\x00" * 10)
    writer.close()
    data = buffer.getvalue()
    assert struct.unpack("<I", data[4:8])[0] == struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    with wave.open(io.BytesIO(data)) as wav:  # players read it; the frames are what came
        assert wav.getframerate() == 16000
        assert wav.readframes(100) == b"\x01\x00" * 10


def test_play_without_portaudio_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # sounddevice installed, its PortAudio library not: importing it raises OSError.
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(CommandError) as caught:
        open_player(24000, "pcm_s16le")
    message = str(caught.value)
    assert message.startswith("--play cannot load the PortAudio library (PortAudio library not found)")
    assert "apt install libportaudio2" in message and "brew install portaudio" in message


async def test_waiting_for_a_fifo_reader_can_be_cancelled(tmp_path: Path) -> None:
    # Opened as the shell's > opens it, once a process reads; but a plain open in
    # the event loop's thread would be deaf to Ctrl+C while it waits.
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    entered = False
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                nonlocal entered
                async with open_output(str(fifo)):
                    entered = True  # pragma: no cover

            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert not entered
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the abandoned thread's open go


def test_text_that_is_not_utf8_is_one_line(tmp_path: Path, cli: Cli) -> None:
    # Bytes that are not UTF-8 in an argument reach Python as lone surrogates.
    one_line_error(
        cli("speak", "hi \udcff there", "-o", "x.wav", *SIGNAL, cwd=tmp_path), "the text: not UTF-8 text"
    )
    assert names(tmp_path) == []
