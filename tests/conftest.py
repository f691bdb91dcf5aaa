"""Fixtures shared by the test suite: the project's own local server (on 127.0.0.1, port 0), the
jumping clock, the piper voice, the command line in-process; and the hypothesis profiles.

Helpers that are not fixtures are in ``helpers.py`` (and ``server/helpers.py``, ``cli_run.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import hypothesis
import pytest
import trio
import trio.testing
from cli_run import Cli

from trio_asyncai.server import LocalServer, PiperEngine, open_local_server, piper_available

# Hypothesis profiles, chosen with TRIO_ASYNCAI_HYPOTHESIS:
#   fast (the default, ``python -m pytest``): at most FAST_EXAMPLES a test;
#   thorough (``nox -s thorough``): the count each test's ``@settings`` names
#     (hypothesis' 100 where it names none);
#   fuzz (``nox -s fuzz``): FUZZ_EXAMPLES every test, whatever it names.
# None has a deadline: how long an example takes is no test's business.
FAST_EXAMPLES = 50
FUZZ_EXAMPLES = 100_000
hypothesis.settings.register_profile("fast", max_examples=FAST_EXAMPLES, deadline=None)
hypothesis.settings.register_profile("thorough", deadline=None)
hypothesis.settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None)
_PROFILE = os.environ.get("TRIO_ASYNCAI_HYPOTHESIS") or "fast"
hypothesis.settings.load_profile(_PROFILE)


def _examples(own: int) -> int:
    """How many examples a test whose ``@settings`` names ``own`` runs under the profile."""
    if _PROFILE == "fast":
        return min(own, FAST_EXAMPLES)
    if _PROFILE == "fuzz":
        return FUZZ_EXAMPLES
    return own


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Apply the profile's count to the tests whose ``@settings`` names their own (it would win)."""
    for item in items:
        test = getattr(item, "obj", None)
        # hypothesis reads a @given test's settings from this attribute as it runs.
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(own, hypothesis.settings) and own.max_examples != _examples(own.max_examples):
            test._hypothesis_internal_use_settings = hypothesis.settings(  # type: ignore[union-attr]
                own, max_examples=_examples(own.max_examples), deadline=None
            )


@pytest.fixture
def jump_clock() -> trio.testing.MockClock:
    """A clock that jumps ahead when every task has waited 20 ms of real time.

    Lets keepalive, idle-timeout and backoff tests run their minutes of trio
    time in milliseconds, while loopback I/O still gets the real time it needs.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture(scope="session")
def piper() -> PiperEngine:
    """The real offline voice, loaded once for the run (once a worker; loading takes about a second)."""
    if not piper_available():
        pytest.skip("the [voice] extra (piper) is not installed")
    engine = PiperEngine()
    engine.preload()
    return engine


@pytest.fixture
def server_api_key() -> str | None:
    """The key the ``server`` fixture asks for: none here (any key, or none, is accepted).

    The server tests (``server/conftest.py``) set one, to check that it is asked for.
    """
    return None


@pytest.fixture
async def server(server_api_key: str | None) -> AsyncIterator[LocalServer]:
    """A local server with the instant, deterministic signal engine (24 kHz) and no idle timeout."""
    async with open_local_server(api_key=server_api_key, engine="signal", idle_timeout=None) as srv:
        yield srv


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    caplog: pytest.LogCaptureFixture,
) -> Cli:
    """Run the ``trio-asyncai`` command in this process, as a user with no API key would."""
    return Cli(monkeypatch, capsysbinary, caplog)
