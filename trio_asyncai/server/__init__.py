"""A local server that speaks the Async text-to-speech API, on trio.

A real ASGI app (Starlette) on Hypercorn's trio worker, the twin of the
service: it serves the WebSocket ``/text_to_speech/websocket/ws``, the HTTP
synthesis endpoints, the status check ``GET /`` and the voice endpoints as
ASYNC_API.md (summarizing the official reference) describes them, with an
offline voice (piper, from the ``[voice]`` extra, which reads each request
in its language, any of the service's 15: see ``_languages``) or a
generated signal.
Errors are the service's: ``{"detail": {"error_code", "message", "extra"}}``
(429 ``RATE_LIMIT_EXCEEDED`` with ``extra.retry_after_ms``, 401 with a key
prefix in ``extra.api_key``), and the code-less 500 shape. Behaviours the
service does not have, but a client must survive, are named fault switches
(:class:`Faults`), off by default. Tests use it through
:func:`open_local_server`, with those switches and a log of what clients sent
(:class:`ServerLog`); ``trio-asyncai serve`` runs :func:`serve`.

The server is deliberately independent of the client code: it imports
nothing from ``trio_asyncai`` outside ``trio_asyncai.server`` (a test checks
this), and its checks are written from the contract, not from what the SDK
sends. Shared code would share mistakes; kept apart, the server catches the
client's.

Audio comes raw (``pcm_s16le``, ``pcm_f32le``, or ``pcm_mulaw`` on the
streaming endpoint and the WebSocket), as wav (whole-file endpoints) or as
mp3, encoded by LAME through ``lameenc`` at the MPEG sample rates (8000,
11025, 12000, 16000, 22050, 24000, 32000, 44100 and 48000 Hz) and the bit
rates each allows. ``speed_control`` and ``stability`` are validated; with
``async_flash_v1.0``, the one model the service applies them to, speed
changes the speaking rate and stability how much piper's rendering varies.

A client cannot knock it over: the key is checked before a body is read;
bodies, WebSocket messages and transcripts have limits, answered with the
service's error codes; synthesis waits for a client that does not read;
whole files are sent as they are made (wav through a temporary file). The
log keeps what clients sent only when asked (:func:`open_local_server` does,
:func:`serve` keeps counters only). docs/server.rst lists the limits.

Cloned voices live in memory, or with ``state_dir`` in a directory that
keeps them across restarts (:class:`VoiceStore`; a damaged one is a
:exc:`StateDirError` at start).

Needs the ``[server]`` extra (``lameenc`` is imported only for mp3; without
it mp3 is refused with 400 ``FORMAT_NOT_RECOGNIZED``); the voice extra is
optional and imported only when the piper engine first speaks.
"""

from __future__ import annotations

from ._app import LocalServer as LocalServer
from ._app import create_app as create_app
from ._app import open_local_server as open_local_server
from ._app import serve as serve
from ._engines import JOE_MODEL_SHA256 as JOE_MODEL_SHA256
from ._engines import Engine as Engine
from ._engines import EngineError as EngineError
from ._engines import PiperEngine as PiperEngine
from ._engines import SignalEngine as SignalEngine
from ._engines import load_engine as load_engine
from ._engines import piper_available as piper_available
from ._http import QUOTA_MARKER as QUOTA_MARKER
from ._requests import DEFAULT_OUTPUT_FORMAT as DEFAULT_OUTPUT_FORMAT
from ._requests import SUPPORTED_LANGUAGES as SUPPORTED_LANGUAGES
from ._requests import AudioFormat as AudioFormat
from ._requests import RequestError as RequestError
from ._state import ConnectionLog as ConnectionLog
from ._state import Faults as Faults
from ._state import HTTPRequestLog as HTTPRequestLog
from ._state import ServerLog as ServerLog
from ._state import ServerState as ServerState
from ._store import StateDirError as StateDirError
from ._store import VoiceStore as VoiceStore
from ._voices import DEFAULT_VOICE_ID as DEFAULT_VOICE_ID
from ._voices import PREDEFINED_VOICES as PREDEFINED_VOICES
from ._voices import LibraryVoice as LibraryVoice
from ._voices import VoiceLibrary as VoiceLibrary
from ._voices import VoiceParams as VoiceParams

__all__ = [
    "DEFAULT_OUTPUT_FORMAT",
    "DEFAULT_VOICE_ID",
    "JOE_MODEL_SHA256",
    "PREDEFINED_VOICES",
    "QUOTA_MARKER",
    "SUPPORTED_LANGUAGES",
    "ConnectionLog",
    "Engine",
    "EngineError",
    "Faults",
    "HTTPRequestLog",
    "LocalServer",
    "AudioFormat",
    "PiperEngine",
    "RequestError",
    "ServerLog",
    "ServerState",
    "SignalEngine",
    "StateDirError",
    "VoiceStore",
    "LibraryVoice",
    "VoiceLibrary",
    "VoiceParams",
    "create_app",
    "load_engine",
    "open_local_server",
    "piper_available",
    "serve",
]
