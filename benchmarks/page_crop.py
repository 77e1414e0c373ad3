"""Print how much of each panel's picture printed pages crop (``kind="pages"``, ``fit="cover"``).

For the example stories in ``examples/`` and a range of panel-aspect mixes (each repeated to fill
1..16 panels), both paper sizes, both orientations, with and without a title, and 2 or 3 columns,
prints the largest fraction of a picture's area that falls outside its slot (``1 - shown area``),
the mean, where the worst case happens, the pages used and how full they are. Pure geometry: runs
in a few seconds on a CPU.

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


def crops(aspects: list[float], options: LayoutOptions) -> tuple[list[float], int, list[float]]:
    """Crop fraction of every panel, the number of pages, the fill of every page but the last
    (panel area over the area inside the margins)."""
    out, fills = [], []
    pages = compute_layout(aspects, options)
    m = options.px(options.margin)
    for page in pages:
        for slot in page.slots:
            l, t, r, b = place_image(aspects[slot.panel], slot.rect, options.fit).crop
            out.append(1.0 - (r - l) * (b - t))
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


def main() -> int:
    rows = [(f"story {k}", v) for k, v in story_aspects().items()] + list(MIXES.items())
    print(f"{'aspects':36s} {'max crop':>8s} {'mean crop':>9s} {'pages':>6s} {'fill':>6s}  worst case")
    overall = 0.0
    for name, aspects in rows:
        worst, mean, where, npages, fill = sweep(aspects)
        overall = max(overall, worst)
        print(f"{name:36s} {worst:8.1%} {mean:9.2%} {npages:6d} {fill:6.1%}  {where}")
    print("pages: over the 1024 layouts of each row; fill: panel area inside the margins, every page "
          "but the last")
    print(f"largest fraction of a picture cropped on a page: {overall:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
