"""The studio in headless Chromium: register a character, write a three-panel script, render it
(draft backend), download the PDF and count its pages; a second browser context sees none of it.

Skips when /usr/bin/chromium is missing, unless STORYMAKER_REQUIRE_BROWSER=1 (CI), then fails.
Screenshots of every tab (1280x800) go to $STORYMAKER_UI_SHOTS (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from ui_helpers import PHOTO, THREE_PANELS, launch, make_studio

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000  # generous: the CI machine may be shared and slow

pytestmark = pytest.mark.browser


def _need_browser() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("STORYMAKER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing and STORYMAKER_REQUIRE_BROWSER=1: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _need_browser()
    studio = make_studio(tmp_path_factory.mktemp("browser") / "data")
    url = launch(studio)
    yield url
    studio.close()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield instance
        instance.close()


def _context(browser):
    # A fresh profile per context (cookies, local storage): one person each.
    return browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True,
                               base_url=None)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _shot(page, folder: Path, name: str) -> None:
    page.wait_for_timeout(400)  # let images and galleries settle
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(folder / f"{name}.png"))  # what a 1280x800 window shows
    page.screenshot(path=str(folder / f"{name}-full.png"), full_page=True)


def _wait_text(page, selector: str, text: str) -> None:
    try:
        page.locator(selector).filter(has_text=text).first.wait_for(timeout=TIMEOUT_MS)
    except Exception:
        # Leave a picture of what the page showed instead, for the failure report.
        folder = Path(os.environ.get("STORYMAKER_UI_SHOTS") or tempfile.gettempdir())
        page.screenshot(path=str(folder / "failure.png"), full_page=True)
        raise


def test_register_write_render_and_download_pdf(app_url, browser, tmp_path):
    from pypdf import PdfReader

    shots = Path(os.environ.get("STORYMAKER_UI_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    context = _context(browser)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    _wait_text(page, "#project-summary", "characters: none yet")
    _shot(page, shots, "1-project")

    # Characters: check the photo (face box, mask, crops), then save.
    _tab(page, "Characters")
    page.locator("#char-photo input[type=file]").set_input_files(str(PHOTO))
    page.locator("#char-name textarea, #char-name input").first.fill("Eileen")
    page.get_by_role("button", name="1. Check the photo").click()
    page.get_by_text("Faces found").wait_for()
    page.get_by_role("button", name="2. Save character").click()
    _wait_text(page, "#char-status", "Saved Eileen")
    page.locator("#char-gallery img").first.wait_for()
    _shot(page, shots, "2-characters")

    # Poses: the preset gallery and a skeleton preview.
    _tab(page, "Poses")
    page.locator("#pose-gallery img").first.wait_for()
    page.locator("#pose-gallery img").first.click()
    page.get_by_text("fitted into a").wait_for()
    _shot(page, shots, "3-poses")

    # Story: type a three-panel script; live validation lists the panels.
    _tab(page, "Story")
    editor = page.locator("#script-editor .cm-content")
    editor.click()
    page.keyboard.insert_text("title: Oops\n\n[Eileen] waves\n[Eilen] smiles\n")
    _wait_text(page, "#script-issues", "line 4, column")  # the unknown name, at its line
    _shot(page, shots, "4-story-error")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(THREE_PANELS.format(name="Eileen"))
    _wait_text(page, "#script-issues", "valid: 3 panels")
    _shot(page, shots, "4-story")

    # Render all three panels.
    _tab(page, "Render")
    page.get_by_role("button", name="Render all panels").click()
    _wait_text(page, "#render-status", "3 of 3 panels rendered")
    page.locator("#panels img").nth(2).wait_for()
    _shot(page, shots, "5-render")

    # Comic: preview, then the PDF download.
    _tab(page, "Comic")
    page.get_by_role("button", name="Update preview").click()
    _wait_text(page, "#comic-status", "3 panel(s) on")
    page.locator("#comic-pages img").first.wait_for()
    status = page.locator("#comic-status").inner_text()
    previewed = int(re.search(r"on (\d+) page", status).group(1))
    page.get_by_role("button", name="Make PDF").click()
    _wait_text(page, "#comic-status", "Comic written")
    _shot(page, shots, "6-comic")
    with page.expect_download() as info:
        page.locator("#comic-download a").first.click()
    pdf = tmp_path / "comic.pdf"
    info.value.save_as(pdf)
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 1
    assert len(reader.pages) == previewed  # one PDF page per previewed page

    # A second person (another browser context) sees nobody's characters.
    other = _context(browser)
    page2 = other.new_page()
    page2.goto(app_url)
    _wait_text(page2, "#project-summary", "characters: none yet")
    _tab(page2, "Characters")
    assert page2.locator("#char-gallery img").count() == 0

    # ...and gets a finished comic from the example project in one click.
    _tab(page2, "Project")
    page2.get_by_role("button", name="Make the example comic").click()
    _wait_text(page2, "#comic-status", "panel(s) on")  # the app switches to the Comic tab
    page2.locator("#comic-pages img").first.wait_for()
    _shot(page2, shots, "7-example-comic")
    _tab(page, "Characters")
    assert page.locator("#char-gallery img").count() == 1  # the first person still sees only Eileen
    other.close()
    context.close()
