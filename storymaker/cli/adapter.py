"""`python -m storymaker adapter ...` (being written; registers nothing yet)."""


def register(subparsers) -> None:
    return None
