"""Print how much of each panel's picture the comic layouts crop (``fit="cover"``).

Printed pages (``kind="pages"``): for the example stories in ``examples/`` and a range of
panel-aspect mixes (each repeated to fill 1..16 panels), both paper sizes, both orientations, with
and without a title, and 2 or 3 columns, prints the largest fraction of a picture's area that falls
outside its slot (``1 - shown area``), the mean, where the worst case happens, the pages used and
how full they are.

Grids (``kind="grid"``): the same rows, 1..16 panels, 2 to 4 columns, with and without a title;
the largest and mean crop per picture before (every cell the median panel's shape, cropped
without a bound) and now, side by side, and how much of the cells the pictures fill now (a
picture fills its cell, cropped at most 5%, or is shown whole with blank beside it). Strips
and scrolls give every slot its picture's shape (crop 0): the last line checks it. Pure geometry:
runs in a few seconds on a CPU.

    python benchmarks/page_crop.py
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storymaker.domain.layout import LayoutOptions, compute_layout, place_image  # noqa: E402
from storymaker.domain.script.data import load_story  # noqa: E402

MIXES = {
    "square": [1.0],
    "portrait 3:4": [0.75],
    "landscape 16:9": [16 / 9],
    "portrait+landscape": [0.75, 16 / 9],
    "mixed rows": [0.75, 1.5, 1.0, 0.75, 0.5, 2.0, 0.75, 1.0, 1.33, 0.6, 1.78, 1.0],
    "tall+wide": [0.5, 2.0, 0.75, 1.78],
    "9:16+16:9": [9 / 16, 16 / 9, 1.0],
    "near shapes": [1.0, 1.06, 4 / 3, 1.4],
}


def story_aspects() -> dict[str, list[float]]:
    """Panel aspects of every example story (``examples/**/example.json`` name their scripts)."""
    paths = set()
    for index in sorted(ROOT.glob("examples/**/example.json")):
        story = json.loads(index.read_text(encoding="utf-8")).get("story")
        if isinstance(story, str):
            paths.add((index.parent / story).resolve())
    paths.update(p.resolve() for p in ROOT.glob("examples/**/*.story"))
    return {str(p.relative_to(ROOT)): _aspects(load_story(p)) for p in sorted(paths)}


def _aspects(story) -> list[float]:
    from storymaker.config import Settings

    default = story.size or (Settings.width, Settings.height)  # the settings' default size
    return [(p.size or default)[0] / (p.size or default)[1] for p in story.panels]


def _crop(aspect: float, slot, fit: str = "cover") -> float:
    l, t, r, b = place_image(aspect, slot, fit).crop
    return 1.0 - (r - l) * (b - t)


def crops(aspects: list[float], options: LayoutOptions) -> tuple[list[float], int, list[float]]:
    """Crop fraction of every panel, the number of pages, the fill of every page but the last
    (panel area over the area inside the margins)."""
    out, fills = [], []
    pages = compute_layout(aspects, options)
    m = options.px(options.margin)
    for page in pages:
        for slot in page.slots:
            out.append(_crop(aspects[slot.panel], slot.rect, options.fit))
        area = sum(s.rect.w * s.rect.h for s in page.slots)
        fills.append(area / ((page.width - 2 * m) * (page.height - 2 * m)))
    return out, len(pages), fills[:-1]


def sweep(base: list[float]) -> tuple[float, float, str, int, float]:
    worst, where, total, count, npages, fills = -1.0, "", 0.0, 0, 0, []
    for n, size, orient, title, cols in itertools.product(
            range(1, 17), ("A4", "Letter"), ("portrait", "landscape"), ("", "Title"), (2, 3)):
        aspects = [base[i % len(base)] for i in range(n)]
        options = LayoutOptions(kind="pages", page_size=size, orientation=orient, title=title,
                                columns=cols)
        c, k, f = crops(aspects, options)
        npages += k
        fills += f
        total += sum(c)
        count += len(c)
        if max(c) > worst:
            worst, where = max(c), f"n={n} {size} {orient} cols={cols} title={bool(title)}"
    return worst, total / count, where, npages, sum(fills) / max(1, len(fills))


def median_cell_crops(aspects: list[float]) -> list[float]:
    """The grid before: every cell had the median panel's shape and ``cover`` cropped each
    picture to it (``1 - min(a/c, c/a)`` of its area; heads aside)."""
    cell = sorted(aspects)[len(aspects) // 2]
    return [1.0 - min(a / cell, cell / a) for a in aspects]


def grid_sweep(base: list[float]) -> tuple[float, float, float, float, float, str]:
    """(worst before, mean before, worst now, mean now, picture area / cell area now, where)."""
    before, now, fills, where, worst = [], [], [], "", -1.0
    for n, cols, title in itertools.product(range(1, 17), (2, 3, 4), ("", "Title")):
        aspects = [base[i % len(base)] for i in range(n)]
        options = LayoutOptions(kind="grid", columns=cols, title=title)
        (page,) = compute_layout(aspects, options)
        c = [_crop(aspects[s.panel], s.rect) for s in page.slots]
        fills.append(sum(s.rect.w * s.rect.h for s in page.slots) / cells_area(page, options))
        before += median_cell_crops(aspects)
        now += c
        if max(c) > worst:
            worst, where = max(c), f"n={n} cols={cols} title={bool(title)}"
    return (max(before), sum(before) / len(before), max(now), sum(now) / len(now),
            sum(fills) / len(fills), where)


def cells_area(page, options: LayoutOptions) -> float:
    """Area of the grid's cells: equal, as wide as a column, as tall as the tallest slot (some
    picture always fills its cell; the others are centred in theirs, maybe smaller)."""
    m, g = options.px(options.margin), options.px(options.gutter)
    cols = min(options.columns, len(page.slots))
    cw = (page.width - 2 * m - g * (cols - 1)) / cols
    return cw * max(s.rect.h for s in page.slots) * len(page.slots)


def main() -> int:
    rows = [(f"story {k}", v) for k, v in story_aspects().items()] + list(MIXES.items())
    print("Printed pages")
    print(f"{'aspects':36s} {'max crop':>8s} {'mean crop':>9s} {'pages':>6s} {'fill':>6s}  "
          "worst case")
    overall = 0.0
    for name, aspects in rows:
        worst, mean, where, npages, fill = sweep(aspects)
        overall = max(overall, worst)
        print(f"{name:36s} {worst:8.1%} {mean:9.2%} {npages:6d} {fill:6.1%}  {where}")
    print("pages: over the 1024 layouts of each row; fill: panel area inside the margins, every "
          "page but the last")
    print(f"largest fraction of a picture cropped on a page: {overall:.1%}")

    print("\nGrids (before: every cell the median panel's shape)")
    print(f"{'aspects':36s} {'max before':>10s} {'max now':>8s} {'mean before':>11s} "
          f"{'mean now':>8s} {'fill':>6s}  worst case now")
    grid_before = grid_now = 0.0
    for name, aspects in rows:
        wb, mb, wn, mn, fill, where = grid_sweep(aspects)
        grid_before, grid_now = max(grid_before, wb), max(grid_now, wn)
        print(f"{name:36s} {wb:10.1%} {wn:8.1%} {mb:11.2%} {mn:8.2%} {fill:6.1%}  {where}")
    print("grids: over the 96 layouts of each row (1..16 panels, 2-4 columns, with and without a "
          "title); fill: picture area over cell area")
    print(f"largest fraction of a picture cropped in a grid: {grid_before:.1%} before, "
          f"{grid_now:.1%} now")

    other = 0.0
    for (_, aspects), kind in itertools.product(rows, ("strip", "scroll")):
        for n in range(1, 17):
            a = [aspects[i % len(aspects)] for i in range(n)]
            other = max(other, max(crops(a, LayoutOptions(kind=kind))[0]))
    print(f"largest fraction of a picture cropped in a strip or a scroll: {other:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
