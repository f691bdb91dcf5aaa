"""Running the ``trio-asyncai`` command in tests.

In this process (:class:`Cli`, the ``cli`` fixture): ``main()`` with the
standard streams, the working directory and the environment of a user's
shell patched in. A subprocess (:func:`run_process`, ``python -m
trio_asyncai``) only for what a process alone shows: the entry point, the
exit status, signals and a real terminal.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
import trio
from helpers import TIMEOUT

from trio_asyncai import _cli
from trio_asyncai.server import LocalServer, open_local_server

__all__ = [
    "ROOT",
    "Cli",
    "Run",
    "cli_env",
    "command",
    "names",
    "one_line_error",
    "run_process",
    "server_in_thread",
]

ROOT = Path(__file__).resolve().parent.parent
#: The variables that would send the command to the real service.
SERVICE_VARIABLES = ("ASYNCAI_API_KEY", "ASYNCAI_BASE_URL", "ASYNCAI_VOICE_ID")


@attrs.frozen
class Run:
    code: int
    stdout: bytes
    err: str
    #: Log records at WARNING and above. With logging left as it is, Python's
    #: last-resort handler prints each on standard error: in a process, a line
    #: more there. (Always empty for a subprocess, whose ``err`` has them.)
    logged: tuple[str, ...] = ()

    @property
    def out(self) -> str:
        return self.stdout.decode()


class _Terminal(io.StringIO):
    """Standard error as a terminal: what the command shows only there, it writes here."""

    def isatty(self) -> bool:
        return True


class Cli:
    """``main()`` in this process, as a user's shell would run the command."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capture: pytest.CaptureFixture[bytes],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        self._monkeypatch = monkeypatch
        self._capture = capture
        self._caplog = caplog
        for name in SERVICE_VARIABLES:  # a user with no key: the local server
            monkeypatch.delenv(name, raising=False)

    def __call__(
        self,
        *args: str,
        stdin: bytes = b"",
        cwd: Path | None = None,
        terminal: bool = False,
        sounddevice: ModuleType | None = None,
    ) -> Run:
        """Run ``trio-asyncai ARGS``: its exit code, standard output, and standard error (the
        terminal's, with ``terminal``). ``sounddevice`` stands in for the module of that name
        (None: the [play] extra is not installed)."""
        self._capture.readouterr()
        self._caplog.clear()
        bounded = _bounded(_cli._run_until_interrupted)
        with self._monkeypatch.context() as patch:
            patch.setattr(_cli, "_run_until_interrupted", bounded)
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
            patch.setitem(sys.modules, "sounddevice", sounddevice)
            shown = _Terminal()
            if terminal:
                patch.setattr(sys, "stderr", shown)
            if cwd is not None:
                patch.chdir(cwd)
            try:
                code = _cli.main(list(args))
            except SystemExit as exc:  # argparse: usage errors, --version
                assert isinstance(exc.code, int | None), exc.code
                code = exc.code or 0
        captured = self._capture.readouterr()
        err = shown.getvalue() if terminal else captured.err.decode()
        logged = tuple(r.getMessage() for r in self._caplog.records if r.levelno >= logging.WARNING)
        return Run(code, captured.out, err, logged)


def _bounded(run: Any) -> Any:
    """``_run_until_interrupted`` within the suite's bound, so that no command can hang a test."""

    async def bounded(module: ModuleType, args: Any) -> int:
        with trio.fail_after(TIMEOUT):
            code: int = await run(module, args)
            return code

    return bounded


def names(directory: Path) -> list[str]:
    """The names in ``directory``, sorted: to check that a command left no file behind."""
    return sorted(p.name for p in directory.iterdir())


def one_line_error(run: Run, message: str) -> None:
    """Exit code 1 and exactly one line on standard error, holding ``message``."""
    assert run.code == 1, run
    assert run.err.startswith("trio-asyncai: error: "), run.err
    assert run.err.count("\n") == 1 and run.err.endswith("\n"), run.err
    assert message in run.err, run.err
    assert run.logged == (), run.logged  # a log record would be a second line


@contextmanager
def server_in_thread(**options: Any) -> Iterator[LocalServer]:
    """A local server on a trio loop in a thread of its own: for code that calls ``trio.run`` itself."""
    started: queue.Queue[tuple[LocalServer, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )

    async def serve() -> None:
        try:
            async with open_local_server(**options) as server:
                stop = trio.Event()
                started.put((server, trio.lowlevel.current_trio_token(), stop))
                await stop.wait()
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(serve,), name="local server")
    thread.start()
    try:
        got = started.get(timeout=TIMEOUT)
        if isinstance(got, BaseException):
            raise RuntimeError("the local server did not start") from got
        server, token, stop = got
        yield server
        trio.from_thread.run_sync(stop.set, trio_token=token)
    finally:
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def cli_env() -> dict[str, str]:
    """The environment of a user with no key: this checkout first on the path, default logging."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCAI_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_asyncai", *args]


async def run_process(*args: str, cwd: Path | None = None) -> Run:
    """``python -m trio_asyncai ARGS`` in a subprocess."""
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            command(*args),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env=cli_env(),
        )
    return Run(result.returncode, result.stdout, result.stderr.decode())
