"""``trio-asyncai speak`` as users run it, in this process: text sources, formats, errors, progress, --play.

Its exit status, Ctrl+C and a real terminal are in test_cli_process.py.
"""

from __future__ import annotations

import io
import sys
import types
import wave
from pathlib import Path

import pytest
from cli_run import ROOT, Cli, names, one_line_error

from trio_asyncai._aggregator import split_text
from trio_asyncai._cli import _speak
from trio_asyncai.server import SignalEngine
from trio_asyncai.server import _requests as server_requests
from trio_asyncai.server import _websocket as server_websocket

TEXT = "Hello from the command line."
SIGNAL = ("--engine", "signal")
NO_AUDIO = '<break time="0ms"/>'


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        return wav.readframes(wav.getnframes())


@pytest.mark.parametrize("source", ["argument", "file", "stdin", "file-stdin"])
def test_text_from_an_argument_a_file_or_stdin(source: str, tmp_path: Path, cli: Cli) -> None:
    text_file = tmp_path / "in.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    where = {
        "argument": [TEXT],
        "file": ["-f", str(text_file)],
        "stdin": ["-"],
        "file-stdin": ["-f", "-"],
    }[source]
    run = cli("speak", *where, "-o", "out.wav", *SIGNAL, stdin=TEXT.encode(), cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.err == ""  # not a terminal: no progress line
    assert run.out.startswith("wrote out.wav: ")
    assert len(frames(tmp_path / "out.wav")) == 2 * SignalEngine().samples_for(TEXT)


def test_one_text_source_only(tmp_path: Path, cli: Cli) -> None:
    for args in ([], ["hi", "-f", "x.txt"]):
        run = cli("speak", *args, cwd=tmp_path)
        assert run.code == 2
        assert "give the text as TEXT, with -f FILE, or as -" in run.err
    assert names(tmp_path) == []


def test_the_extension_chooses_the_format(tmp_path: Path, cli: Cli) -> None:
    pcm_bytes = 2 * SignalEngine().samples_for(TEXT)
    for name in ("a.wav", "a.raw", "a.mp3"):
        run = cli("speak", TEXT, "-o", name, *SIGNAL, cwd=tmp_path)
        assert run.code == 0, run.err
    assert len(frames(tmp_path / "a.wav")) == pcm_bytes
    assert (tmp_path / "a.raw").read_bytes() == frames(tmp_path / "a.wav")
    mp3 = (tmp_path / "a.mp3").read_bytes()
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # an MPEG frame's sync word, not a RIFF header
    # --format wins over the extension; an unknown extension needs it.
    run = cli("speak", TEXT, "-o", "a.bin", "--format", "raw", *SIGNAL, cwd=tmp_path)
    assert run.code == 0
    assert (tmp_path / "a.bin").read_bytes() == frames(tmp_path / "a.wav")
    run = cli("speak", TEXT, "-o", "a.xyz", *SIGNAL, cwd=tmp_path)
    assert run.code == 2
    assert "cannot tell the format of 'a.xyz'" in run.err
    run = cli("speak", TEXT, "-o", "b.mp3", "--encoding", "pcm_mulaw", cwd=tmp_path)
    assert run.code == 2
    assert "--encoding applies to wav and raw output, not mp3" in run.err


def test_standard_output_streams_audio(tmp_path: Path, cli: Cli) -> None:
    run = cli("speak", TEXT, "-o", "-", "--format", "raw", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert len(run.stdout) == 2 * SignalEngine().samples_for(TEXT)
    # The audio has standard output to itself: the summary goes to standard error.
    assert run.err.startswith("wrote standard output: ")
    assert names(tmp_path) == []
    run = cli("speak", TEXT, "-o", "-", *SIGNAL, cwd=tmp_path)
    assert run.code == 2
    assert "say what with --format wav, raw or mp3" in run.err


def test_mulaw_raw_and_wav_agree(tmp_path: Path, cli: Cli) -> None:
    telephony = ("--encoding", "pcm_mulaw", "--sample-rate", "8000", *SIGNAL)
    for name in ("t.raw", "t.wav"):
        assert cli("speak", TEXT, "-o", name, *telephony, cwd=tmp_path).code == 0
    raw = (tmp_path / "t.raw").read_bytes()
    wav = (tmp_path / "t.wav").read_bytes()
    assert wav[20:22] == b"\x07\x00"  # WAVE_FORMAT_MULAW
    assert wav.endswith(raw + b"\0" * (len(raw) % 2))
    assert len(raw) == SignalEngine().samples_for(TEXT) // 3  # 24000 -> 8000 Hz, one byte a sample


def test_http_gives_the_same_audio(tmp_path: Path, cli: Cli) -> None:
    for name, transport in (("ws.raw", []), ("http.raw", ["--http"])):
        run = cli("speak", TEXT, "-o", name, *transport, *SIGNAL, cwd=tmp_path)
        assert run.code == 0, run.err
    assert (tmp_path / "http.raw").read_bytes() == (tmp_path / "ws.raw").read_bytes() != b""


def test_a_failure_leaves_the_existing_file_untouched(tmp_path: Path, cli: Cli) -> None:
    good = tmp_path / "good.wav"
    assert cli("speak", TEXT, "-o", str(good), *SIGNAL).code == 0
    before = good.read_bytes()
    for args in (["--voice", "no-such-voice"], ["--sample-rate", "5"]):
        run = cli("speak", TEXT, "-o", str(good), *SIGNAL, *args)
        assert run.code == 1
    assert good.read_bytes() == before
    assert names(tmp_path) == ["good.wav"]  # no temporary file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["speak", TEXT, "--voice", "no-such-voice"], "404 VOICE_NOT_FOUND: voice 'no-such-voice' not found"),
        (["speak", TEXT, "--http", "--voice", "no-such-voice"], "404 VOICE_NOT_FOUND"),
        (["speak", TEXT, "--language", "nl"], "INVALID_LANGUAGE"),
        (["speak", TEXT, "--sample-rate", "5"], "sample_rate must be from 8000"),
        (["speak", NO_AUDIO], "returned no audio for this text; nothing written"),
        (
            ["speak", TEXT, "-o", "no/such/dir/x.wav"],
            "cannot write no/such/dir/x.wav: No such file or directory",
        ),
        (["speak", TEXT, "-o", ".", "--format", "wav"], "cannot write .: it is a directory"),
        (["speak", "-f", "missing.txt"], "cannot read missing.txt: No such file or directory"),
        (["voices", "show", "no-such-voice"], "404 VOICE_NOT_FOUND"),
        (["voices", "list", "--gender", "robot"], "gender must be one of Male, Female, Neutral, Unspecified"),
    ],
)
def test_every_error_is_one_line(args: list[str], message: str, tmp_path: Path, cli: Cli) -> None:
    run = cli(*args, *(SIGNAL if args[0] == "speak" else ()), cwd=tmp_path)
    one_line_error(run, message)  # no log record either: with default logging, a second line
    assert run.out == ""
    assert names(tmp_path) == []


@pytest.mark.voice
def test_text_that_gives_no_audio_is_an_error(tmp_path: Path, cli: Cli) -> None:
    run = cli("speak", "...", "-o", "dots.wav", "--engine", "piper", cwd=tmp_path)
    one_line_error(run, "the local server (piper voice) returned no audio for this text")
    assert names(tmp_path) == []


def test_progress_on_a_terminal_only(tmp_path: Path, cli: Cli) -> None:
    run = cli("speak", TEXT, "-o", "p.wav", *SIGNAL, cwd=tmp_path, terminal=True)
    assert run.code == 0
    assert "s of audio received in" in run.err and "x real time)" in run.err
    assert run.err.endswith("\r\x1b[K")  # the line is cleared at the end
    assert run.out.startswith("wrote p.wav")
    run = cli("speak", TEXT, "-o", "q.wav", "--quiet", *SIGNAL, cwd=tmp_path, terminal=True)
    assert (run.code, run.out, run.err) == (0, "", "")
    assert (tmp_path / "q.wav").exists()


class PortAudioError(Exception):
    pass


def fake_sounddevice(played: io.BytesIO, *, device: bool = True) -> types.ModuleType:
    """A stand-in for sounddevice that records into ``played`` what it is asked to play."""

    class RawOutputStream:
        def __init__(self, *, samplerate: int, channels: int, dtype: str) -> None:
            if not device:
                raise PortAudioError("Error querying device -1")
            played.seek(0)
            played.truncate()
            played.write(f"{samplerate} {channels} {dtype}\n".encode())

        def start(self) -> None:
            pass

        def write(self, data: bytes) -> None:
            assert len(data) % 2 == 0
            played.write(bytes(data))

        def stop(self) -> None:
            played.write(b"\nstopped")

        def close(self) -> None:
            pass

    module = types.ModuleType("sounddevice")
    module.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    module.RawOutputStream = RawOutputStream  # type: ignore[attr-defined]
    return module


def test_play(tmp_path: Path, cli: Cli) -> None:
    played = io.BytesIO()
    run = cli("speak", TEXT, "--play", *SIGNAL, cwd=tmp_path, sounddevice=fake_sounddevice(played))
    assert run.code == 0, run.err
    assert run.out.startswith("played: ")
    assert names(tmp_path) == []  # no file without -o
    assert cli("speak", TEXT, "-o", "ref.raw", *SIGNAL, cwd=tmp_path).code == 0
    header, audio = played.getvalue().split(b"\n", 1)
    assert header == b"24000 1 int16"
    assert audio == (tmp_path / "ref.raw").read_bytes() + b"\nstopped"
    # With -o the same audio goes to the file too; mu-law is played decoded.
    run = cli(
        "speak", TEXT, "--play", "-o", "t.wav", "--encoding", "pcm_mulaw", "--sample-rate", "8000",
        *SIGNAL, cwd=tmp_path, sounddevice=fake_sounddevice(played),
    )  # fmt: skip
    assert run.code == 0, run.err
    assert played.getvalue().startswith(b"8000 1 int16\n")
    assert (tmp_path / "t.wav").read_bytes()[20:22] == b"\x07\x00"


def test_play_without_the_extra_or_a_device(tmp_path: Path, cli: Cli) -> None:
    run = cli("speak", TEXT, "--play", *SIGNAL, cwd=tmp_path, sounddevice=None)
    one_line_error(run, "--play needs the [play] extra: pip install 'trio-asyncai[play]'")
    no_device = fake_sounddevice(io.BytesIO(), device=False)
    run = cli("speak", TEXT, "--play", "-o", "x.wav", *SIGNAL, cwd=tmp_path, sounddevice=no_device)
    one_line_error(run, "--play: no audio output device to play on (Error querying device -1)")
    assert not (tmp_path / "x.wav").exists()


def test_the_console_script_is_declared() -> None:
    # The installed `trio-asyncai` runs the same main as `python -m trio_asyncai`.
    assert 'trio-asyncai = "trio_asyncai._cli:main"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("transport", [[], ["--http"]])
def test_a_text_over_the_servers_limit_is_spoken_in_pieces(
    transport: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    # The local server's limit (100,000 characters an utterance) and the command's
    # pieces, scaled down: what matters is a text over the one, cut by the other.
    for module in (server_requests, server_websocket):
        monkeypatch.setattr(module, "MAX_TRANSCRIPT_CHARS", 1000)
    monkeypatch.setattr(_speak, "_PIECE_CHARS", 600)
    text = "This sentence is spoken again and again. " * 60  # 2460 characters
    run = cli("speak", text, "-o", "long.raw", "--sample-rate", "8000", *transport, *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.out.endswith(f"; {len(text)} characters\n")
    pieces = split_text(text, 600)
    assert len(pieces) == 5
    per_char = SignalEngine(sample_rate=8000).samples_for
    assert len((tmp_path / "long.raw").read_bytes()) == 2 * sum(per_char(p) for p in pieces)


class _ClosedPipe(io.RawIOBase):
    """Standard output whose reader has gone (``| head -c 0``)."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_ends_the_command_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_ClosedPipe())))
    run = cli("speak", TEXT, "-o", "-", "--format", "raw", *SIGNAL, cwd=tmp_path)
    assert (run.code, run.err) == (141, "")  # 128 + SIGPIPE, as cat's
