"""Convert a CFF-flavoured OpenType font (.otf) to TrueType outlines (.ttf).

reportlab embeds TrueType outlines only, and Debian's fonts-comic-neue ships .otf (CFF) files, so
the Comic Neue files in this folder were made with:

    python assets/fonts/otf2ttf.py /usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf \
        assets/fonts/ComicNeue-Regular.ttf

Needs fontTools (``pip install fonttools``; a development tool only, not needed at run time).
Cubic curves become quadratic ones within 1 font unit (fontTools' cu2qu). The glyphs, metrics,
names and licence (SIL OFL 1.1, no Reserved Font Name) are unchanged.
"""

from __future__ import annotations

import sys


def convert(src: str, dst: str, max_err: float = 1.0) -> None:
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(src)
    if "CFF " not in font:
        raise SystemExit(f"{src} has no CFF table: it is not a CFF OpenType font")
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err, reverse_direction=True))
        glyphs[name] = pen.glyph()
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    glyf = font["glyf"] = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = glyphs
    font["loca"] = newTable("loca")
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for attr in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                 "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions"):
        setattr(maxp, attr, {"maxZones": 1}.get(attr, 0))
    maxp.maxComponentElements = max(
        (len(g.components) for g in glyphs.values() if hasattr(g, "components")), default=0
    )
    maxp.maxComponentDepth = 0
    post = font["post"]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}
    post.glyphOrder = order
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\000\001\000\000"
    font.save(dst)


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
