"""The one check that trio-asyncai runs where it can: under trio."""

from __future__ import annotations

import sniffio

from ._errors import ConfigurationError

__all__ = ["require_trio"]


def require_trio() -> None:
    """Raise :exc:`~trio_asyncai.ConfigurationError` unless the caller runs under trio.

    The SDK is built on trio's nurseries, cancel scopes and sockets: it runs
    in :func:`trio.run`, or in :func:`anyio.run` with ``backend="trio"``.
    Under asyncio (anyio's default backend) trio's own calls fail deep inside
    with an ``AttributeError``; this says what to do instead, before anything
    is opened.
    """
    try:
        library: str | None = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "trio":
        where = f"under {library}" if library else "outside an async run"
        raise ConfigurationError(
            f"trio-asyncai needs trio, and was called {where}: "
            "run it with trio.run(), or anyio.run(..., backend='trio')"
        )
