"""The exception tree: classes, codes, statuses, retryability, and no leaked keys."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_asyncai
from trio_asyncai import (
    APIError,
    AsyncAIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    SlowConsumerError,
    SynthesisTimeout,
    SynthesizerClosedError,
    TransportError,
    VoiceCloneLimitError,
)
from trio_asyncai._config import ApiKey, resolve_api_key
from trio_asyncai._errors import (
    MAX_RETRY_AFTER,
    copy_error,
    error_from_body,
    error_from_code,
    retry_after_header,
)

# Every error code in ASYNC_API.md, with the class, status and retryability we promise.
DOCUMENTED_CODES: list[tuple[str, type[APIError], int, bool]] = [
    ("INVALID_API_KEY", AuthenticationError, 401, False),
    ("VOICE_NOT_FOUND", NotFoundError, 404, False),
    ("VOICE_PREVIEW_NOT_FOUND", NotFoundError, 404, False),
    ("VERSION_NOT_FOUND", NotFoundError, 404, False),
    ("INVALID_LANGUAGE", InvalidRequestError, 400, False),
    ("FORMAT_NOT_RECOGNIZED", InvalidRequestError, 400, False),
    ("SHORT_SPEECH_DURATION", InvalidRequestError, 400, False),
    ("BAD_SPEECH_QUALITY", InvalidRequestError, 400, False),
    ("VOICE_FIELD_UPDATE_NOT_ALLOWED", InvalidRequestError, 400, False),
    ("FILE_TOO_LARGE", PayloadTooLargeError, 413, False),
    ("TOO_MANY_CONCURRENT_REQUESTS", RateLimitError, 429, True),
    ("RATE_LIMIT_EXCEEDED", RateLimitError, 429, True),
    ("USAGE_LIMIT_EXCEEDED", QuotaExceededError, 429, False),
    ("VOICE_CLONE_LIMIT_EXCEEDED", VoiceCloneLimitError, 429, False),
    # Over the WebSocket these come without a status: a retryable ServerError, as over HTTP.
    ("INTERNAL_SERVER_ERROR", ServerError, 500, True),
    ("SERVICE_UNAVAILABLE", ServerError, 503, True),
]


# ------------------------------------------------------------------ the tree

TREE: list[tuple[type[AsyncAIError], type[AsyncAIError]]] = [
    (ConfigurationError, AsyncAIError),
    (SynthesizerClosedError, AsyncAIError),
    (ProtocolError, AsyncAIError),
    (TransportError, AsyncAIError),
    (ConnectError, TransportError),
    (ConnectionLostError, TransportError),
    (SynthesisTimeout, TransportError),
    (SlowConsumerError, AsyncAIError),
    (APIError, AsyncAIError),
    (AuthenticationError, APIError),
    (NotFoundError, APIError),
    (InvalidRequestError, APIError),
    (PayloadTooLargeError, APIError),
    (RateLimitError, APIError),
    (QuotaExceededError, RateLimitError),
    (VoiceCloneLimitError, RateLimitError),
    (ServerError, APIError),
]


@pytest.mark.parametrize(("cls", "parent"), TREE, ids=[c.__name__ for c, _ in TREE])
def test_tree(cls: type[AsyncAIError], parent: type[AsyncAIError]) -> None:
    assert cls.__bases__[0] is parent
    assert issubclass(cls, Exception)
    assert getattr(trio_asyncai, cls.__name__) is cls


def test_branches_are_kept_apart() -> None:
    assert not issubclass(ProtocolError, TransportError)
    assert not issubclass(SynthesizerClosedError, TransportError)
    assert not issubclass(TransportError, APIError)
    assert not issubclass(ServerError, RateLimitError)


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)
    with pytest.raises(ValueError, match="bad"):
        raise ConfigurationError("bad")


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (AsyncAIError, False),
        (ConfigurationError, False),
        (SynthesizerClosedError, False),
        (ProtocolError, False),
        (TransportError, True),
        (ConnectError, True),
        (ConnectionLostError, True),
        (SynthesisTimeout, True),
        (SlowConsumerError, False),
        (APIError, False),
        (AuthenticationError, False),
        (NotFoundError, False),
        (InvalidRequestError, False),
        (PayloadTooLargeError, False),
        (RateLimitError, True),
        (QuotaExceededError, False),
        (VoiceCloneLimitError, False),
        (ServerError, True),
    ],
)
def test_retryable(cls: type[AsyncAIError], retryable: bool) -> None:
    assert cls.retryable is retryable
    assert cls("x").retryable is retryable


def test_base_error_fields_and_repr() -> None:
    err = SynthesisTimeout("no audio in 5 s")
    assert err.message == "no audio in 5 s"
    assert err.utterance is None
    assert str(err) == "no audio in 5 s"
    assert repr(err) == "SynthesisTimeout('no audio in 5 s')"


def test_protocol_error_raw_is_a_prefix() -> None:
    assert ProtocolError("x").raw is None
    assert ProtocolError("x", raw="short").raw == "short"
    assert ProtocolError("x", raw="y" * 500).raw == "y" * 200
    assert ProtocolError("x", raw=b"\x01" * 500).raw == b"\x01" * 200


def test_api_error_fields() -> None:
    extra = {"field": "voice"}
    err = APIError("nope", code="SOMETHING", status=418, extra=extra, retry_after=2.5)
    extra["field"] = "changed"  # the error keeps its own copy
    assert err.extra == {"field": "voice"}
    assert err.code == "SOMETHING"
    assert err.status == 418
    assert err.retry_after == 2.5
    assert err.utterance is None
    assert str(err) == "418 SOMETHING: nope"
    assert repr(err) == "APIError(code='SOMETHING', status=418, message='nope')"


def test_api_error_str_without_code_or_status() -> None:
    assert str(APIError("plain")) == "plain"
    assert str(APIError("m", status=500)) == "500: m"
    assert str(APIError("m", code="C")) == "C: m"
    assert APIError("m").extra == {}


# ----------------------------------------------------------- error_from_code


@pytest.mark.parametrize(
    ("code", "cls", "status", "retryable"), DOCUMENTED_CODES, ids=[c[0] for c in DOCUMENTED_CODES]
)
def test_every_documented_code(code: str, cls: type[APIError], status: int, retryable: bool) -> None:
    err = error_from_code(code, "the message", extra={"k": 1}, retry_after=3.0)
    assert type(err) is cls
    assert err.code == code
    assert err.status == status
    assert err.retryable is retryable
    assert err.message == "the message"
    assert err.extra == {"k": 1}
    assert err.retry_after == 3.0
    assert str(err) == f"{status} {code}: the message"


def test_code_wins_over_status_but_keeps_it() -> None:
    err = error_from_code("VOICE_NOT_FOUND", "m", status=400)
    assert type(err) is NotFoundError
    assert err.status == 400


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (418, APIError),
        (302, APIError),
    ],
)
def test_unknown_code_falls_back_to_status(status: int, cls: type[APIError]) -> None:
    err = error_from_code("SOMETHING_NEW", "m", status=status)
    assert type(err) is cls
    assert err.code == "SOMETHING_NEW"
    assert err.status == status


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
@pytest.mark.parametrize("code", [None, "INTERNAL"])
def test_5xx_is_a_server_error(status: int, code: str | None) -> None:
    err = error_from_code(code, "m", status=status)
    assert type(err) is ServerError
    assert err.retryable is True
    assert err.status == status
    assert err.code == code


def test_unknown_code_and_status() -> None:
    err = error_from_code("SOMETHING_NEW", "m")
    assert type(err) is APIError
    assert err.status is None
    assert err.retryable is False
    err = error_from_code(None, "m")
    assert type(err) is APIError
    assert (err.code, err.status) == (None, None)


def test_errors_pickle() -> None:
    # Errors cross thread/process boundaries in user code (and pytest-xdist).
    err = error_from_code("RATE_LIMIT_EXCEEDED", "slow down")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is RateLimitError
    assert str(copy) == str(err)


# ----------------------------------------------------------- error_from_body


def nested(code: str, message: str, extra: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"error_code": code, "message": message}
    if extra is not None:
        error["extra"] = extra
    return json.dumps({"detail": error}).encode()


def test_nested_body() -> None:
    body = nested("VOICE_NOT_FOUND", "no such voice", {"voice_id": "x"})
    err = error_from_body(404, body)
    assert type(err) is NotFoundError
    assert (err.code, err.status, err.message, err.extra) == (
        "VOICE_NOT_FOUND",
        404,
        "no such voice",
        {"voice_id": "x"},
    )
    assert err.retry_after is None


def test_flat_body() -> None:
    err = error_from_body(400, '{"error_code": "INVALID_LANGUAGE", "message": "nope", "extra": null}')
    assert type(err) is InvalidRequestError
    assert (err.code, err.message, err.extra) == ("INVALID_LANGUAGE", "nope", {})


def test_the_500_shape_has_no_code_and_keeps_no_url() -> None:
    body = (
        b'{"message": "Internal Server Error", "method": "GET",'
        b' "url": "wss://api.async.com/ws?api_key=sk_secret", "detail": "database unreachable"}'
    )
    err = error_from_body(500, body)
    assert type(err) is ServerError and err.retryable
    assert err.code is None
    assert err.message == "Internal Server Error: database unreachable"
    assert "sk_secret" not in repr(err) + str(err) + repr(err.extra)


@pytest.mark.parametrize(
    "body", [b"", b"<html>Bad gateway</html>", b"[1, 2]", b'{"detail": [{"msg": "x"}]}', None]
)
def test_other_bodies_map_by_status(body: bytes | None) -> None:
    err = error_from_body(502, body, default_message="refused")
    assert type(err) is ServerError
    assert (err.code, err.status, err.message) == (None, 502, "refused")


def test_a_key_prefix_in_extra_is_dropped() -> None:
    extra = {"api_key": "sk_ab", "apiKey": "sk_cd", "nested": {"x_api_key": "sk_ef", "ok": 1}, "limit": 3}
    body = nested("INVALID_API_KEY", "bad key", extra)
    err = error_from_body(401, body)
    assert type(err) is AuthenticationError
    assert err.extra == {"nested": {"ok": 1}, "limit": 3}
    for prefix in ("sk_ab", "sk_cd", "sk_ef"):
        assert prefix not in repr(err) + str(err) + repr(err.extra)
    assert "api_key" not in APIError("m", extra={"API_KEY": "k"}).extra


def test_retry_after_ms_wins_over_the_header() -> None:
    body = nested("RATE_LIMIT_EXCEEDED", "slow", {"limit": 5, "retry_after_ms": 1500})
    assert error_from_body(429, body).retry_after == 1.5
    assert error_from_body(429, body, retry_after="9").retry_after == 1.5
    header_only = nested("RATE_LIMIT_EXCEEDED", "slow")
    assert error_from_body(429, header_only, retry_after="9").retry_after == 9.0
    assert error_from_body(429, header_only).retry_after is None
    huge = body.replace(b"1500", b"86400000")
    assert error_from_body(429, huge).retry_after == MAX_RETRY_AFTER
    for bad in (b'"soon"', b"true", b"null"):
        odd = body.replace(b"1500", bad)
        assert error_from_body(429, odd, retry_after="2").retry_after == 2.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0", 0.0),
        ("-4", 0.0),
        ("1e9", MAX_RETRY_AFTER),
        ("soon", None),
        ("nan", None),
    ],
)
def test_retry_after_header(value: str | None, seconds: float | None) -> None:
    assert retry_after_header(value) == seconds


def test_retry_after_header_as_a_date() -> None:
    assert retry_after_header("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_header("Wed, 99 Foo 2026") is None


@given(st.binary(max_size=200), st.integers(min_value=100, max_value=599))
def test_error_from_body_never_fails(body: bytes, status: int) -> None:
    err = error_from_body(status, body)
    assert isinstance(err, APIError)
    assert err.status == status


# ------------------------------------------------------------ no leaked keys

keys = st.text(min_size=1, max_size=40).map(lambda s: "sk_" + s)


def _texts(obj: Any) -> list[str]:
    return [repr(obj), str(obj), format(obj)]


@given(keys)
def test_api_key_never_shows(key: str) -> None:
    """Whatever is passed as a key: no repr, str or error message holds it."""
    try:
        resolved = resolve_api_key(key, env={})
    except ConfigurationError as exc:
        for text in [*_texts(exc), exc.message, *map(str, exc.args)]:
            assert key.strip() not in text
        return
    assert resolved is not None
    assert resolved.value == key.strip()
    for text in _texts(resolved):
        assert text == "ApiKey('***')"
        assert "sk_" not in text


@given(keys)
def test_api_key_from_the_environment_never_shows(key: str) -> None:
    outcome: object
    try:
        outcome = resolve_api_key(None, env={"ASYNCAI_API_KEY": key})
    except ConfigurationError as exc:
        outcome = exc
    assert isinstance(outcome, ApiKey | ConfigurationError)
    assert key.strip() not in repr(outcome)
    assert key.strip() not in str(outcome)


def test_api_key_inside_containers_is_redacted() -> None:
    key = ApiKey("sk_secret_value")
    assert "sk_secret_value" not in repr([key])
    assert "sk_secret_value" not in repr({"key": key})
    assert "sk_secret_value" not in f"{key}"


def test_non_str_api_key_message_names_only_the_type() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_api_key(12345678, env={})  # type: ignore[arg-type]
    assert "12345678" not in str(info.value)
    assert "int" in str(info.value)


# ----------------------------------------------------- bodies nested too deep


def _nested(depth: int, inner: str = "0") -> str:
    return '{"n":' * depth + inner + "}" * depth


@pytest.mark.parametrize("depth", [50, 990, 1000, 5000, 100_000])
def test_an_error_body_nested_too_deep_maps_by_status(depth: int) -> None:
    head = '{"detail":{"error_code":"VOICE_NOT_FOUND","message":"gone","extra":'
    nested_body = head + _nested(depth) + "}}"
    err = error_from_body(404, nested_body)
    assert isinstance(err, NotFoundError)
    assert err.status == 404
    assert isinstance(error_from_body(503, _nested(depth)), ServerError)


def test_a_deep_extra_is_cut_not_recursed_into() -> None:
    extra: dict[str, Any] = {}
    inner = extra
    for _ in range(5000):  # deeper than any recursion would survive
        inner["n"] = {}
        inner = inner["n"]
    err = error_from_code("RATE_LIMIT_EXCEEDED", "slow", extra={"limit": 5, "deep": extra})
    assert err.extra["limit"] == 5
    copy_error(err)  # copies its extra too


nested_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=20,
)


@given(st.integers(min_value=1, max_value=3000), nested_json, st.integers(min_value=100, max_value=599))
def test_error_from_body_survives_any_nesting(depth: int, leaf: Any, status: int) -> None:
    body = _nested(depth, json.dumps(leaf))
    err = error_from_body(status, body)
    assert isinstance(err, APIError)
    assert err.status == status


# ------------------------------------------------ every code the contract names


def _contract_table() -> list[tuple[int, list[str]]]:
    contract = Path(__file__).resolve().parents[2] / "shared" / "ASYNC_API.md"
    if not contract.is_file():
        pytest.skip(f"the contract is not beside the checkout ({contract})")
    text = contract.read_text("utf-8")
    table = text[text.index("## Errors") :]
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            rows.append((int(cells[0]), re.findall(r"\b[A-Z][A-Z_]{3,}\b", cells[1])))
    assert rows, "no rows found in the contract's error table"
    return rows


#: The class each status of the contract's table stands for (a subclass will do).
_STATUS_CLASS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    500: ServerError,
}


def test_every_code_in_the_contract_has_its_own_class() -> None:
    seen = 0
    for status, codes in _contract_table():
        for code in codes:
            err = error_from_code(code, "m")
            assert isinstance(err, _STATUS_CLASS[status]), (code, type(err))
            assert err.status == status, code
            assert type(err) is not APIError, code
            seen += 1
    assert seen >= 14


def test_every_code_the_twin_sends_has_its_own_class() -> None:
    from trio_asyncai.server._requests import ERROR_STATUS

    for code, status in ERROR_STATUS.items():
        err = error_from_code(code, "m")
        assert type(err) is not APIError, code
        assert err.status == status, code
    assert isinstance(error_from_code("INVALID_REQUEST", "too long"), InvalidRequestError)
