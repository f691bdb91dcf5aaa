"""Running the ``trio-asyncai`` command as users do: ``python -m trio_asyncai`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import trio

ROOT = Path(__file__).resolve().parent.parent
#: A bound for one command; each takes well under a second here.
TIMEOUT = 60


@attrs.frozen
class Run:
    code: int
    out: str
    err: str


def cli_env(*, pythonpath: Path | None = None) -> dict[str, str]:
    """The environment of a user with no key: this checkout first on the path, default logging."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCAI_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (pythonpath, ROOT) if p is not None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_asyncai", *args]


async def run_cli(
    *args: str, stdin: bytes = b"", cwd: Path | None = None, pythonpath: Path | None = None
) -> Run:
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            command(*args),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env=cli_env(pythonpath=pythonpath),
        )
    return Run(result.returncode, result.stdout.decode(), result.stderr.decode())


def one_line_error(run: Run, message: str) -> None:
    """Exit code 1 and exactly one line on standard error, holding ``message``."""
    assert run.code == 1, run
    assert run.err.startswith("trio-asyncai: error: "), run.err
    assert run.err.count("\n") == 1 and run.err.endswith("\n"), run.err
    assert message in run.err, run.err


__all__ = ["ROOT", "TIMEOUT", "Run", "cli_env", "command", "one_line_error", "run_cli", "subprocess"]
