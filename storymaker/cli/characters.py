"""`python -m storymaker characters ...`: register, list, rename, describe, dress and remove characters.

    characters add NAME PHOTO [--description TEXT] [--mask MASK] --project DIR [--backend ...]
    characters list --project DIR
    characters remove NAME --project DIR
    characters rename NAME NEW_NAME --project DIR
    characters describe NAME TEXT --project DIR
    characters outfit NAME OUTFIT IMAGE --project DIR [--backend ...]

The components are wired as the app wires them (``Services.character_registry``): ``--backend
storymaker`` uses insightface, rembg and CLIP ViT-H/14 and says clearly which weights are missing;
``--backend tiny`` uses the labelled stand-ins (OpenCV face boxes, GrabCut mask, tiny random CLIP),
offline on any machine; the default (``STORYMAKER_BACKEND``, "auto") does what the app does: the real
models when their weights are here, else draft mode's stand-ins, said on stderr (such characters are
re-encoded once the real models are configured). Bad input: the message on stderr, exit status 2,
nothing written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sys

from ..config import BACKENDS, Settings
from ..errors import ProjectError

CHARACTER_BACKENDS = BACKENDS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "characters",
        help="register and manage the characters of a project",
        description="Register a character from one photo (once: the embeddings are kept in the project) and manage them.",
    )
    sub = parser.add_subparsers(dest="characters_command", metavar="ACTION")
    sub.required = True

    def project_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--project", required=True, metavar="DIR", help="project folder")

    def backend_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--backend", choices=CHARACTER_BACKENDS, default=None,
            help="storymaker: insightface + rembg + CLIP ViT-H/14 (real weights); tiny: offline stand-ins "
                 "(not real face analysis; for tests and smoke runs); auto/draft: as the app does (the real "
                 "models when their weights are here, else the stand-ins). Default: STORYMAKER_BACKEND",
        )

    add = sub.add_parser("add", help="register a character from one photo (one clear face)")
    add.add_argument("name", metavar="NAME", help="the name used as [NAME] in the story script")
    add.add_argument("photo", metavar="PHOTO", help="photo of the person (JPEG, PNG or WebP)")
    add.add_argument("--description", default="", metavar="TEXT", help='how the prompt names them, e.g. "a woman with red hair"')
    add.add_argument("--mask", default=None, metavar="MASK", help="your own person mask (white = person, same size as PHOTO)")
    project_arg(add)
    backend_arg(add)
    add.set_defaults(func=run_add)

    lst = sub.add_parser("list", help="list the project's characters")
    project_arg(lst)
    lst.set_defaults(func=run_list)

    rm = sub.add_parser("remove", help="delete a character and its files")
    rm.add_argument("name", metavar="NAME")
    project_arg(rm)
    rm.set_defaults(func=run_remove)

    ren = sub.add_parser("rename", help="rename a character")
    ren.add_argument("name", metavar="NAME")
    ren.add_argument("new_name", metavar="NEW_NAME")
    project_arg(ren)
    ren.set_defaults(func=run_rename)

    desc = sub.add_parser("describe", help='set the description ("" to use the face-analysis noun)')
    desc.add_argument("name", metavar="NAME")
    desc.add_argument("description", metavar="TEXT")
    project_arg(desc)
    desc.set_defaults(func=run_describe)

    outfit = sub.add_parser("outfit", help="add a named outfit (an image of the clothes) to a character")
    outfit.add_argument("name", metavar="NAME")
    outfit.add_argument("outfit", metavar="OUTFIT", help="outfit name, used as outfit: NAME=OUTFIT in the script")
    outfit.add_argument("image", metavar="IMAGE")
    project_arg(outfit)
    backend_arg(outfit)
    outfit.set_defaults(func=run_outfit)


def _backend(args: argparse.Namespace, settings: Settings) -> str:
    return getattr(args, "backend", None) or settings.backend


def _registry(project_dir: Path, settings: Settings, backend: str = "draft", *, announce: bool = False):
    """The project's registry, wired by the services container as in the app. ``announce``: say on
    stderr when the stand-ins replace the real models (a backend other than tiny asked for)."""
    from ..services.container import build_services, missing_perception

    services = build_services(settings, backend=backend)
    if announce and services.perception.label and backend != "tiny":
        print(f"note: the registration models are missing ({', '.join(missing_perception(settings))}), so "
              f"characters are registered with the {services.perception.label}; they are re-encoded once the "
              "real models are configured (python -m storymaker doctor).", file=sys.stderr)
    return services.character_registry(project_dir)


def _existing_registry(args: argparse.Namespace, settings: Settings, backend: str = "draft"):
    """The registry of the existing project ``--project`` (list/remove/rename never create one;
    they run no model, so no backend is chosen for them)."""
    project_dir = Path(args.project).expanduser()
    _open_project(project_dir)
    return _registry(project_dir, settings, backend)


def _open_project(path: Path):
    """The project at ``path``; an error if there is none (list/remove/rename never create one)."""
    from ..services.storage import Project

    if not Project.is_project(path):
        if (path / "characters").is_dir():
            return None  # a bare characters folder (made before the project file existed): usable
        raise ProjectError(f"{path} is not a StoryMaker project: add a character first (characters add ... --project {path}).")
    return Project.open(path)


def run_add(args: argparse.Namespace, settings: Settings) -> int:
    from ..services.storage import Project

    project_dir = Path(args.project).expanduser()
    registry = _registry(project_dir, settings, _backend(args, settings), announce=True)
    # Everything is checked and computed before anything is written.
    preview = registry.analyze(args.name, args.photo, description=args.description, mask=args.mask)
    if not Project.is_project(project_dir) and not (project_dir / "characters").is_dir():
        Project.create(project_dir)
    character = registry.add(preview)
    face = character.face
    print(f"Registered {character.name} (id {character.id}) in {registry.root / character.id}")
    if face is not None:
        x1, y1, x2, y2 = (round(v) for v in face.bbox)
        print(f"  face: box ({x1}, {y1})-({x2}, {y2}), {face.faces_found} face(s) found, the largest used")
    print(f"  in prompts: [{character.name}] -> {character.prompt_noun!r}")
    print(f"  mask: {preview.mask_source}; face model: {character.face_model}; image encoder: {character.image_encoder}")
    for note in preview.notes:
        print(f"  note: {note}")
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    characters = _existing_registry(args, settings).list()
    if not characters:
        print("No characters yet: python -m storymaker characters add NAME PHOTO --project DIR")
        return 0
    for c in characters:
        outfits = ", ".join(o.name for o in c.outfits) or "-"
        print(f"{c.name}\t{c.id}\t{c.prompt_noun}\toutfits: {outfits}\tface: {c.face_model}\tencoder: {c.image_encoder}")
    return 0


def run_remove(args: argparse.Namespace, settings: Settings) -> int:
    removed = _existing_registry(args, settings).remove(args.name)
    print(f"Removed {removed.name} ({removed.id})")
    return 0


def run_rename(args: argparse.Namespace, settings: Settings) -> int:
    character = _existing_registry(args, settings).rename(args.name, args.new_name)
    print(f"Renamed to {character.name} ({character.id}); change [{args.name}] to [{character.name}] "
          "in your story script")
    return 0


def run_describe(args: argparse.Namespace, settings: Settings) -> int:
    character = _existing_registry(args, settings).redescribe(args.name, args.description)
    print(f"{character.name}: [{character.name}] -> {character.prompt_noun!r}")
    return 0


def run_outfit(args: argparse.Namespace, settings: Settings) -> int:
    project_dir = Path(args.project).expanduser()
    _open_project(project_dir)
    registry = _registry(project_dir, settings, _backend(args, settings), announce=True)
    character = registry.add_outfit(args.name, args.outfit, args.image)
    print(f"{character.name} outfits: {', '.join(o.name for o in character.outfits)} "
          f"(use  outfit: {character.name}={args.outfit}  under a panel)")
    return 0
