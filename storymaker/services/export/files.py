"""What the PNG and PDF writers share: the software name in their metadata, the file stem made from
the title (:func:`safe_filename`), and the refusal to overwrite an existing file."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Sequence

from .compose import ExportError

SOFTWARE = "StoryMaker Studio"


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}  # device names Windows refuses as files


def _fold(ch: str) -> str:
    """``ch`` as ASCII when it is a Latin letter with marks (é -> e), else ``ch`` itself."""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return base if base and base.isascii() else ch


def safe_filename(title: str, default: str = "comic", max_len: int = 80, max_bytes: int = 120) -> str:
    """A portable file stem from a title, lower case, words joined by dashes.

    Accented Latin letters lose their accents (``Été`` -> ``ete``); letters of other scripts are
    kept as they are (``Три подруги`` -> ``три-подруги``, ``灯塔`` -> ``灯塔``), so a title in any
    language names its file. Path separators, punctuation and control characters become dashes;
    the stem is cut to ``max_len`` characters and ``max_bytes`` UTF-8 bytes (file systems allow
    255 bytes; ``-page-01.png`` still fits)."""
    text = unicodedata.normalize("NFKC", title or "")
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LN":
            out.append(_fold(ch))
        elif cat[0] == "M" and out and not out[-1].isascii():
            out.append(ch)  # a vowel sign or accent of a script that keeps its letters
        else:
            out.append("-")
    stem = re.sub(r"-+", "-", "".join(out)).strip("-").lower()
    stem = unicodedata.normalize("NFC", stem)[:max_len]
    while len(stem.encode("utf-8")) > max_bytes:
        stem = stem[:-1]
    stem = stem.strip("-")
    if stem in _RESERVED:
        stem += f"-{default}"
    return stem or default


def _targets_free(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ExportError(
            f"Not overwriting {', '.join(existing)}: choose another title or folder, or ask for "
            "overwrite (overwrite=True, --overwrite)."
        )
