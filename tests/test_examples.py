"""The documentation's example programs run, as a reader would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted([*(ROOT / "docs" / "examples").glob("*.py"), *(ROOT / "examples").glob("*.py")])


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_runs(script: Path, tmp_path: Path) -> None:
    # PYTHONPATH: the examples run against this checkout, not whatever copy is installed.
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "error::ResourceWarning", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
    assert "Traceback" not in result.stderr


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5
