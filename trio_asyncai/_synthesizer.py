"""What both synthesizers share: settings, the registry of open utterances, ``speak`` and ``interrupt``."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Concatenate, Generic, ParamSpec, Protocol, TypeVar, Unpack

import trio

from ._backend import require_trio
from ._groups import single_exception
from ._types import OutputFormat, Settings, SettingsChanges, check_output_format, check_text
from ._utterance import Utterance, UtteranceFeed, UtteranceLink, utterance_block

__all__ = ["BaseSynthesizer", "RegisteredLink", "connect_function"]


class RegisteredLink(UtteranceLink, Protocol):
    """A link, as the synthesizer's registry sees it: it carries one utterance, and reports to it."""

    @property
    def feed(self) -> UtteranceFeed: ...


L = TypeVar("L", bound=RegisteredLink)
T = TypeVar("T")
P = ParamSpec("P")


class BaseSynthesizer(Generic[L]):
    """The part of both synthesizers that does not depend on the transport.

    ``L`` is the transport's link type. :attr:`_links` is the one registry of
    utterances: each utterance's link, by context id, from the moment it is
    opened until its ``async with`` block is left (not merely until its audio
    has arrived, so that :meth:`interrupt` reaches audio not yet read).
    """

    _settings: Settings
    _links: dict[str, L]
    #: Set by ``aclose()``.
    _close_requested: trio.Event
    #: Set for a synthesizer made by a ``connect_*`` function: its caller owns
    #: closing it, so it warns if garbage collected before ``aclose()``.
    _owes_aclose = False

    def _expect_aclose(self) -> None:
        """Mark this synthesizer as one its caller must close with ``aclose()`` (see ``__del__``)."""
        self._owes_aclose = True

    def __del__(self) -> None:
        # anyio's habit: a ResourceWarning, not an error, for a resource its
        # owner never closed. An ``open_*`` block closes its own; a
        # ``connect_*`` one that reaches the garbage collector unclosed was
        # only stopped by its nursery's end.
        if self._owes_aclose and not self._close_requested.is_set():
            warnings.warn(
                f"{type(self).__name__} made by connect_* was never closed: call aclose()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    @property
    def settings(self) -> Settings:
        """The settings the next utterance will use."""
        return self._settings

    def update_settings(self, **changes: Unpack[SettingsChanges]) -> None:
        """Change voice, model, language, output format or voice controls from the next utterance on.

        Takes the settings by name (:class:`~trio_asyncai.SettingsChanges`:
        ``voice_id``, ``model``, ``language``, ``output_format``,
        ``speed_control``, ``stability``); ``None`` leaves one as it is.
        Utterances already open keep the settings they started with. (On the
        WebSocket these settings are fixed per connection, so the next
        utterance opens a new connection, and the old one is closed once its
        utterances are done.) ``speed_control`` (0.7 to 2.0) and
        ``stability`` (0 to 100) are honoured by the ``async_flash_v1.0``
        model only.
        """
        output_format = changes.get("output_format")
        if output_format is not None:
            check_output_format(output_format, streaming=True)
        self._settings = self._settings.with_changes(**changes)

    def open_utterance(self) -> AbstractAsyncContextManager[Utterance]:
        raise NotImplementedError  # pragma: no cover

    @asynccontextmanager
    async def _utterance_block(
        self,
        make_link: Callable[[UtteranceFeed], L],
        context_id: str,
        output_format: OutputFormat,
        *,
        audio_timeout: float | None,
        max_buffered_bytes: int | None,
        backpressure: bool = False,
    ) -> AsyncIterator[Utterance]:
        """Make an utterance and its link; run the utterance's ``async with`` block, listed while it runs."""
        made: list[L] = []

        def link(feed: UtteranceFeed) -> L:
            made.append(make_link(feed))
            return made[0]

        utterance = Utterance(
            link,
            context_id,
            output_format,
            audio_timeout=audio_timeout,
            max_buffered_bytes=max_buffered_bytes,
            backpressure=backpressure,
        )
        self._links[context_id] = made[0]
        try:
            with utterance_block(utterance):
                yield utterance
        finally:
            del self._links[context_id]

    @asynccontextmanager
    async def speak(self, text: str) -> AsyncGenerator[Utterance, None]:
        """Speak a whole text as one utterance; iterate it for the audio.

        ::

            async with synth.speak("Hello from trio.") as utterance:
                async for chunk in utterance:
                    sink.write(chunk.audio)

        One utterance holds a bounded amount of text: the local server
        refuses more than 100,000 characters with
        :exc:`~trio_asyncai.InvalidRequestError` (the service documents no
        figure). Cut a longer text with :func:`~trio_asyncai.split_text`
        and speak the pieces one after another, as ``trio-asyncai speak``
        does.
        """
        check_text(text)
        async with self.open_utterance() as utterance:
            # Shielded: an interrupt() arriving here must not end the block
            # before it yields (it ends it at the body's first checkpoint).
            with trio.CancelScope(shield=True):
                await utterance.finish(text)
            yield utterance

    def interrupt(self) -> None:
        """Interrupt every open utterance (see :meth:`Utterance.interrupt`)."""
        for link in list(self._links.values()):
            link.feed.utterance.interrupt()


def connect_function(
    opener: Callable[P, AbstractAsyncContextManager[T]],
    closed: Callable[[T], trio.Event],
    *,
    opened: Callable[[T], None],
    name: str,
    doc: str,
) -> Callable[Concatenate[trio.Nursery, P], Awaitable[T]]:
    """Make the ``connect_*(nursery, ...)`` twin of an ``open_*`` context manager.

    The twin takes the same keyword arguments (checked by type checkers, via
    ParamSpec). Its task enters the context manager in the caller's nursery,
    hands back what it yields, and leaves the block when ``closed(value)`` is
    set (by the value's ``aclose()``) or when the nursery is cancelled.
    ``opened(value)`` is called once the value is handed back (to mark it as
    one its caller must close).
    """

    async def connect(nursery: trio.Nursery, /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Made here, so that the long-lived task below holds only the manager,
        # not the arguments (an API key among them) as a frame local.
        require_trio()
        manager = opener(*args, **kwargs)

        async def run(*, task_status: trio.TaskStatus[T] = trio.TASK_STATUS_IGNORED) -> None:
            async with manager as value:
                task_status.started(value)
                await closed(value).wait()

        with single_exception():
            value: T = await nursery.start(run)
        opened(value)
        return value

    # For help() and Sphinx: the opener's parameters, after the nursery.
    signature = inspect.signature(opener)
    nursery_param = inspect.Parameter("nursery", inspect.Parameter.POSITIONAL_ONLY, annotation="trio.Nursery")
    connect.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[nursery_param, *signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    connect.__name__ = connect.__qualname__ = name
    connect.__module__ = opener.__module__
    connect.__doc__ = doc
    return connect
