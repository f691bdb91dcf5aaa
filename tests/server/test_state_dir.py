"""Cloned voices kept in a state directory: across server lifetimes, and never lost to a damaged file.

Every test runs servers in this process, one after the other on one
``tmp_path``: a restart is a second :func:`open_local_server` on the same
directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cli_run import Cli, one_line_error

from trio_asyncai.server import (
    DEFAULT_VOICE_ID,
    LocalServer,
    ServerState,
    SignalEngine,
    StateDirError,
    open_local_server,
)

from .helpers import HEADERS, TIMEOUT, aiff, flac_header, http_body, tone_wav

SAMPLE = tone_wav(3.5)


@asynccontextmanager
async def lifetime(state_dir: Path) -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient]]:
    """One server lifetime on ``state_dir``, with an HTTP client for it."""
    with trio.fail_after(TIMEOUT):
        async with (
            open_local_server(engine="signal", idle_timeout=None, state_dir=state_dir) as server,
            httpx.AsyncClient(base_url=server.url, headers=HEADERS) as http,
        ):
            yield server, http


async def clone(http: httpx.AsyncClient, name: str, sample: bytes = SAMPLE) -> str:
    response = await http.post("/voices/clone", data={"name": name}, files={"audio": ("me.wav", sample)})
    assert response.status_code == 200, response.text
    voice_id = response.json()["id"]
    assert isinstance(voice_id, str)
    return voice_id


async def voice(http: httpx.AsyncClient, voice_id: str) -> dict[str, Any] | None:
    response = await http.get(f"/voices/{voice_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: to show that nothing was changed."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def index_of(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / "voices.json").read_bytes())
    return document


# ------------------------------------------------------------------ restarts


async def test_a_restart_keeps_cloned_voices_and_their_samples(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with lifetime(state) as (_, http):
        voice_id = await clone(http, "Mine")
        renamed = await http.put(f"/voices/{voice_id}", json={"name": "Mine, renamed", "style": "calm"})
        assert renamed.status_code == 204
        before = await voice(http, voice_id)
    async with lifetime(state) as (server, http):
        after = await voice(http, voice_id)
        listed = (await http.post("/voices", json={"my_voice": True})).json()["voices"]
        body = http_body("Spoken by a voice from the last run.")
        body["voice"]["id"] = voice_id
        spoken = await http.post("/text_to_speech/streaming", json=body)
    assert before is not None
    assert after == before
    assert after["name"] == "Mine, renamed"
    assert after["voice_type"] == "CUSTOM"
    assert [v["voice_id"] for v in listed] == [voice_id]
    assert spoken.status_code == 200
    assert spoken.content
    # The sample is kept as a file, byte for byte, and the index names it.
    assert (state / "samples" / f"{voice_id}.wav").read_bytes() == SAMPLE
    (entry,) = index_of(state)["voices"]
    assert entry["sample"] == f"samples/{voice_id}.wav"
    assert server.state.store.sample_path(voice_id) == state.absolute() / "samples" / f"{voice_id}.wav"


async def test_a_deleted_voice_stays_deleted(tmp_path: Path) -> None:
    async with lifetime(tmp_path) as (_, http):
        kept = await clone(http, "Kept")
        gone = await clone(http, "Gone")
        assert (await http.delete(f"/voices/{gone}")).status_code == 204
    async with lifetime(tmp_path) as (_, http):
        assert await voice(http, gone) is None
        assert (await voice(http, kept) or {}).get("name") == "Kept"
    assert sorted(os.listdir(tmp_path / "samples")) == [f"{kept}.wav"]


async def test_changes_made_at_once_are_all_kept(tmp_path: Path) -> None:
    ids: list[str] = []
    async with lifetime(tmp_path) as (_, http):
        doomed = await clone(http, "Doomed")

        async def one(name: str) -> None:
            ids.append(await clone(http, name))

        async with trio.open_nursery() as nursery:
            for name in ("A", "B", "C", "D"):
                nursery.start_soon(one, name)
            nursery.start_soon(http.delete, f"/voices/{doomed}")
    async with lifetime(tmp_path) as (server, _):
        kept = {v.voice_id for v in server.voices if v.voice_type == "CUSTOM"}
    assert kept == set(ids)
    assert sorted(os.listdir(tmp_path / "samples")) == sorted(f"{i}.wav" for i in ids)


async def test_each_sample_keeps_its_format(tmp_path: Path) -> None:
    async with lifetime(tmp_path) as (_, http):
        samples = {"aiff": aiff(3.2), "flac": flac_header(4.0)}
        ids = {kind: await clone(http, kind, sample) for kind, sample in samples.items()}
    assert sorted(os.listdir(tmp_path / "samples")) == sorted(f"{v}.{k}" for k, v in ids.items())


async def test_without_a_state_dir_nothing_outlives_the_server(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", idle_timeout=None) as server:
            async with httpx.AsyncClient(base_url=server.url, headers=HEADERS) as http:
                voice_id = await clone(http, "Fleeting")
            assert server.state.store.directory is None
            assert server.state.store.sample_path(voice_id) is None
        async with open_local_server(engine="signal", idle_timeout=None) as server:
            assert voice_id not in server.voices


# ------------------------------------------------------------------ the directory at start


async def test_a_missing_directory_is_created_with_an_empty_index(tmp_path: Path) -> None:
    state = tmp_path / "not" / "there" / "yet"
    async with lifetime(state) as (server, _):
        assert [v.voice_type for v in server.voices] == ["PREDEFINED"] * 3
    assert index_of(state) == {"format": "trio-asyncai-voices", "version": 1, "voices": []}


def test_the_state_object_takes_the_directory_too(tmp_path: Path) -> None:
    state = ServerState(engine=SignalEngine(), state_dir=tmp_path)
    assert state.store.directory == tmp_path.absolute()
    assert len(state.voices) == 3
    assert os.listdir(tmp_path) == ["voices.json"]


def test_a_directory_holding_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "samples").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(StateDirError, match="not a trio-asyncai state") as refused:
        ServerState(engine=SignalEngine(), state_dir=tmp_path)
    assert refused.value.path == tmp_path.absolute()
    assert "notes.txt" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_a_file_is_not_a_state_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("mine")
    with pytest.raises(StateDirError, match="is not a directory"):
        ServerState(engine=SignalEngine(), state_dir=path)
    assert path.read_text() == "mine"


def test_a_directory_that_cannot_be_made_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(StateDirError, match="cannot be used") as refused:
        ServerState(engine=SignalEngine(), state_dir=tmp_path / "file" / "below")
    assert "file" in str(refused.value.path)


def _good_index(directory: Path) -> None:
    """A state directory with one cloned voice, as a server leaves it."""
    (directory / "samples").mkdir()
    (directory / "samples" / "v1.wav").write_bytes(SAMPLE)
    entry = {
        "voice_id": "v1",
        "name": "Mine",
        "description": None,
        "language": "en",
        "gender": None,
        "accent": None,
        "style": None,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:00Z",
        "sample": "samples/v1.wav",
        "sample_bytes": len(SAMPLE),
    }
    document = {"format": "trio-asyncai-voices", "version": 1, "voices": [entry]}
    (directory / "voices.json").write_text(json.dumps(document))


def _torn(directory: Path) -> None:
    index = directory / "voices.json"
    index.write_bytes(index.read_bytes()[:57])


def _edit(**changes: Any) -> Any:
    def edit(directory: Path) -> None:
        document = index_of(directory)
        for key, value in changes.items():
            if key == "entry":
                document["voices"][0].update(value)
            else:
                document[key] = value
        (directory / "voices.json").write_text(json.dumps(document))

    return edit


@pytest.mark.parametrize(
    ("damage", "file", "words"),
    [
        (_torn, "voices.json", "is damaged (not JSON"),
        (lambda d: (d / "voices.json").write_bytes(b""), "voices.json", "is damaged (empty)"),
        (lambda d: (d / "voices.json").write_bytes(b"\xff\xfe garbage"), "voices.json", "is damaged"),
        (_edit(format="something-else"), "voices.json", "not a trio-asyncai-voices index"),
        (_edit(version=2), "voices.json", "format version 2, from a later trio-asyncai"),
        (_edit(voices={"v1": {}}), "voices.json", "no voice list"),
        (_edit(entry={"name": 5}), "voices.json", "voice 1 has no name"),
        (_edit(entry={"sample": "../../etc/passwd"}), "voices.json", "is not in samples/"),
        (lambda d: (d / "samples" / "v1.wav").unlink(), "samples/v1.wav", "is missing"),
        (lambda d: (d / "samples" / "v1.wav").write_bytes(b"RIFF"), "samples/v1.wav", "has 4 bytes"),
        (_edit(entry={"voice_id": DEFAULT_VOICE_ID}), "voices.json", "the id of a predefined voice"),
    ],
    ids=[
        "torn",
        "empty",
        "not-utf8",
        "other-format",
        "newer-version",
        "no-list",
        "bad-field",
        "sample-outside",
        "sample-missing",
        "sample-changed",
        "predefined-id",
    ],
)
async def test_a_damaged_state_is_a_clear_error_and_nothing_is_changed(
    tmp_path: Path, damage: Any, file: str, words: str
) -> None:
    _good_index(tmp_path)
    damage(tmp_path)
    before = snapshot(tmp_path)
    with trio.fail_after(TIMEOUT), pytest.raises(StateDirError) as refused:
        async with open_local_server(engine="signal", state_dir=tmp_path):
            pass  # pragma: no cover
    assert refused.value.path == tmp_path / file
    assert str(tmp_path / file) in str(refused.value)
    assert words in str(refused.value)
    assert isinstance(refused.value, OSError)
    assert snapshot(tmp_path) == before


async def test_a_good_hand_made_state_is_read(tmp_path: Path) -> None:
    _good_index(tmp_path)
    async with lifetime(tmp_path) as (_, http):
        assert (await voice(http, "v1") or {}).get("name") == "Mine"


# ------------------------------------------------------------------ crashes


async def test_a_write_that_fails_half_way_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone whose index cannot be renamed into place (the disk fails, the process dies there):
    the client gets a 500, and this server and the next one have the voices of before."""
    async with lifetime(tmp_path) as (server, http):
        first = await clone(http, "First")
        before = snapshot(tmp_path)

        replace = os.replace
        renames: list[str] = []

        def fail_on_the_index(source: str, target: str) -> None:
            renames.append(Path(target).name)
            if Path(target).name == "voices.json":
                raise OSError(28, "No space left on device")
            replace(source, target)

        monkeypatch.setattr(os, "replace", fail_on_the_index)  # as the store calls it
        refused = await http.post(
            "/voices/clone", data={"name": "Second"}, files={"audio": ("a.wav", SAMPLE)}
        )
        deleted = await http.delete(f"/voices/{first}")
        renamed = await http.put(f"/voices/{first}", json={"name": "Renamed"})
        monkeypatch.undo()
        # The clone's sample was written, then its index failed: the sample went again.
        assert renames[0].endswith(".wav")
        assert renames[1:] == ["voices.json"] * 3
        assert [r.status_code for r in (refused, deleted, renamed)] == [500, 500, 500]
        assert "No space left on device" in refused.json()["detail"]
        assert [v.name for v in server.voices if v.voice_type == "CUSTOM"] == ["First"]
    assert snapshot(tmp_path) == before  # no temporary file left either
    async with lifetime(tmp_path) as (server, _):
        assert [v.name for v in server.voices if v.voice_type == "CUSTOM"] == ["First"]


async def test_a_crash_between_writes_leaves_the_previous_state(tmp_path: Path) -> None:
    """What a crash can leave: a torn temporary index beside the last good one, and a sample
    written for a voice whose index never made it. The next start reads the last good index
    and leaves the rest alone."""
    async with lifetime(tmp_path) as (_, http):
        first = await clone(http, "First")
    good = (tmp_path / "voices.json").read_bytes()
    (tmp_path / ".voices.json.0123abcd.tmp").write_bytes(good[: len(good) // 2])
    (tmp_path / "samples" / "never-indexed.wav").write_bytes(SAMPLE)
    (tmp_path / "samples" / ".never-indexed.wav.4567.tmp").write_bytes(SAMPLE[:100])
    before = snapshot(tmp_path)
    async with lifetime(tmp_path) as (server, http):
        assert [v.voice_id for v in server.voices if v.voice_type == "CUSTOM"] == [first]
        second = await clone(http, "Second")
    async with lifetime(tmp_path) as (server, _):
        assert [v.voice_id for v in server.voices if v.voice_type == "CUSTOM"] == [first, second]
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before and k != "voices.json"} == {
        k: v for k, v in before.items() if k != "voices.json"
    }


async def test_a_crash_before_the_first_index_is_still_ours(tmp_path: Path) -> None:
    (tmp_path / ".voices.json.89ab.tmp").write_bytes(b'{"format": "trio-as')
    async with lifetime(tmp_path) as (server, _):
        assert len(server.voices) == 3
    assert index_of(tmp_path)["voices"] == []


# ------------------------------------------------------------------ the command


def test_serve_reports_a_damaged_state_in_one_line(tmp_path: Path, cli: Cli) -> None:
    _good_index(tmp_path)
    _torn(tmp_path)
    before = snapshot(tmp_path)
    run = cli("serve", "--port", "0", "--engine", "signal", "--state-dir", str(tmp_path))
    one_line_error(run, f"the voice index {tmp_path.absolute() / 'voices.json'} is damaged")
    assert run.out == ""
    assert snapshot(tmp_path) == before


def test_the_default_voice_is_never_kept(tmp_path: Path) -> None:
    state = ServerState(engine=SignalEngine(), state_dir=tmp_path)
    assert state.voices.get(DEFAULT_VOICE_ID) is not None
    assert index_of(tmp_path)["voices"] == []
