"""HTTP plumbing shared by the HTTP synthesizer and the voice/timestamp client.

Headers, error mapping, and the retry rule: 429, 5xx and failed connections
are retried with backoff (honouring ``Retry-After``), a bounded number of
times, and only before any of the response body has been handed on.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, final

import httpx
import trio

from ._errors import (
    APIError,
    AsyncAIError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    SynthesisTimeout,
    error_from_code,
)
from ._types import API_VERSION, ApiKey

__all__ = ["RestCore", "map_transport_error"]

logger = logging.getLogger("trio_asyncai")

_MAX_RETRY_AFTER: Final = 60.0


def map_transport_error(exc: httpx.HTTPError, what: str) -> AsyncAIError:
    """Our exception for an httpx failure (never showing headers, so never the key)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return SynthesisTimeout(f"{what}: timed out connecting")
    if isinstance(exc, httpx.TimeoutException):
        return SynthesisTimeout(f"{what}: the service went silent ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"{what}: could not connect")
    return ConnectionLostError(f"{what}: {type(exc).__name__}")


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); ``None`` if absent or unreadable."""
    value = response.headers.get("retry-after")
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
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, _MAX_RETRY_AFTER))


def error_from_body(status: int, body: bytes, retry_after: float | None = None) -> APIError:
    """The exception for an error response, from its status and JSON body if any."""
    code: str | None = None
    message = f"the service answered HTTP {status}"
    extra: dict[str, Any] = {}
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, dict):  # FastAPI-style {"detail": {...}}
            data = detail
        if isinstance(data.get("error_code"), str):
            code = data["error_code"]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                message = data[key]
                break
        if isinstance(data.get("extra"), dict):
            extra = data["extra"]
    return error_from_code(code, message, status=status, extra=extra, retry_after=retry_after)


@final
class RestCore:
    """An httpx client, the service's base URL and key, and the retry policy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: ApiKey | None,
        max_retries: int,
        retry_backoff: float,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self._api_key = api_key
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff

    def __repr__(self) -> str:
        return f"<RestCore {self.base_url}>"

    def headers(self) -> dict[str, str]:
        headers = {"version": API_VERSION, "api-version": API_VERSION}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.value
        return headers

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _delay(self, attempt: int, error: AsyncAIError) -> None:
        retry_after = error.retry_after if isinstance(error, APIError) else None
        delay = retry_after if retry_after is not None else self.retry_backoff * 2**attempt
        logger.info("retrying in %.2f s after %s", delay, error)
        await trio.sleep(delay)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - an httpx timeout object
        what: str = "request",
    ) -> AsyncIterator[httpx.Response]:
        """Send a request and yield its successful, still-streaming response.

        Retries before yielding; raises our exception for an error status.
        """
        attempt = 0
        while True:
            error: AsyncAIError
            try:
                request = self.client.build_request(
                    method,
                    self.url(path),
                    json=json_body,
                    headers=self.headers(),
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                error = map_transport_error(exc, what)
            else:
                if response.is_success:
                    try:
                        yield response
                    finally:
                        await response.aclose()
                    return
                try:
                    body = await response.aread()
                except httpx.HTTPError:
                    body = b""
                finally:
                    await response.aclose()
                error = error_from_body(response.status_code, body, _retry_after(response))
            if not error.retryable or attempt >= self.max_retries:
                raise error
            await self._delay(attempt, error)
            attempt += 1

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
    ) -> httpx.Response:
        """Send a request, retrying as the rule says, and return the read response."""
        attempt = 0
        while True:
            error: AsyncAIError
            try:
                response = await self.client.request(
                    method,
                    self.url(path),
                    json=json_body,
                    files=files,
                    data=data,
                    params=params,
                    headers=self.headers(),
                )
            except httpx.HTTPError as exc:
                error = map_transport_error(exc, what)
            else:
                if response.is_success:
                    return response
                error = error_from_body(response.status_code, response.content, _retry_after(response))
            if not error.retryable or attempt >= self.max_retries:
                raise error
            await self._delay(attempt, error)
            attempt += 1

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the JSON body (a :exc:`ProtocolError` if it is not JSON)."""
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ProtocolError(
                f"the service answered {method} {path} with something that is not JSON",
                raw=response.content,
            ) from exc
