"""``trio-asyncai voices``: list, show, clone and delete voices."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import attrs

from .._client import AsyncAIClient, Voice, open_client
from .._errors import AsyncAIError
from ._common import CommandError, add_target_options, open_target, positive_int

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "prepare", "run"]

#: The table's columns: a Voice field and its heading.
_COLUMNS = (
    ("voice_id", "VOICE ID"),
    ("name", "NAME"),
    ("language", "LANGUAGE"),
    ("gender", "GENDER"),
    ("accent", "ACCENT"),
    ("style", "STYLE"),
    ("voice_type", "TYPE"),
)


HELP = "list, show, clone and delete voices"
DESCRIPTION = (
    "Voice management. 'trio-asyncai voices' alone is 'voices list', and takes its options. "
    "Uses the real service when ASYNCAI_API_KEY is set, else (or with --local) a local "
    "server started in-process."
)
_ACTIONS = ("list", "show", "clone", "delete")
#: The filters of ``voices list``, passed to ``client.voices.list`` as they are.
_FILTERS = ("language", "gender", "accent", "style", "model", "my_voice")
#: The options of ``voices clone``, passed to ``client.voices.clone`` as they are.
_CLONE_OPTIONS = ("name", "description", "accent", "gender", "style", "enhance")


def add_arguments(voices: argparse.ArgumentParser) -> None:
    actions = voices.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        add_target_options(parser, engine=False)
        return parser

    listing = action("list", "List the voices that match every filter given.")
    listing.add_argument("--language", help="an ISO 639-1 code the voice speaks, e.g. en")
    listing.add_argument("--gender", help="Male, Female, Neutral or Unspecified")
    listing.add_argument("--accent", help="e.g. american")
    listing.add_argument("--style", help="e.g. conversational")
    listing.add_argument("--model", help="voices for this model id")
    mine = listing.add_mutually_exclusive_group()
    mine.add_argument(
        "--mine", dest="my_voice", action="store_const", const=True, help="your cloned voices only"
    )
    mine.add_argument(
        "--predefined", dest="my_voice", action="store_const", const=False, help="the service's voices only"
    )
    listing.add_argument("--limit", type=positive_int, help="show at most this many voices (1 or more)")

    show = action("show", "Show one voice.")
    show.add_argument("voice_id", metavar="VOICE_ID")

    clone = action("clone", "Clone a voice from a recording (wav, mp3, flac or aiff; 3 s to 10 MB).")
    clone.add_argument("audio", metavar="FILE")
    clone.add_argument("--name", required=True, help="the new voice's name")
    clone.add_argument("--description")
    clone.add_argument("--accent")
    clone.add_argument("--gender", help="Male, Female, Neutral or Unspecified")
    clone.add_argument("--style", help="comma separated")
    clone.add_argument(
        "--enhance", action="store_true", help="ask the service to clean the recording up first"
    )

    delete = action("delete", "Delete one of your cloned voices.")
    delete.add_argument("voice_id", metavar="VOICE_ID")


def default_action(words: list[str]) -> list[str]:
    """The words after ``voices``, with ``list`` put first when they start with an option, or are none.

    ``trio-asyncai voices --json --language en`` is then ``voices list --json
    --language en``: the bare command takes every option of ``list``. A first
    word that is no option is left for argparse to check as an action
    (``voices shw`` is an invalid choice, and the actions are listed).
    """
    if not words or (words[0].startswith("-") and words[0] not in ("-h", "--help")):
        return ["list", *words]
    return words


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Nothing to settle before the run."""


def _table(voices: list[Voice]) -> str:
    rows = [[heading for _, heading in _COLUMNS]]
    rows += [[getattr(voice, field) or "-" for field, _ in _COLUMNS] for voice in voices]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _show(voice: Voice) -> str:
    fields = attrs.asdict(voice)
    width = max(map(len, fields))
    return "\n".join(
        f"{key + ':':<{width + 1}} {'-' if value is None else value}" for key, value in fields.items()
    )


async def _list(client: AsyncAIClient, args: argparse.Namespace) -> list[Voice]:
    found: list[Voice] = []
    pages = client.voices.list(page_size=100, **{name: getattr(args, name) for name in _FILTERS})
    async with contextlib.aclosing(pages):  # type: ignore[type-var]
        async for voice in pages:
            found.append(voice)
            if len(found) == args.limit:
                break
    return found


async def _clone(client: AsyncAIClient, args: argparse.Namespace) -> Voice:
    """Clone, then read the voice back as it was stored.

    The service answers a clone with the new voice's id, name, description
    and language only; what it stored of the gender, accent and style is
    read back with ``voices.get``. Should that read fail, the clone has
    happened all the same: its answer is shown, as it came.
    """
    try:
        with open(args.audio, "rb") as file:  # noqa: ASYNC230 - a small local file, read once
            sample = file.read()
    except OSError as exc:
        raise CommandError(f"cannot read {args.audio}: {exc.strerror or exc}") from None
    options = {name: getattr(args, name) for name in _CLONE_OPTIONS}
    cloned = await client.voices.clone(sample, filename=os.path.basename(args.audio), **options)
    try:
        return await client.voices.get(cloned.voice_id)
    except AsyncAIError:
        return cloned


async def run(args: argparse.Namespace) -> int:
    async with (
        open_target(args) as target,
        open_client(base_url=target.base_url, api_key=target.api_key) as client,
    ):
        if args.action == "list":
            found = await _list(client, args)
            if args.json:
                print(json.dumps([attrs.asdict(v) for v in found], indent=2))
            else:
                print(_table(found) if found else "no voices match")
        elif args.action == "show":
            voice = await client.voices.get(args.voice_id)
            print(json.dumps(attrs.asdict(voice), indent=2) if args.json else _show(voice))
        elif args.action == "clone":
            voice = await _clone(client, args)
            print(json.dumps(attrs.asdict(voice), indent=2) if args.json else _show(voice))
            if target.in_process:
                print(
                    "trio-asyncai: note: this voice lives in a local server started for this command "
                    "alone, and is gone now; clone against 'trio-asyncai serve' (--base-url) to keep it",
                    file=sys.stderr,
                )
        else:
            await client.voices.delete(args.voice_id)
            print(json.dumps({"deleted": args.voice_id}) if args.json else f"deleted {args.voice_id}")
    return 0
