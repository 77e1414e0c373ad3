"""`python -m storymaker render ...` (being written; registers nothing yet)."""


def register(subparsers) -> None:
    return None
