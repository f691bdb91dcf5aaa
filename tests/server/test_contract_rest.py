"""The twin's REST endpoints against ASYNC_API.md, endpoint by endpoint, with raw httpx.

No SDK code: only httpx and the server under test, so that a mistake the
SDK and the server shared could not hide here. Each test names the part of
the contract it checks.
"""

from __future__ import annotations

import ast
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import trio_asyncai.server
from trio_asyncai.server import DEFAULT_VOICE_ID, LocalServer

from .helpers import HEADERS, TIMEOUT, aiff, flac_header, tone_wav

VOICE_FIELDS = {
    "voice_id",
    "name",
    "description",
    "language",
    "gender",
    "accent",
    "style",
    "created_at",
    "updated_at",
    "voice_type",
}
GENDERS = {"Male", "Female", "Neutral", "Unspecified"}
TTS_BODY: dict[str, Any] = {
    "model_id": "async_flash_v1.5",
    "transcript": "The contract. ",
    "voice": {"mode": "id", "id": DEFAULT_VOICE_ID},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


def nested_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``{"detail": {"error_code", "message", "extra"?}}`` with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"}
    error: dict[str, Any] = body["detail"]
    assert set(error) <= {"error_code", "message", "extra"}
    assert error["error_code"] == code
    assert isinstance(error["message"], str)
    return error


def check_voice(voice: object) -> dict[str, Any]:
    """A voice object: every documented field, nothing else."""
    assert isinstance(voice, dict)
    assert set(voice) == VOICE_FIELDS
    assert voice["voice_type"] in ("PREDEFINED", "CUSTOM")
    assert voice["gender"] is None or voice["gender"] in GENDERS
    assert all(code.strip() for code in voice["language"].split(","))
    return voice


async def clone(http: httpx.AsyncClient, sample: bytes, name: str = "x.wav", **fields: str) -> httpx.Response:
    with trio.fail_after(TIMEOUT):
        return await http.post(
            "/voices/clone", headers=HEADERS, data={"name": "Mine", **fields}, files={"audio": (name, sample)}
        )


# ------------------------------------------------------------ Hosts, versions, credentials; Status


async def test_status_needs_only_the_version_header(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        ok = await http.get("/", headers={"version": "v1"})
        wrong_version = await http.get("/", headers={"version": "v9"})
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "version": "v1"}
    nested_error(wrong_version, 404, "VERSION_NOT_FOUND")


async def test_every_other_endpoint_needs_the_key(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        answers = [
            await http.post("/voices", headers={"version": "v1"}, json={}),
            await http.post("/voices/batch", headers={"version": "v1"}, json={"voice_ids": []}),
            await http.get(f"/voices/{DEFAULT_VOICE_ID}", headers={"version": "v1"}),
            await http.get(f"/voices/preview/{DEFAULT_VOICE_ID}", headers={"version": "v1"}),
            await http.post("/text_to_speech/streaming", headers={"version": "v1"}, json=TTS_BODY),
        ]
    for answer in answers:
        nested_error(answer, 401, "INVALID_API_KEY")


# ------------------------------------------------------------------------ Voices: list


async def test_list_shape_and_default_limit(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        page = await http.post("/voices", headers=HEADERS, json={})
    assert page.status_code == 200
    data = page.json()
    assert set(data) == {"voices", "next_cursor"}
    assert isinstance(data["next_cursor"], str)
    assert 1 <= len(data["voices"]) <= 10
    for voice in data["voices"]:
        check_voice(voice)


async def test_list_pages_with_after(http: httpx.AsyncClient) -> None:
    seen: list[str] = []
    body: dict[str, Any] = {"limit": 1}
    with trio.fail_after(TIMEOUT):
        while True:
            data = (await http.post("/voices", headers=HEADERS, json=body)).json()
            ids = [v["voice_id"] for v in data["voices"]]
            assert len(ids) == 1
            assert ids[0] not in seen  # "after" moves on: no page comes twice
            seen += ids
            if not data["next_cursor"]:
                break
            body["after"] = ids[-1]  # the last voice id of the page
        everything = (await http.post("/voices", headers=HEADERS, json={"limit": 100})).json()
    assert seen == [v["voice_id"] for v in everything["voices"]]
    assert everything["next_cursor"] == ""


@pytest.mark.parametrize(
    "query",
    [
        {"model_id": "async_flash_v1.5"},
        {"language": "en"},
        {"language": "nl"},  # the list filter takes nl, synthesis does not
        {"accent": "american"},
        {"gender": "Male"},
        {"gender": "Unspecified"},
        {"style": "calm"},
        {"my_voice": True},
        {"my_voice": False},
    ],
)
async def test_list_takes_every_documented_filter(http: httpx.AsyncClient, query: dict[str, Any]) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/voices", headers=HEADERS, json={"limit": 100, **query})
    assert response.status_code == 200, response.text
    for voice in response.json()["voices"]:
        check_voice(voice)
        if "gender" in query:
            assert voice["gender"] == query["gender"]
        if "my_voice" in query:
            assert (voice["voice_type"] == "CUSTOM") == query["my_voice"]


@pytest.mark.parametrize("limit", [0, 101])
async def test_list_limit_is_1_to_100(http: httpx.AsyncClient, limit: int) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/voices", headers=HEADERS, json={"limit": limit})
    assert response.status_code == 400


# ---------------------------------------------------------------- Voices: get, batch


async def test_get_and_batch(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        one = await http.get(f"/voices/{DEFAULT_VOICE_ID}", headers=HEADERS)
        batch = await http.post("/voices/batch", headers=HEADERS, json={"voice_ids": [DEFAULT_VOICE_ID]})
        missing = await http.get("/voices/no-such-voice", headers=HEADERS)
    assert check_voice(one.json())["voice_id"] == DEFAULT_VOICE_ID
    assert isinstance(batch.json(), list)
    assert [check_voice(v)["voice_id"] for v in batch.json()] == [DEFAULT_VOICE_ID]
    error = nested_error(missing, 404, "VOICE_NOT_FOUND")
    assert error["extra"] == {"voice_id": "no-such-voice"}


# ------------------------------------------------------------ Voices: clone, update, delete


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("a.wav", tone_wav(3.5)),
        ("a.mp3", b"ID3" + bytes(30_000)),
        ("a.flac", flac_header(3.5)),
        ("a.aiff", aiff(3.5)),
    ],
)
async def test_clone_answers_id_name_description_language(
    http: httpx.AsyncClient, name: str, sample: bytes
) -> None:
    response = await clone(
        http, sample, name, description="d", accent="a", gender="Female", style="s,t", enhance="true"
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == {"id", "name", "description", "language"}
    assert (created["name"], created["description"]) == ("Mine", "d")


@pytest.mark.parametrize(
    ("sample", "status", "code"),
    [
        (tone_wav(2.9), 400, "SHORT_SPEECH_DURATION"),  # at least 3 s
        (b"RIFF" + bytes(10 * 1024 * 1024), 413, "FILE_TOO_LARGE"),  # at most 10 MB
        (b"OggS" + bytes(50_000), 400, "FORMAT_NOT_RECOGNIZED"),  # wav, mp3, flac or aiff
    ],
)
async def test_clone_limits(http: httpx.AsyncClient, sample: bytes, status: int, code: str) -> None:
    nested_error(await clone(http, sample), status, code)


async def test_update_and_delete_answer_204_without_a_body(http: httpx.AsyncClient) -> None:
    voice_id = (await clone(http, tone_wav(3.5))).json()["id"]
    with trio.fail_after(TIMEOUT):
        updated = await http.put(
            f"/voices/{voice_id}",
            headers=HEADERS,
            json={"name": "N", "description": "D", "gender": "Neutral", "style": "S", "accent": "A"},
        )
        immutable = await http.put(f"/voices/{voice_id}", headers=HEADERS, json={"language": "fr"})
        after = (await http.get(f"/voices/{voice_id}", headers=HEADERS)).json()
        deleted = await http.delete(f"/voices/{voice_id}", headers=HEADERS)
        gone = await http.get(f"/voices/{voice_id}", headers=HEADERS)
    assert (updated.status_code, updated.content) == (204, b"")
    assert (after["name"], after["description"], after["gender"], after["style"], after["accent"]) == (
        "N",
        "D",
        "Neutral",
        "S",
        "A",
    )
    assert check_voice(after)["voice_type"] == "CUSTOM"
    error = nested_error(immutable, 400, "VOICE_FIELD_UPDATE_NOT_ALLOWED")
    assert error["extra"] == {"field": "language"}
    assert (deleted.status_code, deleted.content) == (204, b"")
    nested_error(gone, 404, "VOICE_NOT_FOUND")


# ------------------------------------------------------------------------ Voices: preview


async def test_preview_is_a_signed_url_to_audio(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        preview = await http.get(f"/voices/preview/{DEFAULT_VOICE_ID}", headers=HEADERS)
        assert preview.status_code == 200
        assert set(preview.json()) == {"signed_url"}
        url = preview.json()["signed_url"]
        assert url.startswith("http")
        # A signed URL needs no key and no version.
        async with httpx.AsyncClient(timeout=TIMEOUT) as foreign:
            audio = await foreign.get(url)
        missing = await http.get("/voices/preview/no-such-voice", headers=HEADERS)
    assert audio.status_code == 200
    assert audio.headers["content-type"].startswith("audio/")
    assert len(audio.content) > 1000
    error = nested_error(missing, 404, "VOICE_PREVIEW_NOT_FOUND")
    assert error["extra"] == {"voice_id": "no-such-voice"}


# ------------------------------------------------------------------------------ Errors


async def test_401_echoes_a_key_prefix(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/voices", headers={**HEADERS, "x-api-key": "sk_wrong"}, json={})
    error = nested_error(response, 401, "INVALID_API_KEY")
    assert error["extra"] == {"api_key": "sk_w"}


async def test_400_invalid_language(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/text_to_speech", headers=HEADERS, json={**TTS_BODY, "language": "xx"})
    nested_error(response, 400, "INVALID_LANGUAGE")


async def test_429_rate_limit_says_how_long_to_wait(server: LocalServer, http: httpx.AsyncClient) -> None:
    server.faults.http_statuses = [429]
    with trio.fail_after(TIMEOUT):
        response = await http.post("/voices", headers=HEADERS, json={})
    error = nested_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert set(error["extra"]) == {"limit", "retry_after_ms"}
    assert isinstance(error["extra"]["retry_after_ms"], int)
    assert "retry-after" not in response.headers  # the reference documents no such header


async def test_500_has_no_code(server: LocalServer, http: httpx.AsyncClient) -> None:
    server.faults.http_statuses = [500]
    with trio.fail_after(TIMEOUT):
        response = await http.post("/voices", headers=HEADERS, json={})
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"message", "method", "url", "detail"}
    assert isinstance(body["detail"], str)
    assert body["method"] == "POST"


# ------------------------------------------------------------------------ HTTP TTS endpoints


async def test_streaming_is_octet_stream(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/text_to_speech/streaming", headers=HEADERS, json=TTS_BODY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) > 0 and len(response.content) % 2 == 0


@pytest.mark.parametrize(("container", "kind"), [("raw", "application/octet-stream"), ("wav", "audio/wav")])
async def test_whole_file(http: httpx.AsyncClient, container: str, kind: str) -> None:
    body = {**TTS_BODY, "output_format": {"container": container, "sample_rate": 16000}}
    with trio.fail_after(TIMEOUT):
        response = await http.post("/text_to_speech", headers=HEADERS, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == kind


async def test_with_timestamps(http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        response = await http.post("/text_to_speech/with_timestamps", headers=HEADERS, json=TTS_BODY)
    data = response.json()
    assert set(data) == {"audio_base64", "alignment"}
    assert base64.b64decode(data["audio_base64"])
    alignment = data["alignment"]
    assert set(alignment) == {"words", "word_start_times_milliseconds", "word_end_times_milliseconds"}
    assert alignment["words"] == ["The", "contract."]


# -------------------------------------------------------------- the twin stands on its own


def test_the_server_imports_nothing_from_the_client() -> None:
    """The server must not share code with the SDK, or it could not catch the SDK's mistakes."""
    package = Path(trio_asyncai.server.__file__).parent
    offenders = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                outside = node.level > 1 or (
                    node.level == 0
                    and module.startswith("trio_asyncai")
                    and not module.startswith("trio_asyncai.server")
                )
            elif isinstance(node, ast.Import):
                outside = any(
                    a.name.startswith("trio_asyncai") and not a.name.startswith("trio_asyncai.server")
                    for a in node.names
                )
            else:
                continue
            if outside:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
    assert "deliberately independent of the client" in (trio_asyncai.server.__doc__ or "")
