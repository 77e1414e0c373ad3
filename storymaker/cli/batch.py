"""`python -m storymaker batch STORY [STORY ...] --project-root DIR [--ray ADDRESS] ...`

Renders many stories, each into its own project ``DIR/<story name>/`` with its comic written beside
it as ``DIR/<story name>.pdf`` (or ``.png``). With ``--ray`` every panel of every story goes to one
pool of Ray workers (each loads the model once for the whole batch); without it they render here,
one story after another. Also home of the cluster progress bar that ``render --ray`` uses.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..config import BACKENDS, Settings
from ..errors import InvalidInputError, RenderError, StoryMakerError
from ..fsutil import remove_directory
from .render import (
    LAYOUTS,
    _force,
    _load_story,
    _progress_bar,
    _register_characters,
    add_ray_options,
    parse_size,
    write_comic,
)

FORMATS = ("pdf", "png")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="render many stories, each into its own project, optionally on a Ray cluster",
        description=(
            "Render every panel of each STORY into the project DIR/<story name> and write its comic "
            "as DIR/<story name>.pdf (or .png). With --ray all panels of all stories are shared out "
            "to the workers of a Ray cluster (docs/ray.md)."
        ),
    )
    parser.add_argument("stories", nargs="+", metavar="STORY", help="story scripts (.txt/.story, .yaml, .json)")
    parser.add_argument("--project-root", required=True, metavar="DIR",
                        help="folder holding one project per story (created if absent)")
    parser.add_argument("--format", choices=FORMATS, default="pdf", help="comic file format (default: pdf)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="storymaker, draft, tiny or auto (default: STORYMAKER_BACKEND or auto)")
    parser.add_argument("--layout", choices=LAYOUTS, default="pages", help="comic layout (default: pages)")
    parser.add_argument("--author", default="", metavar="NAME", help="the comics' author, in the PDF/PNG metadata")
    parser.add_argument("--seed", type=int, default=None, help="base seed of every story (replaces the scripts')")
    parser.add_argument("--size", default=None, metavar="WxH", help="render every panel at this size")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps for every panel")
    parser.add_argument("--characters", nargs="+", default=(), metavar="NAME=PHOTO",
                        help="register these characters in every story's project (kept if already there)")
    parser.add_argument("--overwrite", action="store_true", help="replace comics that exist")
    add_ray_options(parser)
    parser.set_defaults(func=run)


def project_name(story_path: Path) -> str:
    """The folder name of a story's project: its file name without suffix, made safe."""
    name = re.sub(r"[^\w.-]+", "-", story_path.stem).strip(".-")
    return name or "story"


def _plan(args: argparse.Namespace) -> list[tuple[Path, Path, Path]]:
    """(story, project folder, comic) per story; every problem found before anything is written."""
    root = Path(args.project_root)
    plans, seen, problems = [], {}, []
    for text in args.stories:
        story = Path(text)
        name = project_name(story)
        if not story.is_file():
            problems.append(f"the story file {text!r} does not exist")
        elif name.casefold() in seen:
            problems.append(f"{text!r} and {seen[name.casefold()]!r} would share the project {name!r}: rename one")
        seen.setdefault(name.casefold(), text)
        out = root / f"{name}.{args.format}"
        if out.exists() and not args.overwrite:
            problems.append(f"{out} exists (pass --overwrite to replace it)")
        plans.append((story, root / name, out))
    if problems:
        raise InvalidInputError("Nothing was rendered: " + "; ".join(problems) + ".")
    return plans


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..services.container import build_services

    size = parse_size(args.size) if args.size else None
    if args.steps is not None and args.steps < 1:
        raise InvalidInputError("--steps must be at least 1.")
    from ..domain.script import seed_option

    args.seed = seed_option(args.seed, "--seed")  # render's and the Render tab's rule
    plans = _plan(args)
    if args.backend:
        settings = settings.replace(backend=args.backend)
    if args.ray:
        from ..distributed import driver_services, preflight

        preflight(args.ray)  # a clear message before anything is written
        services = driver_services(settings)
    else:
        services = build_services(settings)
        if services.backend_reason:
            print(services.backend_reason, file=sys.stderr)

    loaded = []  # (story path, project, story, poses, comic path)
    created = []  # project folders this run made: removed again if a story is refused
    try:
        for story_path, folder, out in plans:
            if not folder.exists():
                created.append(folder)
            project = services.open_project(folder, create=True, title=story_path.stem)
            registry = services.character_registry(project)
            poses = services.pose_library(project)
            _register_characters(registry, args.characters, overwrite=False)
            story = _force(_load_story(story_path, registry, poses, settings.max_panel_side), size, args.steps)
            if not story.panels:
                raise InvalidInputError(f"The story {story_path} has no panels: write at least one panel line.")
            if story_path.suffix.lower() in (".txt", ".story"):
                project.write_script(story_path.read_text(encoding="utf-8"))
            loaded.append((story_path, project, story, poses, out))
    except StoryMakerError:
        # Nothing renders unless every story is sound; a refused batch leaves no new project behind.
        for folder in created:
            if folder.exists():
                remove_directory(folder)
        raise

    if args.ray:
        from ..distributed import StoryRun

        runs = [StoryRun(services.engine(project), story, None, args.seed) for _, project, story, _, _ in loaded]
        reports = render_runs_on_ray(args, services, runs)
    else:
        reports = []
        for _, project, story, _, _ in loaded:
            bar, progress = _progress_bar(story, list(range(len(story.panels))), services.backend_name)
            try:
                reports.append(services.engine(project).render_story(story, seed=args.seed, progress=progress))
            finally:
                bar.close()

    failed = []
    for (story_path, project, story, poses, out), report in zip(loaded, reports):
        written = []
        if report.finished:
            written = write_comic(services, project, story, out, args.layout, overwrite=args.overwrite, poses=poses,
                                  author=args.author)
        for path in written:
            print(f"wrote {path}")
        print(f"{story_path}: {report.summary()}", file=sys.stderr)
        if not report.ok:
            failed.append(str(story_path))
    if failed:
        raise RenderError(
            f"{len(failed)} of {len(loaded)} stories did not render completely: {', '.join(failed)}. "
            "Their finished panels are kept; run the same command again to render the rest."
        )
    return 0


def render_runs_on_ray(args: argparse.Namespace, services, runs):
    """Render ``runs`` on the cluster named by ``args.ray`` with a panels-done progress bar;
    Ctrl+C stops the workers and keeps the finished panels."""
    from tqdm import tqdm

    from ..distributed import render_on_ray

    bar = tqdm(total=0, unit="panel", desc=f"render on Ray ({services.backend_name})", file=sys.stderr,
               dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        reports = render_on_ray(args.ray, services, runs, workers=args.ray_workers, progress=progress,
                                verbose=bool(getattr(args, "verbose", False)))
    finally:
        bar.close()
    return reports
