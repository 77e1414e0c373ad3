"""`python -m storymaker characters ...` (being written; registers nothing yet)."""


def register(subparsers) -> None:
    return None
