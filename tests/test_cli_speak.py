"""``trio-asyncai speak`` in a subprocess, as users run it, against an in-process local server."""

from __future__ import annotations

import os
import pty
import signal
import wave
from pathlib import Path

import pytest
import trio
from cli_run import ROOT, cli_env, command, one_line_error, run_cli

from trio_asyncai.server import SignalEngine

TEXT = "Hello from a subprocess."
SIGNAL = ("--engine", "signal")
NO_AUDIO = '<break time="0ms"/>'


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        return wav.readframes(wav.getnframes())


async def test_version() -> None:
    from trio_asyncai import __version__

    run = await run_cli("--version")
    assert (run.code, run.out) == (0, f"trio-asyncai {__version__}\n")


@pytest.mark.parametrize("source", ["argument", "file", "stdin", "file-stdin"])
async def test_text_from_an_argument_a_file_or_stdin(source: str, tmp_path: Path) -> None:
    text_file = tmp_path / "in.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    where = {
        "argument": [TEXT],
        "file": ["-f", str(text_file)],
        "stdin": ["-"],
        "file-stdin": ["-f", "-"],
    }[source]
    run = await run_cli("speak", *where, "-o", "out.wav", *SIGNAL, stdin=TEXT.encode(), cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.err == ""  # not a terminal: no progress line
    assert run.out.startswith("wrote out.wav: ")
    assert len(frames(tmp_path / "out.wav")) == 2 * SignalEngine().samples_for(TEXT)


async def test_one_text_source_only(tmp_path: Path) -> None:
    for args in ([], ["hi", "-f", "x.txt"]):
        run = await run_cli("speak", *args, cwd=tmp_path)
        assert run.code == 2
        assert "give the text as TEXT, with -f FILE, or as -" in run.err
    assert names(tmp_path) == []


async def test_the_extension_chooses_the_format(tmp_path: Path) -> None:
    pcm_bytes = 2 * SignalEngine().samples_for(TEXT)
    for name in ("a.wav", "a.raw", "a.mp3"):
        run = await run_cli("speak", TEXT, "-o", name, *SIGNAL, cwd=tmp_path)
        assert run.code == 0, run.err
    assert len(frames(tmp_path / "a.wav")) == pcm_bytes
    assert (tmp_path / "a.raw").read_bytes() == frames(tmp_path / "a.wav")
    mp3 = (tmp_path / "a.mp3").read_bytes()
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # an MPEG frame's sync word, not a RIFF header
    # --format wins over the extension; an unknown extension needs it.
    run = await run_cli("speak", TEXT, "-o", "a.bin", "--format", "raw", *SIGNAL, cwd=tmp_path)
    assert run.code == 0
    assert (tmp_path / "a.bin").read_bytes() == frames(tmp_path / "a.wav")
    run = await run_cli("speak", TEXT, "-o", "a.xyz", *SIGNAL, cwd=tmp_path)
    assert run.code == 2
    assert "cannot tell the format of 'a.xyz'" in run.err
    run = await run_cli("speak", TEXT, "-o", "b.mp3", "--encoding", "pcm_mulaw", cwd=tmp_path)
    assert run.code == 2
    assert "--encoding applies to wav and raw output, not mp3" in run.err


async def test_standard_output_streams_raw_or_mp3(tmp_path: Path) -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            command("speak", TEXT, "-o", "-", "--format", "raw", *SIGNAL),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env=cli_env(),
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 2 * SignalEngine().samples_for(TEXT)
    # The audio has standard output to itself: the summary goes to standard error.
    assert result.stderr.decode().startswith("wrote standard output: ")
    assert names(tmp_path) == []
    for extra, message in (
        ((), "say what with --format raw or --format mp3"),
        (
            ("--format", "wav"),
            "use --format raw",
        ),
    ):
        run = await run_cli("speak", TEXT, "-o", "-", *extra, *SIGNAL, cwd=tmp_path)
        assert run.code == 2
        assert message in run.err


async def test_mulaw_raw_and_wav_agree(tmp_path: Path) -> None:
    telephony = ("--encoding", "pcm_mulaw", "--sample-rate", "8000", *SIGNAL)
    for name in ("t.raw", "t.wav"):
        assert (await run_cli("speak", TEXT, "-o", name, *telephony, cwd=tmp_path)).code == 0
    raw = (tmp_path / "t.raw").read_bytes()
    wav = (tmp_path / "t.wav").read_bytes()
    assert wav[20:22] == b"\x07\x00"  # WAVE_FORMAT_MULAW
    assert wav.endswith(raw + b"\0" * (len(raw) % 2))
    assert len(raw) == SignalEngine().samples_for(TEXT) // 3  # 24000 -> 8000 Hz, one byte a sample


async def test_http_gives_the_same_audio(tmp_path: Path) -> None:
    for name, transport in (("ws.raw", []), ("http.raw", ["--http"])):
        run = await run_cli("speak", TEXT, "-o", name, *transport, *SIGNAL, cwd=tmp_path)
        assert run.code == 0, run.err
    assert (tmp_path / "http.raw").read_bytes() == (tmp_path / "ws.raw").read_bytes() != b""


async def test_a_failure_leaves_the_existing_file_untouched(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    assert (await run_cli("speak", TEXT, "-o", str(good), *SIGNAL)).code == 0
    before = good.read_bytes()
    for args in (["--voice", "no-such-voice"], ["--sample-rate", "5"]):
        run = await run_cli("speak", TEXT, "-o", str(good), *SIGNAL, *args)
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
async def test_every_error_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    # Default logging, as a user has it: a library log record would be a second line.
    run = await run_cli(*args, *(SIGNAL if args[0] == "speak" else ()), cwd=tmp_path)
    one_line_error(run, message)
    assert run.out == ""
    assert names(tmp_path) == []


@pytest.mark.voice
async def test_text_that_gives_no_audio_is_an_error(tmp_path: Path) -> None:
    run = await run_cli("speak", "...", "-o", "dots.wav", "--engine", "piper", cwd=tmp_path)
    one_line_error(run, "the local server (piper voice) returned no audio for this text")
    assert names(tmp_path) == []


async def run_on_a_terminal(
    *args: str, cwd: Path, interrupt_after: bytes | None = None
) -> tuple[int, str, str]:
    """Run with standard error on a pseudo-terminal: (exit code, stdout, what the terminal got).

    With ``interrupt_after``, Ctrl+C (SIGINT) is sent once the terminal has shown it.
    """
    controller, terminal = pty.openpty()
    try:
        with trio.fail_after(60):
            process = await trio.lowlevel.open_process(
                command(*args), stdout=-1, stderr=terminal, stdin=-3, cwd=cwd, env=cli_env()
            )
            os.close(terminal)
            terminal = -1
            shown = b""
            while interrupt_after is not None and interrupt_after not in shown:
                await trio.lowlevel.wait_readable(controller)
                shown += os.read(controller, 4096)
            if interrupt_after is not None:
                process.send_signal(signal.SIGINT)
            assert process.stdout is not None
            out = b""
            async for data in process.stdout:
                out += data
            code = await process.wait()
            while True:
                try:
                    data = os.read(controller, 4096)
                except OSError:  # the terminal closed: EIO
                    break
                if not data:
                    break
                shown += data
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    return code, out.decode(), shown.decode()


async def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    code, out, shown = await run_on_a_terminal("speak", TEXT, "-o", "p.wav", *SIGNAL, cwd=tmp_path)
    assert code == 0
    assert "s of audio received in" in shown and "x real time)" in shown
    assert shown.endswith("\r\x1b[K")  # the line is cleared at the end
    assert out.startswith("wrote p.wav")
    code, out, shown = await run_on_a_terminal("speak", TEXT, "-o", "q.wav", "--quiet", *SIGNAL, cwd=tmp_path)
    assert (code, out, shown) == (0, "", "")
    assert (tmp_path / "q.wav").exists()


async def test_ctrl_c_while_speaking_exits_130_and_leaves_the_file(tmp_path: Path) -> None:
    # Long enough that the audio is still coming when the first progress line shows.
    (tmp_path / "long.txt").write_text("This sentence is spoken again and again. " * 400)
    (tmp_path / "keep.wav").write_bytes(b"what was there before")
    code, out, shown = await run_on_a_terminal(
        "speak",
        "-f",
        "long.txt",
        "-o",
        "keep.wav",
        *SIGNAL,
        cwd=tmp_path,
        interrupt_after=b"s of audio received",
    )
    assert code == 130
    # After the cleared progress line, one line: no traceback, no server error.
    assert shown.rsplit("\x1b[K", 1)[1].splitlines() == ["trio-asyncai: interrupted"]
    assert out == ""
    assert names(tmp_path) == ["keep.wav", "long.txt"]
    assert (tmp_path / "keep.wav").read_bytes() == b"what was there before"


FAKE_SOUNDDEVICE = """
import os

class PortAudioError(Exception):
    pass

class RawOutputStream:
    def __init__(self, *, samplerate, channels, dtype):
        if os.environ.get("FAKE_NO_DEVICE"):
            raise PortAudioError("Error querying device -1")
        self.out = open(os.environ["FAKE_PLAYED"], "wb")
        self.out.write(f"{samplerate} {channels} {dtype}\\n".encode())

    def start(self):
        pass

    def write(self, data):
        assert len(data) % 2 == 0
        self.out.write(bytes(data))

    def stop(self):
        self.out.write(b"\\nstopped")

    def close(self):
        self.out.close()
"""


@pytest.fixture
def fake_sounddevice(tmp_path: Path) -> Path:
    """A directory with a stand-in for sounddevice that records what it is asked to play."""
    directory = tmp_path / "fake"
    directory.mkdir()
    (directory / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    return directory


async def test_play(tmp_path: Path, fake_sounddevice: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    played = tmp_path / "played"
    monkeypatch.setenv("FAKE_PLAYED", str(played))
    run = await run_cli("speak", TEXT, "--play", *SIGNAL, cwd=tmp_path, pythonpath=fake_sounddevice)
    assert run.code == 0, run.err
    assert run.out.startswith("played: ")
    assert names(tmp_path) == ["fake", "played"]  # no file without -o
    assert (await run_cli("speak", TEXT, "-o", "ref.raw", *SIGNAL, cwd=tmp_path)).code == 0
    header, audio = played.read_bytes().split(b"\n", 1)
    assert header == b"24000 1 int16"
    assert audio == (tmp_path / "ref.raw").read_bytes() + b"\nstopped"
    # With -o the same audio goes to the file too; mu-law is played decoded.
    run = await run_cli(
        "speak", TEXT, "--play", "-o", "t.wav", "--encoding", "pcm_mulaw", "--sample-rate", "8000",
        *SIGNAL, cwd=tmp_path, pythonpath=fake_sounddevice,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert played.read_bytes().startswith(b"8000 1 int16\n")
    assert (tmp_path / "t.wav").read_bytes()[20:22] == b"\x07\x00"


async def test_play_without_the_extra_or_a_device(
    tmp_path: Path, fake_sounddevice: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "sounddevice.py").write_text("raise ModuleNotFoundError(\"No module named 'sounddevice'\")\n")
    run = await run_cli("speak", TEXT, "--play", *SIGNAL, cwd=tmp_path, pythonpath=missing)
    one_line_error(run, "--play needs the [play] extra: pip install 'trio-asyncai[play]'")
    monkeypatch.setenv("FAKE_NO_DEVICE", "1")
    run = await run_cli(
        "speak", TEXT, "--play", "-o", "x.wav", *SIGNAL, cwd=tmp_path, pythonpath=fake_sounddevice
    )
    one_line_error(run, "--play: no audio output device to play on (Error querying device -1)")
    assert not (tmp_path / "x.wav").exists()


def test_the_console_script_is_declared() -> None:
    # The installed `trio-asyncai` runs the same main as `python -m trio_asyncai`.
    assert 'trio-asyncai = "trio_asyncai._cli:main"' in (ROOT / "pyproject.toml").read_text()
