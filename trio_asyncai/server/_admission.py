"""Admission: what every request passes before the server reads it, over HTTP and the WebSocket.

One rule, one home. The HTTP endpoints (:func:`~._http.admit`) and the
WebSocket handshake (:func:`~._websocket.handle_websocket`) each read the key
and the version where ASYNC_API.md puts them ("Hosts, versions,
credentials": headers ``x-api-key`` and ``version`` over REST, the query
parameters ``api_key`` and ``version`` on the WebSocket) and hand them to
:func:`admission_refusal`, which decides, in this order:

1. **A fault status** (``Faults.http_statuses`` over HTTP,
   ``Faults.handshake_statuses`` for handshakes): the first one is popped and
   answers this one request, with the service's code for that status
   (:data:`CODE_FOR_STATUS`). Each status answers one admission, on both
   transports: ASYNC_API.md's errors are answers to a request ("HTTP error
   bodies"), a 429 or a 5xx says "wait, then retry" (``retry_after_ms``), and
   the handshake is one HTTP request like any other (a GET whose refusal is
   an HTTP answer with the same body). A refusal that lasts is a list as
   long as the attempts (``[503] * 6``); "one 503, then fine" is ``[503]``.
2. **The key**, when the server has one (``api_key``): missing, empty or
   different is 401 ``INVALID_API_KEY`` with the first 4 characters of the
   key sent in ``extra.api_key`` (ASYNC_API.md, "Errors": "``api_key`` (a
   key prefix)"); none at all has no ``extra``.
3. **The version**: ``v1`` passes, and any other value is 404
   ``VERSION_NOT_FOUND``, the empty one included: ASYNC_API.md says
   "``version: v1`` on every request ... No other version header exists",
   and an empty value names no version that exists. A request without
   the version is taken as v1 (*our choice*: the reference says every
   request carries it, and not what the service answers one that does not);
   the ``version_required`` fault refuses it with 404 instead, so that a
   client can be tested against both.

The same rule shapes what a refusal, and every other error, says:

* :func:`error_extra`: ``RATE_LIMIT_EXCEEDED`` carries ``extra.limit`` and
  ``extra.retry_after_ms`` (ASYNC_API.md, "Errors": 429 ``RATE_LIMIT_EXCEEDED``,
  ``limit``, ``retry_after_ms``), in an HTTP answer, a refused handshake and
  a WebSocket error message alike.
* :func:`retry_after_headers`: the service sends no ``Retry-After`` header
  ("The reference documents no ``Retry-After`` header: wait
  ``extra.retry_after_ms`` when given"). The ``retry_after_header`` fault
  imitates the servers and proxies that do: every HTTP answer with a 429 or
  a 5xx (a refused handshake is one) carries that header, and no
  ``RATE_LIMIT_EXCEEDED`` carries ``retry_after_ms``, on any transport. A
  WebSocket error message has no header, so it then tells no wait at all:
  the client must fall back on its own backoff, which "when given" asks of
  it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Final

from ._requests import RequestError, shown
from ._state import Faults, ServerState

__all__ = [
    "API_VERSION",
    "CODE_FOR_STATUS",
    "FAULT_MESSAGE",
    "admission_refusal",
    "error_answer",
    "error_extra",
    "retry_after_headers",
]

#: The one API version there is.
API_VERSION: Final = "v1"

#: The error code the server gives an HTTP status it is told to answer with.
CODE_FOR_STATUS: Final[Mapping[int, str]] = {
    400: "INVALID_REQUEST",
    401: "INVALID_API_KEY",
    403: "INVALID_API_KEY",
    404: "VERSION_NOT_FOUND",
    413: "FILE_TOO_LARGE",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_SERVER_ERROR",
    502: "SERVICE_UNAVAILABLE",
    503: "SERVICE_UNAVAILABLE",
    504: "SERVICE_UNAVAILABLE",
}

#: The message of an error a fault switch asked for.
FAULT_MESSAGE: Final = "error injected by the local server's faults"

#: ``extra.limit`` of a ``RATE_LIMIT_EXCEEDED`` (requests a minute; the
#: reference gives no figure).
RATE_LIMIT: Final = 60


def _code_for_status(status: int) -> str:
    fallback = "INTERNAL_SERVER_ERROR" if status >= 500 else "INVALID_REQUEST"
    return CODE_FOR_STATUS.get(status, fallback)


def _same_key(sent: str | None, expected: str) -> bool:
    """Whether the key sent is the server's, compared in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def admission_refusal(
    state: ServerState,
    statuses: list[int],
    *,
    key: str | None,
    version: str | None,
    need_key: bool = True,
) -> RequestError | None:
    """Why a request may not come in, or ``None``: a fault status, the key, then the version.

    ``statuses`` is the transport's list of fault statuses (its first is
    popped when there is one); ``key`` and ``version`` are what the request
    carried (``None``: absent). ``need_key=False`` skips the key, for the
    status check (ASYNC_API.md: "the status check needs only ``version``").
    The module docstring gives each rule and its reason.
    """
    if statuses:
        status = statuses.pop(0)
        return RequestError(_code_for_status(status), FAULT_MESSAGE, status=status)
    if need_key and state.api_key is not None and not _same_key(key, state.api_key):
        extra = {"api_key": key[:4]} if key else None
        return RequestError("INVALID_API_KEY", "the API key is missing or invalid", extra=extra)
    if version is None:
        if state.faults.version_required:
            return RequestError("VERSION_NOT_FOUND", "the version is missing; send version v1")
    elif version != API_VERSION:
        return RequestError("VERSION_NOT_FOUND", f"API version {shown(version)} not found; use v1")
    return None


def error_extra(faults: Faults, code: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``extra`` of an error: ``extra``, plus what the contract gives ``code``.

    ``RATE_LIMIT_EXCEEDED``: ``limit`` and ``retry_after_ms``
    (``faults.retry_after_ms``), the latter left out with the
    ``retry_after_header`` fault. ``None`` when there is nothing.
    """
    details = dict(extra or {})
    if code == "RATE_LIMIT_EXCEEDED":
        details.setdefault("limit", RATE_LIMIT)
        if faults.retry_after_header is None:
            details.setdefault("retry_after_ms", faults.retry_after_ms)
    return details or None


def retry_after_headers(faults: Faults, status: int) -> dict[str, str] | None:
    """The headers an HTTP error answer adds: ``Retry-After`` on a 429 or 5xx with that fault, else none."""
    header = faults.retry_after_header
    if header is not None and (status == 429 or status >= 500):
        return {"Retry-After": header}
    return None


_REASONS: Final[Mapping[int, str]] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_answer(
    faults: Faults,
    status: int,
    code: str,
    message: str,
    *,
    extra: Mapping[str, Any] | None = None,
    method: str = "GET",
    path: str = "/",
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The JSON body and extra headers of an HTTP error answer, as the service shapes them.

    * A 5xx is the service's code-less ``{"message", "method", "url",
      "detail": message}``.
    * Anything else is ``{"detail": {"error_code", "message", "extra"?}}``,
      or the flat ``{"error_code", "message", "extra"?}`` with the
      ``flat_error_bodies`` fault; ``extra`` is :func:`error_extra`'s.
    * The headers are :func:`retry_after_headers`'.
    """
    headers = retry_after_headers(faults, status)
    if status >= 500:
        reason = _REASONS.get(status, "Server Error")
        return {"message": reason, "method": method, "url": path, "detail": message}, headers
    flat: dict[str, Any] = {"error_code": code, "message": message}
    details = error_extra(faults, code, extra)
    if details:
        flat["extra"] = details
    return (flat if faults.flat_error_bodies else {"detail": flat}), headers
