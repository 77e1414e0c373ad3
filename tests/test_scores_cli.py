"""`python -m storymaker score` end to end on a tiny-backend project, `render --best-of`, the HTML
report and character sheets, and the consistency benchmark on the tiny components."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from storymaker.cli import main
from storymaker.services.scores import scores_from_meta
from storymaker.services.storage import Project

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"
STORY = """\
title: Score test
style: ink drawing

[Mara] stands on a cliff at dusk

[Mara] waves from a boat

an empty beach at dawn
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A tiny-backend project rendered without scores (STORYMAKER_SCORE_RENDERS=0), so that the
    score command has everything to do."""
    folder = tmp_path_factory.mktemp("score-cli")
    story = folder / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    saved = os.environ.get("STORYMAKER_SCORE_RENDERS")
    os.environ["STORYMAKER_SCORE_RENDERS"] = "0"
    try:
        code = main(["render", str(story), "--project", str(folder / "p"), "--out", str(folder / "c.pdf"),
                     "--backend", "tiny", "--size", "64x64", "--steps", "1", "--characters", f"Mara={PHOTO}"])
    finally:
        if saved is None:
            os.environ.pop("STORYMAKER_SCORE_RENDERS", None)
        else:
            os.environ["STORYMAKER_SCORE_RENDERS"] = saved
    assert code == 0
    project = Project.open(folder / "p")
    assert all("scores" not in project.selected(i).meta for i in range(3))
    return folder, project


def test_score_json_parses_matches_the_stored_scores_and_scores_once(rendered, capsys):
    folder, project = rendered
    assert main(["score", "--project", str(project.path), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "3 version(s) scored now" in err
    assert [p["panel"] for p in report["panels"]] == [1, 2, 3]
    for entry in report["panels"]:
        version = project.selected(entry["panel"] - 1)
        stored = scores_from_meta(version.meta)
        assert entry["version"] == version.id and stored is not None
        assert entry["clip_t"] == stored.clip_t
        assert [(c["name"], c["face_similarity"], c["clip_i"], c["off_model"]) for c in entry["characters"]] == [
            (c.name, c.face_similarity, c.clip_i, c.off_model) for c in stored.characters]
        assert entry["stand_in"] and "not a real" in entry["models"]["face"]
    assert [len(p["characters"]) for p in report["panels"]] == [1, 1, 0]
    story = report["story"]
    assert story["panels_scored"] == 3 and story["stand_in"] and "meaningless" in story["note"]
    assert story["characters"]["Mara"]["panels"] == 2
    faces = [c["face_similarity"] for p in report["panels"] for c in p["characters"]]
    assert story["face_similarity_min"] == min(faces)
    assert story["off_model_panels"] == sum(1 for p in report["panels"] if p["off_model"])

    # A second run computes nothing and reports the same values.
    assert main(["score", "--project", str(project.path), "--json"]) == 0
    out2, err2 = capsys.readouterr()
    assert "0 version(s) scored now" in err2 and json.loads(out2) == report


def test_score_table_html_report_and_character_sheet(rendered, capsys):
    folder, project = rendered
    html = folder / "report.html"
    assert main(["score", "--project", str(project.path), "--html", str(html), "--sheets", str(folder / "sheets")]) == 0
    out, _ = capsys.readouterr()
    assert "NOTE: scores made with stand-in models" in out and "Mara" in out and "story:" in out
    text = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and "Character sheets" in text and "meaningless" in text
    sheet = Image.open(folder / "sheets" / "sheet-mara.png")
    # The registered face and Mara's crop from panels 1 and 2, side by side.
    assert sheet.width > 3 * 112 and sheet.height > 192
    assert main(["score", "--project", str(project.path), "--html", str(html)]) == 2  # no silent overwrite


def test_score_refuses_a_folder_that_is_not_a_project(tmp_path, capsys):
    assert main(["score", "--project", str(tmp_path)]) == 2
    assert "not a StoryMaker project" in capsys.readouterr().err


def test_score_of_draft_sketches_says_why_there_is_nothing(tmp_path, capsys):
    """A project of draft sketches printed an empty table ending "threshold None"."""
    story = tmp_path / "story.txt"
    story.write_text("a lighthouse at night\n\na boat in the waves\n", encoding="utf-8")
    assert main(["render", str(story), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "c.png"),
                 "--backend", "draft", "--size", "64x64"]) == 0
    capsys.readouterr()
    assert main(["score", "--project", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "panel 2 (" in out and "None" not in out and "-----" not in out
    assert "Draft sketches are never scored" in out and "--backend storymaker" in out


def test_render_best_of_keeps_every_seed_and_selects_one(tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("[Mara] on a cliff\n", encoding="utf-8")
    code = main(["render", str(story), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "c.png"),
                 "--backend", "tiny", "--size", "64x64", "--steps", "1", "--best-of", "2",
                 "--characters", f"Mara={PHOTO}"])
    assert code == 0
    project = Project.open(tmp_path / "p")
    versions = project.versions(0)
    assert len(versions) == 2 and all(scores_from_meta(v.meta) for v in versions)
    assert project.selected(0).id in {v.id for v in versions}
    assert "best of 2" in capsys.readouterr().err
    assert main(["render", str(story), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "d.png"),
                 "--backend", "tiny", "--best-of", "0"]) == 2


def test_consistency_benchmark_runs_on_the_tiny_components(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("eval_consistency", ROOT / "benchmarks" / "eval_consistency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mara.png").write_bytes(PHOTO.read_bytes())
    (photos / "mara.txt").write_text("a woman with short brown hair", encoding="utf-8")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nreading in a cafe\n{} on a beach\n", encoding="utf-8")
    out_json = tmp_path / "eval.json"
    assert module.main(["--photos", str(photos), "--prompts", str(prompts), "--backend", "tiny",
                        "--size", "64x64", "--steps", "1", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "StoryMaker" in table and "SDXL, text only (floor)" in table and "meaningless" in table
    results = json.loads(out_json.read_text())
    assert results["stand_in"] and results["characters"] == ["Mara"]
    for key in ("storymaker", "sdxl_text_only"):
        summary = results["methods"][key]["summary"]
        assert summary["renders"] == 2 and summary["failed"] == 0
        assert summary["face_similarity"] is not None and summary["clip_t"] is not None
    prompts_seen = [r["prompt"] for r in results["methods"]["storymaker"]["renders"]]
    assert prompts_seen == ["[Mara] reading in a cafe", "[Mara] on a beach"]
    # Same seeds for both methods: only the character conditioning differs.
    seeds = {k: [r["seed"] for r in results["methods"][k]["renders"]] for k in ("storymaker", "sdxl_text_only")}
    assert seeds["storymaker"] == seeds["sdxl_text_only"]


def test_scoring_with_missing_real_weights_says_what_to_install_and_changes_nothing(rendered, capsys):
    folder, project = rendered
    before = {i: project.selected(i).meta.get("scores") for i in range(3)}
    assert main(["score", "--project", str(project.path), "--rescore", "--backend", "storymaker"]) == 2
    err = capsys.readouterr().err
    assert "face model" in err and "Traceback" not in err
    assert {i: project.selected(i).meta.get("scores") for i in range(3)} == before
