"""`python -m storymaker system ...` (being written; registers nothing yet)."""


def register(subparsers) -> None:
    return None
