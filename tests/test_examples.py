"""The documentation's example programs run, as a reader would run them.

Each runs in this process (as ``__main__``, in a thread of its own since it
calls ``trio.run`` itself, from an empty working directory); one of them
runs in an interpreter of its own too, as ``python hello_wav.py`` does.
"""

from __future__ import annotations

import gc
import runpy
import sys
from pathlib import Path

import pytest
import trio
from cli_run import ROOT
from helpers import TIMEOUT

from trio_asyncai.server import Engine, load_engine, piper_available

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: The one run in an interpreter of its own: the first one a reader meets.
IN_A_PROCESS = ROOT / "examples" / "hello_wav.py"


def test_the_examples_have_one_home() -> None:
    # Every example is in examples/, and every one is shown in the docs.
    assert len(EXAMPLES) == 8
    assert not (ROOT / "docs" / "examples").exists()
    docs = "".join(page.read_text() for page in (ROOT / "docs").glob("*.rst"))
    assert [e.name for e in EXAMPLES if f"literalinclude:: ../examples/{e.name}" not in docs] == []


@pytest.fixture
def voice_loaded_once(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """The examples' local servers get the piper voice loaded once for the run, not once each."""
    if not piper_available():
        return  # they speak with the generated signal, as a reader's would
    piper: Engine = request.getfixturevalue("piper")

    def loaded(name: str = "auto") -> Engine:
        return piper if name.strip().lower() in ("auto", "piper") else load_engine(name)

    # Where open_local_server looks an engine's name up.
    monkeypatch.setattr("trio_asyncai.server._app.load_engine", loaded)


def _run_as_main(script: Path) -> None:
    runpy.run_path(str(script), run_name="__main__")


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.usefixtures("voice_loaded_once")
async def test_example_runs(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script)])
    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(_run_as_main, script, abandon_on_cancel=True)
    # What the example left unclosed warns now, and fails the test (filterwarnings = error).
    gc.collect()
    out, err = capsys.readouterr()
    assert out.strip(), "the example printed nothing"
    assert "Traceback" not in err


async def test_an_example_runs_in_an_interpreter_of_its_own(tmp_path: Path) -> None:
    # PYTHONPATH: this checkout, not whichever one the editable install points at.
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "error::ResourceWarning", "PYTHONPATH": str(ROOT)}
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, str(IN_A_PROCESS)],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
    assert "Traceback" not in stderr
    assert (tmp_path / "hello.wav").stat().st_size > 44  # more than a WAV header


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5
    assert IN_A_PROCESS in EXAMPLES
