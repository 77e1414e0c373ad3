"""Comic export: composed pages, PNG files with metadata, PDF with real text (read back with pypdf)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from storymaker.domain.layout import LayoutOptions, compute_layout
from storymaker.domain.poses import Person, Pose
from storymaker.domain.story import Dialogue, Panel
from storymaker.errors import InvalidInputError
from storymaker.services.export import (
    PANEL_KEY,
    ComicPanel,
    ExportError,
    export_pdf,
    export_png,
    read_png_metadata,
    render_comic,
    safe_filename,
    sample_panel_image,
    sample_panels,
)

TITLE = "The Lighthouse Keeper: Part 1/2"
AUTHOR = "Ada Writer"


@pytest.fixture(scope="module")
def panels() -> list[ComicPanel]:
    """The sample comic at a third of its size (fast), images made in code."""
    out = []
    for p in sample_panels():
        w, h = p.image.size
        out.append(ComicPanel(p.image.resize((w // 3, h // 3)), p.caption, p.dialogue, p.anchors,
                              p.metadata))
    return out


def _small(**kw) -> LayoutOptions:
    return LayoutOptions(dpi=72, **kw)


def test_pages_are_composed_with_panels_where_the_layout_says(panels):
    options = _small(kind="pages", title=TITLE)
    pages = render_comic(panels, options)
    layouts = compute_layout([p.image.size[0] / p.image.size[1] for p in panels], options)
    assert [pg.layout for pg in pages] == layouts
    for page in pages:
        assert page.image.size == (page.layout.width, page.layout.height)
        for index, placement in page.placements:
            # The middle of each slot shows the panel's own colour (sample panels are flat colours
            # with a figure; the top-left corner region is the sky colour unless lettered).
            x, y = placement.dest.center
            got = page.image.getpixel((int(x), int(placement.dest.y + placement.dest.h * 0.9)))
            assert got != (255, 255, 255)
        for b in page.balloons:
            assert any(pl.dest.contains(b.box, tol=1) for _, pl in page.placements)
    assert pages[0].title is not None and pages[0].title[0].text == TITLE


def test_png_pages_with_metadata_read_back(panels, tmp_path):
    options = _small(kind="pages", columns=1, title=TITLE)
    paths = export_png(panels, tmp_path, options, author=AUTHOR)
    layouts = compute_layout([p.image.size[0] / p.image.size[1] for p in panels], options)
    assert len(paths) == len(layouts) > 1
    assert [p.name for p in paths] == [
        f"the-lighthouse-keeper-part-1-2-page-{i:02d}.png" for i in range(1, len(paths) + 1)]
    found = {}
    for path, layout in zip(paths, layouts):
        with Image.open(path) as im:
            assert im.size == (layout.width, layout.height)
        meta = read_png_metadata(path)
        assert meta["Title"] == TITLE and meta["Author"] == AUTHOR
        page = json.loads(meta["storymaker:page"])
        assert page["panels"] == [s.panel + 1 for s in layout.slots]
        for slot in layout.slots:
            record = json.loads(meta[PANEL_KEY.format(n=slot.panel + 1)])
            found[slot.panel] = record
    assert sorted(found) == list(range(len(panels)))
    for i, panel in enumerate(panels):
        assert found[i]["seed"] == panel.metadata["seed"]
        assert found[i]["prompt"] == panel.metadata["prompt"]
        assert found[i]["base_model"] == panel.metadata["base_model"]
        assert found[i]["adapter_model"] == panel.metadata["adapter_model"]


@pytest.mark.parametrize("kind", ["strip", "scroll", "grid"])
def test_strip_scroll_grid_are_one_long_png(panels, tmp_path, kind):
    (path,) = export_png(panels, tmp_path, _small(kind=kind), title="Strip!")
    assert path.name == "strip.png"
    meta = read_png_metadata(path)
    assert all(PANEL_KEY.format(n=i + 1) in meta for i in range(len(panels)))
    with Image.open(path) as im:
        w, h = im.size
    assert (w > h) if kind == "strip" else (h > w)


def test_nothing_is_overwritten_unless_asked(panels, tmp_path):
    options = _small(kind="strip")
    (path,) = export_png(panels[:2], tmp_path, options, title="Same")
    before = path.read_bytes()
    with pytest.raises(ExportError, match="overwrite"):
        export_png(panels[2:4], tmp_path, options, title="Same")
    assert path.read_bytes() == before
    (again,) = export_png(panels[2:4], tmp_path, options, title="Same", overwrite=True)
    assert again == path and path.read_bytes() != before
    pdf = export_pdf(panels[:1], tmp_path, options, title="Same")
    with pytest.raises(ExportError, match="overwrite"):
        export_pdf(panels[:1], tmp_path, options, title="Same")
    assert export_pdf(panels[:1], tmp_path, options, title="Same", overwrite=True) == pdf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.pdf", "same.png"]  # no temp files


def test_pdf_pages_text_and_metadata(panels, tmp_path):
    import pypdf

    options = _small(kind="pages", columns=1, title=TITLE)
    path = export_pdf(panels, tmp_path, options, author=AUTHOR)
    assert path.name == "the-lighthouse-keeper-part-1-2.pdf"
    reader = pypdf.PdfReader(str(path))
    expected_pages = compute_layout([p.image.size[0] / p.image.size[1] for p in panels], options)
    assert len(reader.pages) == len(expected_pages) > 1
    assert reader.metadata.title == TITLE
    assert reader.metadata.author == AUTHOR
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    for panel in panels:
        if panel.caption:
            assert panel.caption in text  # Latin, Cyrillic and Chinese captions are real text
        for line in panel.dialogue:
            first_words = " ".join(line.text.split()[:2])
            assert first_words in text
    assert "Буря не утихала всю ночь." in text and "灯塔的光穿过了雾。" in text
    assert TITLE in text
    # Page size matches the layout (points = pixels * 72 / dpi; dpi is 72 here).
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (
        expected_pages[0].width, expected_pages[0].height)


def test_pdf_images_are_jpeg_and_quality_sets_size(tmp_path):
    import pypdf

    # A noisy image so that JPEG quality matters.
    noise = Image.effect_noise((400, 300), 60).convert("RGB")
    panel = ComicPanel(noise, "Noise.")
    low = export_pdf([panel], tmp_path, _small(), title="low", jpeg_quality=20)
    high = export_pdf([panel], tmp_path, _small(), title="high", jpeg_quality=95)
    assert low.stat().st_size < high.stat().st_size
    reader = pypdf.PdfReader(str(low))
    xobjects = reader.pages[0]["/Resources"]["/XObject"]
    filters = [xobjects[k].get_object()["/Filter"] for k in xobjects]
    assert any("/DCTDecode" in str(f) for f in filters)
    with pytest.raises(InvalidInputError):
        export_pdf([panel], tmp_path, _small(), title="bad", jpeg_quality=0)


@pytest.mark.parametrize("title,stem", [
    ("The Lighthouse Keeper", "the-lighthouse-keeper"),
    ("../../etc/passwd", "etc-passwd"),
    ("Été à Paris!", "ete-a-paris"),
    ("灯塔", "灯塔"),
    ("Три подруги: Ночь у маяка", "три-подруги-ночь-у-маяка"),
    ("Ωμέγα", "ωμέγα"),
    ("नमस्ते दुनिया", "नमस्ते-दुनिया"),
    ("東京の夜 (第1話)", "東京の夜-第1話"),
    ("", "comic"),
    ("?!", "comic"),
    ("CON: a/b\\c?*", "con-a-b-c"),
    ("nul", "nul-comic"),
])
def test_safe_filename(title, stem):
    assert safe_filename(title) == stem


def test_long_titles_fit_file_systems():
    assert len(safe_filename("a" * 300)) == 80
    stem = safe_filename("灯" * 300)
    assert len(stem.encode("utf-8")) <= 120 and set(stem) == {"灯"}


def test_non_latin_title_names_the_files(panels, tmp_path):
    title = "Три подруги"
    (png,) = export_png(panels[:2], tmp_path, _small(kind="strip"), title=title)
    pdf = export_pdf(panels[:2], tmp_path, _small(kind="strip"), title=title)
    assert (png.name, pdf.name) == ("три-подруги.png", "три-подруги.pdf")
    assert read_png_metadata(png)["Title"] == title


def test_no_panels_and_missing_images_are_clear_errors(tmp_path):
    with pytest.raises(ExportError, match="no panels"):
        export_png([], tmp_path)
    with pytest.raises(InvalidInputError, match="Panel 1 has no image"):
        render_comic([ComicPanel(None)])  # type: ignore[arg-type]


def test_from_story_panel_uses_pose_heads():
    pts = [None] * 18
    pose = Pose("two", (Person(tuple([(0.3, 0.3)] + pts[1:])), Person(tuple([(0.7, 0.3)] + pts[1:]))))
    story_panel = Panel("[Mara] and [Theo] talk", characters=("Mara", "Theo"), caption="Later.",
                        seed=7, dialogue=(Dialogue("Theo", "Hi."),))
    image = sample_panel_image((300, 300), (150, 150, 200), [(0.3, 0.3), (0.7, 0.3)])
    cp = ComicPanel.from_story_panel(story_panel, image, pose, {"base_model": "x"})
    assert cp.metadata == {"prompt": "[Mara] and [Theo] talk", "seed": 7, "base_model": "x"}
    (page,) = render_comic([cp], _small(kind="strip", panel_height=300))
    (speech,) = [b for b in page.balloons if b.kind == "speech"]
    _, placement = page.placements[0]
    head = placement.to_dest(0.7, 0.3)
    assert speech.target == pytest.approx(head)


def test_pdf_text_is_drawn_inside_its_balloons(panels, tmp_path):
    """Each text object starts inside the caption/bubble (or title) the layout planned for it."""
    import pypdf

    options = _small(kind="pages", title=TITLE)
    path = export_pdf(panels, tmp_path, options)
    pages = render_comic(panels, options, draw=False)
    reader = pypdf.PdfReader(str(path))
    k = 72.0 / options.dpi
    for page, pdf_page in zip(pages, reader.pages):
        page_h = page.layout.height * k
        boxes = [b.box for b in page.balloons]
        if page.layout.title_box is not None:
            boxes.append(page.layout.title_box)
        starts = []

        def visit(text, cm, tm, font, size):
            if text.strip():
                starts.append((text, tm[4] / k, (page_h - tm[5]) / k))

        pdf_page.extract_text(visitor_text=visit)
        assert len(starts) >= sum(len(b.lines) for b in page.balloons)
        for text, x, y in starts:
            assert any(b.x - 1 <= x <= b.right + 1 and b.y - 1 <= y <= b.bottom + 1 for b in boxes), (
                text, x, y)


def test_geometry_only_pass_matches_the_drawn_pages(panels):
    options = _small(kind="grid", columns=3)
    drawn = render_comic(panels, options)
    plan = render_comic(panels, options, draw=False)
    assert [p.balloons for p in drawn] == [p.balloons for p in plan]
    assert [p.placements for p in drawn] == [p.placements for p in plan]


def test_imports_stay_light():
    """Layout, lettering and export import neither torch nor PIL/reportlab at module import."""
    import subprocess
    import sys

    code = ("import sys, storymaker.domain.layout, storymaker.domain.lettering, "
            "storymaker.services.export; "
            "print(sorted(m for m in ('torch', 'diffusers', 'PIL', 'reportlab') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_printed_pages_show_every_head_and_almost_all_of_each_picture():
    """Found: the lighthouse's printed pages cut the top and bottom of every panel (the draft's
    slug line and, for a face at the top edge, part of the face). Each picture now loses at most
    5% of its area, and none of a recorded head."""
    from storymaker.domain.heads import Head

    story = [  # 3:4 panels as the lighthouse renders them; a head touching the top edge
        ((768, 1024), [Head((0.30, 0.0, 0.45, 0.14), "Mara", "draft")]),
        ((768, 1024), [Head((0.55, 0.02, 0.70, 0.16), "Tessa", "draft")]),
        ((1024, 576), [Head((0.1, 0.0, 0.2, 0.2), "Mara", "draft"),
                       Head((0.8, 0.75, 0.95, 1.0), "Tessa", "draft")]),
        ((768, 1024), [Head((0.2, 0.0, 0.35, 0.14), "Mara", "draft"),
                       Head((0.6, 0.0, 0.75, 0.14), "Tessa", "draft")]),
        ((768, 1024), [Head((0.4, 0.1, 0.55, 0.24), None, "draft")]),
    ]
    band = (0.0, 0.93, 1.0, 1.0)
    panels = [ComicPanel(Image.new("RGB", (w // 4, h // 4), "gray"), heads=tuple(heads),
                         keep_clear=(band,)) for (w, h), heads in story]
    for orientation in ("portrait", "landscape"):
        for title in ("", "The Lighthouse Keeper"):
            pages = render_comic(panels, _small(kind="pages", title=title, orientation=orientation),
                                 draw=False)
            for page in pages:
                for index, placement in page.placements:
                    l, t, r, b = placement.crop
                    assert (r - l) * (b - t) >= 0.95 - 1e-9, (index, placement.crop)
                    for head in panels[index].heads:
                        x0, y0, x1, y1 = head.box
                        inside = l <= x0 + 1e-9 and x1 <= r + 1e-9 and t <= y0 + 1e-9 \
                            and y1 <= b + 1e-9
                        assert inside, (index, head, placement.crop)
