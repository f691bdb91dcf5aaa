"""``trio-asyncai speak``: text to a WAV, raw or mp3 file, or to the speakers."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

from .._aggregator import split_text
from .._types import DEFAULT_MODEL
from .._utterance import buffer_limit
from .._wav import mulaw_to_pcm16
from ._common import (
    CommandError,
    add_target_options,
    note_voice_controls,
    open_command_synthesizer,
    open_target,
    utf8_text,
)
from ._output import (
    EXTENSIONS,
    AudioFile,
    FileFormat,
    Progress,
    add_format_options,
    check_format_options,
    format_of,
    open_output,
    open_player,
    output_format,
)

if TYPE_CHECKING:
    pass

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "prepare", "run"]

_DEFAULT_OUTPUT = "speech.wav"
#: The most text one utterance carries: a longer text is spoken in pieces, cut at
#: sentence ends, one after another into the same output. The service documents no
#: limit; the local server holds at most 100,000 characters an utterance.
_PIECE_CHARS = 50_000


HELP = "speak text into an audio file, or on the speakers"
DESCRIPTION = (
    "Speak TEXT (an argument, -f FILE, or - for standard input) into a WAV, raw or mp3 file "
    "(told by the file's extension, or --format), or on the speakers with --play. Uses the "
    "real service when ASYNCAI_API_KEY is set, else (or with --local) a local server "
    "started in-process."
)


def add_arguments(speak: argparse.ArgumentParser) -> None:
    speak.add_argument("text", nargs="?", help="the text to speak; - reads it from standard input")
    speak.add_argument("-f", "--file", help="read the text from this UTF-8 file (- for standard input)")
    speak.add_argument(
        "-o",
        "--output",
        help=f"the file to write, - for standard output (default: {_DEFAULT_OUTPUT}, or none with --play)",
    )
    speak.add_argument(
        "--format",
        choices=("wav", "raw", "mp3"),
        help="the file's format (default: told by its extension: .wav, .raw or .pcm, .mp3)",
    )
    speak.add_argument("--play", action="store_true", help="play the audio as it arrives (the [play] extra)")
    speak.add_argument(
        "--http", action="store_true", help="use the streaming HTTP endpoint, not the WebSocket"
    )
    speak.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but errors (no progress, no summary)"
    )
    speak.add_argument(
        "--voice", help="voice id (default: ASYNCAI_VOICE_ID, or the local server's default voice)"
    )
    speak.add_argument("--model", default=DEFAULT_MODEL, help="model id (default: %(default)s)")
    speak.add_argument("--language", help="ISO 639-1 language code, e.g. en")
    add_format_options(speak)
    speak.add_argument(
        "--speed", type=float, help="speaking rate, 0.7 to 2.0 (honoured by async_flash_v1.0 only)"
    )
    speak.add_argument(
        "--stability", type=int, help="voice stability, 0 to 100 (honoured by async_flash_v1.0 only)"
    )
    add_target_options(speak, engine=True)


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Settle the output file and its format (or exit 2 with a usage error), and read the text."""
    _check_args(parser, args)
    source = args.file if args.file is not None else args.text
    where = "the text" if args.file is None and source != "-" else f"cannot read {_named(source)}"
    args.text = utf8_text(_read_text(args), where)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.text is None) == (args.file is None):
        parser.error("give the text as TEXT, with -f FILE, or as - to read standard input (one of them)")
    if args.output is None and not args.play:
        args.output = _DEFAULT_OUTPUT
    file_format: FileFormat = "raw"
    if args.format is not None:
        file_format = args.format
    elif args.output == "-":
        parser.error("-o - writes to standard output: say what with --format wav, raw or mp3")
    elif args.output is not None:
        told = format_of(args.output)
        if told is None:
            known = ", ".join(EXTENSIONS)
            parser.error(f"cannot tell the format of {args.output!r} (known: {known}): use --format")
        file_format = told
    args.file_format = file_format
    check_format_options(parser, args, file_format)
    if file_format == "mp3" and args.play:
        parser.error("--play plays wav or raw audio, not mp3")


def _named(source: str) -> str:
    return "standard input" if source == "-" else source


def _read_text(args: argparse.Namespace) -> str:
    """The text to speak, from the argument, the file, or standard input."""
    source = args.file if args.file is not None else args.text
    if args.file is None and source != "-":
        return str(source)
    try:
        if source == "-":
            return sys.stdin.read()
        with open(source, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {source}: not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from None


async def run(args: argparse.Namespace) -> int:
    note_voice_controls(args, speeds=args.speed is not None, named="--speed")
    # Mu-law is written as it is (a mu-law WAV) unless --pcm16; the speakers get it decoded.
    fmt, written = output_format(args, args.file_format)
    mulaw = fmt.encoding == "pcm_mulaw"
    per_second = buffer_limit(fmt, 1.0) or 1
    quiet = args.quiet or not sys.stderr.isatty()
    progress = Progress(None if quiet else sys.stderr, per_second)
    async with contextlib.AsyncExitStack() as stack:
        # The file and the speakers first: a bad path or a missing device fails before any request.
        sink = None
        if args.output == "-":
            sink = AudioFile(
                sys.stdout.buffer,
                file_format=args.file_format,
                sample_rate=fmt.sample_rate,
                encoding=written,
                streaming=True,  # standard output may be a pipe, or a file opened to append
            )
        elif args.output is not None:
            file = await stack.enter_async_context(open_output(args.output))
            sink = AudioFile(
                file,
                file_format=args.file_format,
                sample_rate=fmt.sample_rate,
                encoding=written,
                streaming=False,
            )
        player = open_player(fmt.sample_rate, "pcm_s16le" if mulaw else fmt.encoding) if args.play else None
        if player is not None:
            stack.push_async_callback(player.close)
        target = await stack.enter_async_context(open_target(args))
        synth = await stack.enter_async_context(open_command_synthesizer(args, fmt, target))
        decode = mulaw and (args.pcm16 or args.play)
        received = characters = 0
        ttfb: float | None = None
        try:
            for piece in split_text(args.text, _PIECE_CHARS, language=args.language or "en"):
                async with synth.speak(piece) as utterance:
                    async for chunk in utterance:
                        pcm = mulaw_to_pcm16(chunk.audio) if decode else chunk.audio
                        if sink is not None:
                            sink.write(pcm if written != fmt.encoding else chunk.audio)
                            if args.output == "-":
                                sys.stdout.buffer.flush()  # for a player at the other end of a pipe
                        if player is not None:
                            await player.play(pcm)
                        progress.update(received + utterance.metrics.audio_bytes)
                metrics = utterance.metrics
                received += metrics.audio_bytes
                characters += metrics.characters
                ttfb = metrics.ttfb if ttfb is None else ttfb
        finally:
            progress.clear()
        if received == 0:
            raise CommandError(f"{target.where} returned no audio for this text; nothing written")
        if sink is not None:
            sink.close()
    if not args.quiet:
        seconds = received / per_second
        shown_ttfb = f"{ttfb * 1000:.0f} ms" if ttfb is not None else "n/a"
        done = (
            "played"
            if args.output is None
            else "wrote standard output"
            if args.output == "-"
            else f"wrote {args.output}"
        )
        # mp3's length is known to its decoder only: its size says what came.
        amount = f"{received} bytes of mp3" if fmt.container == "mp3" else f"{seconds:.2f} s of {written}"
        # With the audio on standard output, the summary goes to standard error.
        report = sys.stderr if args.output == "-" else sys.stdout
        print(f"{done}: {amount} audio at {fmt.sample_rate} Hz from {target.where}", file=report)
        print(f"time to first audio: {shown_ttfb}; {characters} characters", file=report)
    return 0
