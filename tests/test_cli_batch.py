"""``trio-asyncai batch`` as users run it, in this process: inputs, files, the manifest, resuming,
failing rows, rate limits, a fatal error, the progress bar; and Ctrl+C, in a subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import wave
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cli_run import Cli, cli_env, command, names, one_line_error, run_process, server_in_thread
from helpers import TIMEOUT

from trio_asyncai import QuotaExceededError, RateLimitError, ServerError, VoiceCloneLimitError
from trio_asyncai._cli._batch import with_retries
from trio_asyncai._retry import Backoff
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer, SignalEngine

SIGNAL = ("--engine", "signal")
TEXTS = ("Welcome to the line.", "Press one for sales.", "Press two for support.")
#: The files the text input makes: ids from the line numbers (line 2 is blank).
TXT_FILES = ("0001.wav", "0003.wav", "0004.wav")
CALM, BRIGHT = (v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        return wav.readframes(wav.getnframes())


def manifest(directory: Path) -> list[dict[str, Any]]:
    """The manifest's entries, in order, each checked to be alone on its line."""
    lines = (directory / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def write_inputs(tmp_path: Path) -> None:
    """The same three rows as text, CSV and JSON lines."""
    (tmp_path / "rows.txt").write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\n{TEXTS[2]}\n", encoding="utf-8")
    csv_rows = "".join(f'{n},"{text}"\n' for n, text in zip(("a", "b", "c"), TEXTS, strict=True))
    (tmp_path / "rows.csv").write_text("id,text\n" + csv_rows, encoding="utf-8")
    jsonl = "".join(
        json.dumps({"id": n, "text": text}) + "\n" for n, text in zip(("a", "b", "c"), TEXTS, strict=True)
    )
    (tmp_path / "rows.jsonl").write_text(jsonl, encoding="utf-8")


@pytest.mark.parametrize(
    ("source", "files"),
    [
        ("rows.txt", TXT_FILES),
        ("rows.csv", ("a.wav", "b.wav", "c.wav")),
        ("rows.jsonl", ("a.wav", "b.wav", "c.wav")),
    ],
)
def test_each_row_into_its_file(source: str, files: tuple[str, ...], tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    run = cli("batch", source, "-o", "out", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.err == ""  # not a terminal: no progress bar
    assert run.out.startswith("3 done, 0 skipped, 0 failed: ")
    assert run.out.endswith(" into out from the local server (signal voice)\n")
    out = tmp_path / "out"
    assert names(out) == sorted([*files, "manifest.jsonl"])
    engine = SignalEngine()
    entries = manifest(out)
    assert [e["file"] for e in entries] == list(files)
    assert [e["id"] for e in entries] == [f.removesuffix(".wav") for f in files]
    for entry, text in zip(entries, TEXTS, strict=True):
        audio = frames(out / entry["file"])
        assert len(audio) == 2 * engine.samples_for(text)
        assert entry["seconds"] == round(len(audio) / 48000, 3)
        assert entry["bytes"] == (out / entry["file"]).stat().st_size
        assert entry["characters"] == len(text)
        assert entry["ttfb"] > 0
        assert (entry["error"], entry["attempts"]) == (None, 1)


def test_standard_input_needs_its_format(tmp_path: Path, cli: Cli) -> None:
    rows = b'{"text": "From standard input."}\n'
    run = cli("batch", "-", "-o", "out", *SIGNAL, stdin=rows, cwd=tmp_path)
    assert run.code == 2
    assert "say how with --input-format txt, csv or jsonl" in run.err
    run = cli("batch", "-", "--input-format", "jsonl", "-o", "out", *SIGNAL, stdin=rows, cwd=tmp_path)
    assert run.code == 0, run.err
    assert [e["file"] for e in manifest(tmp_path / "out")] == ["0001.wav"]


def test_a_second_run_skips_what_is_complete_and_redoes_the_rest(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    out = tmp_path / "out"
    assert cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    first = {name: (out / name).read_bytes() for name in TXT_FILES}
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    assert (run.code, run.out) == (0, "0 done, 3 skipped, 0 failed: out is up to date\n")
    # Deleted, truncated, and a changed text: all three redone.
    (out / "0001.wav").unlink()
    with open(out / "0003.wav", "r+b") as file:
        file.truncate(1000)
    (tmp_path / "rows.txt").write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\nPress nine.\n", encoding="utf-8")
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.out.startswith("3 done, 0 skipped, 0 failed: ")
    assert (out / "0001.wav").read_bytes() == first["0001.wav"]
    assert (out / "0003.wav").read_bytes() == first["0003.wav"]
    assert len(frames(out / "0004.wav")) == 2 * SignalEngine().samples_for("Press nine.")
    assert len(manifest(out)) == 3  # rewritten: one entry a file
    # A WAV file of the right size whose header says another length is not complete either.
    data = bytearray((out / "0001.wav").read_bytes())
    data[40:44] = (1000).to_bytes(4, "little")
    (out / "0001.wav").write_bytes(bytes(data))
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    assert run.out.startswith("1 done, 2 skipped, 0 failed: ")
    assert (out / "0001.wav").read_bytes() == first["0001.wav"]
    # --force redoes everything.
    run = cli("batch", "rows.txt", "-o", "out", "--force", *SIGNAL, cwd=tmp_path)
    assert run.out.startswith("3 done, 0 skipped, 0 failed: ")
    assert names(out) == [*TXT_FILES, "manifest.jsonl"]


def test_a_changed_setting_redoes_the_row(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "rows.csv").write_text("id,text\nhi,Hello there.\n", encoding="utf-8")
    assert cli("batch", "rows.csv", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    run = cli("batch", "rows.csv", "-o", "out", "--voice", CALM, *SIGNAL, cwd=tmp_path)
    assert run.out.startswith("1 done, 0 skipped, 0 failed: ")
    run = cli("batch", "rows.csv", "-o", "out", "--voice", CALM, *SIGNAL, cwd=tmp_path)
    assert run.out.startswith("0 done, 1 skipped, 0 failed")
    # A speed of 1.0 is the service's default: the same audio, nothing to redo. (The model
    # honours no speed: the command says so.)
    run = cli("batch", "rows.csv", "-o", "out", "--voice", CALM, "--speed", "1.0", *SIGNAL, cwd=tmp_path)
    assert run.out.startswith("0 done, 1 skipped, 0 failed")
    assert run.err == (
        "trio-asyncai: note: the service honours speeds and --stability with async_flash_v1.0 only, "
        "not async_flash_v1.5\n"
    )
    run = cli(
        "batch", "rows.csv", "-o", "out", "--voice", CALM, "--sample-rate", "16000", *SIGNAL, cwd=tmp_path
    )
    assert run.out.startswith("1 done, 0 skipped, 0 failed: ")


def test_rows_with_settings_of_their_own_run_at_once(tmp_path: Path, cli: Cli) -> None:
    text = "The same words, said four ways."
    rows: list[dict[str, Any]] = [
        {"id": "calm", "text": text, "voice": CALM},
        {"id": "bright", "text": text, "voice": BRIGHT},
        {"id": "calm-fast", "text": text, "voice": CALM, "speed": 2},
        {"id": "default", "text": text},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    flash = ("--model", "async_flash_v1.0")
    for transport in ([], ["--http"]):
        run = cli(
            "batch",
            "rows.jsonl",
            "-o",
            "out",
            "--jobs",
            "4",
            "--force",
            *flash,
            *transport,
            *SIGNAL,
            cwd=tmp_path,
        )
        assert run.code == 0, run.err
        # Each file is what `speak` makes with the row's settings.
        for row in rows:
            settings = ["--voice", row.get("voice", DEFAULT_VOICE_ID)]
            if "speed" in row:
                settings += ["--speed", str(row["speed"])]
            speak = cli("speak", text, "-o", "ref.wav", *flash, *settings, *SIGNAL, cwd=tmp_path)
            assert speak.code == 0, speak.err
            assert (tmp_path / "out" / f"{row['id']}.wav").read_bytes() == (tmp_path / "ref.wav").read_bytes()
    assert len({(tmp_path / "out" / f"{row['id']}.wav").read_bytes() for row in rows}) == 4


def test_raw_and_mp3_files(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    run = cli("batch", "rows.csv", "-o", "out", "--format", "raw", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert len((tmp_path / "out" / "a.raw").read_bytes()) == 2 * SignalEngine().samples_for(TEXTS[0])
    run = cli("batch", "rows.csv", "-o", "out", "--format", "mp3", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert " bytes of mp3 audio at 24000 Hz" in run.out
    mp3 = (tmp_path / "out" / "a.mp3").read_bytes()
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0
    entries = {e["file"]: e for e in manifest(tmp_path / "out")}
    assert len(entries) == 6  # the raw files' entries are kept
    assert entries["a.mp3"]["seconds"] is None and entries["a.mp3"]["bytes"] == len(mp3)
    # Telephony: mu-law asked for, written decoded to 16-bit PCM with --pcm16.
    telephony = ("--encoding", "pcm_mulaw", "--sample-rate", "8000", "--pcm16")
    run = cli("batch", "rows.csv", "-o", "tel", *telephony, *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert " s of pcm_s16le audio at 8000 Hz into tel " in run.out
    with wave.open(str(tmp_path / "tel" / "a.wav"), "rb") as wav:
        assert (wav.getsampwidth(), wav.getframerate()) == (2, 8000)
        assert wav.getnframes() == SignalEngine().samples_for(TEXTS[0]) // 3
    run = cli("batch", "rows.csv", "-o", "out", "--format", "mp3", "--encoding", "pcm_mulaw", cwd=tmp_path)
    assert run.code == 2
    assert "--encoding applies to wav and raw output, not mp3" in run.err


def test_a_failing_row_fails_alone(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "rows.csv").write_text(
        "id,text,voice\nwelcome,Welcome.,\nsales,Press one.,no-such-voice\nsupport,Press two.,\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    run = cli("batch", "rows.csv", "-o", "out", *SIGNAL, cwd=tmp_path)
    one_line_error(run, f"1 of 3 rows failed: sales (see {os.path.join('out', 'manifest.jsonl')})")
    assert run.out.startswith("2 done, 0 skipped, 1 failed: ")
    assert names(out) == ["manifest.jsonl", "support.wav", "welcome.wav"]
    entries = {e["id"]: e for e in manifest(out)}
    assert entries["sales"]["error"] == "404 VOICE_NOT_FOUND: voice 'no-such-voice' not found"
    assert entries["sales"]["bytes"] is None
    assert entries["welcome"]["error"] is entries["support"]["error"] is None
    # The next run redoes the failed row only.
    (tmp_path / "rows.csv").write_text(
        "id,text,voice\nwelcome,Welcome.,\nsales,Press one.,\nsupport,Press two.,\n", encoding="utf-8"
    )
    run = cli("batch", "rows.csv", "-o", "out", *SIGNAL, cwd=tmp_path)
    assert (run.code, run.err) == (0, "")
    assert run.out.startswith("1 done, 2 skipped, 0 failed: ")
    assert [e["error"] for e in manifest(out)] == [None, None, None]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.csv", "id,text\na,Hello.\nb,\n", "rows.csv line 3: no text"),
        ("rows.csv", "id,words\na,Hello.\n", "rows.csv line 1: the header has no text column (id, words)"),
        ("rows.csv", "text,speed\nHello.,fast\n", "rows.csv line 2: bad speed 'fast': not a number"),
        (
            "rows.csv",
            "text,speed\nHello.,3\n",
            "rows.csv line 2: bad speed '3': speed_control must be from 0.7 to 2.0, not 3.0",
        ),
        (
            "rows.jsonl",
            '{"text": "Hi.", "speed": 3}\n',
            "rows.jsonl line 1: bad speed 3: speed_control must be from",
        ),
        ("rows.jsonl", '{"text": "Hi."}\n["Hi."]\n', "rows.jsonl line 2: not a JSON object"),
        ("rows.jsonl", '{"text": "Hi."\n', "rows.jsonl line 1: not JSON"),
        ("rows.jsonl", '{"text": 5}\n', "rows.jsonl line 1: text must be a string, not int"),
        (
            "rows.jsonl",
            '{"id": "a/b", "text": "Hi."}\n',
            "line 1: the id 'a/b' cannot be a file name: it holds a path",
        ),
        (
            "rows.jsonl",
            '{"id": "..", "text": "Hi."}\n',
            "the id '..' cannot be a file name: it starts with a dot",
        ),
        ("rows.jsonl", '{"id": " ", "text": "Hi."}\n', "the id '' cannot be a file name: it is empty"),
        (
            "rows.csv",
            "id,text\nx,One.\n\ny,Two.\nx,Three.\n",
            "rows.csv line 5: the id 'x' is the id of line 2 too",
        ),
        (
            "rows.csv",
            "id,text\nIntro,One.\nintro,Two.\n",
            "line 3: the id 'intro' differs only in case from 'Intro'",
        ),
        ("rows.csv", "text,id\nOne.,0003\nTwo.,\n", "rows.csv line 3: the id '0003' is the id of line 2 too"),
        (
            "rows.csv",
            "text,language\nOne.,fr\nTwo.,\n",
            "rows.csv line 3 names no language, and line 2 names 'fr': give --language",
        ),
        ("rows.csv", "id,text\na,One.,extra\n", "rows.csv line 2: 3 cells, but the header names 2"),
        ("rows.jsonl", '{"id": "a\\tb", "text": "Hi."}\n', "it holds a control character"),
        ("rows.jsonl", '{"id": "' + "x" * 201 + '", "text": "Hi."}\n', "it is longer than 200 bytes"),
        ("rows.txt", "\n  \n", "rows.txt has no rows to speak"),
        ("rows.txt", b"\xff\xfe", "cannot read rows.txt: not UTF-8 text"),
    ],
)
def test_bad_rows_are_refused_before_anything_is_done(
    name: str, content: str | bytes, message: str, tmp_path: Path, cli: Cli
) -> None:
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / name).write_bytes(data)
    run = cli("batch", name, "-o", "out", *SIGNAL, cwd=tmp_path)
    one_line_error(run, message)
    assert run.out == ""
    assert names(tmp_path) == [name]  # not even the directory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rows.doc"], "cannot tell the format of 'rows.doc'"),
        (["rows.txt", "--jobs", "0"], "must be 1 or more, not 0"),
        (["rows.txt", "--retries", "-1"], "must be 0 or more, not -1"),
        (["rows.txt", "--bit-rate", "64000"], "--bit-rate applies to mp3 output only"),
    ],
)
def test_usage_errors(args: list[str], message: str, tmp_path: Path, cli: Cli) -> None:
    run = cli("batch", *args, "-o", "out", cwd=tmp_path)
    assert run.code == 2
    assert message in run.err
    assert names(tmp_path) == []


def test_files_that_are_not_ours_are_not_replaced(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "0003.wav").write_bytes(b"a recording of my own")
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    one_line_error(
        run, f"{os.path.join('out', '0003.wav')} is not listed in {os.path.join('out', 'manifest.jsonl')}"
    )
    assert "move it away, or replace it with --force" in run.err
    assert names(out) == ["0003.wav"]
    assert (out / "0003.wav").read_bytes() == b"a recording of my own"
    # A manifest that is not a batch's is not ours either.
    (out / "manifest.jsonl").write_text('{"my": "notes"}\n', encoding="utf-8")
    run = cli("batch", "rows.txt", "-o", "out", "--force", *SIGNAL, cwd=tmp_path)
    one_line_error(run, "manifest.jsonl line 1 is not an entry of a batch manifest")
    (out / "manifest.jsonl").unlink()
    run = cli("batch", "rows.txt", "-o", "out", "--force", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert len(frames(out / "0003.wav")) == 2 * SignalEngine().samples_for(TEXTS[1])
    # The output directory must be one.
    run = cli("batch", "rows.txt", "-o", "rows.csv", *SIGNAL, cwd=tmp_path)
    one_line_error(run, "cannot write into rows.csv: it is not a directory")


def test_a_manifest_torn_by_a_killed_run_still_reads(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    out = tmp_path / "out"
    assert cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    entries = manifest(out)
    # A run killed outright: its last entry for a file repeated, then half a line.
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps({**entries[0], "error": "from the killed run", "bytes": None}) + "\n")
        file.write('{"id": "0004", "file": "0004.w')
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.out.startswith("1 done, 2 skipped, 0 failed: ")  # the last entry for 0001.wav won
    assert manifest(out) == [{**entries[0], "ttfb": manifest(out)[0]["ttfb"]}, *entries[1:]]


def test_a_rate_limited_service_is_waited_for(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    out = tmp_path / "out"
    with server_in_thread(engine="signal", idle_timeout=None) as server:
        at = ("--base-url", server.url, "--voice", DEFAULT_VOICE_ID, "--jobs", "1")
        # HTTP: 429 RATE_LIMIT_EXCEEDED (with retry_after_ms) twice, then the first row passes.
        server.faults.http_statuses = [429, 429]
        run = cli("batch", "rows.csv", "-o", "out", "--http", *at, cwd=tmp_path)
        assert run.code == 0, run.err
        assert [e["attempts"] for e in manifest(out)] == [3, 1, 1]
        assert [r.status for r in server.log.http] == [429, 429, 200, 200, 200]
        # More 429s than --retries allow: that row fails, with the service's word.
        server.faults.http_statuses = [429, 429]
        run = cli("batch", "rows.csv", "-o", "out", "--http", "--force", "--retries", "1", *at, cwd=tmp_path)
        one_line_error(run, "1 of 3 rows failed: a (see ")
        entry = manifest(out)[0]
        assert (entry["attempts"], entry["error"]) == (
            2,
            "429 RATE_LIMIT_EXCEEDED: error injected by the local server's faults",
        )
        # A 5xx is retried too.
        server.faults.http_statuses = [503]
        run = cli("batch", "rows.csv", "-o", "out", "--http", *at, cwd=tmp_path)
        assert run.code == 0, run.err
        assert manifest(out)[0]["attempts"] == 2
        # The WebSocket: the service answers a context's text with the error.
        server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
        run = cli("batch", "rows.csv", "-o", "out", "--force", *at, cwd=tmp_path)
        assert run.code == 0, run.err
        assert [e["attempts"] for e in manifest(out)] == [2, 1, 1]
        assert server.log.connections[-1].errors_sent[0]["error_code"] == "RATE_LIMIT_EXCEEDED"


def test_a_refused_key_stops_the_batch_at_once(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inputs(tmp_path)
    monkeypatch.setenv("ASYNCAI_API_KEY", "sk_not_this_one")
    with server_in_thread(engine="signal", idle_timeout=None, api_key="sk_right") as server:
        at = ("--base-url", server.url, "--voice", DEFAULT_VOICE_ID, "--jobs", "1")
        run = cli("batch", "rows.csv", "-o", "out", "--http", *at, cwd=tmp_path)
        one_line_error(run, "401 INVALID_API_KEY")
        assert len(server.log.http) == 1  # no other row was tried
        run = cli("batch", "rows.csv", "-o", "out", *at, cwd=tmp_path)  # the WebSocket refuses it as it opens
        one_line_error(run, "401 INVALID_API_KEY")
    assert run.out == ""
    assert names(tmp_path / "out") == []  # no file, no manifest


def test_a_progress_bar_on_a_terminal_only(tmp_path: Path, cli: Cli) -> None:
    write_inputs(tmp_path)
    run = cli("batch", "rows.txt", "-o", "out", *SIGNAL, cwd=tmp_path, terminal=True)
    assert run.code == 0, run.err
    assert "batch: " in run.err and "3/3" in run.err
    assert run.err.endswith("\r")  # cleared at the end: nothing stays on the terminal
    assert run.out.startswith("3 done, 0 skipped, 0 failed: ")
    run = cli("batch", "rows.txt", "-o", "out2", "--quiet", *SIGNAL, cwd=tmp_path, terminal=True)
    assert (run.code, run.out, run.err) == (0, "", "")
    assert len(manifest(tmp_path / "out2")) == 3


async def test_retries_wait_what_the_service_asks(jump_clock: trio.testing.MockClock) -> None:
    errors: list[Exception] = [
        RateLimitError("slow down", code="RATE_LIMIT_EXCEEDED", status=429, retry_after=7.0),
        RateLimitError("slow down", code="RATE_LIMIT_EXCEEDED", status=429, retry_after=3.0),
    ]
    times: list[float] = []

    async def attempt() -> str:
        times.append(trio.current_time())
        if errors:
            raise errors.pop(0)
        return "done"

    backoff = Backoff(0.5)
    assert await with_retries(attempt, retries=5, backoff=backoff) == "done"
    assert [b - a for a, b in itertools.pairwise(times)] == [7.0, 3.0]
    assert backoff.failures == 0  # the success reset it
    # Without a word from the service: the backoff's wait, doubling; at most `retries` more tries.
    times.clear()
    errors[:] = [ServerError("down", status=503)] * 3

    with pytest.raises(ServerError):
        await with_retries(attempt, retries=2, backoff=backoff)
    waits = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 3
    assert 0.5 <= waits[0] < 0.75 and 1.0 <= waits[1] < 1.5
    # Not retryable: raised at once.
    for error in (QuotaExceededError("used up", status=429), VoiceCloneLimitError("no", status=429)):
        times.clear()
        errors[:] = [error]
        with pytest.raises(type(error)):
            await with_retries(attempt, retries=5, backoff=backoff)
        assert len(times) == 1


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGINT, 130, "trio-asyncai: interrupted\n"),
        (signal.SIGTERM, 143, "trio-asyncai: terminated\n"),
    ],
)
async def test_ctrl_c_or_kill_keeps_the_finished_rows_and_a_rerun_completes(
    signum: int, code: int, line: str, server: LocalServer, tmp_path: Path
) -> None:
    # Row 1 is a few audio messages, row 2 a few hundred: the server goes silent in the middle of
    # row 2, which (with one job) is only sent once row 1's file and manifest line are written.
    (tmp_path / "rows.txt").write_text(
        "One.\n" + "This row is long, and it is still coming when Ctrl+C is pressed. " * 4 + "\nThree.\n",
        encoding="utf-8",
    )
    server.faults.stall_after_audio_messages = 50
    args = (
        "batch",
        "rows.txt",
        "-o",
        "out",
        "--jobs",
        "1",
        "--base-url",
        server.url,
        "--voice",
        DEFAULT_VOICE_ID,
    )
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command(*args), stdout=-1, stderr=-1, stdin=-3, cwd=tmp_path, env=cli_env()
        )
        await server.log.wait_for(lambda log: any(c.stalled for c in log.connections))
        process.send_signal(signum)
        assert process.stdout is not None and process.stderr is not None
        out = b"".join([data async for data in process.stdout])
        err = b"".join([data async for data in process.stderr])
        got = await process.wait()
    assert (got, out, err.decode()) == (code, b"", line)
    directory = tmp_path / "out"
    assert names(directory) == ["0001.wav", "manifest.jsonl"]  # no .part file
    [entry] = manifest(directory)
    assert (entry["id"], entry["error"]) == ("0001", None)
    assert entry["bytes"] == (directory / "0001.wav").stat().st_size
    server.faults.reset()
    run = await run_process(*args, cwd=tmp_path)
    assert run.code == 0, run.err
    assert run.out.startswith("2 done, 1 skipped, 0 failed: ")
    assert [e["id"] for e in manifest(directory)] == ["0001", "0002", "0003"]
    assert names(directory) == ["0001.wav", "0002.wav", "0003.wav", "manifest.jsonl"]


def test_rows_are_taken_grouped_by_their_settings(tmp_path: Path, cli: Cli) -> None:
    voices = [CALM, BRIGHT, CALM, BRIGHT, DEFAULT_VOICE_ID]
    rows = "".join(json.dumps({"text": f"Row {n}.", "voice": v}) + "\n" for n, v in enumerate(voices))
    (tmp_path / "rows.jsonl").write_text(rows, encoding="utf-8")
    with server_in_thread(engine="signal", idle_timeout=None) as server:
        at = ("--base-url", server.url, "--voice", DEFAULT_VOICE_ID, "--jobs", "1")
        run = cli("batch", "rows.jsonl", "-o", "out", *at, cwd=tmp_path)
        assert run.code == 0, run.err
        # The WebSocket's settings are per connection: one for each voice, not one a row.
        # (The first message of each is its initializeConnection.)
        opened = [c.messages[0]["voice"]["id"] for c in server.log.connections]
        assert sorted(opened) == sorted([DEFAULT_VOICE_ID, CALM, BRIGHT])
    assert [e["file"] for e in manifest(tmp_path / "out")] == [f"000{n}.wav" for n in range(1, 6)]


def test_a_lone_surrogate_is_one_line_before_anything_is_done(tmp_path: Path, cli: Cli) -> None:
    # Valid UTF-8 JSON whose escapes name no character: refused with its line, not a traceback.
    (tmp_path / "s.jsonl").write_text('{"id": "a", "text": "hi"}\n{"id": "b", "text": "hi \\ud800 there"}\n')
    run = cli("batch", "s.jsonl", "-o", "out", *SIGNAL, cwd=tmp_path)
    one_line_error(run, "s.jsonl line 2: the text: not UTF-8 text")
    assert names(tmp_path) == ["s.jsonl"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_links_and_special_files_are_never_written_through(
    force: list[str], tmp_path: Path, cli: Cli
) -> None:
    (tmp_path / "a.txt").write_text("Hello.\n")
    (tmp_path / "precious.wav").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "0001.wav").symlink_to("../precious.wav")
    run = cli("batch", "a.txt", "-o", "out", *force, *SIGNAL, cwd=tmp_path)
    one_line_error(run, "out/0001.wav is a symbolic link: a batch writes regular files only")
    assert (tmp_path / "precious.wav").read_bytes() == b"precious"
    (out / "0001.wav").unlink()
    os.mkfifo(out / "0001.wav")  # would hold the command waiting for a reader
    run = cli("batch", "a.txt", "-o", "out", *force, *SIGNAL, cwd=tmp_path)
    one_line_error(run, "out/0001.wav is not a regular file")
    (out / "0001.wav").unlink()
    os.mkfifo(out / "manifest.jsonl")
    one_line_error(cli("batch", "a.txt", "-o", "out", *force, *SIGNAL, cwd=tmp_path), "is not a regular file")
    assert names(out) == ["manifest.jsonl"]


def test_a_read_only_manifest_is_refused_before_any_request(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "a.txt").write_text("Hello.\n")
    assert cli("batch", "a.txt", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    (tmp_path / "a.txt").write_text("Hello.\nSecond.\n")
    (tmp_path / "out" / "manifest.jsonl").chmod(0o444)
    run = cli("batch", "a.txt", "-o", "out", *SIGNAL, cwd=tmp_path)
    one_line_error(run, "cannot write out/manifest.jsonl: permission denied (the file is read-only)")
    assert names(tmp_path / "out") == ["0001.wav", "manifest.jsonl"]  # row 2 not written, so not unlisted


def test_a_manifest_without_its_last_newline_is_appended_to_whole(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "a.txt").write_text("Hello.\n")
    assert cli("batch", "a.txt", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    path = tmp_path / "out" / "manifest.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # as some editors save it
    (tmp_path / "a.txt").write_text("Hello.\nSecond.\n")
    assert cli("batch", "a.txt", "-o", "out", *SIGNAL, cwd=tmp_path).code == 0
    assert [entry["id"] for entry in manifest(tmp_path / "out")] == ["0001", "0002"]
