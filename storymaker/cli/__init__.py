"""Command line: ``python -m storymaker <command> ...``.

Each command group lives in its own module with ``register(subparsers)``; the function it sets as
``func`` receives the parsed arguments and the :class:`Settings`, and returns an exit code. A
:class:`StoryMakerError` becomes its message on stderr and exit code 2: never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..config import Settings
from ..errors import StoryMakerError

# Command-group modules, in the order they appear in --help.
COMMAND_MODULES = ("render", "batch", "characters", "poses", "styles", "score", "adapter", "system")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m storymaker",
        description="StoryMaker Studio: render stories with consistent characters.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except StoryMakerError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
