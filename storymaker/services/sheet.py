"""Character sheets and the consistency report built from stored scores (no model runs here).

- :func:`story_report`: the panels' scores and the story means as plain data (the ``score --json``
  output);
- :func:`format_table`: the same as text tables for a terminal;
- :func:`character_sheets`: per character, one image with its crop from every scored panel side by
  side, each labelled with its face similarity (off-model ones in red);
- :func:`report_html`: a self-contained HTML page (tables + sheets as inline PNGs).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from statistics import fmean
from typing import Any, Sequence

from PIL import Image, ImageDraw

from .scores import STAND_IN_NOTE, ScoredPanel

logger = logging.getLogger(__name__)

TILE_HEIGHT = 192
LABEL_HEIGHT = 40
GAP = 8
OFF_MODEL_RED = (200, 30, 30)


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def story_report(scored: Sequence[ScoredPanel]) -> dict[str, Any]:
    """``{"panels": [...], "story": {...}, "skipped": [...]}``: one entry per scored panel (1-based
    ``panel``), the story means, and the panels that have no scores with the reason."""
    panels, skipped = [], []
    for item in scored:
        if item.scores is None:
            skipped.append({"panel": item.index + 1, "version": item.version.id, "reason": item.reason or "not scored"})
            continue
        s = item.scores
        panels.append({
            "panel": item.index + 1,
            "version": item.version.id,
            "clip_t": _r(s.clip_t),
            "min_face_similarity": _r(s.min_face_similarity),
            "off_model": s.off_model,
            "stand_in": s.stand_in,
            "models": dict(s.models),
            "characters": [
                {"name": c.name, "face_similarity": _r(c.face_similarity), "clip_i": _r(c.clip_i),
                 "off_model": c.off_model, "face_found": c.face_found, "note": c.note}
                for c in s.characters
            ],
        })
    faces = [c["face_similarity"] for p in panels for c in p["characters"]]
    clip_i = [c["clip_i"] for p in panels for c in p["characters"] if c["clip_i"] is not None]
    clip_t = [p["clip_t"] for p in panels if p["clip_t"] is not None]
    per_character: dict[str, dict[str, Any]] = {}
    for p in panels:
        for c in p["characters"]:
            entry = per_character.setdefault(c["name"], {"faces": [], "clip_i": [], "off": 0})
            entry["faces"].append(c["face_similarity"])
            if c["clip_i"] is not None:
                entry["clip_i"].append(c["clip_i"])
            entry["off"] += int(c["off_model"])
    stand_in = any(p["stand_in"] for p in panels)
    thresholds = sorted({item.scores.threshold for item in scored if item.scores is not None})
    story = {
        "panels_scored": len(panels),
        "face_similarity_mean": _r(fmean(faces)) if faces else None,
        "face_similarity_min": _r(min(faces)) if faces else None,
        "clip_i_mean": _r(fmean(clip_i)) if clip_i else None,
        "clip_t_mean": _r(fmean(clip_t)) if clip_t else None,
        "off_model_panels": sum(1 for p in panels if p["off_model"]),
        "threshold": thresholds[0] if len(thresholds) == 1 else (thresholds or None),  # a list if they differ
        "stand_in": stand_in,
        "note": STAND_IN_NOTE if stand_in else "",
        "characters": {
            name: {
                "panels": len(e["faces"]),
                "face_similarity_mean": _r(fmean(e["faces"])),
                "face_similarity_min": _r(min(e["faces"])),
                "clip_i_mean": _r(fmean(e["clip_i"])) if e["clip_i"] else None,
                "off_model_panels": e["off"],
            }
            for name, e in sorted(per_character.items(), key=lambda kv: kv[0].casefold())
        },
    }
    return {"panels": panels, "story": story, "skipped": skipped}


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_table(report: dict[str, Any]) -> str:
    """The report as text: one row per panel and character, then per character, then the story."""
    story = report["story"]
    lines: list[str] = []
    if story["stand_in"]:
        lines.append(f"NOTE: scores {STAND_IN_NOTE}.")
    rows = []
    for p in report["panels"]:
        if not p["characters"]:
            rows.append([str(p["panel"]), p["version"], "(no characters)", "-", "-", _f(p["clip_t"]), ""])
        for c in p["characters"]:
            flag = "OFF-MODEL" + ("" if c["face_found"] else " (no face)") if c["off_model"] else ""
            rows.append([str(p["panel"]), p["version"], c["name"], _f(c["face_similarity"]), _f(c["clip_i"]),
                         _f(p["clip_t"]), flag])
    lines += _table(["panel", "version", "character", "face", "CLIP-I", "CLIP-T", ""], rows)
    for s in report["skipped"]:
        lines.append(f"panel {s['panel']} ({s['version']}): no scores: {s['reason']}")
    lines.append("")
    char_rows = [[name, str(e["panels"]), _f(e["face_similarity_mean"]), _f(e["face_similarity_min"]),
                  _f(e["clip_i_mean"]), str(e["off_model_panels"])] for name, e in story["characters"].items()]
    if char_rows:
        lines += _table(["character", "panels", "face mean", "face min", "CLIP-I mean", "off-model"], char_rows)
        lines.append("")
    lines.append(
        f"story: {story['panels_scored']} panel(s) scored; face similarity mean {_f(story['face_similarity_mean'])}, "
        f"min {_f(story['face_similarity_min'])}; CLIP-I {_f(story['clip_i_mean'])}; CLIP-T {_f(story['clip_t_mean'])}; "
        f"off-model panels {story['off_model_panels']} (threshold {story['threshold']})"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Character sheets


def _tile(crop: Image.Image, label: str, colour: tuple[int, int, int]) -> Image.Image:
    from .draft import load_font

    scale = TILE_HEIGHT / max(1, crop.height)
    width = max(112, min(3 * TILE_HEIGHT, round(crop.width * scale)))
    picture = crop.convert("RGB").resize((width, TILE_HEIGHT), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (width, TILE_HEIGHT + LABEL_HEIGHT), "white")
    tile.paste(picture, (0, 0))
    draw = ImageDraw.Draw(tile)
    font = load_font(15)
    for n, text in enumerate(label.split("\n")[:2]):
        draw.text((4, TILE_HEIGHT + 2 + n * 18), text, fill=colour, font=font)
    if colour == OFF_MODEL_RED:
        draw.rectangle((0, 0, width - 1, TILE_HEIGHT + LABEL_HEIGHT - 1), outline=OFF_MODEL_RED, width=3)
    return tile


def character_sheet(name: str, entries: Sequence[tuple[int, Image.Image, Any]],
                    reference: Image.Image | None = None, *, stand_in: bool = False) -> Image.Image:
    """One image: ``name`` and, side by side, the registered ``reference`` (if given) and the
    character's crop from each panel (``entries``: (panel index, panel image, CharacterScore)),
    each labelled with its face similarity."""
    from .draft import load_font

    tiles = []
    if reference is not None:
        tiles.append(_tile(reference, "registered", (0, 0, 0)))
    for index, image, score in entries:
        crop = image.crop(tuple(score.region))
        if score.off_model:
            what = "no face" if not score.face_found else "off-model"
            label, colour = f"panel {index + 1}\n{what} {score.face_similarity:.2f}", OFF_MODEL_RED
        else:
            label, colour = f"panel {index + 1}\nface {score.face_similarity:.2f}", (0, 90, 0)
        tiles.append(_tile(crop, label, colour))
    title = f"{name}: face similarity in each panel" + (f" ({STAND_IN_NOTE})" if stand_in else "")
    font = load_font(18)
    head = 30
    width = max(sum(t.width for t in tiles) + GAP * (len(tiles) + 1), 16 + int(font.getlength(title)))
    sheet = Image.new("RGB", (width, head + TILE_HEIGHT + LABEL_HEIGHT + GAP), (245, 245, 245))
    ImageDraw.Draw(sheet).text((GAP, 6), title, fill=(0, 0, 0), font=font)
    x = GAP
    for tile in tiles:
        sheet.paste(tile, (x, head))
        x += tile.width + GAP
    return sheet


def character_sheets(scored: Sequence[ScoredPanel], references: dict[str, Image.Image] | None = None) -> dict[str, Image.Image]:
    """Per character (in order of first appearance), its sheet over every scored panel."""
    entries: dict[str, list[tuple[int, Image.Image, Any]]] = {}
    stand_in: dict[str, bool] = {}
    for item in scored:
        if item.scores is None or not item.scores.characters:
            continue
        image = item.version.load_image()
        for score in item.scores.characters:
            entries.setdefault(score.name, []).append((item.index, image, score))
            stand_in[score.name] = stand_in.get(score.name, False) or item.scores.stand_in
    references = references or {}
    return {name: character_sheet(name, items, references.get(name), stand_in=stand_in[name])
            for name, items in entries.items()}


def reference_images(registry: Any, names: Sequence[str]) -> dict[str, Image.Image]:
    """The registered face crop of each character that has one (for the first tile of its sheet)."""
    from ..errors import StoryMakerError

    out = {}
    for name in names:
        try:
            out[name] = registry.image(name, "face")
        except (OSError, StoryMakerError) as err:  # removed or renamed since the render
            logger.info("no registered face crop for %s: %s", name, err)
    return out


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def report_html(report: dict[str, Any], sheets: dict[str, Image.Image], *, title: str = "") -> str:
    """A self-contained HTML page: the text tables and the character sheets (inline PNGs)."""
    heading = html.escape(f"Consistency report{': ' + title if title else ''}")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{heading}</title>",
        "<style>body{font-family:sans-serif;margin:2em} pre{background:#f6f6f6;padding:1em}"
        " img{max-width:100%;border:1px solid #ccc} .note{color:#a00}</style></head><body>",
        f"<h1>{heading}</h1>",
    ]
    if report["story"]["stand_in"]:
        parts.append(f"<p class='note'>Scores {html.escape(STAND_IN_NOTE)}.</p>")
    parts.append(f"<pre>{html.escape(format_table(report))}</pre>")
    if sheets:
        parts.append("<h2>Character sheets</h2>")
    for name, sheet in sheets.items():
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)} sheet' src='{png_data_uri(sheet)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
