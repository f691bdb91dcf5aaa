"""The Async WebSocket protocol as a pure state machine: no trio, no I/O.

:class:`ClientProtocol` builds every message a client sends (as JSON text) and
turns every message the server sends into :data:`Event` objects, keeping track
of each context it opened. A context's life, as the service documents it
(``ASYNC_API.md``, "End of a context")::

    OPEN ──finish(): last text (force), close_context──▶ CLOSING ──final──▶ done
      │                                                     │
      ├──final before we closed it──▶ ENDED ──close()──┐     │
      └──close_context() (interrupt, abandon)──────────┴─────┴──▶ CLOSED (forgotten)

* ``force`` makes the service speak what it holds now; it is answered with
  audio only, never with a ``final``.
* ``close_context`` is the end of a context's input: the service sends the
  rest of that context's audio, then its one ``final``.
* A ``final`` for a context we have not closed is unexpected: the context is
  ENDED (its audio so far was delivered) and :class:`ContextEndedEarly` says so.
* Audio, finals and errors for a context the protocol does not track (never
  opened, or already closed) become :class:`MessageIgnored`: the service keeps
  sending for a context we closed, and that audio must go nowhere.
* Anything else the server sends that is not valid protocol raises
  :exc:`~trio_asyncai.ProtocolError`, never another exception.

Text goes out the way the reference asks: every transcript chunk ends with a
single space. So the protocol sends text up to its last word boundary and
holds back a trailing partial word (an LLM token such as ``"Hel"``) until the
rest of the word, a flush or the finish arrives; it never cuts inside a markup
tag (``<break time="1s"/>``) or a ``<digits>``/``<phonemes>`` element.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any, Final, TypeAlias, final

import attrs

from ._errors import ConfigurationError, ProtocolError, ProtocolStateError
from ._markup import inside, protected_spans
from ._types import Settings, check_text

__all__ = [
    "AudioReceived",
    "ClientProtocol",
    "ContextEndedEarly",
    "ContextFinished",
    "ContextState",
    "Event",
    "MessageIgnored",
    "QUOTA_MARKER",
    "ServerErrorReceived",
    "QuotaMarkerScanner",
]


class ContextState(enum.Enum):
    """Where a context stands, as seen by the client."""

    #: Text may still be sent.
    OPEN = "open"
    #: ``close_context`` was sent after the last text: the rest of the audio
    #: and then the context's ``final`` are on their way.
    CLOSING = "closing"
    #: The service sent the ``final`` before the client closed the context.
    ENDED = "ended"
    #: Not tracked: never opened, or closed and forgotten.
    CLOSED = "closed"


@final
@attrs.frozen
class AudioReceived:
    """A chunk of audio for a tracked context."""

    context_id: str | None
    audio: bytes = attrs.field(repr=lambda a: f"<{len(a)} bytes>")


@final
@attrs.frozen
class ContextFinished:
    """A closed context's ``final`` arrived: all of its audio is here."""

    context_id: str | None


@final
@attrs.frozen
class ContextEndedEarly:
    """A ``final`` arrived for a context the client had not closed.

    The service says it will send nothing more for it; what it sent before
    was delivered. Whether more text was still to come is for the caller to
    judge; the context must still be closed (:meth:`ClientProtocol.close_context`).
    """

    context_id: str | None


@final
@attrs.frozen
class ServerErrorReceived:
    """The server sent an error message.

    ``context_id`` is the context it names, or ``None`` when it names none (an
    error about the whole connection, such as a bad voice at initialization).
    ``request_id`` is the service's id for the failed request, if it sent one.
    """

    code: str | None
    message: str
    context_id: str | None
    extra: dict[str, Any] = attrs.field(factory=dict)
    request_id: str | None = None


@final
@attrs.frozen
class MessageIgnored:
    """A well-formed message for a context nobody tracks (late audio, stray final)."""

    context_id: str | None
    reason: str


Event: TypeAlias = AudioReceived | ContextFinished | ContextEndedEarly | ServerErrorReceived | MessageIgnored

_MAX_CONTEXT_ID: Final = 256


@attrs.define
class _Context:
    state: ContextState = ContextState.OPEN
    #: Text held back: a partial word, or an unfinished tag or element.
    held: str = ""
    #: Text went out without ``force`` since the last flush.
    unflushed: bool = False
    #: Some message for this context was sent: the service knows it.
    on_wire: bool = False


def _check_context_id(context_id: str | None) -> None:
    if context_id is None:
        return
    if not isinstance(context_id, str) or not context_id or len(context_id) > _MAX_CONTEXT_ID:
        raise ProtocolStateError("context_id must be a non-empty str of at most 256 characters")


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def split_at_word_boundary(text: str) -> tuple[str, str]:
    """Split text into what may go out now and what must wait for more.

    The first part ends at the last whitespace outside the service's markup
    (see :mod:`trio_asyncai._markup`); the second part is the rest (a partial
    word, an unfinished tag or element). ``("", text)`` when there is no such
    boundary.
    """
    spans = protected_spans(text)
    cut = len(text)
    while cut > 0 and (not text[cut - 1].isspace() or inside(cut, spans)):
        cut -= 1
    return text[:cut], text[cut:]


def _chunk(text: str) -> str:
    """A transcript chunk as the reference asks for it: ending with a single space."""
    return text.rstrip() + " "


@final
class ClientProtocol:
    """The client side of one Async WebSocket connection, without I/O.

    Methods that build messages return the JSON text to send (or ``None`` when
    nothing needs to go out yet); :meth:`receive` takes one message from the
    server and returns the events it means.

    Misuse by the caller (text after the finish, a bad context id, anything
    before :meth:`initialize`) raises :exc:`~trio_asyncai.ProtocolStateError`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._contexts: dict[str | None, _Context] = {}
        self._initialized = False
        self._terminated = False

    # ---------------------------------------------------------------- state

    def state(self, context_id: str | None) -> ContextState:
        """The state of a context; :attr:`ContextState.CLOSED` for one not tracked."""
        ctx = self._contexts.get(context_id)
        return ctx.state if ctx is not None else ContextState.CLOSED

    @property
    def terminated(self) -> bool:
        """Whether :meth:`terminate` was called: the connection is done."""
        return self._terminated

    @property
    def tracked_contexts(self) -> list[str | None]:
        """The contexts opened and not yet closed, oldest first."""
        return list(self._contexts)

    # -------------------------------------------------------------- sending

    def initialize(self) -> str:
        """The ``initializeConnection`` message: must be the first one sent."""
        if self._initialized:
            raise ProtocolStateError("the connection is already initialized")
        self._initialized = True
        return _dumps(self.settings.request_body())

    def _require_live(self) -> None:
        if not self._initialized:
            raise ProtocolStateError("initialize() must come first")
        if self._terminated:
            raise ProtocolStateError("the connection was terminated")

    def _open(self, context_id: str | None) -> _Context:
        """The context to send text into, made if new; refuses one past its input."""
        self._require_live()
        _check_context_id(context_id)
        ctx = self._contexts.get(context_id)
        if ctx is None:
            ctx = self._contexts[context_id] = _Context()
        elif ctx.state is not ContextState.OPEN:
            raise ProtocolStateError(f"context {context_id!r} is {ctx.state.value}: no more text")
        return ctx

    def _text_message(self, context_id: str | None, ctx: _Context, text: str, force: bool) -> str:
        message: dict[str, Any] = {"transcript": text}
        if context_id is not None:
            message["context_id"] = context_id
        if force:
            message["force"] = True
        ctx.on_wire = True
        ctx.unflushed = not force
        return _dumps(message)

    def send_text(self, context_id: str | None, text: str, *, force: bool = False) -> str | None:
        """A ``sendText`` message for the text so far, or ``None`` if it must wait.

        Opens the context if it is new. Without ``force``, text after the
        last word boundary is held back (see the module docs). With ``force``
        everything held goes out and the service speaks it now; ``None`` when
        there is nothing it has not already been asked to speak.
        """
        ctx = self._open(context_id)
        check_text(text, allow_empty=True)
        buffered = ctx.held + text
        if force:
            ctx.held = ""
            if not buffered.strip() and not ctx.unflushed:
                return None
            return self._text_message(context_id, ctx, _chunk(buffered), True)
        ready, ctx.held = split_at_word_boundary(buffered)
        if not ready.strip():
            # Only whitespace before the boundary: the last chunk sent already ends with a space.
            return None
        return self._text_message(context_id, ctx, _chunk(ready), False)

    def finish(self, context_id: str | None, text: str = "") -> list[str]:
        """End a context's input: the last text with ``force``, then ``close_context``.

        The context is then CLOSING: the rest of its audio and its ``final``
        are to come. A context that never reached the service needs no
        message at all: it is forgotten at once (its state is CLOSED).
        """
        ctx = self._open(context_id)
        messages: list[str] = []
        last = self.send_text(context_id, text, force=True)
        if last is not None:
            messages.append(last)
        if not ctx.on_wire:
            del self._contexts[context_id]
            return messages
        messages.append(self._close_message(context_id))
        ctx.state = ContextState.CLOSING
        return messages

    def close_context(self, context_id: str | None) -> str | None:
        """Stop tracking a context, with the ``closeContext`` message if it still needs one.

        Whatever arrives for it afterwards is ignored. ``None`` if the context
        is not tracked, never reached the service, or was already closed by
        :meth:`finish`: closing twice sends once.
        """
        ctx = self._contexts.pop(context_id, None)
        if ctx is None or self._terminated or not ctx.on_wire or ctx.state is ContextState.CLOSING:
            return None
        return self._close_message(context_id)

    @staticmethod
    def _close_message(context_id: str | None) -> str:
        message: dict[str, Any] = {"close_context": True, "transcript": ""}
        if context_id is not None:
            message["context_id"] = context_id
        return _dumps(message)

    def keepalive(self) -> str:
        """The keepalive: a single space, into the newest open context the service knows."""
        self._require_live()
        message: dict[str, Any] = {"transcript": " "}
        for context_id, ctx in reversed(self._contexts.items()):
            if context_id is not None and ctx.state is ContextState.OPEN and ctx.on_wire:
                message["context_id"] = context_id
                break
        return _dumps(message)

    def terminate(self) -> str:
        """The ``closeConnection`` message; the connection is done after it."""
        self._terminated = True
        self._contexts.clear()
        return _dumps({"terminate": True})

    # ------------------------------------------------------------ receiving

    def receive(self, message: str | bytes) -> list[Event]:
        """Parse one server message into events.

        Raises :exc:`~trio_asyncai.ProtocolError` for anything that is not a
        valid server message (with the ``context_id`` it named, when that
        could be read); a valid one for an untracked context becomes
        :class:`MessageIgnored`.
        """
        if isinstance(message, bytes | bytearray):
            raise ProtocolError("the server sent a binary message", raw=bytes(message))
        if not isinstance(message, str):
            raise ProtocolError(f"the server sent a {type(message).__name__}")
        try:
            data = json.loads(message)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("the server sent a message that is not JSON", raw=message) from exc
        if not isinstance(data, dict):
            raise ProtocolError("the server sent JSON that is not an object", raw=message)

        context_id = data.get("context_id")
        if context_id is not None and not isinstance(context_id, str):
            raise ProtocolError("context_id is not a string", raw=message)
        try:
            return self._events(data, context_id, message)
        except ProtocolError as exc:
            # Whoever reads the events must know whose audio has a gap now.
            exc.context_id = context_id
            raise

    def _events(self, data: dict[str, Any], context_id: str | None, message: str) -> list[Event]:
        """The events of a server message that is a JSON object naming ``context_id``."""
        if "error_code" in data or "error" in data:
            return [self._error_event(data, context_id, message)]

        if "audio" not in data and "final" not in data:
            raise ProtocolError("the server sent a message with neither audio nor error", raw=message)

        audio_b64 = data.get("audio", "")
        if audio_b64 is None:
            audio_b64 = ""
        if not isinstance(audio_b64, str):
            raise ProtocolError("audio is not a base64 string", raw=message)
        is_final = data.get("final", False)
        if is_final is None:
            is_final = False
        if not isinstance(is_final, bool):
            raise ProtocolError("final is not a boolean", raw=message)
        try:
            audio = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("audio is not valid base64", raw=message) from exc

        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.state is ContextState.ENDED:
            what = "final" if is_final and not audio else "audio"
            return [MessageIgnored(context_id, f"{what} for a context not awaiting audio")]

        events: list[Event] = []
        if audio:
            events.append(AudioReceived(context_id, audio))
        if is_final:
            if ctx.state is ContextState.CLOSING:
                del self._contexts[context_id]
                events.append(ContextFinished(context_id))
            else:
                ctx.state = ContextState.ENDED
                events.append(ContextEndedEarly(context_id))
        return events

    def _error_event(
        self, data: dict[str, Any], context_id: str | None, raw: str
    ) -> ServerErrorReceived | MessageIgnored:
        code = data.get("error_code")
        text = data.get("message")
        if code is None and isinstance(data.get("error"), str):
            code = data["error"]
        extra = data.get("extra")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise ProtocolError("extra is not an object", raw=raw)
        if context_id is None and isinstance(extra.get("context_id"), str):
            context_id = extra["context_id"]
        if code is not None and not isinstance(code, str):
            raise ProtocolError("error_code is not a string", raw=raw)
        if text is None:
            text = code or "the server reported an error"
        if not isinstance(text, str):
            raise ProtocolError("message is not a string", raw=raw)
        request_id = data.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            request_id = str(request_id)
        if context_id is not None and context_id not in self._contexts:
            return MessageIgnored(context_id, f"error {code} for a context no longer tracked")
        return ServerErrorReceived(
            code=code, message=text, context_id=context_id, extra=extra, request_id=request_id
        )


#: What the HTTP streaming endpoint writes into a 200 body when the quota runs out.
QUOTA_MARKER: Final = b"--ERROR:QUOTA_EXCEEDED--"


@final
class QuotaMarkerScanner:
    """Splits an HTTP audio stream into whole frames and finds the quota marker.

    Feed it the body as it arrives; it returns the bytes that are safe to
    deliver as audio: whole sample frames that cannot be part of the marker.
    Up to ``len(QUOTA_MARKER) - 1`` bytes are held back until the next piece
    shows whether they start the marker, so the marker is found even when it
    is split across chunks, and not one byte of it is delivered.
    """

    def __init__(self, frame_size: int = 1) -> None:
        if frame_size < 1:
            raise ConfigurationError("frame_size must be at least 1")
        self._frame = frame_size
        self._pending = b""
        #: Whether the marker was seen; nothing after it is audio.
        self.quota_exceeded = False

    def feed(self, data: bytes) -> bytes:
        """Take a piece of the body; return the audio that is safe to deliver now."""
        if self.quota_exceeded:
            return b""
        buf = self._pending + data
        at = buf.find(QUOTA_MARKER)
        if at >= 0:
            self.quota_exceeded = True
            self._pending = b""
            return buf[: at - at % self._frame]
        cut = len(buf) - (len(QUOTA_MARKER) - 1)
        cut -= cut % self._frame
        if cut <= 0:
            self._pending = buf
            return b""
        self._pending = buf[cut:]
        return buf[:cut]

    def end(self) -> bytes:
        """The body is over: the whole frames still held back."""
        if self.quota_exceeded:
            return b""
        buf, self._pending = self._pending, b""
        return buf[: len(buf) - len(buf) % self._frame]
