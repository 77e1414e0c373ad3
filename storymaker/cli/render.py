"""`python -m storymaker render STORY --project DIR --out OUT.pdf|OUT.png ...`

Renders a story script's panels into a project (every render kept as a version, the new one
selected) with a progress bar, then writes the comic through the export module.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from ..config import BACKENDS, Settings, check_panel_size
from ..errors import InvalidInputError, ProjectError, RenderError

logger = logging.getLogger(__name__)

LAYOUTS = ("strip", "grid", "pages", "scroll")
OUTPUT_SUFFIXES = (".pdf", ".png")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a story script's panels and write the comic (PDF or PNG)",
        description=(
            "Render every panel of STORY (a story script) into the project folder (each render is kept "
            "as a version), then write the comic to OUT. Characters come from the project "
            "(python -m storymaker characters add) or from --characters NAME=PHOTO."
        ),
    )
    parser.add_argument("story", metavar="STORY", help="story script (.txt/.story, .yaml, .json)")
    parser.add_argument("--project", required=True, metavar="DIR", help="project folder (created if absent)")
    parser.add_argument("--out", required=True, metavar="OUT", help="comic file to write: .pdf or .png")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="storymaker, draft, tiny or auto (default: STORYMAKER_BACKEND or auto)")
    parser.add_argument("--panels", default=None, metavar="LIST",
                        help="only these panels, 1-based, e.g. 1,3 or 2-4 (the others keep their selected version)")
    parser.add_argument("--missing", action="store_true",
                        help="render only the panels (of --panels, if given) that have no render of their current "
                             "wording in the project: none yet, or the script changed since (e.g. after an "
                             "interrupted run); the others keep theirs")
    parser.add_argument("--layout", choices=LAYOUTS, default="pages", help="comic layout (default: pages)")
    parser.add_argument("--author", default="", metavar="NAME", help="the comic's author, in the PDF/PNG metadata")
    parser.add_argument("--seed", type=int, default=None,
                        help="story base seed, 0 to 4294967295 (replaces the script's; -1: the script's seeds)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="render every panel at this size (replaces the script's sizes)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps for every panel")
    parser.add_argument("--quality", choices=("standard", "fast"), default=None,
                        help="fast: 4 steps with the SDXL-Lightning LoRA, guidance 1 (replaces --steps and the "
                             "script's steps/guidance); default: STORYMAKER_QUALITY or standard")
    parser.add_argument("--characters", nargs="+", default=(), metavar="NAME=PHOTO",
                        help="register these characters in the project first (kept if already there; --overwrite re-registers them)")
    parser.add_argument("--best-of", type=int, default=None, metavar="N", dest="best_of",
                        help="render N seeds per panel, keep all, select the best-scoring one "
                             "(default: STORYMAKER_BEST_OF or 1; scores: python -m storymaker score)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_ray_options(parser)
    parser.set_defaults(func=run)


def add_ray_options(parser) -> None:
    """``--ray ADDRESS`` and ``--ray-workers N`` (docs/ray.md); shared with ``batch``."""
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="render on a Ray cluster: auto, ray://HOST:10001, or local:N for a local "
                        "cluster with N workers (needs `pip install ray`; see docs/ray.md)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --ray: how many workers (default: one per GPU of the cluster; "
                        "on a CPU-only cluster one per node; local:N: N)")


def parse_panels(text: str | None, count: int) -> list[int] | None:
    """``"1,3,5-6"`` -> 0-based indices, checked against ``count`` panels."""
    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                numbers = list(range(a, b + 1))
            else:
                numbers = [int(part)]
        except ValueError:
            raise InvalidInputError(
                f"--panels {text!r}: {part!r} is not a panel number; write e.g. --panels 1,3 or 2-4."
            ) from None
        for n in numbers:
            if not 1 <= n <= count:
                raise InvalidInputError(
                    f"--panels {text!r}: panel {n} does not exist; the story has {count} panel(s), numbered from 1."
                )
            if n - 1 not in out:
                out.append(n - 1)
    if not out:
        raise InvalidInputError(f"--panels {text!r} names no panel; write e.g. --panels 1,3.")
    return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"--size {text!r}: write width x height, e.g. --size 768x1024.") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise InvalidInputError(f"--size {text!r}: width and height must be positive multiples of 8.")
    return w, h


def _force(story, size: tuple[int, int] | None, steps: int | None):
    """The story with every panel's size / steps replaced by the command line's."""
    if size is None and steps is None:
        return story
    panel_changes = {}
    story_changes = {}
    if size is not None:
        panel_changes["size"] = size
        story_changes["size"] = size
    if steps is not None:
        panel_changes["steps"] = steps
        story_changes["steps"] = steps
    panels = tuple(dataclasses.replace(p, **panel_changes) for p in story.panels)
    return dataclasses.replace(story, panels=panels, **story_changes)


def _register_characters(registry, specs, overwrite: bool) -> None:
    known = {c.name.casefold() for c in registry.list()}
    for spec in specs:
        name, sep, photo = spec.partition("=")
        name, photo = name.strip(), photo.strip()
        if not sep or not name or not photo:
            raise InvalidInputError(f"--characters {spec!r}: write NAME=PHOTO, e.g. --characters Mara=mara.jpg.")
        if not Path(photo).is_file():
            raise InvalidInputError(f"--characters {spec!r}: the photo {photo!r} does not exist.")
        if name.casefold() in known:
            if not overwrite:
                print(f"{name}: already registered in the project, kept (use --overwrite to replace)",
                      file=sys.stderr)
                continue
            registry.delete(registry.get(name).id)
        registry.add(name, photo)
        known.add(name.casefold())


def _load_story(path: Path, registry, poses, max_side: int | None = None):
    """The story checked as the Story tab checks it: registered names, pose people counts, each
    character's outfits and (``max_side``) the largest panel side rendered; before any work."""
    from ..domain.script import load_story

    if not path.is_file():
        raise InvalidInputError(f"The story file {str(path)!r} does not exist.")
    from ..errors import ScriptError

    characters = registry.list()
    names = [c.name for c in characters]
    counts = {p.name: p.num_people for p in poses.list()}
    outfits = {c.name: [o.name for o in c.outfits] for c in characters}
    try:
        return load_story(path, names, poses=counts, outfits=outfits, max_side=max_side)
    except ScriptError as err:
        # Name the file (batch reads several) and the command line's own way to register.
        text = f"{path}: {err}"
        if any(UNREGISTERED in issue.message for issue in err.issues):
            text += ("\nTo register the characters here, pass --characters NAME=PHOTO ... "
                     "(e.g. --characters Mara=mara.jpg).")
        err.args = (text,)
        raise err from None


UNREGISTERED = "is not a registered character"


def _progress_bar(story, indices, backend_name: str):
    """A tqdm bar over every denoising step of the run, and the callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="step", desc=f"render ({backend_name})", file=sys.stderr, dynamic_ncols=True)
    state = {"panel": -1, "seen": 0}

    def progress(position: int, count: int, step: int, steps: int) -> None:
        if position != state["panel"]:
            # Steps are known panel by panel (a panel may set its own): count this panel's for
            # every panel still to come, so the bar never says 100% while panels remain.
            state["panel"], state["seen"] = position, 0
            bar.total = bar.n + steps * max(1, count - position)
            bar.set_postfix_str(f"panel {indices[position] + 1} ({position + 1}/{count})")
            bar.refresh()
        if step > state["seen"]:
            bar.update(step - state["seen"])
            state["seen"] = step

    return bar, progress


def check_output(out: Path, text: str) -> None:
    """Fail now, before any model loads or any panel renders, if the comic cannot be written to
    ``out``: its folder is created if absent and a scratch file is written and removed there."""
    folder = out.parent if str(out.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"--out {text!r}: {str(folder)!r} is a file, not a folder; pick a folder you can "
                                "write to. Nothing was rendered.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".storymaker-write-test-"):
            pass
    except OSError as err:
        raise InvalidInputError(
            f"--out {text!r}: the folder {str(folder)!r} cannot be written ({err.strerror or err}); "
            "pick a folder you can write to. Nothing was rendered."
        ) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..domain.script import seed_option
    from ..services.container import build_services
    from ..services.gpu import check_story_sizes

    out = Path(args.out).expanduser()
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InvalidInputError(f"--out {args.out!r}: write a .pdf or a .png file.")
    if out.exists() and not args.overwrite:
        raise InvalidInputError(f"{args.out} exists: pass --overwrite to replace it, or pick another name.")
    check_output(out, args.out)
    size = parse_size(args.size) if args.size else None
    if size is not None:
        check_panel_size(*size, settings, what="--size")
    if args.steps is not None and args.steps < 1:
        raise InvalidInputError("--steps must be at least 1.")
    args.seed = seed_option(args.seed, "--seed")  # the Render tab's rule: refused out of range, never wrapped
    if getattr(args, "quality", None):
        settings = settings.replace(quality=args.quality)
    if args.backend:
        settings = settings.replace(backend=args.backend)
    if getattr(args, "best_of", None) is not None:
        if not 1 <= args.best_of <= 16:
            raise InvalidInputError("--best-of must be between 1 and 16.")
        settings = settings.replace(best_of=args.best_of)

    if getattr(args, "ray", None):
        from ..distributed import driver_services, preflight

        preflight(args.ray)  # a clear message before anything is written
        services = driver_services(settings)  # the workers load the model, not this machine
    else:
        services = build_services(settings)
    if services.backend_reason:
        print(services.backend_reason, file=sys.stderr)
    project = services.open_project(args.project, create=True)
    registry = services.character_registry(project)
    poses = services.pose_library(project)
    _register_characters(registry, args.characters, args.overwrite)

    story = _force(_load_story(Path(args.story), registry, poses, settings.max_panel_side), size, args.steps)
    if not story.panels:
        raise InvalidInputError(f"The story {args.story} has no panels: write at least one panel line.")
    indices = parse_panels(args.panels, len(story.panels))
    check_story_sizes(story, settings, indices)  # before any panel renders
    if Path(args.story).suffix.lower() in (".txt", ".story"):
        project.write_script(Path(args.story).read_text(encoding="utf-8"))

    engine = services.engine(project)
    run_indices = indices if indices is not None else list(range(len(story.panels)))
    missing = bool(getattr(args, "missing", False))
    if missing:
        todo = engine.missing_panels(story, run_indices)
        skipped = len(run_indices) - len(todo)
        have = "panel already has a render of its" if skipped == 1 else "panels already have a render of their"
        print(f"{skipped} {have} current wording: skipped (--missing); {len(todo)} to render", file=sys.stderr)
        run_indices = todo
    if missing and not run_indices:
        from ..services.jobs import RenderReport

        report = RenderReport((), backend=services.backend_name)
    elif getattr(args, "ray", None):
        from ..distributed import StoryRun
        from .batch import render_runs_on_ray

        panels = run_indices if missing else indices
        (report,) = render_runs_on_ray(args, services, [StoryRun(engine, story, panels, args.seed)])
    else:
        bar, progress = _progress_bar(story, run_indices, services.backend_name)
        try:
            report = engine.render_story(story, panels=indices, seed=args.seed, progress=progress,
                                         only_missing=missing)
        finally:
            bar.close()
    for result in report.results:
        if result.ok:
            best = f", best of {settings.best_of}" if settings.best_of > 1 else ""
            print(f"panel {result.index + 1}: ok (seed {result.seed}, version {result.version}{best})", file=sys.stderr)
        else:
            print(f"panel {result.index + 1}: {result.status}", file=sys.stderr)  # reasons: in the error

    written: list[Path] = []
    # Nothing rendered in this run: do not export older versions as if it had (unless --missing
    # left every panel its own render).
    if report.finished or (missing and report.ok):
        try:
            written = write_comic(services, project, story, out, args.layout, overwrite=args.overwrite, poses=poses,
                                  author=args.author)
        except OSError as err:
            raise ProjectError(
                f"The panels are rendered and kept in the project {args.project}, but the comic could not be "
                f"written to {args.out} ({err.strerror or err}): run the command again with another --out."
            ) from None
    for path in written:
        print(f"wrote {path}")
    if report.failed or report.cancelled:
        kept = (" The comic was written with the panels that have an image: "
                + ", ".join(str(p) for p in written) + ".") if written else " No comic was written."
        raise RenderError(report.summary() + kept)
    if not written:
        raise RenderError("No panel has an image, so no comic was written.")
    return 0


def write_comic(services, project, story, out: Path, layout: str, *, overwrite: bool = False,
                poses=None, author: str = "") -> list[Path]:
    """Write the comic from each panel's selected version (panels never rendered are left out).

    A PDF goes to ``out``; PNG pages go to ``out`` (strip, grid, scroll: one image) or
    ``<out stem>-page-NN.png`` beside it (pages layout); ``author`` goes into their metadata.
    Returns the written paths ([] if no panel has an image yet)."""
    from ..domain.layout import LayoutOptions

    export = services.export
    panels = export.project_comic_panels(project, story, poses)  # each panel's own render, by identity
    for number in export.changed_panel_numbers(panels):
        logger.warning("panel %d: script changed since render; re-render it to match its prompt", number)
    if not panels:
        return []
    options = LayoutOptions(kind=layout, title=story.title)
    out_dir = out.parent if str(out.parent) else Path(".")
    if out.suffix.lower() == ".pdf":
        written = [Path(export.export_pdf(panels, out_dir, options, filename=out.stem, overwrite=overwrite,
                                          author=author))]
    else:
        written = [Path(p) for p in export.export_png(panels, out_dir, options, filename=out.stem,
                                                      overwrite=overwrite, author=author)]
    if len(written) == 1 and written[0] != out:
        # The exporter sanitises file names; the user asked for this exact path.
        written[0].replace(out)
        written = [out]
    return written
