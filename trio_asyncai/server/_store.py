"""Cloned voices, in memory or kept in a state directory across restarts.

Every change to the voices clients made (clone, update, delete) goes through
:class:`VoiceStore`. Without a directory it changes the server's
:class:`~._voices.VoiceLibrary` only, as the server always did. With one
(``serve(state_dir=...)``, ``trio-asyncai serve --state-dir DIR``) the change
is on disk before it is in the library, and before the client gets its
answer; a change that cannot be written is not made (the client gets a 500).

The directory holds:

``voices.json``
    The index: ``{"format": "trio-asyncai-voices", "version": 1, "voices":
    [...]}``, each voice its API object (``voice_id``, ``name``, ...) and
    ``sample``, the path of its sample file, relative to the directory, and
    ``sample_bytes``, its size.
``samples/VOICE_ID.wav`` (or ``.mp3``, ``.flac``, ``.aiff``)
    Each cloned voice's sample, as the client uploaded it.

Every file is written whole: to a temporary file in the same directory
(``.NAME.RANDOM.tmp``), flushed to the disk (``fsync``), then renamed over
the old one (``os.replace``), and the directory itself is flushed, so that a
crash or a power cut leaves either the old file or the new one, never a torn
one. A clone writes its sample before the index names it; a delete writes
the index before it removes the sample. So a crash at any point leaves an
index whose every sample is there; at worst a sample that no index names,
or a temporary file, stays behind (left alone, and ignored).

At start the directory is checked, and nothing in it is changed or deleted
when something is wrong (:exc:`StateDirError`, naming the file):

* a missing directory is created (its parents too), with an empty index;
* an empty one gets an empty index;
* one that holds other things but no ``voices.json`` is not ours: refused;
* an index that does not parse, or not as this version writes it (a torn
  or hand-edited file), or that names a sample that is missing or of
  another size: refused;
* an index from a later format version: refused, as this version cannot
  know what it would lose by rewriting it.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, final

import attrs
import trio

from ._voices import LibraryVoice, VoiceLibrary

__all__ = ["INDEX_NAME", "SAMPLES_DIR", "STATE_FORMAT", "STATE_VERSION", "StateDirError", "VoiceStore"]

logger = logging.getLogger("trio_asyncai.server")

#: The index's file name, in the state directory.
INDEX_NAME: Final = "voices.json"
#: The folder of the samples, in the state directory.
SAMPLES_DIR: Final = "samples"
#: The index's ``format`` and ``version``.
STATE_FORMAT: Final = "trio-asyncai-voices"
STATE_VERSION: Final = 1
_REQUIRED_TEXT: Final = ("voice_id", "name", "language", "created_at", "updated_at")
_OPTIONAL_TEXT: Final = ("description", "gender", "accent", "style")
#: The sample file extensions the server writes.
SAMPLE_EXTENSIONS: Final = ("wav", "mp3", "flac", "aiff")


class StateDirError(OSError):
    """A state directory the server cannot use: ``path`` is the file or directory at fault.

    An :exc:`OSError`: the message names the file and says what is wrong with it.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to the disk.

    Not on Windows, where a directory cannot be opened (and a rename is flushed with its file).
    """
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one, whole.

    A temporary file beside it, written and flushed, renamed over it, and the
    directory flushed. The temporary file is removed if this fails.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@final
@attrs.frozen
class _Entry:
    """A cloned voice as the index keeps it: the voice and its sample's file (relative) and size."""

    voice: LibraryVoice
    sample: str
    sample_bytes: int


def _index_bytes(entries: Iterable[_Entry]) -> bytes:
    voices = []
    for entry in entries:
        # The API's voice object, less voice_type (always CUSTOM).
        item: dict[str, Any] = {name: getattr(entry.voice, name) for name in _REQUIRED_TEXT + _OPTIONAL_TEXT}
        item["sample"] = entry.sample
        item["sample_bytes"] = entry.sample_bytes
        voices.append(item)
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "voices": voices}
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def _damaged(index: Path, why: str) -> StateDirError:
    return StateDirError(
        index,
        f"the voice index {index} is damaged ({why}); nothing in {index.parent} was changed: "
        "restore it from a copy, or move the directory away to start with no cloned voices",
    )


def _entry(directory: Path, index: Path, position: int, item: object) -> _Entry:
    """One voice of the index, checked; its sample must be there with its size."""
    where = f"voice {position + 1}"
    if not isinstance(item, dict):
        raise _damaged(index, f"{where} is not an object")
    for name in _REQUIRED_TEXT:
        if not isinstance(item.get(name), str) or not item[name]:
            raise _damaged(index, f"{where} has no {name}")
    for name in _OPTIONAL_TEXT:
        if item.get(name) is not None and not isinstance(item[name], str):
            raise _damaged(index, f"{where}: {name} is not a string")
    sample, size = item.get("sample"), item.get("sample_bytes")
    if not isinstance(sample, str) or not isinstance(size, int) or isinstance(size, bool):
        raise _damaged(index, f"{where} names no sample")
    folder, _, name = sample.partition("/")
    if folder != SAMPLES_DIR or not name or "/" in name or name.startswith("."):
        raise _damaged(index, f"{where}: the sample {sample!r} is not in {SAMPLES_DIR}/")
    path = directory / sample
    try:
        found = path.stat().st_size
    except FileNotFoundError:
        raise StateDirError(
            path, f"the sample {path} of the voice {item['voice_id']} named in {index} is missing"
        ) from None
    if found != size:
        message = f"the sample {path} has {found} bytes, where the index {index} says {size}"
        raise StateDirError(path, message + ": it is not the sample that was saved")
    voice = LibraryVoice(
        voice_id=item["voice_id"],
        name=item["name"],
        description=item.get("description"),
        language=item["language"],
        gender=item.get("gender"),
        accent=item.get("accent"),
        style=item.get("style"),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        voice_type="CUSTOM",
    )
    return _Entry(voice, sample, size)


def _read_index(directory: Path) -> list[_Entry]:
    index = directory / INDEX_NAME
    try:
        raw = index.read_bytes()
    except IsADirectoryError:
        raise StateDirError(index, f"{index} is a directory, not a voice index") from None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        why = (
            "empty" if not raw.strip() else f"not JSON: {exc}" if isinstance(exc, ValueError) else "not JSON"
        )
        raise _damaged(index, why) from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise _damaged(index, f"not a {STATE_FORMAT} index")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(index, "no format version")
    if version > STATE_VERSION:
        raise StateDirError(
            index,
            f"the voice index {index} has format version {version}, from a later trio-asyncai; "
            f"this one reads version {STATE_VERSION} and changed nothing",
        )
    voices = document.get("voices")
    if not isinstance(voices, list):
        raise _damaged(index, "no voice list")
    entries = [_entry(directory, index, i, item) for i, item in enumerate(voices)]
    ids = [e.voice.voice_id for e in entries]
    if len(set(ids)) != len(ids):
        raise _damaged(index, "a voice is listed twice")
    return entries


def _open_directory(directory: Path) -> list[_Entry]:
    """Check (or create) a state directory and read its voices; see the module docstring."""
    try:
        if directory.exists() and not directory.is_dir():
            raise StateDirError(directory, f"the state directory {directory} is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        names = os.listdir(directory)
        if INDEX_NAME in names:
            return _read_index(directory)
        _check_empty(directory, names)
        write_atomically(directory / INDEX_NAME, _index_bytes([]))
    except StateDirError:
        raise
    except OSError as exc:
        where = Path(exc.filename) if isinstance(exc.filename, str) else directory
        reason = exc.strerror or str(exc)
        raise StateDirError(
            where, f"the state directory {directory} cannot be used: {where}: {reason}"
        ) from None
    return []


def _check_empty(directory: Path, names: list[str]) -> None:
    """Refuse a directory without an index that holds anything but our temporary files."""
    others = sorted(n for n in names if not _is_temporary(n))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise StateDirError(
            directory,
            f"the state directory {directory} holds files that are not a trio-asyncai state "
            f"({shown}) and no {INDEX_NAME}: use an empty or new directory",
        )


@final
class VoiceStore:
    """The one way cloned voices change: the library, and the state directory when there is one.

    Built by :class:`~trio_asyncai.server.ServerState`. Changes are made one
    at a time; the file work runs in a worker thread and is not cancelled
    half-way (a change that started is finished, on disk and in the library).
    """

    def __init__(self, library: VoiceLibrary, directory: str | os.PathLike[str] | None = None) -> None:
        """Check (or create) ``directory`` and add its voices to ``library``; raises :exc:`StateDirError`.

        Reads the disk (once, before the server starts).
        """
        self.library = library
        self.directory = None if directory is None else Path(directory).absolute()
        self._entries: dict[str, _Entry] = {}
        self._lock = trio.Lock()
        if self.directory is not None:
            entries = _open_directory(self.directory)
            for entry in entries:
                if entry.voice.voice_id in library:
                    index = self.directory / INDEX_NAME
                    raise _damaged(
                        index, f"the voice {entry.voice.voice_id} has the id of a predefined voice"
                    )
            for entry in entries:
                self._entries[entry.voice.voice_id] = entry
                library.add(entry.voice)
            logger.debug("state directory %s: %d cloned voices", self.directory, len(self._entries))

    def __repr__(self) -> str:
        return f"<VoiceStore {self.directory or 'in memory'}>"

    def sample_path(self, voice_id: str) -> Path | None:
        """Where a cloned voice's sample is kept (``None`` in memory, or for another voice)."""
        entry = self._entries.get(voice_id)
        if self.directory is None or entry is None:
            return None
        return self.directory / entry.sample

    async def add(self, voice: LibraryVoice, sample: bytes, extension: str) -> None:
        """Add a cloned voice with its sample (``extension``: one of :data:`SAMPLE_EXTENSIONS`)."""
        if extension not in SAMPLE_EXTENSIONS:
            raise ValueError(f"unknown sample extension {extension!r}")
        entry = _Entry(voice, f"{SAMPLES_DIR}/{voice.voice_id}.{extension}", len(sample))
        async with self._lock:
            entries = {**self._entries, voice.voice_id: entry}

            def write(directory: Path) -> None:
                (directory / SAMPLES_DIR).mkdir(exist_ok=True)
                # The sample first: an index never names a sample that is not there.
                write_atomically(directory / entry.sample, sample)
                try:
                    self._write_index(directory, entries)
                except BaseException:
                    (directory / entry.sample).unlink(missing_ok=True)
                    raise

            await self._run(write)
            self._entries = entries
            self.library.add(voice)

    async def replace(self, voice: LibraryVoice) -> bool:
        """Replace a cloned voice's description (same id); False if it is no longer there."""
        async with self._lock:
            if voice.voice_id not in self.library:
                await trio.lowlevel.checkpoint()
                return False
            old = self._entries.get(voice.voice_id)
            if old is not None:
                entries = {**self._entries, voice.voice_id: attrs.evolve(old, voice=voice)}
                await self._run(functools.partial(self._write_index, entries=entries))
                self._entries = entries
            self.library.add(voice)
            return True

    async def remove(self, voice_id: str) -> bool:
        """Forget a cloned voice and delete its sample; False if it is no longer there."""
        async with self._lock:
            if voice_id not in self.library:
                await trio.lowlevel.checkpoint()
                return False
            entry = self._entries.get(voice_id)
            if entry is not None:
                entries = {k: v for k, v in self._entries.items() if k != voice_id}

                def write(directory: Path) -> None:
                    self._write_index(directory, entries)
                    # The index no longer names it: a crash before this leaves a stray sample only.
                    (directory / entry.sample).unlink(missing_ok=True)

                await self._run(write)
                self._entries = entries
            self.library.remove(voice_id)
            return True

    async def _run(self, work: Callable[[Path], None]) -> None:
        """Run ``work(directory)`` in a worker thread, shielded: a change that started is finished.

        In memory there is nothing to write.
        """
        directory = self.directory
        if directory is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(work, directory)

    @staticmethod
    def _write_index(directory: Path, entries: dict[str, _Entry]) -> None:
        write_atomically(directory / INDEX_NAME, _index_bytes(entries.values()))
