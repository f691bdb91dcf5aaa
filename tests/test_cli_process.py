"""The ``trio-asyncai`` command in a subprocess, for what only a process shows: the entry point
(``python -m trio_asyncai``, the same ``main`` as the console script), exit statuses, Ctrl+C.

Everything else about the command runs in this process (test_cli*.py).
"""

from __future__ import annotations

import os
import pty
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from cli_run import cli_env, command, names, one_line_error, run_process
from helpers import TIMEOUT

from trio_asyncai import __version__
from trio_asyncai.server import DEFAULT_VOICE_ID

SIGNAL = ("--engine", "signal")


async def test_the_entry_point_runs_main() -> None:
    run = await run_process("--version")
    assert (run.code, run.out) == (0, f"trio-asyncai {__version__}\n")


async def test_exit_statuses(tmp_path: Path) -> None:
    # An error: status 1 and one line, with logging as a user has it (a log record would be a line more).
    run = await run_process("speak", "Hi.", "--voice", "no-such-voice", *SIGNAL, cwd=tmp_path)
    one_line_error(run, "404 VOICE_NOT_FOUND: voice 'no-such-voice' not found")
    # A usage error: argparse's status 2.
    run = await run_process("speak", cwd=tmp_path)
    assert run.code == 2
    assert "give the text as TEXT, with -f FILE, or as -" in run.err
    assert names(tmp_path) == []


async def on_a_terminal_until(
    shown_first: bytes, *args: str, cwd: Path, signum: int = signal.SIGINT
) -> tuple[int, str, str]:
    """Run with standard error on a pseudo-terminal, and send ``signum`` (Ctrl+C: SIGINT) once it
    shows ``shown_first``: (exit code, stdout, what the terminal got)."""
    controller, terminal = pty.openpty()
    try:
        with trio.fail_after(TIMEOUT):
            process = await trio.lowlevel.open_process(
                command(*args), stdout=-1, stderr=terminal, stdin=-3, cwd=cwd, env=cli_env()
            )
            os.close(terminal)
            terminal = -1
            shown = b""
            while shown_first not in shown:
                await trio.lowlevel.wait_readable(controller)
                shown += os.read(controller, 4096)
            process.send_signal(signum)
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


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGINT, 130, "trio-asyncai: interrupted"),
        (signal.SIGTERM, 143, "trio-asyncai: terminated"),
        (signal.SIGHUP, 129, "trio-asyncai: hung up"),
    ],
)
async def test_a_stop_signal_while_speaking_leaves_the_file(
    signum: int, code: int, line: str, tmp_path: Path
) -> None:
    # Long enough that the audio is still coming when the first progress line shows.
    (tmp_path / "long.txt").write_text("This sentence is spoken again and again. " * 400)
    (tmp_path / "keep.wav").write_bytes(b"what was there before")
    got, out, shown = await on_a_terminal_until(
        b"s of audio received",
        "speak",
        "-f",
        "long.txt",
        "-o",
        "keep.wav",
        *SIGNAL,
        cwd=tmp_path,
        signum=signum,
    )
    assert got == code
    # After the cleared progress line, one line: no traceback, no server error.
    assert shown.rsplit("\x1b[K", 1)[1].splitlines() == [line]
    assert out == ""
    assert names(tmp_path) == ["keep.wav", "long.txt"]
    assert (tmp_path / "keep.wav").read_bytes() == b"what was there before"


@attrs.define
class Served:
    process: trio.Process
    url: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """``trio-asyncai serve`` on a free port, stopped with Ctrl+C (SIGINT) at the end."""
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command("serve", "--port", "0", *SIGNAL), stdout=-1, stderr=-1, stdin=-3, env=cli_env()
        )
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some()
                assert data, "serve ended before it announced its URL"
                line += data
            head = line.partition(b"\n")[0]
            url = head.decode().split(" on ", 1)[1].split(" ", 1)[0]
            yield Served(process, url)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await process.wait()


LONG_TEXT = "This sentence is in flight when the server is told to stop. " * 8


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
async def test_serve_stops_gracefully_on_a_stop_signal(
    signum: int, code: int, word: str, served: Served
) -> None:
    body = {
        "model_id": "async_flash_v1.5",
        "transcript": LONG_TEXT,
        "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
    }
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=served.url, headers={"version": "v1"}) as http:
            whole = await http.post("/text_to_speech/streaming", json=body)
            assert whole.status_code == 200
            async with http.stream("POST", "/text_to_speech/streaming", json=body) as response:
                chunks = response.aiter_raw()
                got = await chunks.__anext__()
                served.process.send_signal(signum)  # Ctrl+C or kill, with a request in flight
                async for chunk in chunks:
                    got += chunk
        got_code = await served.process.wait()
        assert served.process.stderr is not None
        err = b""
        async for data in served.process.stderr:
            err += data
    assert got == whole.content  # the request in flight finished, whole
    assert got_code == code
    assert err.decode() == f"trio-asyncai: {word}: the server has stopped\n"


async def test_a_closed_pipe_ends_speak_quietly(tmp_path: Path) -> None:
    # `trio-asyncai speak ... -o - | head -c 1000`: no "Broken pipe", no "Exception ignored".
    text = "A text long enough to fill the pipe. " * 40
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command("speak", text, "-o", "-", "--format", "raw", *SIGNAL),
            stdout=-1, stderr=-1, stdin=-3, cwd=tmp_path, env=cli_env(),
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        got = b""
        while len(got) < 1000:
            got += await process.stdout.receive_some(1000 - len(got))
        await process.stdout.aclose()  # head has what it wanted
        err = b""
        async for data in process.stderr:
            err += data
        code = await process.wait()
    assert (code, err.decode()) == (141, "")
