"""HTTP plumbing shared by the HTTP synthesizer and the voice/timestamp client.

Headers, error mapping, and the retry rule: 429, 5xx and failed connections
are retried, a bounded number of times (``max_retries``), and only before any
of the response body has been handed on. The waits between attempts follow
the one backoff policy (:mod:`trio_asyncai._retry`: doubling, capped at 30 s,
jittered, the service's ``retry_after_ms`` or ``Retry-After`` instead when it
asks), counted over all of one client's requests: a good answer resets it.
Requests that are not idempotent (clone, update, delete) are retried only when
they certainly never reached the server: the connection could not be opened.
A timeout (connecting, or waiting for the answer) is retried once at most,
whatever ``max_retries`` says: one fresh try gets past a lost packet or a dead
pooled connection, and more tries at a hung service only multiply the wait.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, final

import httpx
import trio

from ._config import API_VERSION, ApiKey
from ._errors import (
    APIError,
    AsyncAIError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ServerError,
    SynthesisTimeout,
    error_from_body,
    os_reason,
)
from ._retry import Backoff

__all__ = ["RestClient", "httpx_client", "map_transport_error"]

logger = logging.getLogger("trio_asyncai")

#: Retries after a timeout, at most (each costs a whole timeout).
TIMEOUT_RETRIES: Final = 1

#: httpx failures after which the request certainly never reached the server.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def map_transport_error(exc: httpx.HTTPError, what: str) -> AsyncAIError:
    """Our exception for an httpx failure (never showing headers, so never the key)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return SynthesisTimeout(f"{what}: timed out connecting")
    if isinstance(exc, httpx.TimeoutException):
        return SynthesisTimeout(f"{what}: the service went silent ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"{what}: could not connect to {_origin(exc)}: {os_reason(exc)}")
    return ConnectionLostError(f"{what}: {type(exc).__name__}")


def _origin(exc: httpx.HTTPError) -> str:
    """The scheme, host and port ``exc``'s request went to: never its path or query (a signed URL's)."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised without its request
        return "the service"
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _error_of(response: httpx.Response, body: bytes) -> APIError:
    return error_from_body(response.status_code, body, retry_after=response.headers.get("retry-after"))


def _foreign_error(response: httpx.Response, what: str) -> APIError:
    """The error for a refused URL the service handed out: not the service's own answer.

    Its body is the storage host's, not an Async error, and a 403 there means
    an expired or bad signature, not a refused API key.
    """
    status = response.status_code
    cls = ServerError if status >= 500 else APIError
    hint = "; a signed URL expires: ask for a new one" if status in (400, 401, 403, 404) else ""
    return cls(f"{what}: the signed URL was refused (HTTP {status}){hint}", status=status)


def _not_audio(response: httpx.Response) -> bool:
    """Whether a successful answer that should be audio is a JSON or HTML document instead."""
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("application/json", "text/html") or kind.endswith("+json")


def _error_instead_of_audio(response: httpx.Response, body: bytes, what: str) -> AsyncAIError:
    """The error a 200 answer that holds JSON or HTML instead of audio stands for."""
    error = error_from_body(response.status_code, body)
    if error.code is not None:
        return error
    kind = response.headers.get("content-type", "")
    return ProtocolError(f"{what}: the service answered 200 with {kind}, not audio", raw=body)


async def _read_and_close(response: httpx.Response) -> bytes:
    """The body of a streamed error answer (empty if it breaks off), and the response closed."""
    try:
        return await response.aread()
    except httpx.HTTPError:
        return b""
    finally:
        await response.aclose()


class RetryOptions(Protocol):
    """The retry options of whatever makes a :class:`RestClient` (the HTTP synthesizer, the REST client)."""

    @property
    def max_retries(self) -> int: ...

    @property
    def retry_backoff(self) -> float: ...


@final
class RestClient:
    """An httpx client, the service's base URL and key, and the retry policy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: ApiKey | None,
        retries: RetryOptions,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self._api_key = api_key
        self.max_retries = retries.max_retries
        self._backoff = Backoff(retries.retry_backoff)

    def __repr__(self) -> str:
        return f"<RestClient {self.base_url}>"

    def headers(self) -> dict[str, str]:
        headers = {"version": API_VERSION}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.value
        return headers

    def url(self, path: str) -> str:
        return self.base_url + path

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - an httpx timeout object
        answer_timeout: float | None = None,
        what: str = "request",
        expect_audio: bool = False,
    ) -> AsyncIterator[httpx.Response]:
        """Send an idempotent request and yield its successful, still-streaming response.

        Retries before yielding; raises our exception for an error status, and,
        with ``expect_audio``, for a 200 answer that is JSON or HTML.
        ``answer_timeout`` bounds each attempt from sending the request to the
        response's headers (connecting included): httpx's read timeout alone
        would let a service that never answers hold the request for as long
        as the wait allowed between body chunks.
        """
        response = await self._send(
            lambda: self.client.build_request(
                method,
                self.url(path),
                json=json_body,
                headers=self.headers(),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            ),
            what=what,
            expect_audio=expect_audio,
            stream=True,
            answer_timeout=answer_timeout,
        )
        try:
            yield response
        finally:
            await response.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        what: str = "request",
        idempotent: bool = True,
        expect_audio: bool = False,
    ) -> httpx.Response:
        """Send a request to the service, retrying as the rule says, and return the read response.

        ``idempotent=False`` retries only failures to connect. ``expect_audio``
        makes a 200 answer that is JSON or HTML an error.
        """
        return await self._send(
            lambda: self.client.build_request(
                method,
                self.url(path),
                json=json_body,
                files=files,
                data=data,
                params=params,
                headers=self.headers(),
            ),
            what=what,
            idempotent=idempotent,
            expect_audio=expect_audio,
        )

    async def fetch_foreign(self, url: str, *, what: str) -> bytes:
        """GET a URL the service handed out (a signed URL): without our key or headers.

        The URL may point at any host, so nothing of ours goes with it, not
        even a header or auth the caller's own httpx client would add;
        redirects are followed. The answer must not be JSON or HTML.
        """

        def build() -> httpx.Request:
            request = self.client.build_request("GET", url)
            for name in ("x-api-key", "version", "authorization"):
                request.headers.pop(name, None)
            return request

        response = await self._send(build, what=what, foreign=True, expect_audio=True)
        return response.content

    async def _send(
        self,
        build: Callable[[], httpx.Request],
        *,
        what: str,
        idempotent: bool = True,
        expect_audio: bool = False,
        foreign: bool = False,
        stream: bool = False,
        answer_timeout: float | None = None,
    ) -> httpx.Response:
        """Send what ``build`` makes, retrying as the rule says, until a good answer or the last error.

        With ``stream`` the good answer comes back unread (the caller closes it);
        an error answer is always read and closed here. ``answer_timeout``
        bounds each attempt until :meth:`httpx.AsyncClient.send` returns.
        """
        attempt = 0
        timeouts = 0
        while True:
            outcome = await self._attempt(
                build,
                what=what,
                idempotent=idempotent,
                expect_audio=expect_audio,
                foreign=foreign,
                stream=stream,
                answer_timeout=answer_timeout,
            )
            if isinstance(outcome, httpx.Response):
                self._backoff.succeeded()
                return outcome
            error, retry = outcome
            if isinstance(error, SynthesisTimeout):
                timeouts += 1
                retry = retry and timeouts <= TIMEOUT_RETRIES
            if error.retryable:
                self._backoff.failed()
            if not (retry and error.retryable) or attempt >= self.max_retries:
                raise error
            logger.debug("retrying after %s", error)
            await self._backoff.wait(error)
            attempt += 1

    async def _attempt(
        self,
        build: Callable[[], httpx.Request],
        *,
        what: str,
        idempotent: bool,
        expect_audio: bool,
        foreign: bool,
        stream: bool,
        answer_timeout: float | None,
    ) -> httpx.Response | tuple[AsyncAIError, bool]:
        """One attempt: the good answer, or the error and whether the rule allows retrying it.

        A frame of its own, gone when it returns: the request (whose headers
        carry the key) is never a local of a frame an error is raised through.
        """
        response: httpx.Response | None = None
        try:
            request = build()
            with trio.move_on_after(math.inf if answer_timeout is None else answer_timeout):
                if foreign:  # no auth the caller's client may carry; a signed URL may redirect
                    response = await self.client.send(
                        request, auth=None, follow_redirects=True, stream=stream
                    )
                else:
                    response = await self.client.send(request, stream=stream)
        except httpx.HTTPError as exc:
            return map_transport_error(exc, what), idempotent or isinstance(exc, _NEVER_SENT)
        if response is None:  # the answer's headers did not come within answer_timeout
            return SynthesisTimeout(f"{what}: no answer within {answer_timeout} s"), idempotent
        if response.is_success and not (expect_audio and _not_audio(response)):
            return response
        return await self._error_answer(response, what, stream=stream, foreign=foreign), idempotent

    @staticmethod
    async def _error_answer(
        response: httpx.Response, what: str, *, stream: bool, foreign: bool
    ) -> AsyncAIError:
        """The error an answer that is not the good one stands for (a streamed one is read and closed)."""
        body = await _read_and_close(response) if stream else response.content
        if response.is_success:
            return _error_instead_of_audio(response, body, what)
        if foreign:
            return _foreign_error(response, what)
        return _error_of(response, body)

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the JSON body (a :exc:`ProtocolError` if it is not JSON)."""
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deep to read
            pass
        # Raised here, with no context: the parser's frames hold the response, and it its request's key.
        raise ProtocolError(
            f"the service answered {method} {path} with something that is not JSON (or nested too deep)",
            raw=response.content,
        )


@asynccontextmanager
async def httpx_client(
    client: httpx.AsyncClient | None, *, timeout: float | None = None  # noqa: ASYNC109 - httpx's timeout
) -> AsyncIterator[httpx.AsyncClient]:
    """The caller's httpx client, left open; else one of our own (with ``timeout``), closed after."""
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(timeout=timeout) as own:
        yield own
