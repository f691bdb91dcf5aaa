"""``trio-asyncai voices``: list, show, clone and delete voices."""

from __future__ import annotations

import argparse
import contextlib
import json

import attrs

from .._client import AsyncAIClient, Voice, open_client
from ._common import add_target_options, open_target

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
    listing.add_argument("--limit", type=int, help="show at most this many voices")

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
    """The words after ``voices``, with ``list`` put first when no action is named.

    ``trio-asyncai voices --json --language en`` is then ``voices list --json
    --language en``: the bare command takes every option of ``list``.
    """
    if words and (words[0] in _ACTIONS or words[0] in ("-h", "--help")):
        return words
    return ["list", *words]


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
    if args.limit is not None and args.limit < 1:
        return found
    pages = client.voices.list(page_size=100, **{name: getattr(args, name) for name in _FILTERS})
    async with contextlib.aclosing(pages):  # type: ignore[type-var]
        async for voice in pages:
            found.append(voice)
            if len(found) == args.limit:
                break
    return found


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
            options = {name: getattr(args, name) for name in _CLONE_OPTIONS}
            voice = await client.voices.clone(args.audio, **options)
            print(json.dumps(attrs.asdict(voice), indent=2) if args.json else _show(voice))
        else:
            await client.voices.delete(args.voice_id)
            print(json.dumps({"deleted": args.voice_id}) if args.json else f"deleted {args.voice_id}")
    return 0
