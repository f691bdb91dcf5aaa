"""The Async WebSocket protocol as a pure state machine: no trio, no I/O.

:class:`ClientProtocol` builds every message a client sends (as JSON text) and
turns every message the server sends into :data:`Event` objects, keeping track
of each context it opened::

    OPEN ──finish()──▶ FLUSHED ──last final──▶ COMPLETE
      │                   │                        │
      └───────────────────┴──close_context()───────┴──▶ CLOSED (forgotten)

* Every ``force`` flush asks the server for one ``final``; a context is
  complete when it has been finished and every flush has had its final.
* Audio, finals and errors for a context the protocol does not track (never
  opened, or already closed) become :class:`MessageIgnored`: the server may
  still be sending for a context we closed, and that audio must go nowhere.
* Anything else the server sends that is not valid protocol raises
  :exc:`~trio_asyncai.ProtocolError`, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any, Final, TypeAlias, final

import attrs

from ._errors import ConfigurationError, ProtocolError
from ._types import Settings, check_text

__all__ = [
    "AudioReceived",
    "ClientProtocol",
    "ContextFinished",
    "ContextState",
    "Event",
    "FlushesCompleted",
    "MessageIgnored",
    "QUOTA_MARKER",
    "ServerErrorReceived",
    "StreamScanner",
]


class ContextState(enum.Enum):
    """Where a context stands, as seen by the client."""

    #: Text may still be sent.
    OPEN = "open"
    #: The last text was sent and flushed; waiting for the server's final(s).
    FLUSHED = "flushed"
    #: Every flush has had its final: all audio has arrived.
    COMPLETE = "complete"
    #: ``close_context`` was sent; nothing more is tracked for it.
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
    """All audio of a finished context has arrived (its last ``final``)."""

    context_id: str | None


@final
@attrs.frozen
class FlushesCompleted:
    """Every flush of a still-open context has had its final: no audio is owed now.

    More text may still come; the context completes after :meth:`ClientProtocol.finish`.
    """

    context_id: str | None


@final
@attrs.frozen
class ServerErrorReceived:
    """The server sent an error message.

    ``context_id`` is the context it names, or ``None`` when it names none (an
    error about the whole connection, such as a bad voice at initialization).
    """

    code: str | None
    message: str
    context_id: str | None
    extra: dict[str, Any] = attrs.field(factory=dict)


@final
@attrs.frozen
class MessageIgnored:
    """A well-formed message for a context nobody tracks (late audio, stray final)."""

    context_id: str | None
    reason: str


Event: TypeAlias = AudioReceived | ContextFinished | FlushesCompleted | ServerErrorReceived | MessageIgnored

_MAX_CONTEXT_ID: Final = 256


@attrs.define
class _Context:
    state: ContextState = ContextState.OPEN
    pending_finals: int = 0
    # Text was sent without ``force`` since the last flush: finish() must
    # flush it, even when an earlier flush's final is still pending, or the
    # server may keep it buffered and its audio would arrive after the
    # context completed (and be ignored).
    unflushed: bool = False


def _check_context_id(context_id: str | None) -> None:
    if context_id is None:
        return
    if not isinstance(context_id, str) or not context_id or len(context_id) > _MAX_CONTEXT_ID:
        raise ConfigurationError("context_id must be a non-empty str of at most 256 characters")


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@final
class ClientProtocol:
    """The client side of one Async WebSocket connection, without I/O.

    Methods that build messages return the JSON text to send; :meth:`receive`
    takes one message from the server and returns the events it means.
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
    def tracked_contexts(self) -> list[str | None]:
        """The contexts opened and not yet closed, oldest first."""
        return list(self._contexts)

    # -------------------------------------------------------------- sending

    def initialize(self) -> str:
        """The ``initializeConnection`` message: must be the first one sent."""
        if self._initialized:
            raise ConfigurationError("the connection is already initialized")
        self._initialized = True
        return _dumps(self.settings.request_body())

    def _require_live(self) -> None:
        if not self._initialized:
            raise ConfigurationError("initialize() must come first")
        if self._terminated:
            raise ConfigurationError("the connection was terminated")

    def send_text(self, context_id: str | None, text: str, *, force: bool = False) -> str:
        """A ``sendText`` message; opens the context if it is new.

        With ``force`` the server synthesizes what it holds now and answers
        with a ``final`` once that audio has been sent.
        """
        self._require_live()
        _check_context_id(context_id)
        check_text(text, allow_empty=True)
        ctx = self._contexts.get(context_id)
        if ctx is None:
            ctx = self._contexts[context_id] = _Context()
        elif ctx.state is not ContextState.OPEN:
            raise ConfigurationError(f"context {context_id!r} is {ctx.state.value}: no more text")
        message: dict[str, Any] = {"transcript": text}
        if context_id is not None:
            message["context_id"] = context_id
        if force:
            message["force"] = True
            ctx.pending_finals += 1
            ctx.unflushed = False
        elif text:
            ctx.unflushed = True
        return _dumps(message)

    def finish(self, context_id: str | None, text: str = "") -> str | None:
        """Send the last text of a context, flushed; ``None`` if nothing needs sending.

        Nothing is sent when no text has come since the last flush: the
        finals already asked for end the context.
        """
        self._require_live()
        _check_context_id(context_id)
        ctx = self._contexts.get(context_id)
        if ctx is None:
            ctx = self._contexts[context_id] = _Context()
        elif ctx.state is not ContextState.OPEN:
            raise ConfigurationError(f"context {context_id!r} is {ctx.state.value}: no more text")
        message: str | None = None
        if text or ctx.pending_finals == 0 or ctx.unflushed:
            # A flush of nothing still asks for a final, so the context can end.
            message = self.send_text(context_id, text if text else " ", force=True)
        ctx.state = ContextState.FLUSHED
        return message

    def complete_if_done(self, context_id: str | None) -> bool:
        """Move a flushed context with no finals pending to COMPLETE; say whether it is."""
        ctx = self._contexts.get(context_id)
        if ctx is None:
            return False
        if ctx.state is ContextState.FLUSHED and ctx.pending_finals == 0:
            ctx.state = ContextState.COMPLETE
        return ctx.state is ContextState.COMPLETE

    def close_context(self, context_id: str | None) -> str | None:
        """The ``closeContext`` message, and forget the context.

        ``None`` if the context is not tracked (never opened or already
        closed): closing twice sends once.
        """
        if self._contexts.pop(context_id, None) is None or self._terminated:
            return None
        message: dict[str, Any] = {"close_context": True, "transcript": ""}
        if context_id is not None:
            message["context_id"] = context_id
        return _dumps(message)

    def keepalive(self) -> str:
        """The keepalive: a single space, into the newest open context if any."""
        self._require_live()
        message: dict[str, Any] = {"transcript": " "}
        for context_id in reversed(self._contexts):
            if context_id is not None and self._contexts[context_id].state is ContextState.OPEN:
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
        valid server message; a valid one for an untracked context becomes
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
        if ctx is None or ctx.state is ContextState.COMPLETE:
            what = "final" if is_final and not audio else "audio"
            return [MessageIgnored(context_id, f"{what} for a context not awaiting audio")]

        events: list[Event] = []
        if audio:
            events.append(AudioReceived(context_id, audio))
        if is_final:
            answered = ctx.pending_finals > 0
            if answered:
                ctx.pending_finals -= 1
            if self.complete_if_done(context_id):
                events.append(ContextFinished(context_id))
            elif answered and ctx.pending_finals == 0 and ctx.state is ContextState.OPEN:
                events.append(FlushesCompleted(context_id))
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
        if context_id is not None and context_id not in self._contexts:
            return MessageIgnored(context_id, f"error {code} for a context no longer tracked")
        return ServerErrorReceived(code=code, message=text, context_id=context_id, extra=extra)


#: What the HTTP streaming endpoint writes into a 200 body when the quota runs out.
QUOTA_MARKER: Final = b"--ERROR:QUOTA_EXCEEDED--"


@final
class StreamScanner:
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
