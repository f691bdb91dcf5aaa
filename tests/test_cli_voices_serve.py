"""``trio-asyncai voices`` and ``trio-asyncai serve`` in subprocesses, as users run them."""

from __future__ import annotations

import json
import signal
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import numpy as np
import pytest
import trio
from cli_run import TIMEOUT, cli_env, command, one_line_error, run_cli

from trio_asyncai.server import DEFAULT_VOICE_ID

VOICES = {
    "8c073dae-43c8-5e05-821f-02afb21cf2ec": "Joe",
    "dfa20ed4-1bc0-58c8-9523-acf9e2b45fb9": "Joe Calm",
    "f5100b6c-d513-537f-84c3-b2b57be6d606": "Joe Bright",
}


@attrs.define
class Served:
    process: trio.Process
    url: str
    rest: bytes = b""


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """``trio-asyncai serve`` on a free port, stopped with Ctrl+C (SIGINT) at the end."""
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command("serve", "--port", "0", "--engine", "signal"),
            stdout=-1,
            stderr=-1,
            stdin=-3,
            env=cli_env(),
        )
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some()
                assert data, "serve ended before it announced its URL"
                line += data
            head, _, rest = line.partition(b"\n")
            url = head.decode().split(" on ", 1)[1].split(" ", 1)[0]
            yield Served(process, url, rest)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await process.wait()


async def test_voices_as_a_table_and_json() -> None:
    table = await run_cli("voices")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["VOICE", "ID", "NAME", "LANGUAGE", "GENDER", "ACCENT", "STYLE", "TYPE"]
    assert [line.split()[0] for line in lines[1:]] == list(VOICES)
    # The bare command takes every option of ``voices list``.
    as_json = await run_cli("voices", "--json")
    assert {v["voice_id"]: v["name"] for v in json.loads(as_json.out)} == VOICES, as_json.err
    calm = await run_cli("voices", "--style", "calm", "--json")
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
async def test_voices_filters(filters: list[str], expected: list[str]) -> None:
    run = await run_cli("voices", "list", "--json", *filters)
    assert run.code == 0, run.err
    assert [v["name"] for v in json.loads(run.out)] == expected


async def test_voices_show() -> None:
    run = await run_cli("voices", "show", DEFAULT_VOICE_ID)
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


async def test_clone_list_delete_against_serve(served: Served, tmp_path: Path) -> None:
    sample = tmp_path / "me.wav"
    write_sample(sample)
    at = ("--base-url", served.url)
    cloned = await run_cli("voices", "clone", str(sample), "--name", "Me", "--style", "calm", "--json", *at)
    assert cloned.code == 0, cloned.err
    voice = json.loads(cloned.out)
    assert (voice["name"], voice["voice_type"]) == ("Me", "CUSTOM")
    mine = await run_cli("voices", "list", "--mine", *at)
    assert [line.split()[0] for line in mine.out.splitlines()[1:]] == [voice["voice_id"]]
    spoken = await run_cli(
        "speak", "Cloned.", "--voice", voice["voice_id"], "-o", str(tmp_path / "c.wav"), *at
    )
    assert spoken.code == 0, spoken.err
    deleted = await run_cli("voices", "delete", voice["voice_id"], *at)
    assert (deleted.code, deleted.out) == (0, f"deleted {voice['voice_id']}\n")
    one_line_error(await run_cli("voices", "show", voice["voice_id"], *at), "404 VOICE_NOT_FOUND")
    one_line_error(await run_cli("voices", "delete", DEFAULT_VOICE_ID, *at), "INVALID_REQUEST")
    one_line_error(
        await run_cli("voices", "clone", "nothing.wav", "--name", "X", *at, cwd=tmp_path),
        "No such file or directory",
    )


LONG_TEXT = "This sentence is in flight when the server is told to stop. " * 8


async def test_serve_stops_gracefully_on_ctrl_c(served: Served) -> None:
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
                served.process.send_signal(signal.SIGINT)  # Ctrl+C with a request in flight
                async for chunk in chunks:
                    got += chunk
        code = await served.process.wait()
        assert served.process.stderr is not None
        err = b""
        async for data in served.process.stderr:
            err += data
    assert got == whole.content  # the request in flight finished, whole
    assert code == 130
    assert err.decode() == "trio-asyncai: interrupted: the server has stopped\n"
