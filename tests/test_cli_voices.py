"""``trio-asyncai voices``, in this process: listing, filters, show, and clone/delete against a server.

``trio-asyncai serve`` and its Ctrl+C are in test_cli_process.py.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from cli_run import Cli, one_line_error, server_in_thread

from trio_asyncai.server import DEFAULT_VOICE_ID

VOICES = {
    "8c073dae-43c8-5e05-821f-02afb21cf2ec": "Joe",
    "dfa20ed4-1bc0-58c8-9523-acf9e2b45fb9": "Joe Calm",
    "f5100b6c-d513-537f-84c3-b2b57be6d606": "Joe Bright",
}


def test_voices_as_a_table_and_json(cli: Cli) -> None:
    table = cli("voices")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["VOICE", "ID", "NAME", "LANGUAGE", "GENDER", "ACCENT", "STYLE", "TYPE"]
    assert [line.split()[0] for line in lines[1:]] == list(VOICES)
    # The bare command takes every option of ``voices list``.
    as_json = cli("voices", "--json")
    assert {v["voice_id"]: v["name"] for v in json.loads(as_json.out)} == VOICES, as_json.err
    calm = cli("voices", "--style", "calm", "--json")
    assert [v["name"] for v in json.loads(calm.out)] == ["Joe Calm"], calm.err


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--style", "calm"], ["Joe Calm"]),
        (["--gender", "male", "--language", "en-US", "--accent", "American"], list(VOICES.values())),
        (["--gender", "female"], []),
        (["--mine"], []),
        (["--predefined", "--limit", "2"], ["Joe", "Joe Calm"]),
    ],
)
def test_voices_filters(filters: list[str], expected: list[str], cli: Cli) -> None:
    run = cli("voices", "list", "--json", *filters)
    assert run.code == 0, run.err
    assert [v["name"] for v in json.loads(run.out)] == expected


def test_voices_show(cli: Cli) -> None:
    run = cli("voices", "show", DEFAULT_VOICE_ID)
    assert run.code == 0
    fields = dict(line.split(":", 1) for line in run.out.splitlines())
    assert fields["voice_id"].strip() == DEFAULT_VOICE_ID
    assert fields["voice_type"].strip() == "PREDEFINED"


def write_sample(path: Path, seconds: float = 4.0) -> None:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


def test_clone_list_delete_against_a_server(tmp_path: Path, cli: Cli) -> None:
    sample = tmp_path / "me.wav"
    write_sample(sample)
    with server_in_thread(engine="signal") as server:
        at = ("--base-url", server.url)
        cloned = cli("voices", "clone", str(sample), "--name", "Me", "--style", "calm", "--json", *at)
        assert cloned.code == 0, cloned.err
        voice = json.loads(cloned.out)
        assert (voice["name"], voice["voice_type"]) == ("Me", "CUSTOM")
        mine = cli("voices", "list", "--mine", *at)
        assert [line.split()[0] for line in mine.out.splitlines()[1:]] == [voice["voice_id"]]
        spoken = cli("speak", "Cloned.", "--voice", voice["voice_id"], "-o", str(tmp_path / "c.wav"), *at)
        assert spoken.code == 0, spoken.err
        deleted = cli("voices", "delete", voice["voice_id"], *at)
        assert (deleted.code, deleted.out) == (0, f"deleted {voice['voice_id']}\n")
        one_line_error(cli("voices", "show", voice["voice_id"], *at), "404 VOICE_NOT_FOUND")
        one_line_error(cli("voices", "delete", DEFAULT_VOICE_ID, *at), "INVALID_REQUEST")
        one_line_error(
            cli("voices", "clone", "nothing.wav", "--name", "X", *at, cwd=tmp_path),
            "No such file or directory",
        )


def test_clone_shows_what_was_stored(tmp_path: Path, cli: Cli) -> None:
    # The service answers a clone with id, name, description and language only.
    sample = tmp_path / "me.wav"
    write_sample(sample)
    with server_in_thread(engine="signal") as server:
        cloned = cli(
            "voices", "clone", str(sample), "--name", "Me", "--gender", "female", "--accent", "british",
            "--style", "calm,narration", "--json", "--base-url", server.url,
        )  # fmt: skip
    assert cloned.code == 0, cloned.err
    voice = json.loads(cloned.out)
    assert (voice["gender"], voice["accent"], voice["style"]) == ("Female", "british", "calm,narration")
    assert cloned.err == ""  # a server that keeps it: no note


def test_clone_in_a_server_of_its_own_says_the_voice_is_gone(tmp_path: Path, cli: Cli) -> None:
    sample = tmp_path / "me.wav"
    write_sample(sample)
    cloned = cli("voices", "clone", str(sample), "--name", "Me")
    assert cloned.code == 0, cloned.err
    assert "name:" in cloned.out
    assert cloned.err.startswith("trio-asyncai: note: this voice lives in a local server started for this")
    assert "clone against 'trio-asyncai serve' (--base-url) to keep it" in cloned.err


def test_clone_of_a_missing_file_is_one_line(cli: Cli) -> None:
    one_line_error(
        cli("voices", "clone", "/nowhere.wav", "--name", "X"),
        "error: cannot read /nowhere.wav: No such file or directory",
    )


def test_an_unknown_action_lists_the_actions(cli: Cli) -> None:
    run = cli("voices", "shw", DEFAULT_VOICE_ID)
    assert run.code == 2
    assert "invalid choice: 'shw' (choose from 'list', 'show', 'clone', 'delete')" in run.err


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_a_limit_below_one_is_a_usage_error(limit: str, cli: Cli) -> None:
    run = cli("voices", "list", "--limit", limit)
    assert run.code == 2
    assert "argument --limit:" in run.err
