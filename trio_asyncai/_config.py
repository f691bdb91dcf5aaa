"""Configuration: where the service is, the key, and the environment's defaults.

Every ``open_*`` function resolves its arguments here: an argument given
wins, else the environment (``ASYNCAI_API_KEY``, ``ASYNCAI_BASE_URL``,
``ASYNCAI_VOICE_ID``), else a default. What makes a value valid once found
lives with the value types, in :mod:`trio_asyncai._types`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, final
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._types import (
    check_optional_str,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "SERVICE_HOSTS",
    "ApiKey",
    "mask_api_key",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_key_and_url",
    "resolve_voice_id",
]

#: Where the service lives unless told otherwise (``base_url=`` or ``ASYNCAI_BASE_URL``).
DEFAULT_BASE_URL: Final = "https://api.async.com"
#: The API version every request and the WebSocket handshake name.
API_VERSION: Final = "v1"
#: Hosts of the real service: a key is required there.
SERVICE_HOSTS: Final = ("api.async.com", "api.async.ai")


@final
class ApiKey:
    """An API key that never shows itself: not in a repr, a str, a log line, or an attribute.

    It is kept XOR-ed with a random pad of its own, so that an error
    reporter that prints the attributes of a traceback's locals (Sentry,
    ``rich``) finds no key in clear; :attr:`value` gives it back where it is
    sent. A plain class, not an attrs one: :func:`attrs.asdict` of an object
    that holds one (a TTS stage, an options object) keeps it whole, masked.
    """

    __slots__ = ("_masked", "_pad")

    def __init__(self, value: str) -> None:
        raw = value.encode("utf-8")
        self._pad = os.urandom(len(raw))
        self._masked = bytes(a ^ b for a, b in zip(raw, self._pad, strict=True))

    @property
    def value(self) -> str:
        """The key, for the one place that sends it."""
        return bytes(a ^ b for a, b in zip(self._masked, self._pad, strict=True)).decode("utf-8")

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other.value == self.value

    def __hash__(self) -> int:
        return hash((ApiKey, self.value))

    def __copy__(self) -> ApiKey:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> ApiKey:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an ApiKey is not pickled: it would be written out in clear")


def mask_api_key(api_key: str | ApiKey | None) -> ApiKey | None:
    """The key given, checked and masked (``None`` stays ``None``); the environment is not read."""
    if isinstance(api_key, ApiKey):
        return api_key
    return resolve_api_key(api_key, env={})


def resolve_api_key(api_key: str | ApiKey | None, env: Mapping[str, str] | None = None) -> ApiKey | None:
    """The key given, else ``ASYNCAI_API_KEY``, else ``None``."""
    if isinstance(api_key, ApiKey):
        return api_key
    env = os.environ if env is None else env
    key = api_key if api_key is not None else env.get("ASYNCAI_API_KEY")
    if key is None:
        return None
    if not isinstance(key, str):
        raise ConfigurationError(f"api_key must be a str, not {type(key).__name__}")
    key = key.strip()
    if not key:
        return None
    if any(c.isspace() or ord(c) < 32 for c in key):
        raise ConfigurationError("api_key contains whitespace or control characters")
    return ApiKey(key)


def resolve_base_url(base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """The base URL given, else ``ASYNCAI_BASE_URL``, else :data:`DEFAULT_BASE_URL`.

    Since the URL is shown in reprs and error messages, it may carry no
    credentials and no query: the key goes only where it is needed.
    """
    env = os.environ if env is None else env
    url = base_url if base_url is not None else env.get("ASYNCAI_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a str, not {type(url).__name__}")
    url = url.strip().rstrip("/")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    # The messages below never show the URL: a key pasted into the wrong
    # argument, or carried in the URL, must not reach an error message.
    if scheme not in ("http", "https", "ws", "wss"):
        raise ConfigurationError("base_url must start with http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed for its check: a bad port raises ValueError
    except ValueError:
        raise ConfigurationError("base_url is not a valid URL") from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigurationError(
            "base_url must not carry credentials, a query or a fragment: pass the key as api_key"
        )
    return url


def resolve_key_and_url(api_key: str | ApiKey | None, base_url: str | None) -> tuple[ApiKey | None, str]:
    """The key and the base URL, from the arguments or the environment.

    A ConfigurationError when there is no key for the real service (a local
    server needs none): better at once than as an authentication error later.
    """
    key = resolve_api_key(api_key)
    url = resolve_base_url(base_url)
    if key is None and (urlsplit(url).hostname or "") in SERVICE_HOSTS:
        raise ConfigurationError("no API key: pass api_key= or set ASYNCAI_API_KEY")
    return key, url


def resolve_voice_id(voice_id: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The voice given, else ``ASYNCAI_VOICE_ID``, else ``None``."""
    env = os.environ if env is None else env
    return check_optional_str("voice_id", voice_id if voice_id is not None else env.get("ASYNCAI_VOICE_ID"))
