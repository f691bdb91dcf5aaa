"""The ``trio-asyncai`` command: ``speak`` text into a WAV file, or ``serve`` the local server."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import trio

from ._config import resolve_api_key
from ._errors import AsyncAIError
from ._types import DEFAULT_MODEL, DEFAULT_SAMPLE_RATE, OutputFormat
from ._wav import WavWriter, mulaw_to_pcm16
from ._websocket import open_synthesizer

if TYPE_CHECKING:
    from .server import LocalServer

__all__ = ["main"]

_EXIT_ERROR = 1
#: The one model the service applies speed_control and stability to.
_VOICE_CONTROL_MODEL = "async_flash_v1.0"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-asyncai",
        description="Text-to-speech with the Async voice API, or its local stand-in.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    speak = sub.add_parser(
        "speak",
        help="speak TEXT into a WAV file",
        description=(
            "Speak TEXT into a WAV file over the WebSocket API. Uses the real service when "
            "ASYNCAI_API_KEY is set, else (or with --local) a local server started in-process. "
            "The WAV file holds the encoding asked for: 16-bit PCM, 32-bit float, or mu-law "
            "(format 7; --pcm16 decodes it to 16-bit PCM instead)."
        ),
    )
    speak.add_argument("text", help="the text to speak")
    speak.add_argument(
        "-o", "--output", default="speech.wav", help="the WAV file to write (default: %(default)s)"
    )
    speak.add_argument("--local", action="store_true", help="use the local server even if an API key is set")
    speak.add_argument(
        "--voice", help="voice id (default: ASYNCAI_VOICE_ID, or the local server's default voice)"
    )
    speak.add_argument("--model", default=DEFAULT_MODEL, help="model id (default: %(default)s)")
    speak.add_argument("--language", help="ISO 639-1 language code, e.g. en")
    speak.add_argument(
        "--sample-rate",
        type=int,
        default=DEFAULT_SAMPLE_RATE,
        help="Hz, 8000 to 48000 (default: %(default)s)",
    )
    speak.add_argument(
        "--encoding",
        choices=("pcm_s16le", "pcm_f32le", "pcm_mulaw"),
        default="pcm_s16le",
        help=(
            "sample format asked of the service and written to the WAV file (default: %(default)s; "
            "pcm_mulaw at 8000 Hz is the telephony format)"
        ),
    )
    speak.add_argument(
        "--pcm16",
        action="store_true",
        help="with --encoding pcm_mulaw: decode the audio and write a 16-bit PCM WAV instead",
    )
    speak.add_argument(
        "--speed", type=float, help="speaking rate, 0.7 to 2.0 (honoured by async_flash_v1.0 only)"
    )
    speak.add_argument(
        "--stability", type=int, help="voice stability, 0 to 100 (honoured by async_flash_v1.0 only)"
    )
    speak.add_argument(
        "--base-url", help="the service's base URL (default: ASYNCAI_BASE_URL or the real service)"
    )
    speak.add_argument(
        "--engine",
        choices=("auto", "piper", "signal"),
        default="auto",
        help="the local server's voice engine (default: %(default)s: piper when installed)",
    )

    serve = sub.add_parser(
        "serve",
        help="run the local Async-compatible server",
        description="Run the local Async-compatible server until interrupted (Ctrl+C).",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)"
    )
    serve.add_argument(
        "--port", type=int, default=8765, help="port (default: %(default)s; 0 picks a free one)"
    )
    serve.add_argument("--api-key", help="refuse every other key with 401 (default: accept any key)")
    serve.add_argument("--engine", choices=("auto", "piper", "signal"), default="auto", help="voice engine")
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="close connections silent for this many seconds (default: %(default)s)",
    )
    return parser


@contextlib.asynccontextmanager
async def _maybe_local_server(use_local: bool, engine: str) -> AsyncIterator[LocalServer | None]:
    if not use_local:
        yield None
        return
    from .server import open_local_server

    async with open_local_server(engine=engine) as server:
        yield server


async def _speak(args: argparse.Namespace) -> int:
    if (args.speed is not None or args.stability is not None) and args.model != _VOICE_CONTROL_MODEL:
        print(
            f"trio-asyncai: note: the service honours --speed and --stability with "
            f"{_VOICE_CONTROL_MODEL} only, not {args.model}",
            file=sys.stderr,
        )
    use_local = args.local or (
        resolve_api_key(None) is None and args.base_url is None and not os.environ.get("ASYNCAI_BASE_URL")
    )
    async with _maybe_local_server(use_local, args.engine) as server:
        voice = args.voice
        if server is not None:
            from .server import DEFAULT_VOICE_ID

            voice = voice or DEFAULT_VOICE_ID
            base_url = server.url
            where = f"the local server ({server.engine.name} voice)"
        else:
            base_url = args.base_url
            where = base_url or os.environ.get("ASYNCAI_BASE_URL") or "the Async API"
        fmt = OutputFormat(sample_rate=args.sample_rate, encoding=args.encoding)
        decode = args.pcm16 and fmt.encoding == "pcm_mulaw"
        async with open_synthesizer(
            voice_id=voice,
            model=args.model,
            language=args.language,
            output_format=fmt,
            speed_control=args.speed,
            stability=args.stability,
            base_url=base_url,
            api_key=None if server is None else "local",
        ) as synth:
            with open(args.output, "wb") as file:  # noqa: ASYNC230 - a local file, written as audio comes
                wav = WavWriter(
                    file, sample_rate=fmt.sample_rate, encoding="pcm_s16le" if decode else fmt.encoding
                )
                try:
                    async with synth.speak(args.text) as utterance:
                        async for chunk in utterance:
                            wav.write(mulaw_to_pcm16(chunk.audio) if decode else chunk.audio)
                finally:
                    wav.close()  # a valid file even when the audio was cut short
        metrics = utterance.metrics
    seconds = metrics.audio_bytes / (fmt.sample_width * fmt.sample_rate)
    ttfb = f"{metrics.ttfb * 1000:.0f} ms" if metrics.ttfb is not None else "n/a"
    written = "pcm_s16le" if decode else fmt.encoding
    print(f"wrote {args.output}: {seconds:.2f} s of {written} audio at {fmt.sample_rate} Hz from {where}")
    print(f"time to first audio: {ttfb}; {metrics.characters} characters")
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    async def announce(
        task_status: trio.TaskStatus[LocalServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await serve(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            engine=args.engine,
            idle_timeout=args.idle_timeout,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        server: LocalServer = await nursery.start(announce)
        print(
            f"serving the Async API on {server.url} (engine: {server.engine.name}); Ctrl+C stops",
            flush=True,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trio-asyncai`` command; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "speak" and args.pcm16 and args.encoding != "pcm_mulaw":
        parser.error("--pcm16 converts mu-law audio: use it with --encoding pcm_mulaw")
    runner = _speak if args.command == "speak" else _serve
    try:
        return trio.run(runner, args)
    except KeyboardInterrupt:
        return 130
    except AsyncAIError as exc:
        print(f"trio-asyncai: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    except ImportError as exc:
        print(
            f"trio-asyncai: error: {exc}; the local server needs: pip install 'trio-asyncai[voice]'",
            file=sys.stderr,
        )
        return _EXIT_ERROR
    except OSError as exc:
        print(f"trio-asyncai: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
