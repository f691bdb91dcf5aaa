"""The ``trio-asyncai`` command line."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from trio_asyncai._cli import main


@pytest.fixture(autouse=True)
def _no_real_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASYNCAI_API_KEY", "ASYNCAI_BASE_URL", "ASYNCAI_VOICE_ID"):
        monkeypatch.delenv(name, raising=False)


def test_speak_writes_a_wav_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hello.wav"
    code = main(["speak", "Hello from the command line.", "-o", str(out), "--engine", "signal"])
    assert code == 0
    with wave.open(str(out), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 24000
        assert wav.getnframes() > 24000 // 2
    printed = capsys.readouterr().out
    assert str(out) in printed
    assert "time to first audio" in printed
    assert "local server" in printed


def test_speak_honours_sample_rate_and_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An API key is set, but --local keeps us on the local server, and the key
    # is not sent there.
    monkeypatch.setenv("ASYNCAI_API_KEY", "sk_should_not_be_used")
    out = tmp_path / "x.wav"
    assert (
        main(
            ["speak", "Rate check.", "-o", str(out), "--local", "--sample-rate", "8000", "--engine", "signal"]
        )
        == 0
    )
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 8000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["speak", "   "], "text must not be empty"),
        (["speak", "hi", "--sample-rate", "5"], "sample_rate must be from 8000"),
        (["speak", "hi", "--voice", "no-such-voice"], "VOICE_NOT_FOUND"),
    ],
)
def test_errors_are_one_line_on_stderr(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "-o", str(tmp_path / "e.wav"), "--engine", "signal"])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("trio-asyncai: error:")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["speak"])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err
