"""Development sessions: ``nox`` runs lint, typecheck, tests and docs; ``bench``, ``soak``, ``thorough``,
``fuzz`` and more on request.

Each session installs what it needs from the extras in ``pyproject.toml``
into its own virtual environment under ``.nox/``. Arguments after ``--`` go
to the session's tool, e.g. ``nox -s tests -- -k interrupt -x``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.needs_version = ">=2024.3"
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


def _requirement(extra: str, name: str) -> str:
    """The requirement for ``name`` as the ``extra`` in pyproject.toml pins it."""
    pyproject = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text("utf-8"))
    for requirement in pyproject["project"]["optional-dependencies"][extra]:
        if re.split(r"[^A-Za-z0-9._-]", requirement, maxsplit=1)[0].lower() == name:
            return str(requirement)
    raise LookupError(f"no {name!r} in the {extra!r} extra")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against the local server (pytest-trio)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Lint with ruff (``ruff check``). Needs only ruff, not the project."""
    session.install(_requirement("lint", "ruff"))
    session.run("ruff", "check", *(session.posargs or ["."]))


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check with mypy --strict (the paths are in ``[tool.mypy]``)."""
    # nox itself too: this file is among the paths mypy checks.
    session.install("-e", ".[lint]", _requirement("dev", "nox"))
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML docs with warnings as errors, into ``docs/_build/html``."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the synthesizer benchmarks against the local server (signal engine)."""
    session.install("-e", ".[server]")
    session.run("python", "benchmarks/bench_synthesizer.py", *session.posargs)


@nox.session(python=PYTHON, name="bench-compare")
def bench_compare(session: nox.Session) -> None:
    """trio-asyncai side by side with minimal raw clients and pipecat's Async services (long).

    Installs the floor's libraries (websockets, aiohttp) and pipecat from the
    package registry, then runs ``benchmarks/compare.py``; ``nox -s
    bench-compare -- --runs 5 --rst docs/benchmarks_compare.rst`` writes the
    table the docs include.
    """
    session.install("-e", ".[server]", "websockets", "aiohttp", "pipecat-ai[asyncai]")
    session.run("python", "benchmarks/compare.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Utterances with random barge-ins, checked byte for byte, on both transports (long; not run by default).

    ``nox -s soak -- --minutes 10`` for a longer run; the arguments go to both transports.
    """
    session.install("-e", ".[server]")
    args = session.posargs or ["--minutes", "2"]
    session.run("python", "benchmarks/soak.py", "--transport", "websocket", *args)
    session.run("python", "benchmarks/soak.py", "--transport", "http", *args)


@nox.session(python=PYTHON)
def thorough(session: nox.Session) -> None:
    """The test suite with each hypothesis test's own example count, not the quick default's 50 at most."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"TRIO_ASYNCAI_HYPOTHESIS": "thorough"})


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The protocol core's, quota scanner's and aggregator's hypothesis tests, 100,000 examples each."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "tests/test_protocol.py",
        "tests/test_aggregator.py",
        *session.posargs,
        env={"TRIO_ASYNCAI_HYPOTHESIS": "fuzz"},
    )
