"""``trio-asyncai batch``: many texts, each into an audio file of its own, with a manifest; resumable.

The rows come from a text file (a line each), a CSV file or JSON lines, and
are all read and checked before any request: a bad row stops the command at
once, naming its line. The audio of each row goes to ``DIR/<id>.<ext>``,
written atomically by :func:`~trio_asyncai._cli._output.open_output`, and
each finished row (done or failed) gets an entry in ``DIR/manifest.jsonl``.

**The manifest** is kept consistent whatever stops the command:

- while the batch runs, each entry is appended as one line (one ``write``
  and a flush) right after its file is renamed into place, with no
  checkpoint between the two: a cancellation (Ctrl+C, SIGTERM, a fatal
  error) falls before the rename or after the line;
- when the batch ends, however it ends, the manifest is rewritten
  atomically with one entry per file: the rows of this input in their
  order, then the entries of earlier runs for other files;
- read back, the last entry for a file wins, and a torn last line (a
  process killed in the middle of a write) is ignored: a run killed
  outright (SIGKILL) leaves a manifest that reads right too.

**Resuming**: a row is skipped when the manifest's entry for its file says
it succeeded, with the same text and settings (its ``hash``), and the file
is a regular file of the size recorded (a WAV file's header must also give
that length). Anything else is redone. A file in ``DIR`` that a row would
write and that the manifest does not list is someone else's: the command
refuses to replace it (unless ``--force``).

**Concurrency**: ``--jobs`` tasks take rows from one channel and speak them
on one synthesizer. Settings are per row: each task sets them with
``update_settings`` and opens its utterance with no checkpoint between,
and both synthesizers read their settings as the utterance opens, so that
rows with different voices may run at once. Rows are taken grouped by
their settings, so that the WebSocket (whose settings are per connection)
changes connection at the boundaries of the groups only.

**Retries**: a row that fails with a retryable error (429, 5xx, a lost
connection) is tried again, ``--retries`` times at most, after the wait the
service asked for or else the backoff's (:class:`~trio_asyncai._retry.Backoff`,
one for the batch, so that rows failing together slow the whole batch
down). An error that stops all synthesis (:func:`~trio_asyncai._errors.is_fatal`:
a refused key, a used-up quota) stops the batch at once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import stat
import struct
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import attrs
import trio

from .._errors import AsyncAIError, ConfigurationError, is_fatal
from .._retry import Backoff
from .._types import DEFAULT_MODEL, Encoding, OutputFormat, check_speed_control, normalize_language
from .._utterance import Utterance, buffer_limit
from .._wav import mulaw_to_pcm16
from ._common import (
    CommandError,
    add_target_options,
    note_voice_controls,
    open_command_synthesizer,
    open_target,
    positive_int,
    utf8_text,
    whole_number,
)
from ._output import (
    AudioFile,
    FileFormat,
    add_format_options,
    check_format_options,
    open_output,
    output_format,
    replacing,
)

if TYPE_CHECKING:
    from .._synthesizer import BaseSynthesizer

__all__ = [
    "DESCRIPTION",
    "HELP",
    "MANIFEST",
    "Entry",
    "Manifest",
    "Row",
    "add_arguments",
    "prepare",
    "read_rows",
    "run",
    "with_retries",
]

T = TypeVar("T")

HELP = "speak many texts, each into a file of its own, with a manifest (resumable)"
DESCRIPTION = (
    "Speak every row of INPUT (a .txt file, a line each; a .csv file with a header row; or .jsonl) "
    "into DIR/<id>.wav (or .raw, .mp3), and list each finished row in DIR/manifest.jsonl. A second "
    "run skips the rows whose files are complete and redoes the rest. Rows name their text and, "
    "optionally, their id, voice, language and speed. Uses the real service when ASYNCAI_API_KEY "
    "is set, else (or with --local) a local server started in-process."
)

#: The manifest's name in the output directory.
MANIFEST: Final = "manifest.jsonl"
INPUT_FORMATS: Final = ("txt", "csv", "jsonl")
_INPUT_EXTENSIONS: Final[dict[str, str]] = {".txt": "txt", ".csv": "csv", ".jsonl": "jsonl"}
_EXTENSIONS: Final[dict[str, str]] = {"wav": ".wav", "raw": ".raw", "mp3": ".mp3"}
DEFAULT_JOBS: Final = 4
DEFAULT_RETRIES: Final = 5
#: An id is a file name with an extension and, beside it while written, a
#: temporary name a little longer: well under the usual 255 bytes.
_MAX_ID_BYTES: Final = 200
#: How many failed ids the last line names; the manifest has them all.
_MAX_LISTED: Final = 10


# ------------------------------------------------------------------ the rows


@attrs.frozen
class Row:
    """One utterance of the input: its text, its id (its file's name) and its own settings, if any."""

    #: The line of the input the row starts on (1 is the first line).
    line: int
    id: str
    text: str
    voice: str | None = None
    language: str | None = None
    speed: float | None = None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines of ``text``, numbered from 1, without their line ends."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        yield number, line.rstrip("\r\n")


def _txt_fields(text: str) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in _lines(text):
        if line.strip():
            yield number, {"text": line.strip()}


def _csv_fields(text: str, where: str) -> Iterator[tuple[int, dict[str, object]]]:
    """The records of a CSV text with a header row; an empty cell is no value."""
    reader = csv.reader(io.StringIO(text, newline=""))
    ended = 0  # the line the last record ended on
    header: list[str] | None = None
    try:
        for cells in reader:
            start, ended = ended + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or a row of empty cells (spreadsheets export them)
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                if "text" not in header:
                    shown = ", ".join(header)
                    raise CommandError(f"{where} line {start}: the header has no text column ({shown})")
                continue
            if len(cells) > len(header):
                raise CommandError(
                    f"{where} line {start}: {len(cells)} cells, but the header names {len(header)}"
                )
            fields: dict[str, object] = {}
            for name, cell in zip(header, cells, strict=False):
                if cell.strip() and name not in fields:
                    fields[name] = cell
            yield start, fields
    except csv.Error as exc:
        raise CommandError(f"{where} line {reader.line_num}: {exc}") from None


def _jsonl_fields(text: str, where: str) -> Iterator[tuple[int, dict[str, object]]]:
    """The objects of JSON lines; a null value is no value."""
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            message = getattr(exc, "msg", str(exc))
            raise CommandError(f"{where} line {number}: not JSON ({message})") from None
        except RecursionError:
            raise CommandError(f"{where} line {number}: not JSON (nested too deep)") from None
        if not isinstance(data, dict):
            raise CommandError(f"{where} line {number}: not a JSON object")
        yield number, {name: value for name, value in data.items() if value is not None}


def _string(where: str, line: int, name: str, value: object, *, strip: bool = True) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{where} line {line}: {name} must be a string, not {type(value).__name__}")
    utf8_text(value, f"{where} line {line}: the {name}")  # a JSON "\\ud800" is no character
    return value.strip() if strip else value


def _id_problem(row_id: str) -> str | None:
    """Why ``row_id`` cannot be a file name of its own in the output directory, or None."""
    if not row_id:
        return "it is empty"
    if "/" in row_id or "\\" in row_id or (os.altsep and os.altsep in row_id):
        return "it holds a path separator"
    if row_id.startswith("."):
        return "it starts with a dot (hidden files, and the temporary files beside those written)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in row_id):
        return "it holds a control character"
    if len(row_id.encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES:
        return f"it is longer than {_MAX_ID_BYTES} bytes"
    return None


def _row(where: str, line: int, fields: dict[str, object]) -> Row:
    """A row from its fields, checked; a :exc:`CommandError` naming its line for a bad one."""
    text = fields.get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise CommandError(f"{where} line {line}: no text")
    text = _string(where, line, "text", text, strip=False).strip()
    raw_id = fields.get("id")
    if raw_id is None:
        # The rule for rows without an id: their line number, four digits at least.
        row_id = f"{line:04d}"
    else:
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        row_id = _string(where, line, "id", raw_id)
        problem = _id_problem(row_id)
        if problem is not None:
            raise CommandError(f"{where} line {line}: the id {row_id!r} cannot be a file name: {problem}")
    voice = fields.get("voice")
    if voice is not None:
        voice = _string(where, line, "voice", voice) or None
    language = fields.get("language")
    if language is not None:
        language = normalize_language(_string(where, line, "language", language)) or None
    raw_speed = fields.get("speed")
    speed: float | None = None
    if raw_speed is not None:
        try:
            number = float(raw_speed) if isinstance(raw_speed, str) else raw_speed
        except ValueError:
            raise CommandError(f"{where} line {line}: bad speed {raw_speed!r}: not a number") from None
        try:
            speed = check_speed_control(number)
        except ConfigurationError as exc:
            raise CommandError(f"{where} line {line}: bad speed {raw_speed!r}: {exc.message}") from None
    return Row(line=line, id=row_id, text=text, voice=voice, language=language, speed=speed)


def read_rows(source: str, input_format: str) -> list[Row]:
    """Every row of ``source`` (a path, or ``-`` for standard input), checked.

    Raises :exc:`CommandError` with one line that names the input and the
    line for the first bad row: no text, a bad speed, an id that cannot be a
    file name or that another row has (ids that differ in case only are the
    same file on the usual macOS and Windows file systems: refused too).
    """
    where = "standard input" if source == "-" else source
    try:
        if source == "-":
            text = sys.stdin.read().removeprefix("\ufeff")
        else:
            with open(source, encoding="utf-8-sig", newline="") as file:
                text = file.read()
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {where}: not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"cannot read {where}: {exc.strerror or exc}") from None
    text = utf8_text(text, f"cannot read {where}")
    if input_format == "csv":
        records = _csv_fields(text, where)
    elif input_format == "jsonl":
        records = _jsonl_fields(text, where)
    else:
        records = _txt_fields(text)
    rows: list[Row] = []
    seen: dict[str, Row] = {}
    for line, fields in records:
        row = _row(where, line, fields)
        other = seen.setdefault(row.id.casefold(), row)
        if other is not row:
            if other.id == row.id:
                raise CommandError(
                    f"{where} line {line}: the id {row.id!r} is the id of line {other.line} too"
                )
            raise CommandError(
                f"{where} line {line}: the id {row.id!r} differs only in case from {other.id!r} "
                f"(line {other.line}): the same file on case-insensitive file systems"
            )
        rows.append(row)
    if not rows:
        raise CommandError(f"{where} has no rows to speak")
    return rows


# -------------------------------------------------------------- the manifest


@attrs.frozen
class Entry:
    """What the manifest says of one file: the row it holds, how it went, and its size."""

    id: str
    file: str
    #: The row's text and settings, hashed: a changed row is redone.
    hash: str
    #: Seconds of audio (None for mp3, whose length its decoder alone knows, and for a failed row).
    seconds: float | None = None
    #: Seconds to the first audio, of the attempt that succeeded.
    ttfb: float | None = None
    characters: int | None = None
    #: The file's size, checked when resuming.
    bytes: int | None = None
    attempts: int = 0
    #: None: the file holds this row's audio. Else why it failed, in one line.
    error: str | None = None

    def line(self) -> str:
        """The entry as one line of JSON, with its line end."""
        data = {
            "id": self.id,
            "file": self.file,
            "seconds": self.seconds,
            "ttfb": self.ttfb,
            "characters": self.characters,
            "bytes": self.bytes,
            "attempts": self.attempts,
            "error": self.error,
            "hash": self.hash,
        }
        return json.dumps(data, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: object) -> Entry | None:
        """The entry a line of the manifest holds; None if it is not one."""
        if not isinstance(data, dict):
            return None
        strings = [data.get(name) for name in ("id", "file", "hash")]
        if not all(isinstance(value, str) for value in strings):
            return None
        error = data.get("error")
        size = data.get("bytes")
        if not (error is None or isinstance(error, str)) or not (size is None or isinstance(size, int)):
            return None

        def number(name: str) -> float | None:
            value = data.get(name)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        characters = data.get("characters")
        attempts = data.get("attempts")
        return cls(
            id=data["id"],
            file=data["file"],
            hash=data["hash"],
            seconds=number("seconds"),
            ttfb=number("ttfb"),
            characters=characters if isinstance(characters, int) else None,
            bytes=size,
            attempts=attempts if isinstance(attempts, int) else 0,
            error=error,
        )


def _wav_is_whole(path: str, size: int) -> bool:
    """Whether the WAV file at ``path`` says in its header that it is ``size`` bytes long."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    if struct.unpack_from("<I", head, 4)[0] + 8 != size:
        return False
    position = 12
    while position + 8 <= len(head):
        chunk, length = struct.unpack_from("<4sI", head, position)
        if chunk == b"data":
            whole: bool = position + 8 + length + length % 2 == size
            return whole
        position += 8 + length + length % 2
    return False


class Manifest:
    """``DIR/manifest.jsonl``: what earlier runs finished, and the record of this one (see the module)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, MANIFEST)
        #: The last entry for each file, by file name, in the order first seen.
        self.entries: dict[str, Entry] = {}
        #: Whether the file holds one entry a file, each on a whole line: else it is tidied first.
        self._tidy = True

    @classmethod
    def load(cls, directory: str) -> Manifest:
        """The manifest in ``directory`` (none yet: empty). One that is not ours is refused."""
        manifest = cls(directory)
        try:
            if not stat.S_ISREG(os.lstat(manifest.path).st_mode):  # a FIFO would hold the read for ever
                raise CommandError(f"{manifest.path} is not a regular file: move it away")
            with open(manifest.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return manifest
        except OSError as exc:
            raise CommandError(f"cannot read {manifest.path}: {exc.strerror or exc}") from None
        lines = data.splitlines(keepends=True)
        if lines and not lines[-1].endswith(b"\n"):
            manifest._tidy = False  # an append would be glued onto the last line
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                manifest._tidy = False
                continue
            try:
                entry = Entry.from_json(json.loads(raw))
            except (ValueError, RecursionError):
                entry = None
            if entry is None:
                if number == len(lines) and not raw.endswith(b"\n"):
                    # Torn by a process killed as it wrote: that row was not finished.
                    manifest._tidy = False
                    continue
                raise CommandError(
                    f"{manifest.path} line {number} is not an entry of a batch manifest: "
                    "move the file away, or write into another directory"
                )
            if entry.file in manifest.entries:
                manifest._tidy = False
            manifest.entries[entry.file] = entry
        return manifest

    def knows(self, file: str) -> bool:
        """Whether ``file`` in the directory was written by a batch (successfully or not)."""
        return file in self.entries

    def complete(self, file: str, key: str, *, wav: bool) -> bool:
        """Whether ``file`` holds, whole, the audio of the row whose hash is ``key`` (the resume rule)."""
        entry = self.entries.get(file)
        if entry is None or entry.error is not None or entry.hash != key or entry.bytes is None:
            return False
        path = os.path.join(self.directory, file)
        try:
            status = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISREG(status.st_mode) or status.st_size != entry.bytes:
            return False
        return not wav or _wav_is_whole(path, status.st_size)

    @contextlib.contextmanager
    def recording(self, order: list[str]) -> Iterator[Callable[[Entry], None]]:
        """A function that records one finished row, for the block; then the manifest, rewritten.

        ``order`` is the files of this input, in its order: the order of the
        rewritten manifest (other files' entries follow). Nothing is written
        until the first row is recorded: a batch stopped before any row
        finished (a refused key) leaves the manifest as it was, or none.
        """
        logs: list[TextIO] = []

        def record(entry: Entry) -> None:
            if not logs:
                if not self._tidy:
                    # A torn line or repeated entries left by an earlier run:
                    # tidied first, so that lines are appended to whole ones.
                    self._rewrite(order)
                logs.append(open(self.path, "a", encoding="utf-8"))  # noqa: SIM115 - closed below
            self.entries[entry.file] = entry
            logs[0].write(entry.line())
            logs[0].flush()

        try:
            yield record
        finally:
            for log in logs:
                log.close()
            if logs:
                self._rewrite(order)

    def _rewrite(self, order: list[str]) -> None:
        """Replace the manifest, atomically, with one line for each file."""
        ours = [self.entries[file] for file in order if file in self.entries]
        listed = set(order)
        others = [entry for file, entry in self.entries.items() if file not in listed]
        with replacing(self.path, shown=self.path) as file:
            file.write("".join(entry.line() for entry in (*ours, *others)).encode())
        self._tidy = True


# ------------------------------------------------------------------- retries


async def with_retries(attempt: Callable[[], Awaitable[T]], *, retries: int, backoff: Backoff) -> T:
    """``attempt()``, tried again after a retryable error, ``retries`` times at most.

    Between attempts it waits what the service asked for (``retry_after_ms``,
    ``Retry-After``), else the backoff's wait, which doubles with every
    failure counted on ``backoff`` (shared by the rows of a batch). A success
    resets it. An error that is not retryable (a bad key, an unknown voice)
    is raised at once.
    """
    failures = 0
    while True:
        try:
            result = await attempt()
        except AsyncAIError as exc:
            if not exc.retryable or failures >= retries:
                raise
            failures += 1
            backoff.failed()
            await backoff.wait(exc)
        else:
            backoff.succeeded()
            return result


# ------------------------------------------------------------------- options


def add_arguments(batch: argparse.ArgumentParser) -> None:
    batch.add_argument(
        "input",
        metavar="INPUT",
        help="the rows: a .txt file (a line each), .csv (a header row) or .jsonl; - for standard input",
    )
    batch.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="the directory to write the files and manifest.jsonl into (made if missing)",
    )
    batch.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        help="the input's format (default: told by its extension; needed for standard input)",
    )
    batch.add_argument(
        "--format",
        choices=("wav", "raw", "mp3"),
        default="wav",
        help="the files' format (default: %(default)s)",
    )
    batch.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        default=DEFAULT_JOBS,
        metavar="N",
        help="rows spoken at once, on one connection (default: %(default)s)",
    )
    batch.add_argument(
        "--retries",
        type=whole_number(0),
        default=DEFAULT_RETRIES,
        metavar="N",
        help="tries more for a row that fails with a 429, a 5xx or a lost connection (default: %(default)s)",
    )
    batch.add_argument(
        "--force",
        action="store_true",
        help="redo every row, and replace files in DIR that the manifest does not list",
    )
    batch.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but errors (no progress bar, no summary)"
    )
    batch.add_argument(
        "--http", action="store_true", help="use the streaming HTTP endpoint, not the WebSocket"
    )
    batch.add_argument(
        "--voice",
        help="voice id of rows that name none (default: ASYNCAI_VOICE_ID, or the local server's default)",
    )
    batch.add_argument("--model", default=DEFAULT_MODEL, help="model id (default: %(default)s)")
    batch.add_argument("--language", help="ISO 639-1 language code of rows that name none, e.g. en")
    batch.add_argument(
        "--speed",
        type=float,
        help="speaking rate of rows that name none, 0.7 to 2.0 (honoured by async_flash_v1.0 only)",
    )
    batch.add_argument(
        "--stability", type=int, help="voice stability, 0 to 100 (honoured by async_flash_v1.0 only)"
    )
    add_format_options(batch)
    add_target_options(batch, engine=True)


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check the options (a usage error, exit 2), then read and check every row (one line, exit 1)."""
    if args.input_format is None:
        if args.input == "-":
            parser.error("- reads standard input: say how with --input-format txt, csv or jsonl")
        told = _INPUT_EXTENSIONS.get(os.path.splitext(args.input)[1].lower())
        if told is None:
            known = ", ".join(_INPUT_EXTENSIONS)
            parser.error(f"cannot tell the format of {args.input!r} (known: {known}): use --input-format")
        args.input_format = told
    check_format_options(parser, args, args.format)
    rows = read_rows(args.input, args.input_format)
    if args.language is None:
        # update_settings() cannot set a language back to "the voice's own".
        named = next((row for row in rows if row.language is not None), None)
        unnamed = next((row for row in rows if row.language is None), None)
        if named is not None and unnamed is not None:
            where = "standard input" if args.input == "-" else args.input
            raise CommandError(
                f"{where} line {unnamed.line} names no language, and line {named.line} names "
                f"{named.language!r}: give --language, the language of the rows that name none"
            )
    args.rows = rows


# ----------------------------------------------------------------------- run


def _hash(row: Row, args: argparse.Namespace, fmt: OutputFormat, written: Encoding) -> str:
    """What a row's audio depends on, hashed: its text and settings and the format asked for.

    The voice and language are those named (by the row, or the option), so
    that ``None`` stands for the default; a speed of ``None`` is the
    service's 1.0. Where the audio was made (the service, a local engine) is
    not in it: use ``--force`` to redo a batch elsewhere.
    """
    speed = row.speed if row.speed is not None else args.speed
    described = {
        "text": row.text,
        "voice": row.voice or args.voice,
        "language": row.language or normalize_language(args.language),
        "speed": 1.0 if speed is None else speed,
        "model": args.model,
        "stability": args.stability,
        "format": fmt.to_json(),
        "written": written,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _make_directory(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"cannot write into {directory}: it is not a directory") from None
    except OSError as exc:
        raise CommandError(f"cannot make the directory {directory}: {exc.strerror or exc}") from None


def _one_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _listed(ids: list[str]) -> str:
    if len(ids) <= _MAX_LISTED:
        return ", ".join(ids)
    return ", ".join(ids[:_MAX_LISTED]) + f" and {len(ids) - _MAX_LISTED} more"


class _Bar:
    """A progress bar of rows on standard error (tqdm), on a terminal and without --quiet only."""

    def __init__(self, total: int, *, shown: bool) -> None:
        self._bar = None
        if shown:
            from tqdm import tqdm

            # Redrawn at every row: a row takes long enough that no throttling is needed.
            self._bar = tqdm(
                total=total,
                unit="row",
                desc="batch",
                leave=False,
                file=sys.stderr,
                mininterval=0,
                miniters=1,
            )

    def finished(self, failed: int) -> None:
        if self._bar is not None:
            if failed:
                self._bar.set_postfix_str(f"{failed} failed", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@attrs.define
class _Batch:
    """The rows to speak, and how it goes: what each task reads and writes."""

    args: argparse.Namespace
    fmt: OutputFormat
    #: The encoding written to wav and raw files (16-bit for mu-law with --pcm16).
    written: Encoding
    #: Each row's file name, and its hash.
    files: dict[str, str]
    hashes: dict[str, str]
    record: Callable[[Entry], None]
    bar: _Bar
    backoff: Backoff
    synth: BaseSynthesizer[Any] | None = None
    default_voice: str = ""
    done: int = 0
    audio_bytes: int = 0
    failed: list[str] = attrs.Factory(list)
    #: The error that stopped the batch (a refused key, a used-up quota).
    fatal: AsyncAIError | None = None

    async def work(self, rows: trio.MemoryReceiveChannel[Row], scope: trio.CancelScope) -> None:
        """One task: speak rows until none is left, or the batch must stop."""
        async for row in rows:
            try:
                entry = await self._row(row)
            except AsyncAIError as exc:  # fatal: kept, to be raised once, not one from each task
                if self.fatal is None:
                    self.fatal = exc
                scope.cancel()
                return
            # No checkpoint since the file was renamed into place: the entry
            # is recorded with it, whatever cancels the batch.
            self.record(entry)
            if entry.error is None:
                self.done += 1
            else:
                self.failed.append(row.id)
            self.bar.finished(len(self.failed))

    async def _row(self, row: Row) -> Entry:
        """The entry of a row, done or failed; a fatal error is raised."""
        attempts = 0

        async def attempt() -> Entry:
            nonlocal attempts
            attempts += 1
            return await self._attempt(row)

        try:
            entry = await with_retries(attempt, retries=self.args.retries, backoff=self.backoff)
        except AsyncAIError as exc:
            if is_fatal(exc):
                raise
            error = _one_line(exc)
        except (CommandError, OSError) as exc:
            error = _one_line(exc)
        else:
            return attrs.evolve(entry, attempts=attempts)
        return Entry(
            id=row.id, file=self.files[row.id], hash=self.hashes[row.id], attempts=attempts, error=error
        )

    def _speak(self, row: Row) -> AbstractAsyncContextManager[Utterance]:
        """The row's utterance, with the row's settings.

        The settings are set, and the utterance opened (the synthesizer reads
        its settings there), with no checkpoint between: no other task's row
        can change them in between.
        """
        assert self.synth is not None
        speed = row.speed if row.speed is not None else self.args.speed
        if speed is None and self.synth.settings.speed_control is not None:
            speed = 1.0  # "the service's default" once another row set one
        self.synth.update_settings(
            voice_id=row.voice or self.default_voice,
            language=row.language or self.args.language,
            speed_control=speed,
        )
        return self.synth.speak(row.text)

    async def _attempt(self, row: Row) -> Entry:
        """Speak the row into its file, once; the file is replaced only if all went well."""
        file_name = self.files[row.id]
        path = os.path.join(self.args.output, file_name)
        decode = self.fmt.encoding == "pcm_mulaw" and self.written == "pcm_s16le"
        async with open_output(path) as file:
            sink = AudioFile(
                file,
                file_format=self.args.format,
                sample_rate=self.fmt.sample_rate,
                encoding=self.written,
                streaming=False,
            )
            async with self._speak(row) as utterance:
                async for chunk in utterance:
                    sink.write(mulaw_to_pcm16(chunk.audio) if decode else chunk.audio)
            metrics = utterance.metrics
            if metrics.audio_bytes == 0:
                raise CommandError("no audio for this text; nothing written")
            sink.close()
        size = os.stat(path).st_size
        self.audio_bytes += metrics.audio_bytes
        seconds = None
        if self.fmt.container != "mp3":
            seconds = round(metrics.audio_bytes / (buffer_limit(self.fmt, 1.0) or 1), 3)
        return Entry(
            id=row.id,
            file=file_name,
            hash=self.hashes[row.id],
            seconds=seconds,
            ttfb=None if metrics.ttfb is None else round(metrics.ttfb, 3),
            characters=metrics.characters,
            bytes=size,
        )


def _settings_key(row: Row, args: argparse.Namespace) -> tuple[str, str, float]:
    speed = row.speed if row.speed is not None else args.speed
    return (row.voice or "", row.language or "", 1.0 if speed is None else speed)


def _refuse_links_and_special_files(rows: list[Row], files: dict[str, str], manifest: Manifest) -> None:
    """Refuse, even with --force, to write where a link or a special file is (a FIFO, a device).

    A batch replaces the entries of its directory; through a link it would
    write the link's target, outside it, and a FIFO would hold it waiting.
    The manifest too must be a regular file we may write.
    """
    for path in [os.path.join(manifest.directory, files[row.id]) for row in rows]:
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(status.st_mode) or not stat.S_ISREG(status.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(status.st_mode) else "not a regular file"
            raise CommandError(f"{path} is {kind}: a batch writes regular files only; move it away")
    if os.path.exists(manifest.path) and not (
        os.stat(manifest.path).st_mode & 0o222 and os.access(manifest.path, os.W_OK)
    ):
        raise CommandError(f"cannot write {manifest.path}: permission denied (the file is read-only)")
    if not os.access(manifest.directory, os.W_OK):
        raise CommandError(f"cannot write into {manifest.directory}: permission denied")


def _refuse_strangers(rows: list[Row], files: dict[str, str], manifest: Manifest) -> None:
    """Refuse to replace files the manifest does not list: they are not ours."""
    strangers = [
        os.path.join(manifest.directory, files[row.id])
        for row in rows
        if not manifest.knows(files[row.id])
        and os.path.lexists(os.path.join(manifest.directory, files[row.id]))
    ]
    if strangers:
        more = f" (and {len(strangers) - 1} more such files)" if len(strangers) > 1 else ""
        raise CommandError(
            f"{strangers[0]} is not listed in {manifest.path}, so not written by a batch{more}: "
            "move it away, or replace it with --force"
        )


async def run(args: argparse.Namespace) -> int:
    rows: list[Row] = args.rows
    speeds = args.speed is not None or any(row.speed is not None for row in rows)
    note_voice_controls(args, speeds=speeds, named="speeds")
    file_format: FileFormat = args.format
    fmt, written = output_format(args, file_format)
    directory: str = args.output
    _make_directory(directory)
    manifest = Manifest.load(directory)
    files = {row.id: row.id + _EXTENSIONS[file_format] for row in rows}
    hashes = {row.id: _hash(row, args, fmt, written) for row in rows}
    todo = [
        row
        for row in rows
        if args.force or not manifest.complete(files[row.id], hashes[row.id], wav=file_format == "wav")
    ]
    _refuse_links_and_special_files(todo, files, manifest)
    if not args.force:
        _refuse_strangers(todo, files, manifest)
    skipped = len(rows) - len(todo)
    where = None
    batch = None
    if todo:
        bar = _Bar(len(todo), shown=not args.quiet and sys.stderr.isatty())
        try:
            with manifest.recording([files[row.id] for row in rows]) as record:
                batch = _Batch(
                    args=args,
                    fmt=fmt,
                    written=written,
                    files=files,
                    hashes=hashes,
                    record=record,
                    bar=bar,
                    backoff=Backoff(0.5),
                )
                async with (
                    open_target(args) as target,
                    open_command_synthesizer(
                        # Each row is one request: the batch retries it (--retries), not the synthesizer too.
                        args,
                        fmt,
                        target,
                        max_retries=0,
                    ) as synth,
                ):
                    where = target.where
                    batch.synth = synth
                    batch.default_voice = synth.settings.voice_id
                    # Grouped by settings (a stable sort): fewer new connections.
                    ordered = sorted(todo, key=lambda row: _settings_key(row, args))
                    send, receive = trio.open_memory_channel[Row](math.inf)
                    with send:
                        for row in ordered:
                            send.send_nowait(row)
                    async with trio.open_nursery() as nursery:
                        for _ in range(min(args.jobs, len(todo))):
                            nursery.start_soon(batch.work, receive.clone(), nursery.cancel_scope)
                    receive.close()
                if batch.fatal is not None:
                    raise batch.fatal
        finally:
            bar.close()
    done = batch.done if batch is not None else 0
    failed = batch.failed if batch is not None else []
    if not args.quiet:
        counts = f"{done} done, {skipped} skipped, {len(failed)} failed"
        if not todo:
            print(f"{counts}: {directory} is up to date")
        elif batch is not None and done:
            amount = (
                f"{batch.audio_bytes} bytes of mp3"
                if fmt.container == "mp3"
                else f"{batch.audio_bytes / (buffer_limit(fmt, 1.0) or 1):.2f} s of {written}"
            )
            print(f"{counts}: {amount} audio at {fmt.sample_rate} Hz into {directory} from {where}")
        else:
            print(counts)
    if failed:
        failed_ids = set(failed)
        in_order = [row.id for row in rows if row.id in failed_ids]
        raise CommandError(
            f"{len(failed)} of {len(rows)} rows failed: {_listed(in_order)} (see {manifest.path})"
        )
    return 0
