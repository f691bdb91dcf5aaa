"""The exceptions trio-asyncai raises: one tree, rooted at :exc:`AsyncAIError`.

::

    AsyncAIError
    ├── ConfigurationError          bad arguments or environment, found client-side
    ├── SynthesizerClosedError      the synthesizer (or utterance) was already closed
    ├── ProtocolStateError          trio-asyncai used the protocol out of order: a bug of ours
    ├── ProtocolError               the server sent something we cannot understand
    │   ├── ContextEndedError       the service ended an utterance's context before
    │   │                           the client closed it (a final too early)
    │   └── NoAudioError            the service ended an utterance with speech in its
    │                               text without any audio
    ├── TransportError              the network failed us
    │   ├── ConnectError            could not open the connection (refused, DNS, TLS)
    │   ├── ConnectionLostError     an open connection dropped
    │   └── SynthesisTimeout        no answer in time (connect, first audio, silence)
    ├── SlowConsumerError           the caller read audio too slowly; what was
    │                               buffered was delivered before this is raised
    └── APIError                    the service answered with an error (``code``, ``status``)
        ├── AuthenticationError     401 INVALID_API_KEY
        ├── NotFoundError           404 VOICE_NOT_FOUND, VERSION_NOT_FOUND
        ├── InvalidRequestError     400 INVALID_REQUEST, INVALID_LANGUAGE, FORMAT_NOT_RECOGNIZED, ...
        ├── PayloadTooLargeError    413 FILE_TOO_LARGE
        ├── RateLimitError          429 TOO_MANY_CONCURRENT_REQUESTS, RATE_LIMIT_EXCEEDED,
        │   ├── QuotaExceededError  429 USAGE_LIMIT_EXCEEDED, or the quota marker in a stream
        │   └── VoiceCloneLimitError
        │                           429 VOICE_CLONE_LIMIT_EXCEEDED
        └── ServerError             5xx, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE

Every judgement about an error is made here, and only here:

- :attr:`~AsyncAIError.retryable`: whether trying the same request again
  later can succeed: true for transport failures, rate limits and server
  errors; false for a bad key, an unknown voice, a malformed request, a
  used-up quota or the clone limit.
- :func:`retry_after`: how long the service asked us to wait (the error's
  ``extra.retry_after_ms``, or a ``Retry-After`` header).
- :func:`refuses_settings`: whether the error condemns a connection's
  settings (key, voice, version, language, format), so that connecting again
  with them is no use.
- :func:`is_fatal`: whether it stops all synthesis until someone acts.
- :func:`calls_for_backoff`: whether a connection lost with it should make
  the next one wait.
- :func:`error_from_close_reason`: what a WebSocket close reason means.

How long to wait between attempts is :mod:`trio_asyncai._retry`'s.

Error bodies are read by one parser, :func:`error_from_body`, wherever they
arrive (REST, the HTTP synthesizer, a refused WebSocket handshake): the
service's nested ``{"detail": {"error_code", "message", "extra"}}``, the flat
``{"error_code", "message", "extra"}``, and its code-less 500 shape
``{"message", "method", "url", "detail": "..."}``. Anything key-like in
``extra`` (the service echoes a key prefix as ``extra.api_key``) is dropped.

Exceptions raised for an utterance carry it as ``utterance`` (or ``None``);
nothing in any message, ``repr`` or attribute holds the API key, and nor does
the traceback of one: no frame local we raise through, and no chained
context, holds it in clear (an error reporter that prints frame locals and
their attributes finds none; ``tests/test_key_in_tracebacks.py`` walks them).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeGuard

if TYPE_CHECKING:
    from ._utterance import Utterance

__all__ = [
    "APIError",
    "os_reason",
    "AsyncAIError",
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "ContextEndedError",
    "InvalidRequestError",
    "NoAudioError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "ProtocolStateError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "SlowConsumerError",
    "SynthesisTimeout",
    "SynthesizerClosedError",
    "TransportError",
    "VoiceCloneLimitError",
    "IDLE_CODE",
    "calls_for_backoff",
    "copy_error",
    "error_from_body",
    "error_from_close_reason",
    "error_from_code",
    "is_fatal",
    "refuses_settings",
    "retry_after",
    "retry_after_header",
]


class AsyncAIError(Exception):
    """Base class of every exception trio-asyncai raises on purpose."""

    #: Whether the same request may succeed if tried again later.
    retryable: bool = False

    def __init__(self, message: str, *, utterance: Utterance | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The utterance this error belongs to, if any.
        self.utterance = utterance

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(AsyncAIError, ValueError):
    """An argument or environment variable is missing or invalid, or the run is not trio's.

    Raised before anything is sent. Also a :exc:`ValueError`.
    """


class SynthesizerClosedError(AsyncAIError):
    """The synthesizer or utterance was used after it was closed."""


class ProtocolStateError(AsyncAIError, RuntimeError):
    """trio-asyncai itself used the protocol out of order: a bug of ours, never your input.

    Raised by the sans-I/O protocol core when it is asked for a message that
    makes no sense in its state (text for a context that was closed, anything
    after ``terminate``). Your own misuse of an utterance gets a
    :exc:`ConfigurationError` or :exc:`SynthesizerClosedError` before that.
    Please report it. Also a :exc:`RuntimeError`.
    """


class ProtocolError(AsyncAIError):
    """The server sent a message that does not follow the protocol.

    ``raw`` holds (a prefix of) the offending message, for debugging;
    ``context_id`` the context it named, when it could be read.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str | bytes | None = None,
        context_id: str | None = None,
        utterance: Utterance | None = None,
    ) -> None:
        super().__init__(message, utterance=utterance)
        self.raw = raw[:200] if raw is not None else None
        self.context_id = context_id


class ContextEndedError(ProtocolError):
    """The service ended an utterance's context while its text was not finished.

    The service sent the context's ``final`` before the client closed it, so
    nothing more of it will come. The audio that did arrive was delivered
    before this is raised; the text sent after that point was not spoken.
    """


class NoAudioError(ProtocolError):
    """The service ended an utterance whose text has speech in it without sending any audio.

    The same on both transports: a WebSocket context whose final came with
    no audio before it, or HTTP answers of 200 with empty bodies. Text with
    nothing to say (white space, punctuation, a ``<break>`` alone) is no
    such error.
    """


class TransportError(AsyncAIError):
    """The network connection to the service failed."""

    retryable = True


class ConnectError(TransportError):
    """The connection could not be opened (refused, name resolution, TLS, handshake)."""


class ConnectionLostError(TransportError):
    """An open connection was lost before the utterance was complete."""


class SynthesisTimeout(TransportError):
    """The service did not answer in time (connecting, first audio, or between chunks)."""


class SlowConsumerError(AsyncAIError):
    """The caller did not read an utterance's audio fast enough.

    Raised only after every chunk that was buffered has been delivered: no audio
    the service sent is lost, but the rest of the utterance is abandoned.
    """


class APIError(AsyncAIError):
    """The service answered with an error.

    ``code`` is the service's error code (``"VOICE_NOT_FOUND"``, ...), ``status``
    the HTTP status it goes with (``None`` when unknown), ``extra`` any further
    details the service sent (never an entry whose name contains "key").
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
        utterance: Utterance | None = None,
    ) -> None:
        super().__init__(message, utterance=utterance)
        self.code = code
        self.status = status
        self.extra: Mapping[str, Any] = _without_keys(extra or {})
        #: Seconds the service asked us to wait before trying again
        #: (``extra.retry_after_ms`` or ``Retry-After``), if it said.
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.code) if p is not None)
        return f"{head}: {self.message}" if head else self.message

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class AuthenticationError(APIError):
    """The API key was refused (401 ``INVALID_API_KEY``)."""


class NotFoundError(APIError):
    """Something named does not exist (404 ``VOICE_NOT_FOUND``, ``VERSION_NOT_FOUND``)."""


class InvalidRequestError(APIError):
    """The request was malformed or not accepted (400 codes)."""


class PayloadTooLargeError(APIError):
    """An upload was too large (413 ``FILE_TOO_LARGE``)."""


class RateLimitError(APIError):
    """Too many requests or too many at once (429). Retry later."""

    retryable = True


class QuotaExceededError(RateLimitError):
    """The account's usage quota is used up (``USAGE_LIMIT_EXCEEDED`` or the stream marker).

    Not retryable: waiting a little does not give the quota back.
    """

    retryable = False


class VoiceCloneLimitError(RateLimitError):
    """The account may not clone more voices (429 ``VOICE_CLONE_LIMIT_EXCEEDED``).

    Not retryable: the limit does not pass with time; delete a cloned voice
    or change plans first.
    """

    retryable = False


class ServerError(APIError):
    """The service failed (5xx, ``INTERNAL_SERVER_ERROR``, ``SERVICE_UNAVAILABLE``). Retry later."""

    retryable = True


_BY_CODE: Final[dict[str, tuple[type[APIError], int]]] = {
    "INVALID_API_KEY": (AuthenticationError, 401),
    "VOICE_NOT_FOUND": (NotFoundError, 404),
    "VOICE_PREVIEW_NOT_FOUND": (NotFoundError, 404),
    "VERSION_NOT_FOUND": (NotFoundError, 404),
    "NOT_FOUND": (NotFoundError, 404),
    "INVALID_REQUEST": (InvalidRequestError, 400),
    "INVALID_LANGUAGE": (InvalidRequestError, 400),
    "FORMAT_NOT_RECOGNIZED": (InvalidRequestError, 400),
    "SHORT_SPEECH_DURATION": (InvalidRequestError, 400),
    "BAD_SPEECH_QUALITY": (InvalidRequestError, 400),
    "VOICE_FIELD_UPDATE_NOT_ALLOWED": (InvalidRequestError, 400),
    "FILE_TOO_LARGE": (PayloadTooLargeError, 413),
    "TOO_MANY_CONCURRENT_REQUESTS": (RateLimitError, 429),
    "RATE_LIMIT_EXCEEDED": (RateLimitError, 429),
    "USAGE_LIMIT_EXCEEDED": (QuotaExceededError, 429),
    "VOICE_CLONE_LIMIT_EXCEEDED": (VoiceCloneLimitError, 429),
    "INTERNAL_SERVER_ERROR": (ServerError, 500),
    "SERVICE_UNAVAILABLE": (ServerError, 503),
}

_BY_STATUS: Final[dict[int, type[APIError]]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_from_code(
    code: str | None,
    message: str,
    *,
    status: int | None = None,
    extra: Mapping[str, Any] | None = None,
    retry_after: float | None = None,
    utterance: Utterance | None = None,
) -> APIError:
    """Build the right :exc:`APIError` subclass for a service error code and/or status.

    The code wins over the status; an unknown code falls back to the status
    (5xx -> :exc:`ServerError`), and an unknown both to :exc:`APIError`.
    ``extra.retry_after_ms``, wherever the error came from, wins over
    ``retry_after`` (a ``Retry-After`` header's seconds).
    """
    ms = (extra or {}).get("retry_after_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        retry_after = _seconds(ms / 1000.0)
    cls: type[APIError] = APIError
    if code is not None and code in _BY_CODE:
        cls, default_status = _BY_CODE[code]
        if status is None:
            status = default_status
    elif status is not None:
        cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    return cls(
        message,
        code=code,
        status=status,
        extra=extra,
        retry_after=retry_after,
        utterance=utterance,
    )


#: The longest wait a server can ask for; a longer one is cut to this.
MAX_RETRY_AFTER: Final = 60.0


#: How deep ``extra`` is kept: the service's is one or two levels; deeper
#: nesting (a broken or hostile peer) is cut here rather than recursed into.
_MAX_EXTRA_DEPTH: Final = 8


def _without_keys(data: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """A copy of ``data`` without any entry whose name contains "key", at any depth.

    The service echoes a prefix of the API key as ``extra.api_key``: it must
    not reach an exception, a log line or a caller's ``extra``. Mappings
    nested deeper than :data:`_MAX_EXTRA_DEPTH` are dropped.
    """
    return {
        name: _without_keys(value, depth + 1) if isinstance(value, Mapping) else value
        for name, value in data.items()
        if "key" not in str(name).lower() and not (isinstance(value, Mapping) and depth >= _MAX_EXTRA_DEPTH)
    }


def _seconds(value: float) -> float | None:
    if math.isnan(value):
        return None
    return max(0.0, min(value, MAX_RETRY_AFTER))


def retry_after_header(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), at most 60.

    ``None`` when absent or unreadable.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - time.time()
    return _seconds(seconds)


def error_from_body(
    status: int,
    body: bytes | str | None,
    *,
    retry_after: str | None = None,
    default_message: str | None = None,
) -> APIError:
    """The exception for an error answer, from its HTTP status and body.

    Reads the nested ``{"detail": {"error_code", "message", "extra"}}``, the
    flat ``{"error_code", "message", "extra"}`` and the 500 shape
    ``{"message", "method", "url", "detail": "..."}`` (its URL is not kept: a
    WebSocket URL carries the key); any other body (HTML, text, nothing) maps
    by status alone. ``retry_after`` is the ``Retry-After`` header's value;
    ``extra.retry_after_ms`` wins over it. Key-like entries of ``extra`` are
    dropped.
    """
    code: str | None = None
    message = default_message or f"the service answered HTTP {status}"
    extra: Mapping[str, Any] = {}
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read: the status says enough
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, dict):  # the service's usual {"detail": {...}}
            data = detail
        if isinstance(data.get("error_code"), str):
            code = data["error_code"]
        text = data.get("message")
        detail_text = data.get("detail")
        if isinstance(text, str) and text:
            message = text
            if isinstance(detail_text, str) and detail_text and detail_text != text:
                message = f"{text}: {detail_text}"
        elif isinstance(detail_text, str) and detail_text:
            message = detail_text
        if isinstance(data.get("extra"), dict):
            extra = data["extra"]
    return error_from_code(
        code, message, status=status, extra=extra, retry_after=retry_after_header(retry_after)
    )


def copy_error(error: AsyncAIError) -> AsyncAIError:
    """A fresh exception like ``error``, for raising again in another place.

    Each raise gets its own object (with its own traceback and ``utterance``)
    instead of one instance re-raised from many places.
    """
    if isinstance(error, APIError):
        return type(error)(
            error.message,
            code=error.code,
            status=error.status,
            extra=error.extra,
            retry_after=error.retry_after,
            utterance=error.utterance,
        )
    if isinstance(error, ProtocolError):
        return type(error)(
            error.message, raw=error.raw, context_id=error.context_id, utterance=error.utterance
        )
    return type(error)(error.message, utterance=error.utterance)


def retry_after(error: BaseException) -> float | None:
    """Seconds the service asked us to wait before trying again, if it said (APIErrors only)."""
    return error.retry_after if isinstance(error, APIError) else None


#: Codes that condemn a WebSocket connection's settings (its key, voice,
#: version, language or format): connecting again with them is no use.
_SETTINGS_CODES: Final = frozenset(
    {"INVALID_API_KEY", "VOICE_NOT_FOUND", "VERSION_NOT_FOUND", "INVALID_LANGUAGE", "FORMAT_NOT_RECOGNIZED"}
)


def refuses_settings(error: BaseException) -> TypeGuard[APIError]:
    """Whether ``error`` refuses the settings a connection was opened with, not just one request."""
    return isinstance(error, APIError) and error.code in _SETTINGS_CODES


#: The service's word that it closes a connection idle for 60 s.
IDLE_CODE: Final = "TIMEOUT"


def error_from_close_reason(code: int | None, reason: str | None) -> AsyncAIError:
    """The error for a WebSocket connection the service closed while we still needed it.

    A close reason that starts with one of the service's error codes
    (``"RATE_LIMIT_EXCEEDED: ..."``) is that error; the idle ``TIMEOUT`` and
    anything else is a lost connection (which a new connection may cure).
    """
    described = "no close reason" if code is None else f"code {code}" + (f": {reason}" if reason else "")
    head, _, rest = (reason or "").partition(":")
    head = head.strip()
    if head == IDLE_CODE:
        return ConnectionLostError(f"the service closed the connection as idle ({described})")
    if head in _BY_CODE:
        return error_from_code(head, rest.strip() or f"the service closed the connection ({head})")
    return ConnectionLostError(f"the service closed the connection ({described})")


def calls_for_backoff(error: BaseException) -> bool:
    """Whether losing a connection this way should make the next one wait its turn.

    The network failed under us, or the service told us to slow down: coming
    straight back would hammer a service in trouble.
    """
    return isinstance(error, TransportError | RateLimitError)


def is_fatal(error: BaseException) -> bool:
    """Whether an error stops all synthesis until someone acts: a refused key, a used-up quota.

    Such errors reach the pipeline as :class:`~trio_asyncai.frames.ErrorFrame`\\ s
    with ``fatal=True``; end the pipeline when you see one.
    """
    return isinstance(error, AuthenticationError | QuotaExceededError)


def os_reason(exc: BaseException) -> str:
    """Why a connection failed, in the system's words: ``Connection refused``, ``Name or service not known``.

    The first OS error with a reason in ``exc``'s causes (and in the groups
    among them, where trio puts the failure of each address it tried); else
    ``exc``'s own message. Used where transport errors become ours, for the
    WebSocket's socket and httpx alike.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            # trio words a refused address as "Error connecting to (...): Connection refused":
            # the system's own words for the number are shorter, and the address is said already.
            number = current.errno
            if isinstance(number, int) and number > 0 and not isinstance(current, socket.gaierror):
                return os.strerror(number)
            return current.strerror
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return str(exc) or type(exc).__name__
