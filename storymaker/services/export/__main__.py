"""``python -m storymaker.services.export --demo OUT_DIR``: write the sample comic."""

from .sample import main

if __name__ == "__main__":
    raise SystemExit(main())
