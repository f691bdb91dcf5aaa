"""The HTTP synthesizer: the same utterances as the WebSocket one, over streaming HTTP."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, final

import attrs
import httpx
import trio

from ._aggregator import SentenceAggregator, pack
from ._backend import require_trio
from ._errors import AsyncAIError, QuotaExceededError, SynthesizerClosedError
from ._groups import single_exception
from ._options import HttpOptions, resolve_synthesis, takes_options
from ._protocol import QuotaMarkerScanner
from ._rest import RestClient, httpx_client, map_transport_error
from ._synthesizer import BaseSynthesizer, connect_function
from ._types import Settings
from ._utterance import Utterance, UtteranceFeed, buffer_limit

__all__ = [
    "HttpSynthesizer",
    "HttpSynthesizerStatistics",
    "connect_http_synthesizer",
    "open_http_synthesizer",
]

_STREAM_PATH: Final = "/text_to_speech/streaming"
#: The most characters of whole sentences one request carries (a longer
#: sentence goes alone): about a minute of speech.
MAX_REQUEST_CHARS: Final = 1000


@final
@attrs.frozen
class HttpSynthesizerStatistics:
    """A snapshot of an HTTP synthesizer's counters (see :meth:`HttpSynthesizer.statistics`)."""

    #: Synthesis requests made: one per piece of text (retries of one are not counted).
    requests_sent: int
    #: Utterances whose audio is still coming.
    open_utterances: int


@final
class _HttpLink:
    """The HTTP side of one utterance (its :class:`~trio_asyncai._utterance.UtteranceLink`).

    Text goes through the sentence aggregator; complete sentences are
    queued for the utterance's task (:meth:`HttpSynthesizer._run_utterance`),
    which makes one streaming request per batch, in order (see :meth:`_queue`).
    """

    def __init__(self, feed: UtteranceFeed, settings: Settings) -> None:
        self.feed = feed
        self.settings = settings
        self.segments_send, self.segments_receive = trio.open_memory_channel[str](math.inf)
        self._aggregator = SentenceAggregator(settings.language or "en")
        self.cancel_scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<_HttpLink {self.feed.context_id}>"

    def _queue(self, sentences: list[str]) -> None:
        """One request for the sentences that are ready together, up to :data:`MAX_REQUEST_CHARS`.

        Sentences that complete one after another (text streamed in) go
        one request each, as soon as each is complete; sentences ready at
        the same moment (a whole text, a flush) go as one request, since
        splitting them gains no time and costs a request each.
        """
        for batch in pack((s for s in sentences if s.strip()), MAX_REQUEST_CHARS):
            self.segments_send.send_nowait(batch)

    def send_text(self, text: str, *, force: bool) -> None:
        sentences = self._aggregator.push(text)
        if force:
            sentences += self._aggregator.flush()
        self._queue(sentences)

    def finish(self, text: str) -> bool:
        self._queue([*self._aggregator.push(text), *self._aggregator.flush()])
        self.segments_send.close()
        return True  # the utterance's task completes it once its requests are done

    def abandon(self) -> None:
        self.cancel_scope.cancel()
        self.segments_send.close()


@final
class HttpSynthesizer(BaseSynthesizer[_HttpLink]):
    """Speech over HTTP streaming requests. Made by :func:`open_http_synthesizer`.

    It has the same utterance interface as :class:`~trio_asyncai.Synthesizer`:
    code written against one runs against the other. Each utterance's text is
    sent as sentences complete (found by sentencex, so "Dr." or "$3.50" do
    not end one; :meth:`~Utterance.flush` sends what is held at once), one
    request per sentence as they form, or one for the sentences that are
    ready together (a whole text); audio streams back as each body arrives.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        rest: RestClient,
        options: HttpOptions,
        *,
        settings: Settings,
    ) -> None:
        self._nursery = nursery
        self._rest = rest
        self._settings = settings
        # httpx bounds each phase: connecting, writing the request, each body
        # read (audio_timeout); the wait for the answer's headers is bounded
        # by answer_timeout (connect_timeout, counted from the request on).
        connect_timeout = options.connect_timeout
        self._timeout = httpx.Timeout(
            connect_timeout, read=options.audio_timeout, write=connect_timeout, pool=None
        )
        self._connect_timeout = connect_timeout
        self._max_buffered_audio = options.max_buffered_audio
        self._links = {}
        self._closed = False
        self._close_requested = trio.Event()
        self._requests_sent = 0

    def __repr__(self) -> str:
        s = self._settings
        return f"<HttpSynthesizer {self._rest.base_url} voice={s.voice_id!r} model={s.model!r}>"

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return self._rest.base_url

    def statistics(self) -> HttpSynthesizerStatistics:
        """Counters for monitoring and tests."""
        return HttpSynthesizerStatistics(requests_sent=self._requests_sent, open_utterances=len(self._links))

    # ---------------------------------------------------------- utterances

    @asynccontextmanager
    async def open_utterance(self) -> AsyncGenerator[Utterance, None]:
        """Open an utterance to stream text into; see :meth:`Synthesizer.open_utterance`."""
        settings = self._settings  # read before the checkpoint: the settings as of this call
        await trio.lowlevel.checkpoint()
        # Checked after the checkpoint, with no checkpoint from here to
        # start_soon: an aclose() meanwhile must not leave an utterance in a
        # nursery that is closing (or closed to new tasks).
        if self._closed:
            raise SynthesizerClosedError("the synthesizer is closed")
        fmt = settings.output_format

        def link(feed: UtteranceFeed) -> _HttpLink:
            made = _HttpLink(feed, settings)
            self._nursery.start_soon(self._run_utterance, made)
            return made

        async with self._utterance_block(
            link,
            uuid.uuid4().hex,
            fmt,
            audio_timeout=None,
            max_buffered_bytes=buffer_limit(fmt, self._max_buffered_audio),
            backpressure=True,
        ) as utterance:
            yield utterance

    # ---------------------------------------------------------------- work

    async def _run_utterance(self, link: _HttpLink) -> None:
        feed = link.feed
        with link.cancel_scope:
            try:
                async for segment in link.segments_receive:
                    # No request for the next sentence while the last one's
                    # audio fills the buffer: the reader catches up first.
                    await feed.wait_for_room()
                    await self._stream_segment(feed, link.settings, segment)
            except AsyncAIError as exc:
                feed.fail(exc)
            else:
                feed.complete()

    async def _stream_segment(self, feed: UtteranceFeed, settings: Settings, text: str) -> None:
        body = settings.request_body()
        body["transcript"] = text
        fmt = settings.output_format
        scanner = QuotaMarkerScanner(1 if fmt.container == "mp3" else fmt.sample_width)
        self._requests_sent += 1
        async with self._rest.stream(
            "POST",
            _STREAM_PATH,
            json_body=body,
            timeout=self._timeout,
            answer_timeout=self._connect_timeout,
            what="streaming synthesis",
            expect_audio=True,
        ) as response:
            try:
                # Always read the body to its end (the service ends it right
                # after a quota marker): leaving httpx's stream iterators
                # half-way would leave them to the garbage collector.
                async for data in response.aiter_bytes():
                    if not scanner.quota_exceeded:
                        feed.audio(scanner.feed(data))
                        # Backpressure: read no further while the reader is behind.
                        await feed.wait_for_room()
            except httpx.HTTPError as exc:
                broke: AsyncAIError | None = map_transport_error(exc, "streaming synthesis")
            else:
                broke = None
        del response  # its request's headers carry the key: not a local of a frame we raise through
        # Raised outside the except clause, with no context: httpx's frames hold
        # the request, and its headers the key.
        if broke is not None:
            if scanner.quota_exceeded:
                # The marker said why the body ends; how it broke off after it does not matter.
                raise _quota_error()
            # Audio that arrived before the failure is still the caller's.
            feed.audio(scanner.end())
            raise broke
        if scanner.quota_exceeded:
            raise _quota_error()
        feed.audio(scanner.end())

    async def aclose(self) -> None:
        """Close the synthesizer now: stop every request. Idempotent.

        Leaving the ``async with open_http_synthesizer(...)`` block does this
        for you; call it to close one made by :func:`connect_http_synthesizer`.
        """
        self._shutdown()
        self._close_requested.set()
        await trio.lowlevel.checkpoint()

    def _shutdown(self) -> None:
        """Stop every request; the caller then cancels the nursery."""
        self._closed = True
        for link in list(self._links.values()):
            link.feed.fail(SynthesizerClosedError("the synthesizer was closed"))
            link.abandon()


def _quota_error() -> QuotaExceededError:
    """What the quota marker in a streamed body stands for."""
    return QuotaExceededError(
        "the usage quota ran out during synthesis", code="USAGE_LIMIT_EXCEEDED", status=429
    )


@asynccontextmanager
async def open_http_synthesizer_with(options: HttpOptions) -> AsyncIterator[HttpSynthesizer]:
    """Open an :class:`HttpSynthesizer`: speech over streaming HTTP requests.

    It takes the synthesis options of :func:`~trio_asyncai.open_synthesizer`,
    the WebSocket-only ones aside, and sends them with every request;
    ``pcm_mulaw`` is available here too (the streaming endpoint takes it).
    The options:
    """
    require_trio()
    settings, key, url = resolve_synthesis(options)
    with single_exception():
        async with httpx_client(options.client) as http, trio.open_nursery() as nursery:
            rest = RestClient(http, base_url=url, api_key=key, retries=options)
            synth = HttpSynthesizer(nursery, rest, options, settings=settings)
            try:
                yield synth
            finally:
                synth._shutdown()
                nursery.cancel_scope.cancel()


open_http_synthesizer = takes_options(HttpOptions, open_http_synthesizer_with, name="open_http_synthesizer")


connect_http_synthesizer = connect_function(
    open_http_synthesizer,
    lambda synth: synth._close_requested,
    opened=HttpSynthesizer._expect_aclose,
    name="connect_http_synthesizer",
    doc="""Open an :class:`HttpSynthesizer` whose tasks run in ``nursery``; close it with ``aclose()``.

The twin of :func:`open_http_synthesizer` for callers who bring their own
nursery; it takes the same keyword arguments (type checkers see them). Closing
it is the caller's job: one garbage collected without ``aclose()`` warns with
:exc:`ResourceWarning`.
""",
)
