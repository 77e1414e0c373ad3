"""`python -m storymaker score --project DIR [--json] [--html REPORT.html] [--sheets DIR] [--rescore]`

Scores every panel's selected version that has no scores yet (face similarity and CLIP-I per
character, CLIP-T, off-model flags; stored in the version), then prints a table per panel and per
character and the story means. ``--json`` prints one JSON object on stdout instead; ``--html``
also writes the report with the character sheets; ``--sheets`` writes each sheet as a PNG.
The selection of versions is never changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import Settings
from ..errors import InvalidInputError, ProjectError

SCORE_BACKENDS = ("auto", "storymaker", "tiny")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="measure character consistency of a project's panels (face similarity, CLIP-I, CLIP-T)",
        description=(
            "Score every selected panel version that has no scores yet and print the consistency report. "
            "Scores are stored with each version and computed once."
        ),
    )
    parser.add_argument("--project", required=True, metavar="DIR", help="project folder")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the report with character sheets as HTML")
    parser.add_argument("--sheets", default=None, metavar="DIR", help="also write each character sheet as a PNG in DIR")
    parser.add_argument("--rescore", action="store_true", help="score again versions that already have scores")
    parser.add_argument(
        "--backend", choices=SCORE_BACKENDS, default="auto",
        help="models that score: storymaker (insightface + CLIP ViT-H/14), tiny (labelled stand-ins, offline), "
             "auto (STORYMAKER_BACKEND if it is one of those, else tiny when every render was made by the tiny "
             "backend, else storymaker)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the --html file if it exists")
    parser.set_defaults(func=run)


def _backend(choice: str, settings: Settings, project) -> str:
    if choice != "auto":
        return choice
    if settings.backend in ("storymaker", "tiny"):
        return settings.backend
    backends = set()
    for index in project.panel_indices():
        version = project.selected(index)
        if version is not None and version.meta.get("backend") != "draft":
            backends.add(version.meta.get("backend"))
    return "tiny" if backends == {"tiny"} else "storymaker"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..services.container import build_services
    from ..services.poses import PoseLibrary
    from ..services.scores import make_scorer, score_selected
    from ..services.sheet import character_sheets, format_table, reference_images, report_html, story_report
    from ..services.storage import Project

    project_dir = Path(args.project).expanduser()
    if not Project.is_project(project_dir):
        raise ProjectError(f"{project_dir} is not a StoryMaker project: render a story into it first "
                           "(python -m storymaker render STORY --project DIR --out comic.pdf).")
    html_path = Path(args.html) if args.html else None
    if html_path is not None and html_path.exists() and not args.overwrite:
        raise InvalidInputError(f"{args.html} exists: pass --overwrite to replace it, or pick another name.")
    project = Project.open(project_dir)
    if not project.panel_indices():
        raise InvalidInputError(f"{project_dir} has no rendered panels yet: render the story first.")
    backend = _backend(args.backend, settings, project)
    registry = build_services(settings, backend=backend).character_registry(project)  # wired as the app does
    scorer = make_scorer(backend, settings.replace(score_renders=True), registry)
    poses = PoseLibrary(project.poses_dir)

    def say(index: int) -> None:
        print(f"scoring panel {index + 1} ...", file=sys.stderr)

    scored = score_selected(project, scorer, poses=poses, rescore=args.rescore, on_panel=say)
    fresh = sum(1 for s in scored if s.fresh)
    print(f"{fresh} version(s) scored now, {sum(1 for s in scored if s.scores and not s.fresh)} had scores"
          + (f" (backend {backend})" if fresh else ""), file=sys.stderr)
    report = story_report(scored)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    elif not report["panels"]:
        print(nothing_scored(report["skipped"]))
    else:
        print(format_table(report))
    if html_path is not None or args.sheets:
        names = [c.name for c in registry.list()]
        sheets = character_sheets(scored, reference_images(registry, names))
        if args.sheets:
            folder = Path(args.sheets)
            folder.mkdir(parents=True, exist_ok=True)
            for name, sheet in sheets.items():
                path = folder / f"sheet-{_slug(name)}.png"
                sheet.save(path)
                print(f"wrote {path}", file=sys.stderr)
        if html_path is not None:
            from ..fsutil import atomic_write_text

            atomic_write_text(html_path, report_html(report, sheets, title=project.title))
            print(f"wrote {html_path}", file=sys.stderr)
    return 0


def nothing_scored(skipped: list[dict]) -> str:
    """The report when no selected version has scores (an empty table said "threshold None")."""
    lines = [f"panel {s['panel']} ({s['version']}): no scores: {s['reason']}" for s in skipped]
    lines.append("No panel has consistency scores.")
    if skipped and all("draft" in s["reason"] for s in skipped):
        lines[-1] += (" Draft sketches are never scored: render the story with the StoryMaker model "
                      "(--backend storymaker; --backend tiny for an offline smoke run), then score again.")
    return "\n".join(lines)


def _slug(name: str) -> str:
    from ..services.character_records import slugify

    return slugify(name)
