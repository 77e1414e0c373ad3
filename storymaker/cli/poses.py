"""`python -m storymaker poses ...` (being written; registers nothing yet)."""


def register(subparsers) -> None:
    return None
