"""`python -m storymaker styles`: the style library (names for a story's or a panel's `style:`).

    python -m storymaker styles            # every style: name and one-line description
    python -m storymaker styles NAME       # one style's prompt template and negative prompt
"""

from __future__ import annotations

import argparse

from ..config import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("styles", help="list the comic styles a story's `style:` can name")
    parser.add_argument("name", nargs="?", help="show this style's prompt template and negative prompt")
    parser.set_defaults(func=cmd_styles)


def cmd_styles(args: argparse.Namespace, settings: Settings) -> int:
    from ..domain.styles import StyleLibrary

    library = StyleLibrary.builtin()
    if args.name:
        style = library.get(args.name)
        print(f"{style.name}: {style.description}")
        print(f"  prompt:   {style.prompt}")
        print(f"  negative: {style.negative}")
        return 0
    width = max(len(name) for name in library.names())
    for style in library:
        print(f"{style.name:<{width}}  {style.description}")
    print(f"\nUse one in a story's header or under a panel, e.g. `style: {library.names()[0]}`; "
          "any other text is added to the prompts as it is. Details: docs/prompts.md")
    return 0
